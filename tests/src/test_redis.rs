//! A `redis-server` child process for tests: loopback only, a free port, no persistence, killed
//! when the value is dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server` owned by one test.
pub struct RedisServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts `redis-server` on 127.0.0.1 and waits until it accepts connections.
    ///
    /// # Panics
    ///
    /// When `redis-server` is not installed or does not start within 10 seconds.
    pub fn start() -> RedisServer {
        let dir = tempfile::tempdir().expect("a temporary directory for redis-server");
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free loopback port").port();
        let child = spawn(dir.path(), port);
        let mut server = RedisServer { child, port, dir };
        server.wait_until_listening();
        server
    }

    /// Stops the server and starts it again on the same port, empty, as a restart of a server
    /// without persistence would. Clients see their connections dropped.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(self.dir.path(), self.port);
        self.wait_until_listening();
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("redis-server exited with {status}: {}", read_log(self.dir.path()));
            }
            assert!(Instant::now() < deadline, "redis-server did not listen on port {} within 10 s: {}", self.port, read_log(self.dir.path()));
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Returns the URL of database `db` on this server.
    pub fn url(&self, db: u8) -> String {
        format!("redis://127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(dir: &Path, port: u16) -> Child {
    let log = std::fs::File::create(dir.join("redis.log")).expect("create redis.log");
    let child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no", "--dir"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone the log file"))
        .stderr(log)
        .spawn();
    match child {
        Ok(child) => child,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            panic!("redis-server is not on PATH, and the Redis tests need it: install Debian's redis-server (apt-get install -y redis-server)")
        }
        Err(error) => panic!("failed to start redis-server: {error}"),
    }
}

fn read_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default()
}
