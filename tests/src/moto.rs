//! A `moto_server` (PyPI `moto[server]`, the independent AWS emulator) on a loopback port.
//!
//! The binary comes from `$QHUB_MOTO_SERVER` or `<workspace>/.venv/bin/moto_server`
//! (`scripts/test` installs it). Without it the tests that need it fail, loudly: they never
//! pass silently.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The region the AWS tests deploy to.
pub const REGION: &str = "us-west-2";

/// A `moto_server` on a free loopback port, killed on drop.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    /// Where the `moto_server` binary is expected.
    pub fn binary() -> PathBuf {
        if let Ok(p) = std::env::var("QHUB_MOTO_SERVER") {
            return PathBuf::from(p);
        }
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/moto_server")
    }

    /// Starts moto (with `MOTO_IAM_LOAD_MANAGED_POLICIES=true`) and waits until it answers.
    ///
    /// # Panics
    /// When the binary is missing or moto does not answer within 60 s.
    pub fn start() -> Self {
        let bin = Self::binary();
        assert!(
            bin.exists(),
            "moto_server not found at {}: run scripts/test (it installs moto[server] into .venv) or set QHUB_MOTO_SERVER",
            bin.display()
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let moto = Self { child, port };
        let start = Instant::now();
        while moto.reset().is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "moto_server did not answer on port {port} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// The loopback port moto listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Forgets every resource (`POST /moto-api/reset`).
    pub fn reset(&self) -> std::io::Result<()> {
        self.post("/moto-api/reset").map(|_| ())
    }

    /// A minimal HTTP/1.1 POST to moto's control API (no client library needed).
    pub fn post(&self, path: &str) -> std::io::Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        if !out.starts_with("HTTP/1.1 200") && !out.starts_with("HTTP/1.0 200") {
            return Err(std::io::Error::other(format!("moto answered: {out}")));
        }
        Ok(out)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
