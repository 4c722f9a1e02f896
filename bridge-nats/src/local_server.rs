//! A `nats-server` of one's own, for tests, benchmarks and trying things out: JetStream on,
//! a free loopback port, a store in a temporary folder, killed on drop.
//!
//! ```no_run
//! use plugbus_bridge_nats::local_server::LocalServer;
//! let Some(server) = LocalServer::start()? else {
//!     eprintln!("no nats-server on PATH: skipped");
//!     return Ok(());
//! };
//! println!("JetStream at {}", server.url());
//! # Ok::<(), std::io::Error>(())
//! ```

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `nats-server` child process.
#[derive(Debug)]
pub struct LocalServer {
    child: Option<Child>,
    port: u16,
    store: PathBuf,
    _dir: Option<tempfile::TempDir>,
    binary: PathBuf,
}

/// The `nats-server` binary: `$NATS_SERVER`, else the first on `PATH` (or `/usr/sbin`, where
/// Debian puts it).
pub fn find_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NATS_SERVER") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/bin")])
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
}

impl LocalServer {
    /// Starts a server, or `None` if no `nats-server` binary is found.
    ///
    /// # Errors
    /// The server does not start or does not listen within 10 s.
    pub fn start() -> std::io::Result<Option<LocalServer>> {
        let Some(binary) = find_binary() else {
            return Ok(None);
        };
        let dir = tempfile::tempdir()?;
        let store = dir.path().join("js");
        let port = free_port()?;
        let mut server = LocalServer {
            child: None,
            port,
            store,
            _dir: Some(dir),
            binary,
        };
        server.restart()?;
        Ok(Some(server))
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The JetStream store folder.
    pub fn store(&self) -> &Path {
        &self.store
    }

    /// Kills the server (SIGKILL) and waits for it; its store stays.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port and store (kills it first if running).
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.kill();
        let child = Command::new(&self.binary)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "nats-server did not listen within 10 s",
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
