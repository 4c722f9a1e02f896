//! A `nats-server` of one's own, for tests, benchmarks and trying things out: JetStream on,
//! a free loopback port, a store in a temporary folder, killed on drop.
//!
//! The server picks its own port (`-p -1`) and says which in a ports file: a port chosen here
//! and handed over could be taken in between by a server another test started at the same
//! moment, and a readiness probe would then find that other server and call this one ready.
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

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `nats-server` child process.
#[derive(Debug)]
pub struct LocalServer {
    child: Option<Child>,
    /// 0 until the first start has read the port the server chose.
    port: u16,
    store: PathBuf,
    ports_dir: PathBuf,
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
        let ports_dir = dir.path().join("ports");
        std::fs::create_dir_all(&ports_dir)?;
        let mut server = LocalServer {
            child: None,
            port: 0,
            store,
            ports_dir,
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

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
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
        let port = match self.port {
            0 => "-1".to_owned(),
            p => p.to_string(),
        };
        let mut child = Command::new(&self.binary)
            .args(["-a", "127.0.0.1", "-p", &port, "-js", "--ports_file_dir"])
            .arg(&self.ports_dir)
            .arg("-sd")
            .arg(&self.store)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        // The ports file is written once the server listens: `<binary name>_<pid>.ports`.
        let suffix = format!("_{}.ports", child.id());
        let deadline = Instant::now() + Duration::from_secs(10);
        let listening = loop {
            if let Some(status) = child.try_wait()? {
                return Err(std::io::Error::other(format!(
                    "nats-server exited before listening ({status}; port {port})"
                )));
            }
            if let Some(p) = read_ports_file(&self.ports_dir, &suffix) {
                break p;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "nats-server did not listen within 10 s",
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.port = listening;
        self.child = Some(child);
        Ok(())
    }
}

/// The client port in the ports file whose name ends with `suffix`, once it is complete.
fn read_ports_file(dir: &Path, suffix: &str) -> Option<u16> {
    let entry = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(suffix))?;
    let text = std::fs::read_to_string(entry.path()).ok()?;
    let doc: serde_json::Value = serde_json::from_str(&text).ok()?;
    let url = doc.get("nats")?.as_array()?.first()?.as_str()?;
    url.rsplit(':').next()?.parse().ok()
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.kill();
    }
}
