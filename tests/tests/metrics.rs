//! `GET /metrics`, read with the Prometheus project's own text-format parser (the Python
//! `prometheus_client` package, which .ci/run installs), before and after certificates expire.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{fake_cluster, upload, Certificates, TestApp, API_TOKEN};

const DAY: Duration = Duration::from_secs(86_400);

/// Parses an exposition with `prometheus_client.parser` and returns every sample as
/// `{"name", "labels", "value"}`. A format error fails the test.
fn parse(exposition: &str) -> Vec<Value> {
    let script = "import json, sys\n\
                  from prometheus_client.parser import text_string_to_metric_families\n\
                  samples = [{'name': s.name, 'labels': s.labels, 'value': s.value}\n\
                             for family in text_string_to_metric_families(sys.stdin.read()) for s in family.samples]\n\
                  print(json.dumps(samples))";
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run python3; .ci/run installs prometheus-client");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), exposition.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "the Prometheus parser rejected the metrics: {}\n{exposition}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Returns the value of the sample `name` whose labels include `labels`.
fn value(samples: &[Value], name: &str, labels: Value) -> f64 {
    let expected = labels.as_object().unwrap();
    samples
        .iter()
        .find(|sample| sample["name"] == name && expected.iter().all(|(key, value)| sample["labels"][key] == *value))
        .unwrap_or_else(|| panic!("no sample {name} {labels}: {samples:?}"))["value"]
        .as_f64()
        .unwrap()
}

async fn scrape(test: &TestApp) -> Vec<Value> {
    let headers = vec![("authorization".to_string(), format!("Bearer {API_TOKEN}"))];
    let (status, response_headers, body) = support::send_full(test.server.addr(), "GET", "/metrics", &headers, Vec::new()).await;
    assert_eq!(status, 200);
    assert_eq!(response_headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    parse(&String::from_utf8(body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_expiry_and_sync() {
    let certificates = Certificates::new();
    certificates.server("web.example.test", 365);
    certificates.server("short.example.test", 1);
    let east = fake_cluster("east").await;
    let test = TestApp::start().await;
    test.register(&east).await;
    let mut web = upload(&certificates, "web", "web.example.test", "web.example.test");
    web["ca_certificate"] = json!(certificates.read("example.test.crt"));
    web["mtls"] = json!(true);
    for body in [web, upload(&certificates, "short", "short.example.test", "short.example.test")] {
        let (status, response) = test.call("POST", "/api/v1/certificates", Some(&body)).await;
        assert_eq!(status, 201, "{response}");
    }
    test.app.run_cron("expiry-cron").await.expect("cron handler");

    let samples = scrape(&test).await;

    let web_leaf = json!({ "namespace": "istio-system", "name": "web", "member": "leaf" });
    let short_leaf = json!({ "namespace": "istio-system", "name": "short", "member": "leaf" });
    assert_eq!(value(&samples, "meshcert_certificate_days_left", web_leaf.clone()), 364.0);
    assert_eq!(value(&samples, "meshcert_certificate_days_left", short_leaf.clone()), 0.0);
    assert_eq!(value(&samples, "meshcert_certificate_days_left", json!({ "name": "web", "member": "ca" })), 364.0);
    let not_after = value(&samples, "meshcert_certificate_not_after_seconds", short_leaf.clone());
    let now = test.app.clock().unix_seconds() as f64;
    assert!((now + 86_000.0..=now + 86_400.0).contains(&not_after), "not_after {not_after}, now {now}");
    assert_eq!(value(&samples, "meshcert_alerts", json!({ "kind": "expiring" })), 1.0);
    assert_eq!(value(&samples, "meshcert_alerts", json!({ "kind": "expired" })), 0.0);
    assert_eq!(value(&samples, "meshcert_sync_targets", json!({ "state": "synced" })), 2.0);
    assert_eq!(value(&samples, "meshcert_sync_targets", json!({ "state": "failed" })), 0.0);
    let scanned = value(&samples, "meshcert_last_scan_timestamp_seconds", json!({}));
    assert!((now - 60.0..=now + 60.0).contains(&scanned), "last scan {scanned}, now {now}");

    // Two days later the short certificate has expired, and a cluster that is down fails.
    test.app.clock().advance(2 * DAY);
    test.app.run_cron("expiry-cron").await.expect("cron handler");
    east.set_down(true).await.unwrap();
    let (status, _) = test.signed_sync("{}").await;
    assert_eq!(status, 200);

    let samples = scrape(&test).await;

    assert!(value(&samples, "meshcert_certificate_days_left", short_leaf) < 0.0);
    assert_eq!(value(&samples, "meshcert_alerts", json!({ "kind": "expired" })), 1.0);
    assert_eq!(value(&samples, "meshcert_alerts", json!({ "kind": "expiring" })), 0.0);
    assert_eq!(value(&samples, "meshcert_sync_targets", json!({ "state": "failed" })), 2.0);
}
