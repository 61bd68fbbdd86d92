//! A real SMTP server on loopback (`aiosmtpd` from PyPI, in its pinned venv through
//! `scripts/python-tool.sh`), started by the test: it accepts every message and keeps each one,
//! parsed by Python's email package, for the test to read ([`SmtpSink::messages`]).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The pinned server (its version in the package lists the project installs from).
pub const AIOSMTPD: &str = "aiosmtpd==1.4.6";

/// A running SMTP server; stopped when dropped.
pub struct SmtpSink {
    pub port: u16,
    dir: tempfile::TempDir,
    _child: Child,
}

impl SmtpSink {
    /// Starts the server on a free loopback port and waits until it listens.
    pub async fn start() -> SmtpSink {
        let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
        let dir = tempfile::tempdir().expect("temp dir");
        let port = crate::free_port();
        let mut child = Command::new(root.join("scripts/python-tool.sh"))
            .arg(AIOSMTPD)
            .arg("python")
            .arg(root.join("tests/fakes/smtp_sink.py"))
            .arg(port.to_string())
            .arg(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("scripts/python-tool.sh starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        // The first use installs the package into its venv: allow for it.
        let ready = tokio::time::timeout(Duration::from_secs(300), lines.next_line()).await;
        match ready {
            Ok(Ok(Some(line))) if line.trim() == "ready" => {}
            other => panic!("the SMTP server did not start: {other:?}"),
        }
        SmtpSink { port, dir, _child: child }
    }

    /// The messages received so far, in order: `{"mail_from", "rcpt_tos", "from", "to",
    /// "subject", "content_type", "body", "raw"}`.
    pub fn messages(&self) -> Vec<Value> {
        let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(self.dir.path())
            .expect("sink dir")
            .flatten()
            .filter_map(|e| {
                let path = e.path();
                let n = path.file_name()?.to_str()?.strip_suffix(".json")?.parse().ok()?;
                Some((n, path))
            })
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|(_, path)| serde_json::from_str(&std::fs::read_to_string(path).expect("message")).expect("JSON"))
            .collect()
    }

    /// Waits (up to 30 s) until `n` messages arrived; returns them.
    pub async fn wait_for(&self, n: usize) -> Vec<Value> {
        for _ in 0..300 {
            let messages = self.messages();
            if messages.len() >= n {
                return messages;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{n} message(s) expected, {} received", self.messages().len());
    }
}
