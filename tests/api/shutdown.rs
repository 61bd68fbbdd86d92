//! Graceful shutdown, as Cloud Run does it: SIGTERM, then SIGKILL 10 s later. A real Cloud Run
//! binary (convergence-bootstrap, on the BigQuery emulator) gets SIGTERM while a request is in
//! flight; that request must still be answered in full, new connections must be refused at once
//! (the load balancer retries them on another instance), and the process must exit, successfully,
//! within the grace period.
//!
//! "In flight" is made certain rather than timed: the request is sent with
//! `Expect: 100-continue` and its body held back. The server answers `100 Continue` only when the
//! handler, past authentication, starts reading the body; SIGTERM is sent after that, and the body
//! after the signal.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use convergence_tests::{bigquery_emulator, binaries_dir, free_port, unique_project};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;

use crate::terraform_text::repo;

/// Cloud Run's grace period between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(10);

const ROOT_KEY: &str = "shutdown-test-root-key-0123456789-abcdef";

/// Reads one HTTP/1.1 response head (status line and headers) and returns the status code and the
/// head's text.
async fn read_head(reader: &mut BufReader<TcpStream>) -> Result<(u16, String), String> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).await.map_err(|e| format!("reading a response: {e}"))?;
        if n == 0 {
            return Err(format!("the connection closed before a whole response head: {head:?}"));
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or(format!("not HTTP: {head:?}"))?;
    Ok((status, head))
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_the_request_in_flight_refuses_new_connections_and_exits_within_the_grace_period() {
    let data_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let binary = binaries_dir().join("convergence-bootstrap");
    assert!(binary.is_file(), "{} is missing: `make test` builds the Cloud Run binaries first", binary.display());
    let mut child = Command::new(&binary)
        .env_clear()
        // A Cloud binary runs as development only when asked by name.
        .env("ENVIRONMENT", "development")
        .env("PORT", port.to_string())
        .env("WAREHOUSE_BACKEND", "bigquery")
        .env("GCP_PROJECT_ID", unique_project())
        .env("BIGQUERY_API_BASE", bigquery_emulator())
        .env("KMS_BACKEND", "local")
        .env("QUEUE_BACKEND", "local")
        .env("DATA_DIR", data_dir.path())
        .env("CA_ROOT_API_KEY", ROOT_KEY)
        .current_dir(repo())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start convergence-bootstrap");
    let pid = child.id().expect("pid");
    // Its log, read as it is written (a full pipe would stall it): the test waits for the
    // warehouse to be reachable, so a slow emulator cannot pass for a bad shutdown.
    let log = Arc::new(Mutex::new(String::new()));
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let reader_log = log.clone();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let log_reader = tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("warehouse reachable") {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
            }
            reader_log.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    let logged = || log.lock().unwrap().clone();
    if tokio::time::timeout(Duration::from_secs(30), ready_rx).await.is_err() {
        let _ = child.start_kill();
        panic!("convergence-bootstrap did not reach the warehouse within 30 s; stderr:\n{}", logged());
    }

    // Up: the first connection that is accepted.
    let deadline = Instant::now() + Duration::from_secs(20);
    let stream = loop {
        match TcpStream::connect(("127.0.0.1", port)).await {
            Ok(stream) => break stream,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(25)).await,
            Err(e) => panic!("convergence-bootstrap did not listen on {port}: {e}"),
        }
    };

    let body = b"{}";
    let mut reader = BufReader::new(stream);
    let head = format!(
        "POST /api/v1/admin/bootstrap HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-CA-Root-Key: {ROOT_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    reader.get_mut().write_all(head.as_bytes()).await.unwrap();
    let (status, text) = match read_head(&mut reader).await {
        Ok(head) => head,
        Err(e) => panic!("before SIGTERM: {e}; stderr:\n{}", logged()),
    };
    assert_eq!(status, 100, "the handler should ask for the body (authenticated, reading it); got {text}");

    // The request is in the handler. Cloud Run stops the instance.
    let signalled = Instant::now();
    let kill = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(kill.success(), "kill -TERM {pid}");

    // New connections are refused once the signal is handled (the listener is closed).
    let refused_by = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpStream::connect(("127.0.0.1", port)).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            Ok(_) | Err(_) if Instant::now() < refused_by => tokio::time::sleep(Duration::from_millis(20)).await,
            Ok(_) => panic!("a new connection was still accepted 5 s after SIGTERM"),
            Err(e) => panic!("a new connection failed otherwise than refused: {e}"),
        }
    }

    // The request in flight completes: body sent after the signal, full answer received.
    reader.get_mut().write_all(body).await.unwrap();
    let (status, text) = match read_head(&mut reader).await {
        Ok(head) => head,
        Err(e) => {
            panic!("the request in flight at SIGTERM was not answered: {e}; stderr:\n{}", logged())
        }
    };
    let length: usize = text
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
        .unwrap_or_else(|| panic!("no content-length in {text}"));
    let mut answer = vec![0; length];
    reader.read_exact(&mut answer).await.expect("the whole response body");
    let answer: serde_json::Value = serde_json::from_slice(&answer).expect("a JSON body");
    assert_eq!(status, 200, "the bootstrap in flight at SIGTERM: {text}{answer}");
    assert_eq!(
        (answer["dataset"].as_str(), answer["dataset_created"].as_bool()),
        (Some("organizations"), Some(true)),
        "{answer}"
    );

    // And the process exits, cleanly, inside the grace period.
    let remaining = GRACE.saturating_sub(signalled.elapsed());
    let exited = tokio::time::timeout(remaining, child.wait()).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), log_reader).await;
    let stderr = logged();
    match exited {
        Ok(Ok(status)) => assert!(status.success(), "exited with {status} after SIGTERM; stderr:\n{stderr}"),
        Ok(Err(e)) => panic!("waiting for the process: {e}"),
        Err(_) => panic!("still running {GRACE:?} after SIGTERM (Cloud Run would SIGKILL it); stderr:\n{stderr}"),
    }
    assert!(stderr.contains("shutdown signal received"), "the shutdown is logged; stderr:\n{stderr}");
}
