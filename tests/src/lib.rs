//! Support for tests that run real processes: free ports, a real `redis-server`, and child
//! processes that are killed by PID when their guard drops.
//!
//! A missing tool is a failure with a message saying what to install, never a skip.

pub mod polling;
pub mod redis_cluster;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What can go wrong starting a test process.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// The program is not installed.
    #[error("`{program}` is not installed: {hint}")]
    Missing {
        /// The program looked for.
        program: String,
        /// How to install it.
        hint: String,
    },
    /// The process started but never became ready.
    #[error("`{0}` did not become ready within {1:?}")]
    NotReady(String, Duration),
    /// Spawning failed.
    #[error("could not start `{0}`: {1}")]
    Spawn(String, std::io::Error),
}

/// A port the OS reports free right now on 127.0.0.1.
///
/// There is a short window in which another process could take it; callers that can pass
/// port 0 to the program under test should prefer that.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot bind an ephemeral port on 127.0.0.1: {e}"))
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_for_port(addr: SocketAddr, name: &str, timeout: Duration) -> Result<(), TestkitError> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Err(TestkitError::NotReady(name.to_owned(), timeout))
}

/// Finds a program on `PATH` (or at an absolute path).
pub fn which(program: &str) -> Option<PathBuf> {
    let candidate = PathBuf::from(program);
    if candidate.is_absolute() {
        return candidate.is_file().then_some(candidate);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}

/// A child process killed (SIGKILL, by PID) and reaped when dropped.
#[derive(Debug)]
pub struct KillOnDrop {
    child: Option<Child>,
    name: String,
}

impl KillOnDrop {
    /// Wraps a spawned child.
    pub fn new(name: impl Into<String>, child: Child) -> Self {
        Self {
            child: Some(child),
            name: name.into(),
        }
    }

    /// The child's PID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The name given at creation.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Kills the child now and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A real `redis-server` on a free loopback port, without persistence, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    process: KillOnDrop,
    port: u16,
}

impl RedisServer {
    /// Starts `redis-server` on a free port and waits until it accepts connections.
    pub fn start() -> Result<Self, TestkitError> {
        Self::start_on(free_port())
    }

    /// Starts `redis-server` on `port` (used to restart one on the same port).
    pub fn start_on(port: u16) -> Result<Self, TestkitError> {
        let program = which("redis-server").ok_or_else(|| TestkitError::Missing {
            program: "redis-server".into(),
            hint: "install it with `apt-get install redis-server` (or run `bash tests/run.sh`, which does)".into(),
        })?;
        let child = Command::new(program)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| TestkitError::Spawn("redis-server".into(), e))?;
        let process = KillOnDrop::new("redis-server", child);
        wait_for_port(
            SocketAddr::from(([127, 0, 0, 1], port)),
            "redis-server",
            Duration::from_secs(10),
        )?;
        Ok(Self { process, port })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL), as a crash or network cut would look to clients.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// The PID of the server process.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_server_starts_and_dies_with_its_guard() -> Result<(), TestkitError> {
        let redis = RedisServer::start()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], redis.port()));
        assert!(TcpStream::connect(addr).is_ok());
        drop(redis);
        assert!(
            TcpStream::connect(addr).is_err(),
            "redis-server still accepts after its guard dropped"
        );
        Ok(())
    }
}
