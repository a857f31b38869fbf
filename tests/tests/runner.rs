//! The `meshcert-host up` command line, run as a user runs it: a separate process serving the
//! repository's components, with the cron trigger firing on its schedule.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_serves_and_fires_cron() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = every_second_manifest(dir.path());
    let runner = support::Runner::start(dir.path(), &manifest, None).await;
    let addr = runner.addr;

    let (status, body) = support::send(addr, "GET", "/healthz", &[], Vec::new()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let headers = vec![("authorization".to_string(), format!("Bearer {}", support::API_TOKEN))];
    let (status, _) = support::send(addr, "GET", "/api/v1/certificates", &headers, Vec::new()).await;
    assert_eq!(status, 200);

    // The cron trigger fires on its own schedule.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !runner.log().contains("expiry scan finished") {
        assert!(Instant::now() < deadline, "the scan did not run within 15 s: {}", runner.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
