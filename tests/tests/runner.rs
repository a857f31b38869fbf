//! The `meshcert-host up` command line, run as a user runs it: a separate process serving the
//! repository's components, with the cron trigger firing on its schedule.

mod support;

use std::io::Read as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the runner when the test ends, also on failure.
struct Runner(Child);

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Writes a copy of spin.toml whose component sources are absolute and whose scan runs every second.
fn every_second_manifest(dir: &Path) -> std::path::PathBuf {
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().unwrap();
    let manifest = std::fs::read_to_string(repository.join("spin.toml")).unwrap();
    assert!(manifest.contains("cron_expression = \"0 0 */6 * * *\""), "spin.toml schedules the scan every 6 hours");
    let manifest = manifest
        .replace("cron_expression = \"0 0 */6 * * *\"", "cron_expression = \"* * * * * *\"")
        .replace("source = \"target/", &format!("source = \"{}/target/", repository.display()));
    let path = dir.join("spin.toml");
    std::fs::write(&path, manifest).unwrap();
    path
}

fn free_loopback_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_serves_and_fires_cron() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = every_second_manifest(dir.path());
    let port = free_loopback_port();
    let log_path = dir.path().join("runner.log");
    let log = std::fs::File::create(&log_path).unwrap();

    let child = Command::new(env!("CARGO_BIN_EXE_meshcert-host"))
        .args(["up", "--from"])
        .arg(&manifest)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--state-dir"])
        .arg(dir.path().join("state"))
        .env("SPIN_VARIABLE_API_TOKEN", support::API_TOKEN)
        .env("SPIN_VARIABLE_WEBHOOK_SECRET", support::WEBHOOK_SECRET)
        .env("SPIN_VARIABLE_ENCRYPTION_KEY", "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start meshcert-host up");
    let _runner = Runner(child);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    // The HTTP trigger responds once the app is loaded.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "meshcert-host did not listen on {addr}: {}", read(&log_path));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = support::send(addr, "GET", "/healthz", &[], Vec::new()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let headers = vec![("authorization".to_string(), format!("Bearer {}", support::API_TOKEN))];
    let (status, _) = support::send(addr, "GET", "/api/v1/certificates", &headers, Vec::new()).await;
    assert_eq!(status, 200);

    // The cron trigger fires on its own schedule.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !read(&log_path).contains("expiry scan finished") {
        assert!(Instant::now() < deadline, "the scan did not run within 15 s: {}", read(&log_path));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn read(path: &Path) -> String {
    let mut text = String::new();
    std::fs::File::open(path).unwrap().read_to_string(&mut text).unwrap();
    text
}
