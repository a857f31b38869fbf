//! End-to-end tests of a sync that reads the live Secrets first: an unchanged Secret gets no
//! request, a Secret edited in the cluster is repaired and counted as drifted, and a dry run
//! reports the plan and changes nothing. Build the components first (scripts/test.sh).

mod support;

use base64::Engine as _;
use serde_json::{json, Value};
use support::{fake_cluster, secret_entry, upload, Certificates, TestApp};

fn actions(report: &Value) -> Vec<(String, String)> {
    report["targets"]
        .as_array()
        .expect("targets array")
        .iter()
        .map(|target| (target["cluster"].as_str().unwrap().to_string(), target["action"].as_str().unwrap_or("none").to_string()))
        .collect()
}

fn patches(cluster: &meshcert_fake_kube::FakeCluster) -> usize {
    cluster.requests().iter().filter(|request| request.method == "PATCH").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_skips_unchanged_and_repairs_drift() {
    let certificates = Certificates::new();
    certificates.server("web.example.test", 365);
    let east = fake_cluster("east").await;
    let west = fake_cluster("west").await;
    let test = TestApp::start().await;
    test.register(&east).await;
    test.register(&west).await;
    let (status, created) = test.call("POST", "/api/v1/certificates", Some(&upload(&certificates, "web", "web.example.test", "web.example.test"))).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["sync"]["east"]["state"], "synced", "{created}");

    // Nothing changed: the resync reads both Secrets and sends no apply.
    east.clear_requests();
    west.clear_requests();
    let (status, report) = test.signed_sync("{}").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(actions(&report), [("east".to_string(), "unchanged".to_string()), ("west".to_string(), "unchanged".to_string())]);
    assert_eq!(report["unchanged"], 2, "{report}");
    assert_eq!(patches(&east) + patches(&west), 0);

    // Someone edits the Secret's data in east: the next resync counts drift and repairs it.
    let mut edited = east.secret("istio-system", "web").unwrap();
    edited["data"]["tls.crt"] = json!(base64::engine::general_purpose::STANDARD.encode("edited by hand"));
    east.put_secret("istio-system", edited).unwrap();
    let (status, report) = test.signed_sync("{}").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(actions(&report), [("east".to_string(), "drifted".to_string()), ("west".to_string(), "unchanged".to_string())]);
    assert_eq!(report["drifted"], 1, "{report}");
    assert_eq!(secret_entry(&east.secret("istio-system", "web").unwrap(), "tls.crt"), certificates.read("web.example.test.crt"));
    assert!(test.app.output("sync-webhook").contains("\"drifted\":1"), "the summary line counts drift");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_reports_the_plan_and_changes_nothing() {
    let certificates = Certificates::new();
    certificates.server("web.example.test", 365);
    certificates.server("shop.example.test", 365);
    let east = fake_cluster("east").await;
    let test = TestApp::start().await;
    test.register(&east).await;
    let (status, body) = test.call("POST", "/api/v1/certificates", Some(&upload(&certificates, "web", "web.example.test", "web.example.test"))).await;
    assert_eq!(status, 201, "{body}");

    // A second cluster joins while a Secret there already belongs to someone else, and east's
    // Secret drifts; the dry run shows all of it.
    let west = fake_cluster("west").await;
    west.put_secret("istio-system", support::foreign_tls_secret("istio-system", "web")).unwrap();
    let mut edited = east.secret("istio-system", "web").unwrap();
    edited["data"]["tls.crt"] = json!(base64::engine::general_purpose::STANDARD.encode("edited by hand"));
    east.put_secret("istio-system", edited.clone()).unwrap();
    west.set_down(true).await.unwrap();
    test.register(&west).await;
    west.set_down(false).await.unwrap();
    let (status, body) = test.call("POST", "/api/v1/certificates", Some(&upload(&certificates, "shop", "shop.example.test", "shop.example.test"))).await;
    assert_eq!(status, 201, "{body}");
    east.remove_secret("istio-system", "shop");
    let stored_before = test.stored_values();

    east.clear_requests();
    west.clear_requests();
    let (status, plan) = test.signed_sync(r#"{"dry_run": true}"#).await;
    assert_eq!(status, 200, "{plan}");
    assert_eq!(plan["dry_run"], true);
    let planned: Vec<(String, String, String)> = plan["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|target| (target["certificate"].as_str().unwrap().into(), target["cluster"].as_str().unwrap().into(), target["action"].as_str().unwrap().into()))
        .collect();
    let expected = [
        ("istio-system/shop", "east", "create"),
        ("istio-system/shop", "west", "unchanged"),
        ("istio-system/web", "east", "drifted"),
        ("istio-system/web", "west", "conflict"),
    ];
    let expected: Vec<(String, String, String)> = expected.iter().map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())).collect();
    assert_eq!(planned, expected, "{plan}");

    // Nothing was sent but reads, and nothing was recorded.
    let writes = |cluster: &meshcert_fake_kube::FakeCluster| cluster.requests().iter().filter(|request| request.method != "GET").count();
    assert_eq!(writes(&east) + writes(&west), 0);
    assert_eq!(secret_entry(&east.secret("istio-system", "web").unwrap(), "tls.crt"), "edited by hand");
    assert!(east.secret("istio-system", "shop").is_none());
    // Only the replay guard records the dry run's signature.
    let records = |values: Vec<(String, String)>| values.into_iter().filter(|(key, _)| !key.starts_with("audit/") && !key.starts_with("hooks/")).collect::<Vec<_>>();
    assert!(records(test.stored_values()) == records(stored_before), "the dry run changed a record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_signature_accepted_once() {
    let test = TestApp::start().await;
    let timestamp = test.app.clock().unix_seconds() as i64;
    let headers = vec![
        ("x-meshcert-timestamp".to_string(), timestamp.to_string()),
        ("x-meshcert-signature".to_string(), support::sign(support::WEBHOOK_SECRET, timestamp, b"{}")),
    ];

    let (first, _) = support::send(test.server.addr(), "POST", "/hooks/sync", &headers, b"{}".to_vec()).await;
    let (second, body) = support::send(test.server.addr(), "POST", "/hooks/sync", &headers, b"{}".to_vec()).await;
    // The same signature in upper-case hex verifies too, so it is the same signature.
    let upper = vec![headers[0].clone(), ("x-meshcert-signature".to_string(), format!("sha256={}", headers[1].1.trim_start_matches("sha256=").to_uppercase()))];
    let (third, _) = support::send(test.server.addr(), "POST", "/hooks/sync", &upper, b"{}".to_vec()).await;
    assert_eq!(third, 401, "a replay in upper-case hex was accepted");

    assert_eq!(first, 200);
    assert_eq!(second, 401);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "replayed_signature", "{body}");

    // Five minutes later the timestamp is too old anyway, so a record that is written drops the
    // signatures it keeps from back then.
    let first_shard = format!("hooks/seen-signatures/{}", &headers[1].1.trim_start_matches("sha256=")[..1]);
    test.app.clock().advance(std::time::Duration::from_secs(301));
    let now = test.app.clock().unix_seconds() as i64;
    let mut sent = 0;
    loop {
        let (status, _) = test.signed_sync("{}").await;
        assert_eq!(status, 200);
        sent += 1;
        let seen = test.stored_values().into_iter().find(|(key, _)| *key == first_shard).expect("the seen signatures are stored").1;
        let until: Vec<i64> = serde_json::from_str::<Value>(&seen).unwrap()["until"].as_object().unwrap().values().map(|until| until.as_i64().unwrap()).collect();
        // Each signature goes to one of 16 records; wait for one in the first signature's record.
        if until.iter().all(|until| *until >= now) {
            break;
        }
        assert!(sent < 200, "the record {first_shard} still keeps an expired signature after {sent} calls: {seen}");
    }
}
