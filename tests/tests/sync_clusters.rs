//! The sync against clusters that fail, throttle, hold foreign or outdated Secrets, or change
//! their labels and tokens: each behaviour of the sync-webhook component, end to end.

mod support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use meshcert_fake_kube::{FakeCluster, StatusFault};
use serde_json::{json, Value};
use support::{fake_cluster, secret_entry, upload, Certificates, TestApp};

fn encode(text: &str) -> Value {
    json!(base64::engine::general_purpose::STANDARD.encode(text))
}

async fn register_with_token(test: &TestApp, cluster: &FakeCluster, token: &str) {
    let registration = json!({ "id": cluster.name(), "api_server": cluster.url(), "token": token });
    let (status, body) = test.call("POST", "/api/v1/clusters", Some(&registration)).await;
    assert_eq!(status, 201, "{body}");
}

fn writes(cluster: &FakeCluster) -> Vec<String> {
    cluster.requests().into_iter().filter(|request| request.method != "GET").map(|request| format!("{} {}", request.method, request.path)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_keep_their_kubernetes_meaning() {
    let certificates = Certificates::new();
    certificates.server("web.example.test", 365);
    let test = TestApp::start().await;
    let mut clusters = Vec::new();
    for name in ["healthy", "unauthorized", "forbidden", "invalid", "conflict", "throttled", "failing", "flaky", "refused"] {
        let cluster = fake_cluster(name).await;
        let token = if name == "unauthorized" { "a-revoked-token".to_string() } else { cluster.token().to_string() };
        register_with_token(&test, &cluster, &token).await;
        clusters.push(cluster);
    }
    let cluster = |name: &str| clusters.iter().find(|cluster| cluster.name() == name).unwrap();
    cluster("forbidden").set_status_fault(Some(StatusFault::new(403)));
    cluster("invalid").set_status_fault(Some(StatusFault::new(422)));
    cluster("conflict").set_status_fault(Some(StatusFault::new(409)));
    cluster("throttled").set_status_fault(Some(StatusFault::new(429)));
    cluster("failing").set_status_fault(Some(StatusFault::new(503)));
    cluster("flaky").set_status_fault(Some(StatusFault::new(503).times(2)));
    cluster("refused").set_down(true).await.unwrap();

    let started = Instant::now();
    let (status, body) = test.call("POST", "/api/v1/certificates", Some(&upload(&certificates, "web", "web.example.test", "web.example.test"))).await;
    let elapsed = started.elapsed();

    assert_eq!(status, 201, "{body}");
    // (cluster, state, error kind, HTTP status, attempts). A 4xx fails at once. A 429, a 5xx and a
    // refused connection get up to four attempts, so a fault that clears heals within the sync.
    let expected = [
        ("healthy", "synced", None, None::<u64>, 1),
        ("unauthorized", "failed", Some("unauthorized"), Some(401), 1),
        ("forbidden", "failed", Some("forbidden"), Some(403), 1),
        ("invalid", "failed", Some("invalid"), Some(422), 1),
        ("conflict", "failed", Some("conflict"), Some(409), 1),
        ("throttled", "failed", Some("rate_limited"), Some(429), 4),
        ("failing", "failed", Some("server_error"), Some(503), 4),
        ("flaky", "synced", None, None, 3),
        ("refused", "failed", Some("connection_refused"), None, 4),
    ];
    for (name, state, kind, http_status, attempts) in expected {
        let recorded = &body["sync"][name];
        assert_eq!(recorded["state"], state, "{name}: {recorded}");
        assert_eq!(recorded["last_error"]["kind"].as_str(), kind, "{name}: {recorded}");
        assert_eq!(recorded["last_error"]["status"].as_u64(), http_status, "{name}: {recorded}");
        assert_eq!(recorded["attempts"], attempts, "{name}: {recorded}");
    }
    assert!(cluster("healthy").secret("istio-system", "web").is_some());
    assert!(cluster("flaky").secret("istio-system", "web").is_some());
    // Three retries honouring `Retry-After: 1` are the slowest target, and the rest ran meanwhile.
    assert!(elapsed < Duration::from_secs(8), "the sync took {elapsed:?}");

    // A namespace the cluster lacks is its own kind.
    let mut shop = upload(&certificates, "web", "web.example.test", "web.example.test");
    shop["namespace"] = json!("shop");
    let (status, body) = test.call("POST", "/api/v1/certificates", Some(&shop)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["sync"]["healthy"]["last_error"]["kind"], "namespace_not_found", "{body}");
    let (_, list) = test.call("GET", "/api/v1/certificates", None).await;
    let summaries: Vec<&Value> = list["certificates"].as_array().unwrap().iter().map(|item| &item["sync"]).collect();
    assert_eq!(summaries, [&json!("partial"), &json!("failed")], "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_overlap_up_to_sync_concurrency() {
    let certificates = Certificates::new();
    let test = TestApp::start_with(&[("sync_concurrency", "3")]).await;
    for index in 0..8 {
        let host = format!("app{index}.example.test");
        certificates.server(&host, 365);
        let (status, body) = test.call("POST", "/api/v1/certificates", Some(&upload(&certificates, &format!("app{index}"), &host, &host))).await;
        assert_eq!(status, 201, "{body}");
    }
    let east = fake_cluster("east").await;
    east.set_latency(Duration::from_millis(150));

    let started = Instant::now();
    let registration = test.register(&east).await;
    let elapsed = started.elapsed();

    // One LIST of the namespace, then eight creates, three at a time.
    assert_eq!(registration["sync"]["applied"], 8, "{registration}");
    assert_eq!(registration["sync"]["requests"], 9, "{registration}");
    assert_eq!(east.max_in_flight(), 3, "requests did not overlap up to sync_concurrency");
    assert!(elapsed < Duration::from_millis(150 * 6), "8 creates 3 at a time took {elapsed:?}");
    assert_eq!(east.requests().iter().filter(|request| request.method == "GET").count(), 1);

    // A resync of unchanged Secrets costs the one LIST.
    east.clear_requests();
    let (status, report) = test.signed_sync("{}").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["unchanged"], 8, "{report}");
    assert_eq!(east.requests().len(), 1, "{:?}", east.requests());
    let summary = test.app.output("sync-webhook").lines().filter(|line| line.contains("sync finished")).last().unwrap_or_default().to_string();
    for field in ["\"targets\":8", "\"applied\":0", "\"unchanged\":8", "\"drifted\":0", "\"failed\":0", "\"requests\":1", "duration_ms"] {
        assert!(summary.contains(field), "the summary line lacks {field}: {summary}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_secrets_keep_only_current_entries() {
    let certificates = Certificates::new();
    certificates.server("web.example.test", 365);
    let east = fake_cluster("east").await;
    let test = TestApp::start().await;
    test.register(&east).await;
    let mut mtls = upload(&certificates, "web", "web.example.test", "web.example.test");
    mtls["ca_certificate"] = json!(certificates.read("example.test.crt"));
    mtls["mtls"] = json!(true);
    mtls["separate_ca_secret"] = json!(true);

    let (status, body) = test.call("POST", "/api/v1/certificates", Some(&mtls)).await;

    assert_eq!(status, 201, "{body}");
    let ca_secret = east.secret("istio-system", "web-cacert").expect("the separate CA Secret");
    assert_eq!(secret_entry(&ca_secret, "cacert"), certificates.read("example.test.crt"));
    assert_eq!(ca_secret["type"], "Opaque");
    assert!(east.secret_data("istio-system", "web").unwrap().contains_key("ca.crt"));

    // Generic entries added by hand would shadow tls.crt and tls.key for Istio: drift, removed.
    let mut edited = east.secret("istio-system", "web").unwrap();
    edited["data"]["cert"] = encode("stale");
    edited["data"]["key"] = encode("stale");
    east.put_secret("istio-system", edited).unwrap();
    let (status, report) = test.signed_sync("{}").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["drifted"], 1, "{report}");
    let entries: Vec<String> = east.secret_data("istio-system", "web").unwrap().into_keys().collect();
    assert_eq!(entries, ["ca.crt", "tls.crt", "tls.key"]);

    // mTLS off: ca.crt leaves the Secret and the separate CA Secret is removed.
    let plain = json!({
        "certificate": certificates.read("web.example.test.crt"),
        "private_key": certificates.read("web.example.test.key"),
        "ca_certificate": null,
        "mtls": false,
        "separate_ca_secret": false,
    });
    let (status, body) = test.call("PUT", "/api/v1/certificates/istio-system/web", Some(&plain)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sync"]["east"]["state"], "synced", "{body}");
    let entries: Vec<String> = east.secret_data("istio-system", "web").unwrap().into_keys().collect();
    assert_eq!(entries, ["tls.crt", "tls.key"]);
    assert!(east.secret("istio-system", "web-cacert").is_none(), "the stale CA Secret is still there");

    // A managed Secret of another type cannot change in place: deleted and created.
    let mut opaque = east.secret("istio-system", "web").unwrap();
    opaque["type"] = json!("Opaque");
    east.remove_secret("istio-system", "web");
    east.put_secret("istio-system", opaque).unwrap();
    east.clear_requests();
    let (status, report) = test.signed_sync("{}").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["targets"][0]["action"], "recreate", "{report}");
    assert_eq!(east.secret("istio-system", "web").unwrap()["type"], "kubernetes.io/tls");
    let methods: Vec<String> = writes(&east).into_iter().map(|write| write.split(' ').next().unwrap().to_string()).collect();
    assert_eq!(methods, ["DELETE", "POST"]);

    // The separate CA Secret needs a CA.
    let mut invalid = upload(&certificates, "other", "web.example.test", "web.example.test");
    invalid["separate_ca_secret"] = json!(true);
    let (status, body) = test.call("POST", "/api/v1/certificates", Some(&invalid)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "separate_ca_secret_needs_mtls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmanaged_secret_is_never_written() {
    let certificates = Certificates::new();
    certificates.server("web.example.test", 365);
    let east = fake_cluster("east").await;
    let test = TestApp::start().await;
    test.register(&east).await;
    let foreign = support::foreign_tls_secret("istio-system", "web");
    east.put_secret("istio-system", foreign).unwrap();
    east.clear_requests();

    let (status, body) = test.call("POST", "/api/v1/certificates", Some(&upload(&certificates, "web", "web.example.test", "web.example.test"))).await;

    assert_eq!(status, 201, "{body}");
    assert_eq!(body["sync"]["east"]["state"], "conflict", "{body}");
    assert!(body["sync"]["east"]["last_error"]["message"].as_str().unwrap().contains("add that label"), "{body}");
    assert_eq!(secret_entry(&east.secret("istio-system", "web").unwrap(), "tls.crt"), "theirs");
    // The only write is a create, which the API server refuses because the name is taken.
    assert_eq!(writes(&east), ["POST /api/v1/namespaces/istio-system/secrets?fieldManager=meshcert"]);

    // A resync leaves it alone too, and reports the conflict as its action.
    let (_, report) = test.signed_sync("{}").await;
    assert_eq!(report["targets"][0]["state"], "conflict", "{report}");
    assert_eq!(report["targets"][0]["action"], "conflict", "{report}");
    assert_eq!(secret_entry(&east.secret("istio-system", "web").unwrap(), "tls.crt"), "theirs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn narrowed_selector_removes_the_secret() {
    let certificates = Certificates::new();
    certificates.server("web.example.test", 365);
    let prod = fake_cluster("prod").await;
    let dev = fake_cluster("dev").await;
    let test = TestApp::start().await;
    test.register_with_labels(&prod, json!({ "env": "prod" })).await;
    test.register_with_labels(&dev, json!({ "env": "dev" })).await;
    let (status, _) = test.call("POST", "/api/v1/certificates", Some(&upload(&certificates, "web", "web.example.test", "web.example.test"))).await;
    assert_eq!(status, 201);
    assert!(dev.secret("istio-system", "web").is_some());

    let narrowed = json!({ "certificate": certificates.read("web.example.test.crt"), "private_key": certificates.read("web.example.test.key"), "clusters": "env=prod" });
    let (status, body) = test.call("PUT", "/api/v1/certificates/istio-system/web", Some(&narrowed)).await;

    assert_eq!(status, 200, "{body}");
    assert!(dev.secret("istio-system", "web").is_none(), "the Secret stayed in a cluster the selector no longer matches");
    assert!(prod.secret("istio-system", "web").is_some());
    let clusters: Vec<&String> = body["sync"].as_object().unwrap().keys().collect();
    assert_eq!(clusters, ["prod"], "{body}");

    // Labels that stop matching, changed on the cluster, do the same.
    let (status, body) = test.call("PATCH", "/api/v1/clusters/prod", Some(&json!({ "labels": { "env": "staging" } }))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sync"]["removed"], 1, "{body}");
    assert!(prod.secret("istio-system", "web").is_none());
    let (_, list) = test.call("GET", "/api/v1/certificates", None).await;
    assert_eq!(list["certificates"][0]["sync"], "none", "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_details_token_rotation_and_delete() {
    let certificates = Certificates::new();
    certificates.server("web.example.test", 365);
    let east = fake_cluster("east").await;
    let test = TestApp::start().await;
    register_with_token(&test, &east, "a-revoked-token").await;
    let (_, body) = test.call("POST", "/api/v1/certificates", Some(&upload(&certificates, "web", "web.example.test", "web.example.test"))).await;
    assert_eq!(body["sync"]["east"]["last_error"]["kind"], "unauthorized", "{body}");

    let (status, details) = test.call("GET", "/api/v1/clusters/east", None).await;
    assert_eq!(status, 200, "{details}");
    assert_eq!(details["reachability"]["reachable"], false, "{details}");
    assert_eq!(details["reachability"]["status"], 401, "{details}");
    assert_eq!(details["secrets"], json!({ "failed": 1 }), "{details}");
    assert_eq!(details["client_tls"]["state"], "not_needed", "{details}");

    // A new token heals the cluster at once.
    let (status, body) = test.call("PATCH", "/api/v1/clusters/east", Some(&json!({ "token": east.token() }))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sync"]["applied"], 1, "{body}");
    let (_, details) = test.call("GET", "/api/v1/clusters/east", None).await;
    assert_eq!(details["reachability"]["reachable"], true, "{details}");
    assert!(details["reachability"]["server_version"].as_str().is_some_and(|version| version.starts_with('v')), "{details}");
    assert_eq!(details["secrets"], json!({ "synced": 1 }), "{details}");
    let stored = test.stored_values().into_iter().map(|(_, value)| value).collect::<String>();
    assert!(!stored.contains(east.token()), "the new token is stored in plain text");

    // Unregistering without purge leaves the Secret and removes the cluster's states.
    let (status, body) = test.call("DELETE", "/api/v1/clusters/east", None).await;
    assert_eq!(status, 200, "{body}");
    assert!(east.secret("istio-system", "web").is_some());
    let (_, details) = test.call("GET", "/api/v1/certificates/istio-system/web", None).await;
    assert_eq!(details["sync"], json!({}), "{details}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_input_is_checked_and_normalized() {
    let east = fake_cluster("east").await;
    let test = TestApp::start().await;
    let shouting = east.url().replace("http://", " HTTP://");
    let registration = json!({ "id": "east", "api_server": shouting, "token": east.token() });
    let (status, body) = test.call("POST", "/api/v1/clusters", Some(&registration)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["api_server"], east.url(), "{body}");

    let long_token = json!({ "token": "t".repeat(20_000) });
    let too_many_labels: serde_json::Map<String, Value> = (0..65).map(|index| (format!("label{index}"), json!("x"))).collect();
    let cases = [
        (json!({ "labels": null }), 400, "invalid_json"),
        (json!({ "token": null }), 400, "invalid_json"),
        (json!([]), 400, "invalid_json"),
        (long_token, 422, "invalid_token"),
        (json!({ "labels": too_many_labels }), 422, "invalid_label"),
        (json!({ "display_name": "east\u{0}" }), 422, "invalid_display_name"),
        (json!({ "api_server": "http://localhost:9999" }), 422, "api_server_not_allowed"),
    ];
    for (body, status, code) in cases {
        let (got, response) = test.call("PATCH", "/api/v1/clusters/east", Some(&body)).await;
        assert_eq!((got, response["error"]["code"].as_str()), (status, Some(code)), "{body}: {response}");
        assert!(!response.to_string().contains(&"t".repeat(100)), "the token was echoed");
    }
    let (_, response) = test.call("PATCH", "/api/v1/clusters/east", Some(&json!({ "api_server": "http://localhost:9999" }))).await;
    assert!(response["error"]["message"].as_str().unwrap().contains("\"http://*:9999\""), "{response}");

    for path in ["/api/v1/clusters?foo=1", "/api/v1/clusters/east?foo=1", "/api/v1/runtime-config/client-tls?foo=1", "/metrics?foo=1"] {
        let (status, response) = test.call("GET", path, None).await;
        assert_eq!((status, response["error"]["code"].as_str()), (400, Some("unknown_parameter")), "{path}: {response}");
    }
    let (status, report) = test.signed_sync(r#"{"scope": {"certificate": "istio-system/web/v/1"}}"#).await;
    assert_eq!((status, report["error"]["code"].as_str()), (400, Some("invalid_scope")), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_purge_keeps_what_is_recorded() {
    let certificates = Certificates::new();
    certificates.server("web.example.test", 365);
    let east = fake_cluster("east").await;
    let test = TestApp::start().await;
    test.register(&east).await;
    let (status, _) = test.call("POST", "/api/v1/certificates", Some(&upload(&certificates, "web", "web.example.test", "web.example.test"))).await;
    assert_eq!(status, 201);
    let mut prod_only = upload(&certificates, "prod", "web.example.test", "web.example.test");
    prod_only["clusters"] = json!("env=prod");
    let (status, _) = test.call("POST", "/api/v1/certificates", Some(&prod_only)).await;
    assert_eq!(status, 201);
    east.set_down(true).await.unwrap();

    let (status, body) = test.call("DELETE", "/api/v1/clusters/east?purge=true", None).await;

    assert_eq!(status, 502, "{body}");
    assert_eq!(body["purge"]["failed"], 1, "only web goes to east: {body}");
    let (_, web) = test.call("GET", "/api/v1/certificates/istio-system/web", None).await;
    assert_eq!(web["sync"]["east"]["version"], 1, "the purge lost what east holds: {web}");
    let (_, prod) = test.call("GET", "/api/v1/certificates/istio-system/prod", None).await;
    assert_eq!(prod["sync"], json!({}), "{prod}");
    let (_, list) = test.call("GET", "/api/v1/certificates", None).await;
    assert_eq!(list["certificates"][0]["sync"], "none", "{list}");
}

/// A sync that read an older head must not write its version over the newer one that a later
/// sync wrote while the first was reading the cluster: two replicas syncing at once, made
/// deterministic by a slow LIST.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_sync_leaves_newer_version() {
    let certificates = Certificates::new();
    for host in ["web.example.test", "web-b.example.test", "web-c.example.test"] {
        certificates.server(host, 365);
    }
    let rotation = |host: &str| json!({ "certificate": certificates.read(&format!("{host}.crt")), "private_key": certificates.read(&format!("{host}.key")) });
    let east = fake_cluster("east").await;
    let test = TestApp::start().await;
    test.register(&east).await;
    let (status, body) = test.call("POST", "/api/v1/certificates", Some(&upload(&certificates, "web", "web.example.test", "web.example.test"))).await;
    assert_eq!(status, 201, "{body}");

    // Version 2 is stored but does not reach the cluster, which keeps version 1.
    east.set_status_fault(Some(StatusFault::new(500).method("PATCH")));
    let (status, body) = test.call("PUT", "/api/v1/certificates/istio-system/web", Some(&rotation("web-b.example.test"))).await;
    assert_eq!(status, 200, "{body}");
    east.set_status_fault(None);
    assert_eq!(east.secret("istio-system", "web").unwrap()["metadata"]["annotations"]["meshcert.io/version"], "1");

    // A full sync reads head 2, then the cluster's Secrets, slowly: the LIST shows version 1.
    east.set_slow_body(Some(meshcert_fake_kube::SlowBody { chunk_bytes: 128, delay: Duration::from_millis(50) }));
    let stale_sync = test.signed_sync("{}");
    // Meanwhile version 3 is stored and its own sync, at full speed, writes it to the cluster.
    let rotate = async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        east.set_slow_body(None);
        let (status, body) = test.call("PUT", "/api/v1/certificates/istio-system/web", Some(&rotation("web-c.example.test"))).await;
        let written = east.secret("istio-system", "web").unwrap()["metadata"]["annotations"]["meshcert.io/version"].clone();
        (status, body, written)
    };
    let ((status, report), (rotated, body, written)) = tokio::join!(stale_sync, rotate);
    assert_eq!(rotated, 200, "{body}");
    assert_eq!(body["version"], 3, "{body}");
    assert_eq!(written, "3", "the rotation's sync did not write version 3 before the stale sync ended");

    // The stale sync finds version 3 at its write, and leaves it.
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["targets"][0]["action"], "superseded", "{report}");
    let secret = east.secret("istio-system", "web").unwrap();
    assert_eq!(secret["metadata"]["annotations"]["meshcert.io/version"], "3", "the stale sync wrote its version over the newer one");
    assert_eq!(secret_entry(&secret, "tls.crt"), certificates.read("web-c.example.test.crt"));
    let (status, details) = test.call("GET", "/api/v1/certificates/istio-system/web", None).await;
    assert_eq!(status, 200, "{details}");
    assert_eq!(details["sync"]["east"]["state"], "synced", "{details}");
    assert_eq!(details["sync"]["east"]["version"], 3, "{details}");
}

/// Clusters are read through the list of their ids. A store without the list, as after an
/// upgrade, gets it built from the keys. A cluster record that the list lacks, as one registered
/// by an older replica, is listed after the next expiry scan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_list_is_rebuilt_from_records() {
    let east = fake_cluster("east").await;
    let west = fake_cluster("west").await;
    let test = TestApp::start().await;
    test.register(&east).await;
    test.register(&west).await;
    let database = test.state.path().join(meshcert_host::DEFAULT_KEY_VALUE_FILE);
    let connection = rusqlite::Connection::open(database).unwrap();
    let listed = |test: &TestApp| test.stored_values().into_iter().find(|(key, _)| key == "clusters/ids").map(|(_, value)| serde_json::from_str::<Value>(&value).unwrap()["ids"].clone());
    assert_eq!(listed(&test), Some(json!(["east", "west"])));

    connection.execute("DELETE FROM spin_key_value WHERE key = 'clusters/ids'", []).unwrap();
    let (status, clusters) = test.call("GET", "/api/v1/clusters", None).await;
    assert_eq!(status, 200, "{clusters}");
    let ids: Vec<&str> = clusters["clusters"].as_array().unwrap().iter().map(|cluster| cluster["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["east", "west"], "{clusters}");
    assert_eq!(listed(&test), Some(json!(["east", "west"])));

    // A record written without its id, such as by a replica of an older version.
    let east_record: String = connection.query_row("SELECT CAST(value AS TEXT) FROM spin_key_value WHERE key = 'cluster/east'", [], |row| row.get(0)).unwrap();
    let mut north: Value = serde_json::from_str(&east_record).unwrap();
    north["id"] = json!("north");
    connection.execute("INSERT INTO spin_key_value (store, key, value) VALUES ('default', 'cluster/north', ?1)", [serde_json::to_vec(&north).unwrap()]).unwrap();
    assert_eq!(listed(&test), Some(json!(["east", "west"])));
    test.app.run_cron("expiry-cron").await.expect("cron handler");
    assert_eq!(listed(&test), Some(json!(["east", "north", "west"])));

    let (status, body) = test.call("DELETE", "/api/v1/clusters/north", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(listed(&test), Some(json!(["east", "west"])));
}

/// A certificate whose private key was sealed with another `encryption_key` (a replica with the
/// wrong key wrote it) fails its own targets, named, and the rest of the fleet still syncs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_certificate_fails_alone() {
    let certificates = Certificates::new();
    certificates.server("web.example.test", 365);
    let test = TestApp::start().await;
    let (status, body) = test.call("POST", "/api/v1/certificates", Some(&upload(&certificates, "sealed-elsewhere", "web.example.test", "web.example.test"))).await;
    assert_eq!(status, 201, "{body}");

    let other_key = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    let test = test.restart_with(&[("encryption_key", &other_key)]).await;
    let east = fake_cluster("east").await;
    test.register(&east).await;
    let (status, body) = test.call("POST", "/api/v1/certificates", Some(&upload(&certificates, "web", "web.example.test", "web.example.test"))).await;
    assert_eq!(status, 201, "{body}");

    let (status, report) = test.signed_sync("{}").await;
    assert_eq!(status, 200, "{report}");
    let target = |name: &str| report["targets"].as_array().unwrap().iter().find(|target| target["certificate"] == format!("istio-system/{name}")).cloned().unwrap();
    assert_eq!(target("web")["state"], "synced", "{report}");
    assert_eq!(target("sealed-elsewhere")["state"], "failed", "{report}");
    assert_eq!(target("sealed-elsewhere")["error"]["kind"], "unreadable_record", "{report}");
    let message = target("sealed-elsewhere")["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("istio-system/sealed-elsewhere"), "{message}");
    assert!(message.contains("encryption_key"), "{message}");
    assert!(east.secret("istio-system", "web").is_some());
    assert!(east.secret("istio-system", "sealed-elsewhere").is_none());

    let (status, details) = test.call("GET", "/api/v1/certificates/istio-system/sealed-elsewhere", None).await;
    assert_eq!(status, 200, "{details}");
    assert_eq!(details["sync"]["east"]["last_error"]["kind"], "unreadable_record", "{details}");
}
