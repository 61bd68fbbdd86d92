//! The real `convergence-local` binary: start-up validation, a broken config, health over a real
//! port, graceful shutdown on SIGTERM.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_convergence-local");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn production_with_a_bad_configuration_exits_listing_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .env_clear()
        .env("ENVIRONMENT", "production")
        .env("CA_ROOT_API_KEY", "too-short")
        .env("DISABLE_AUTH", "true")
        .env("RATE_LIMIT_ENABLED", "false")
        .env("SANDBOX_PROVIDERS", "true")
        .env("DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "CA_ROOT_API_KEY",
        "DISABLE_AUTH",
        "RATE_LIMIT_ENABLED",
        "CORS_ORIGINS",
        "WAREHOUSE_BACKEND",
        "KMS_BACKEND",
        "QUEUE_BACKEND",
        "SANDBOX_PROVIDERS",
    ] {
        assert!(stderr.contains(needle), "{needle} missing from:\n{stderr}");
    }
    assert!(!stderr.contains("too-short"), "the key itself is never printed");
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing was created");
}

#[test]
fn a_broken_config_file_stops_the_start_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let configs = dir.path().join("configs");
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    copy_dir(&repo, &configs);
    std::fs::write(configs.join("system/subscription_plans.yml"), "plans: [not, a, map]\n").unwrap();
    let out = Command::new(BIN)
        .env("CONFIGS_DIR", &configs)
        .env("DATA_DIR", dir.path().join("data"))
        .env("PORT", free_port().to_string())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("subscription_plans.yml"), "{stderr}");
}

#[test]
fn serves_health_and_shuts_down_gracefully_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(BIN)
        .env("PORT", port.to_string())
        .env("DATA_DIR", dir.path())
        .env_remove("CA_ROOT_API_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut banner = String::new();
    for _ in 0..3 {
        stdout.read_line(&mut banner).unwrap();
    }
    assert!(banner.contains(&format!("http://localhost:{port}")), "{banner}");
    let key_path = dir.path().join("root_api_key");
    let key = std::fs::read_to_string(&key_path).unwrap();
    assert!(banner.contains(key.trim()), "the generated development key is printed: {banner}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    let started = Instant::now();
    let body = loop {
        match http_get(port, "/health") {
            Some(body) => break body,
            None if started.elapsed() < Duration::from_secs(10) => std::thread::sleep(Duration::from_millis(20)),
            None => panic!("no health answer"),
        }
    };
    assert!(body.contains("\"status\":\"ok\""), "{body}");

    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "graceful shutdown exits 0: {exit:?}");
}

/// A minimal HTTP/1.1 GET over a plain TCP socket (no client library needed).
fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.starts_with("HTTP/1.1 200").then_some(response)
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn an_unusable_warehouse_file_stops_the_process() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the DuckDB file should be: it cannot be opened.
    std::fs::create_dir_all(dir.path().join("warehouse.duckdb")).unwrap();
    let out = Command::new(BIN)
        .env("PORT", free_port().to_string())
        .env("DATA_DIR", dir.path())
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("warehouse"), "{stderr}");
}
