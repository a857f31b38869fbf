//! The expiry scan under the host's clock: the thresholds of the rule, a chain whose
//! intermediate expires first, alerts resolved by renewal and delete, notifications to
//! `alert_webhook_url`, the resync after each scan and `POST /hooks/scan`.

mod support;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use serde_json::{json, Value};
use support::{fake_cluster, upload, Certificates, TestApp};

const DAY: Duration = Duration::from_secs(86_400);

/// Lists the active alerts, as `GET /api/v1/alerts` does.
async fn active_alerts(test: &TestApp) -> Vec<Value> {
    let (status, body) = test.call("GET", "/api/v1/alerts", None).await;
    assert_eq!(status, 200, "{body}");
    body["alerts"].as_array().cloned().unwrap_or_default()
}

/// Reads the leaf's not_after from the certificate's details.
async fn not_after(test: &TestApp, name: &str) -> SystemTime {
    let (_, details) = test.call("GET", &format!("/api/v1/certificates/istio-system/{name}"), None).await;
    let text = details["leaf"]["not_after"].as_str().unwrap_or_else(|| panic!("no not_after: {details}"));
    SystemTime::from(chrono::DateTime::parse_from_rfc3339(text).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_thresholds_follow_the_clock() {
    let certificates = Certificates::new();
    certificates.server("web.example.test", 40);
    let test = TestApp::start().await;
    let (status, body) = test.call("POST", "/api/v1/certificates", Some(&upload(&certificates, "web", "web.example.test", "web.example.test"))).await;
    assert_eq!(status, 201, "{body}");
    let end = not_after(&test, "web").await;

    // The scan runs at whole seconds of the host's clock, which keeps running, so the days left
    // that the alerts show are checked half a day from a boundary and the kind at the boundary.
    let (second, half_day) = (Duration::from_secs(1), DAY / 2);
    let steps: [(&str, SystemTime, Option<&str>, Option<i64>); 8] = [
        ("31 days left", end - 31 * DAY, None, None),
        ("exactly 30 days left", end - 30 * DAY, None, None),
        ("a second under 30 days", end - 30 * DAY + second, Some("expiring"), None),
        ("29 and a half days left", end - 29 * DAY - half_day, Some("expiring"), Some(29)),
        ("a day and a half left", end - DAY - half_day, Some("expiring"), Some(1)),
        ("half a day left", end - half_day, Some("expiring"), Some(0)),
        ("at not_after", end, Some("expiring"), None),
        ("a second after not_after", end + second, Some("expired"), None),
    ];
    for (step, now, kind, days_left) in steps {
        test.app.clock().set(now);
        test.app.run_cron("expiry-cron").await.expect("cron handler");

        let alerts = active_alerts(&test).await;

        assert_eq!(alerts.first().map(|alert| alert["kind"].as_str().unwrap()), kind, "{step}: {alerts:?}");
        assert!(alerts.len() <= 1, "{step}: {alerts:?}");
        if let Some(days_left) = days_left {
            assert_eq!(alerts[0]["days_left"], days_left, "{step}: {alerts:?}");
        }
    }
    let (_, resolved) = test.call("GET", "/api/v1/alerts?status=resolved", None).await;
    assert_eq!(resolved["alerts"][0]["kind"], "expiring", "moving to expired resolves expiring: {resolved}");
}

/// Builds a chain whose intermediate expires in `intermediate_days`, with a leaf valid for 90 days.
fn chain_with_intermediate(intermediate_days: i64) -> Value {
    let now = time::OffsetDateTime::now_utc();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name.push(DnType::CommonName, "test root");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now - time::Duration::days(1);
    ca.not_after = now + time::Duration::days(365);
    let root = Issuer::new(ca, ca_key);

    let intermediate_key = KeyPair::generate().unwrap();
    let mut intermediate = CertificateParams::new(Vec::<String>::new()).unwrap();
    intermediate.distinguished_name.push(DnType::CommonName, "test intermediate");
    intermediate.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    intermediate.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    intermediate.not_before = now - time::Duration::days(1);
    intermediate.not_after = now + time::Duration::days(intermediate_days);
    intermediate.use_authority_key_identifier_extension = true;
    let intermediate_pem = intermediate.signed_by(&intermediate_key, &root).unwrap().pem();
    let signer = Issuer::new(intermediate, intermediate_key);

    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["chain.example.test".to_string()]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, "chain.example.test");
    leaf.not_before = now - time::Duration::days(1);
    leaf.not_after = now + time::Duration::days(90);
    leaf.use_authority_key_identifier_extension = true;
    let leaf_pem = leaf.signed_by(&leaf_key, &signer).unwrap().pem();

    json!({ "name": "chain", "certificate": format!("{leaf_pem}{intermediate_pem}"), "private_key": leaf_key.serialize_pem() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intermediate_expiring_first_raises_the_alert() {
    let test = TestApp::start().await;
    let (status, body) = test.call("POST", "/api/v1/certificates", Some(&chain_with_intermediate(10))).await;
    assert_eq!(status, 201, "{body}");

    test.app.run_cron("expiry-cron").await.expect("cron handler");

    let alerts = active_alerts(&test).await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["kind"], "expiring");
    assert_eq!(alerts[0]["role"], "intermediate");
    assert_eq!(alerts[0]["subject"], "CN=test intermediate");
    assert_eq!(alerts[0]["members"].as_array().map(Vec::len), Some(1), "the leaf has 90 days: {alerts:?}");
    assert_eq!(alerts[0]["days_left"], 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_and_delete_resolve_alerts() {
    let certificates = Certificates::new();
    for (host, days) in [("short.example.test", 5), ("renewed.example.test", 365), ("gone.example.test", 5)] {
        certificates.server(host, days);
    }
    let test = TestApp::start().await;
    for name in ["short", "gone"] {
        let host = format!("{name}.example.test");
        let (status, body) = test.call("POST", "/api/v1/certificates", Some(&upload(&certificates, name, &host, &host))).await;
        assert_eq!(status, 201, "{body}");
    }
    test.app.run_cron("expiry-cron").await.expect("cron handler");
    assert_eq!(active_alerts(&test).await.len(), 2);

    let renewal = json!({ "certificate": certificates.read("renewed.example.test.crt"), "private_key": certificates.read("renewed.example.test.key") });
    let (status, body) = test.call("PUT", "/api/v1/certificates/istio-system/short", Some(&renewal)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = test.call("DELETE", "/api/v1/certificates/istio-system/gone", None).await;
    assert_eq!(status, 200, "{body}");
    test.app.run_cron("expiry-cron").await.expect("cron handler");

    assert!(active_alerts(&test).await.is_empty());
    let (_, resolved) = test.call("GET", "/api/v1/alerts?status=resolved", None).await;
    let names: Vec<&str> = resolved["alerts"].as_array().unwrap().iter().map(|alert| alert["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 2, "{resolved}");
    assert!(names.contains(&"short"), "{resolved}");
    assert!(names.contains(&"gone"), "{resolved}");
}

/// A webhook receiver on loopback that responds with the queued statuses, then 200, and keeps
/// every body it receives.
struct Receiver {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

async fn receiver(statuses: &[u16]) -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/alerts", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let statuses = Arc::new(Mutex::new(statuses.iter().copied().collect::<VecDeque<u16>>()));
    let (kept, queue) = (bodies.clone(), statuses.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (kept, queue) = (kept.clone(), queue.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let (kept, queue) = (kept.clone(), queue.clone());
                    async move {
                        let body = request.into_body().collect().await?.to_bytes();
                        kept.lock().unwrap().push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                        let status = queue.lock().unwrap().pop_front().unwrap_or(200);
                        Ok::<_, hyper::Error>(hyper::Response::builder().status(status).body(Full::new(Bytes::new())).unwrap())
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Receiver { url, bodies }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_is_retried_then_sent_once() {
    let certificates = Certificates::new();
    certificates.server("short.example.test", 5);
    let hook = receiver(&[503]).await;
    let test = TestApp::start_with(&[("alert_webhook_url", &hook.url), ("alert_webhook_host", "http://127.0.0.1:*")]).await;
    let (status, body) = test.call("POST", "/api/v1/certificates", Some(&upload(&certificates, "short", "short.example.test", "short.example.test"))).await;
    assert_eq!(status, 201, "{body}");

    test.app.run_cron("expiry-cron").await.expect("cron handler");

    let bodies = hook.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2, "one 503, then one accepted: {bodies:?}");
    assert_eq!(bodies[1]["certificate"], "istio-system/short");
    assert_eq!(bodies[1]["kind"], "expiring");
    assert!(bodies[1]["text"].as_str().unwrap().starts_with("meshcert: certificate istio-system/short expires in 4 days"), "{}", bodies[1]);
    assert!(active_alerts(&test).await[0]["notified_at"].is_string());

    // Notified once: the next scan sends nothing, until the alert turns into `expired`.
    test.app.run_cron("expiry-cron").await.expect("cron handler");
    assert_eq!(hook.bodies.lock().unwrap().len(), 2);
    test.app.clock().advance(6 * DAY);
    test.app.run_cron("expiry-cron").await.expect("cron handler");
    let bodies = hook.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 3, "{bodies:?}");
    assert_eq!(bodies[2]["kind"], "expired");
    let (_, scan) = test.call("GET", "/api/v1/scans/last", None).await;
    assert_eq!(scan["notified"], 1, "{scan}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_webhook_is_retried_by_the_next_scan() {
    let certificates = Certificates::new();
    certificates.server("short.example.test", 5);
    let hook = receiver(&[500, 500, 500]).await;
    let test = TestApp::start_with(&[("alert_webhook_url", &hook.url), ("alert_webhook_host", "http://127.0.0.1:*")]).await;
    let (status, _) = test.call("POST", "/api/v1/certificates", Some(&upload(&certificates, "short", "short.example.test", "short.example.test"))).await;
    assert_eq!(status, 201);

    test.app.run_cron("expiry-cron").await.expect("cron handler");
    let (_, scan) = test.call("GET", "/api/v1/scans/last", None).await;
    assert_eq!((scan["notified"].as_u64(), scan["notifications_failed"].as_u64()), (Some(0), Some(1)), "{scan}");
    assert!(active_alerts(&test).await[0]["notified_at"].is_null());

    test.app.run_cron("expiry-cron").await.expect("cron handler");
    assert_eq!(hook.bodies.lock().unwrap().len(), 4, "three failed attempts, then the next scan's");
    assert!(active_alerts(&test).await[0]["notified_at"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_scan_resyncs_the_clusters() {
    let certificates = Certificates::new();
    certificates.server("web.example.test", 365);
    let east = fake_cluster("east").await;
    let test = TestApp::start().await;
    test.register(&east).await;
    east.set_down(true).await.unwrap();
    let (_, body) = test.call("POST", "/api/v1/certificates", Some(&upload(&certificates, "web", "web.example.test", "web.example.test"))).await;
    assert_eq!(body["sync"]["east"]["state"], "failed", "{body}");
    east.set_down(false).await.unwrap();

    test.app.run_cron("expiry-cron").await.expect("cron handler");

    assert!(east.secret("istio-system", "web").is_some(), "the scan's resync did not heal the cluster");
    assert!(test.app.output("expiry-cron").contains("scheduled resync finished"), "{}", test.app.output("expiry-cron"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_hook_runs_the_scan_on_demand() {
    let certificates = Certificates::new();
    certificates.server("short.example.test", 5);
    let test = TestApp::start().await;
    let (status, _) = test.call("POST", "/api/v1/certificates", Some(&upload(&certificates, "short", "short.example.test", "short.example.test"))).await;
    assert_eq!(status, 201);
    let timestamp = test.app.clock().unix_seconds() as i64;
    let body = br#"{"nonce": "scan-1"}"#;
    let headers = vec![
        ("x-meshcert-timestamp".to_string(), timestamp.to_string()),
        ("x-meshcert-signature".to_string(), support::sign(support::WEBHOOK_SECRET, timestamp, body)),
    ];

    let (status, response) = support::send(test.server.addr(), "POST", "/hooks/scan", &headers, body.to_vec()).await;
    let (unsigned, _) = support::send(test.server.addr(), "POST", "/hooks/scan", &[], body.to_vec()).await;

    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&response));
    let response: Value = serde_json::from_slice(&response).unwrap();
    assert_eq!(response["scan"]["certificates"], 1, "{response}");
    assert_eq!(response["scan"]["expiring"], 1, "{response}");
    assert!(response["sync"]["targets"].is_array(), "{response}");
    assert_eq!(unsigned, 401);
    let (_, scan) = test.call("GET", "/api/v1/scans/last", None).await;
    assert_eq!(scan["expiring"], 1, "{scan}");
}

/// Runs the cron handler and returns the scan's record.
async fn scan_now(test: &TestApp) -> Value {
    test.app.run_cron("expiry-cron").await.expect("cron handler");
    test.call("GET", "/api/v1/scans/last", None).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_reads_the_index_between_rebuilds() {
    let certificates = Certificates::new();
    for (host, days) in [("short.example.test", 5), ("renewed.example.test", 365), ("other.example.test", 365)] {
        certificates.server(host, days);
    }
    let test = TestApp::start().await;
    let first = scan_now(&test).await;
    assert_eq!(first["rebuilt_index"], true, "{first}");

    // Writes between two scans reach the scan through the index, not through a rebuild.
    for name in ["short", "other"] {
        let host = format!("{name}.example.test");
        let (status, body) = test.call("POST", "/api/v1/certificates", Some(&upload(&certificates, name, &host, &host))).await;
        assert_eq!(status, 201, "{body}");
    }
    test.app.clock().advance(Duration::from_secs(3600));
    let second = scan_now(&test).await;
    assert_eq!((second["rebuilt_index"].as_bool(), second["certificates"].as_u64(), second["expiring"].as_u64()), (Some(false), Some(2), Some(1)), "{second}");
    assert_eq!(second["records_written"], 0, "the api wrote the alert and its snapshot: {second}");

    let renewal = json!({ "certificate": certificates.read("renewed.example.test.crt"), "private_key": certificates.read("renewed.example.test.key") });
    let (status, _) = test.call("PUT", "/api/v1/certificates/istio-system/short", Some(&renewal)).await;
    assert_eq!(status, 200);
    let (status, _) = test.call("DELETE", "/api/v1/certificates/istio-system/other", None).await;
    assert_eq!(status, 200);
    test.app.clock().advance(Duration::from_secs(3600));
    let third = scan_now(&test).await;
    assert_eq!((third["rebuilt_index"].as_bool(), third["certificates"].as_u64(), third["expiring"].as_u64()), (Some(false), Some(1), Some(0)), "{third}");
}

/// Waits up to `limit` for `scans/last` to show a scan started at `started_at`.
async fn wait_for_scan(test: &TestApp, started_at: &str, limit: Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        let (status, scan) = test.call("GET", "/api/v1/scans/last", None).await;
        if status == 200 && scan["started_at"] == started_at {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_schedule_fires_every_six_hours() {
    let test = TestApp::start().await;
    let morning = chrono::DateTime::parse_from_rfc3339("2027-01-01T05:59:58Z").unwrap();
    test.app.clock().set(SystemTime::from(morning));
    let _scheduler = test.app.start_cron();

    assert!(wait_for_scan(&test, "2027-01-01T06:00:00Z", Duration::from_secs(10)).await, "spin.toml's schedule did not fire at 06:00");

    // Six hours later on the app's clock, the next scan runs at noon.
    test.app.clock().advance(6 * Duration::from_secs(3600) - Duration::from_secs(1));
    assert!(wait_for_scan(&test, "2027-01-01T12:00:00Z", Duration::from_secs(10)).await, "the schedule did not fire at 12:00");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_warning_days_fall_back_to_thirty() {
    let certificates = Certificates::new();
    certificates.server("month.example.test", 25);
    let test = TestApp::start_with(&[("expiry_warning_days", "a month")]).await;
    let (status, body) = test.call("POST", "/api/v1/certificates", Some(&upload(&certificates, "month", "month.example.test", "month.example.test"))).await;
    assert_eq!(status, 201, "{body}");

    let scan = scan_now(&test).await;

    assert_eq!(scan["warning_days"], 30, "{scan}");
    assert!(scan["configuration_error"].as_str().is_some_and(|error| error.contains("expiry_warning_days")), "{scan}");
    assert_eq!(scan["expiring"], 1, "25 days left is expiring under the fallback of 30: {scan}");
    let log = test.app.output("expiry-cron");
    assert!(log.lines().any(|line| line.contains("invalid expiry_warning_days") && line.contains("\"fallback\":30")), "{log}");
}
