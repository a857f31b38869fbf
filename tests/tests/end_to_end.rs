//! End-to-end tests: the three release .wasm components in meshcert-host, called over HTTP on
//! loopback, pushing Secrets into fake clusters. Build the components first (scripts/test.sh).

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{fake_cluster, pem_body_lines, secret_entry, upload, Certificates, TestApp};

const DAY: Duration = Duration::from_secs(86_400);

fn alerts(body: &Value) -> &Vec<Value> {
    body["alerts"].as_array().expect("alerts array")
}

/// The operator's walkthrough: openssl certificates, two clusters, two uploads, the expiry scan
/// now and two days later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walkthrough_syncs_and_alerts() {
    let certificates = Certificates::new();
    certificates.server("shop.example.test", 365);
    certificates.server("short.example.test", 1);
    let east = fake_cluster("east").await;
    let west = fake_cluster("west").await;
    let test = TestApp::start().await;
    test.register(&east).await;
    test.register(&west).await;

    // Upload both certificates.
    let (status, shop) = test.call("POST", "/api/v1/certificates", Some(&upload(&certificates, "shop", "shop.example.test", "shop.example.test"))).await;
    assert_eq!(status, 201, "{shop}");
    let (status, short) = test.call("POST", "/api/v1/certificates", Some(&upload(&certificates, "short", "short.example.test", "short.example.test"))).await;
    assert_eq!(status, 201, "{short}");

    // CN-only certificates are accepted with a warning; the 1-day one also warns of expiry.
    let codes = |body: &Value| body["warnings"].as_array().unwrap().iter().map(|w| w["code"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(codes(&shop), ["no_subject_alt_name"]);
    assert_eq!(codes(&short), ["certificate_expiring", "no_subject_alt_name"]);
    assert_eq!(shop["namespace"], "istio-system");
    assert_eq!(shop["leaf"]["serial_hex"], "0");
    assert_eq!(shop["sync"]["east"]["state"], "synced");
    assert_eq!(shop["sync"]["west"]["state"], "synced");

    // Each Secret contains exactly the uploaded chain and key, with meshcert's label.
    for cluster in [&east, &west] {
        for host in ["shop", "short"] {
            let secret = cluster.secret("istio-system", host).unwrap_or_else(|| panic!("{} has no Secret {host}", cluster.name()));
            assert_eq!(secret["type"], "kubernetes.io/tls");
            assert_eq!(secret["metadata"]["labels"]["app.kubernetes.io/managed-by"], "meshcert");
            assert_eq!(secret_entry(&secret, "tls.crt"), certificates.read(&format!("{host}.example.test.crt")));
            assert_eq!(secret_entry(&secret, "tls.key"), certificates.read(&format!("{host}.example.test.key")));
        }
    }

    // The scan now: exactly one alert, `expiring`, for the 1-day certificate.
    test.app.run_cron("expiry-cron").await.expect("cron handler");
    let (status, body) = test.call("GET", "/api/v1/alerts", None).await;
    assert_eq!(status, 200);
    assert_eq!(alerts(&body).len(), 1, "{body}");
    assert_eq!(alerts(&body)[0]["name"], "short");
    assert_eq!(alerts(&body)[0]["kind"], "expiring");
    assert_eq!(alerts(&body)[0]["days_left"], 0);
    let scan_log = test.app.output("expiry-cron");
    let alert_line = scan_log.lines().find(|line| line.contains("\"certificate\":\"istio-system/short\"")).expect("a log line per alert");
    assert!(alert_line.contains("\"kind\":\"expiring\""), "{alert_line}");

    // Two days later the same alert is `expired`.
    test.app.clock().advance(2 * DAY);
    test.app.run_cron("expiry-cron").await.expect("cron handler");
    let (_, body) = test.call("GET", "/api/v1/alerts", None).await;
    assert_eq!(alerts(&body).len(), 1, "{body}");
    assert_eq!(alerts(&body)[0]["name"], "short");
    assert_eq!(alerts(&body)[0]["kind"], "expired");
    let (_, resolved) = test.call("GET", "/api/v1/alerts?status=resolved", None).await;
    assert_eq!(alerts(&resolved)[0]["kind"], "expiring");

    // The list shows each certificate's status and sync summary.
    let (_, list) = test.call("GET", "/api/v1/certificates", None).await;
    let statuses: Vec<(String, String, String)> = list["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().into(), c["status"].as_str().unwrap().into(), c["sync"].as_str().unwrap().into()))
        .collect();
    assert_eq!(statuses, [("shop".into(), "valid".into(), "synced".into()), ("short".into(), "expired".into(), "synced".into())]);

    // Keys and tokens stay out of the store's plaintext, the responses and the logs.
    let mut secrets: Vec<String> = ["shop", "short"].iter().flat_map(|host| pem_body_lines(&certificates.read(&format!("{host}.example.test.key")))).collect();
    secrets.push(east.token().to_string());
    secrets.push(west.token().to_string());
    let output = test.all_output();
    let stored = test.stored_values();
    let (_, details) = test.call("GET", "/api/v1/certificates/istio-system/shop", None).await;
    for secret in &secrets {
        assert!(!output.contains(secret.as_str()), "a key or token reached the logs");
        assert!(!details.to_string().contains(secret.as_str()), "a key or token reached a response");
        assert!(!shop.to_string().contains(secret.as_str()), "a key or token reached the create response");
        assert!(stored.iter().all(|(_, value)| !value.contains(secret.as_str())), "a key or token is stored unencrypted");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_rejects_mismatched_key() {
    let certificates = Certificates::new();
    certificates.server("shop.example.test", 365);
    certificates.server("other.example.test", 365);
    let east = fake_cluster("east").await;
    let test = TestApp::start().await;
    test.register(&east).await;

    let (status, body) = test.call("POST", "/api/v1/certificates", Some(&upload(&certificates, "shop", "shop.example.test", "other.example.test"))).await;

    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "key_mismatch");
    assert_eq!(body["error"]["field"], "private_key");
    assert!(body["error"]["message"].as_str().unwrap().contains("CN=shop.example.test"), "{body}");
    let (status, _) = test.call("GET", "/api/v1/certificates/istio-system/shop", None).await;
    assert_eq!(status, 404);
    let stored = test.stored_values();
    assert!(stored.iter().all(|(key, _)| !key.starts_with("cert/")), "a rejected upload stored a certificate");
    assert!(stored.iter().all(|(key, _)| !key.starts_with("alert/")), "a rejected upload stored an alert");
    assert!(east.secret("istio-system", "shop").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_rejects_bad_pem_and_missing_key() {
    let certificates = Certificates::new();
    certificates.server("shop.example.test", 365);
    let test = TestApp::start().await;
    let certificate = certificates.read("shop.example.test.crt");
    let cases = [
        (json!({ "name": "a", "certificate": "not a certificate", "private_key": "x" }), "no_pem_block", "certificate"),
        (json!({ "name": "a", "certificate": certificate.replace("-----END CERTIFICATE-----", ""), "private_key": "x" }), "malformed_pem", "certificate"),
        (json!({ "name": "a", "certificate": certificate, "private_key": certificate }), "certificate_in_private_key_field", "private_key"),
        (json!({ "name": "a", "certificate": certificate, "private_key": "" }), "empty_input", "private_key"),
        (json!({ "name": "Bad_Name", "certificate": certificate, "private_key": "" }), "invalid_name", "name"),
    ];

    for (body, code, field) in cases {
        let (status, response) = test.call("POST", "/api/v1/certificates", Some(&body)).await;

        assert_eq!(status, 422, "{code}: {response}");
        assert_eq!(response["error"]["code"], code, "{response}");
        assert_eq!(response["error"]["field"], field, "{response}");
    }
    assert!(test.stored_values().iter().all(|(key, _)| !key.starts_with("cert/")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_requires_valid_token() {
    let test = TestApp::start().await;

    let (status, body) = test.call_with_token("GET", "/api/v1/certificates", None, None).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, _) = test.call_with_token("GET", "/api/v1/certificates", Some("wrong"), None).await;
    assert_eq!(status, 401);
    let (status, _) = test.call_with_token("POST", "/api/v1/clusters", Some("wrong"), Some(&json!({}))).await;
    assert_eq!(status, 401);
    let (status, _) = test.call_with_token("GET", "/healthz", None, None).await;
    assert_eq!(status, 200);
    let (status, _) = test.call("GET", "/api/v1/certificates", None).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_cluster_fails_alone_then_heals() {
    let certificates = Certificates::new();
    certificates.server("shop.example.test", 365);
    let east = fake_cluster("east").await;
    let west = fake_cluster("west").await;
    let test = TestApp::start().await;
    test.register(&east).await;
    test.register(&west).await;
    east.set_down(true).await.unwrap();

    let (status, body) = test.call("POST", "/api/v1/certificates", Some(&upload(&certificates, "shop", "shop.example.test", "shop.example.test"))).await;

    assert_eq!(status, 201, "{body}");
    assert_eq!(body["sync"]["east"]["state"], "failed");
    assert_eq!(body["sync"]["east"]["last_error"]["kind"], "connection_refused");
    assert_eq!(body["sync"]["west"]["state"], "synced");
    assert!(west.secret("istio-system", "shop").is_some());
    let (_, list) = test.call("GET", "/api/v1/certificates", None).await;
    assert_eq!(list["certificates"][0]["sync"], "partial");

    // A signed resync after the cluster is back pushes the Secret there, and leaves west, which
    // already stores it, alone.
    east.set_down(false).await.unwrap();
    let (status, report) = test.signed_sync("{}").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["applied"], 1, "{report}");
    assert_eq!(report["unchanged"], 1, "{report}");
    assert_eq!(report["failed"], 0);
    assert!(east.secret("istio-system", "shop").is_some());
    let (_, details) = test.call("GET", "/api/v1/certificates/istio-system/shop", None).await;
    assert_eq!(details["sync"]["east"]["state"], "synced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_hook_rejects_bad_signatures() {
    let test = TestApp::start().await;
    let addr = test.server.addr();
    let now = test.app.clock().unix_seconds() as i64;
    let header = |name: &str, value: String| (name.to_string(), value);
    let cases = [
        vec![],
        vec![header("x-meshcert-timestamp", now.to_string()), header("x-meshcert-signature", support::sign("wrong", now, b"{}"))],
        vec![header("x-meshcert-timestamp", (now - 301).to_string()), header("x-meshcert-signature", support::sign(support::WEBHOOK_SECRET, now - 301, b"{}"))],
        vec![header("x-meshcert-timestamp", now.to_string()), header("x-meshcert-signature", support::sign(support::WEBHOOK_SECRET, now, b"{ }"))],
    ];

    for headers in cases {
        let (status, body) = support::send(addr, "POST", "/hooks/sync", &headers, b"{}".to_vec()).await;

        assert_eq!(status, 401, "{headers:?}: {}", String::from_utf8_lossy(&body));
    }
    let (status, _) = test.signed_sync("{}").await;
    assert_eq!(status, 200);
    let (status, body) = test.signed_sync(r#"{"scope": {"namespace": "x"}}"#).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = test.signed_sync(r#"{"dry_run": true}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["dry_run"], true, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_selector_limits_targets() {
    let certificates = Certificates::new();
    certificates.server("shop.example.test", 365);
    let east = fake_cluster("east").await;
    let west = fake_cluster("west").await;
    let test = TestApp::start().await;
    test.register_with_labels(&east, json!({ "env": "staging" })).await;
    test.register_with_labels(&west, json!({ "env": "prod" })).await;
    let mut body = upload(&certificates, "shop", "shop.example.test", "shop.example.test");
    body["clusters"] = json!("env=prod");

    let (status, created) = test.call("POST", "/api/v1/certificates", Some(&body)).await;

    assert_eq!(status, 201, "{created}");
    assert!(west.secret("istio-system", "shop").is_some());
    assert!(east.secret("istio-system", "shop").is_none(), "the Secret reached a cluster the selector excludes");
    assert!(created["sync"].get("east").is_none(), "{created}");
    let (status, _) = test.signed_sync("{}").await;
    assert_eq!(status, 200);
    assert!(east.secret("istio-system", "shop").is_none(), "a full resync pushed to an excluded cluster");

    body["name"] = json!("other");
    body["clusters"] = json!("this is !! not a selector");
    let (status, rejected) = test.call("POST", "/api/v1/certificates", Some(&body)).await;
    assert_eq!(status, 422);
    assert_eq!(rejected["error"]["code"], "invalid_cluster_selector");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_registration_rejects_bad_input() {
    let test = TestApp::start().await;
    let cases = [
        (json!({ "id": "east", "api_server": "http://admin:secret@127.0.0.1:6443", "token": "t" }), "invalid_api_server"),
        (json!({ "id": "east", "api_server": "ftp://127.0.0.1", "token": "t" }), "invalid_api_server"),
        (json!({ "id": "East", "api_server": "https://127.0.0.1:6443", "token": "t" }), "invalid_cluster_id"),
        (json!({ "id": "east", "api_server": "https://127.0.0.1:6443", "token": " " }), "missing_token"),
        (json!({ "id": "east", "api_server": "https://127.0.0.1:6443", "token": "t", "labels": { "Not A Label!": "x" } }), "invalid_label"),
    ];

    for (body, code) in cases {
        let (status, response) = test.call("POST", "/api/v1/clusters", Some(&body)).await;

        assert_eq!(status, 422, "{body}: {response}");
        assert_eq!(response["error"]["code"], code, "{response}");
        assert!(!response.to_string().contains("secret@"), "{response}");
    }
    let (_, clusters) = test.call("GET", "/api/v1/clusters", None).await;
    assert_eq!(clusters["clusters"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_errors_never_echo_values() {
    let certificates = Certificates::new();
    certificates.server("shop.example.test", 365);
    let test = TestApp::start().await;
    let key = certificates.read("shop.example.test.key");
    let cases = [
        json!({ "name": "a", "certificate": "x", "private_key": "y", "mtls": key }),
        json!({ "name": "a", "certificate": "x", "private_key": "y", "mtls": format!("x\"{key}") }),
        json!({ "name": "a", "certificate": "x", "private_key": 12345 }),
        json!({ "name": "a", "certificate": "x", "private_key": "y", key.clone(): true }),
    ];

    for body in cases {
        let (status, response) = test.call("POST", "/api/v1/certificates", Some(&body)).await;

        assert_eq!(status, 400, "{response}");
        assert_eq!(response["error"]["code"], "invalid_json");
        for line in pem_body_lines(&key) {
            assert!(!response.to_string().contains(&line), "the error quotes the key: {response}");
        }
        assert!(!response.to_string().contains("12345"), "the error quotes a value: {response}");
    }
    let (_, response) = test.call("POST", "/api/v1/certificates", Some(&json!({ "name": "a", "certificate": "x", "private_key": "y", "mtls": "yes" }))).await;
    assert_eq!(response["error"]["field"], "mtls", "{response}");
    assert!(response["error"]["message"].as_str().unwrap().contains("expected a boolean"), "{response}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_cluster_times_out_alone() {
    let certificates = Certificates::new();
    certificates.server("shop.example.test", 365);
    let east = fake_cluster("east").await;
    let west = fake_cluster("west").await;
    let test = TestApp::start().await;
    test.register(&east).await;
    test.register(&west).await;
    east.set_latency(Duration::from_secs(120));
    let started = std::time::Instant::now();

    let (status, body) = test.call("POST", "/api/v1/certificates", Some(&upload(&certificates, "shop", "shop.example.test", "shop.example.test"))).await;

    assert_eq!(status, 201, "{body}");
    assert_eq!(body["sync"]["east"]["state"], "failed");
    assert_eq!(body["sync"]["east"]["last_error"]["kind"], "timeout");
    assert_eq!(body["sync"]["west"]["state"], "synced");
    assert!(started.elapsed() < Duration::from_secs(30), "the create took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_scope_must_exist() {
    let test = TestApp::start().await;

    let (status, body) = test.signed_sync(r#"{"scope": {"certificate": "istio-system/nothere"}}"#).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "scope_not_found");
    let (status, _) = test.signed_sync(r#"{"scope": {"cluster": "nothere"}}"#).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_reports_bad_configuration() {
    let healthy = TestApp::start().await;
    let broken = TestApp::start_with(&[("encryption_key", "not-a-key")]).await;

    let (status, _) = healthy.call_with_token("GET", "/healthz", None, None).await;
    assert_eq!(status, 200);
    let (status, body) = broken.call_with_token("GET", "/healthz", None, None).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["problems"][0].as_str().unwrap().starts_with("encryption_key is not 32 bytes"), "{body}");
    assert!(!body.to_string().contains("not-a-key"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_scheme_is_case_insensitive() {
    let test = TestApp::start().await;
    let headers = vec![("authorization".to_string(), format!("bearer {}", support::API_TOKEN))];

    let (status, _) = support::send(test.server.addr(), "GET", "/api/v1/certificates", &headers, Vec::new()).await;
    assert_eq!(status, 200);
    let (status, _) = support::send(test.server.addr(), "HEAD", "/api/v1/certificates", &headers, Vec::new()).await;
    assert_eq!(status, 200);
}
