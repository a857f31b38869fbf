//! End-to-end tests of the certificate API: rotation, rollback, kept versions, delete, list
//! pages, roles, the audit trail, encryption key rotation and crash safety. They run the release
//! .wasm components in meshcert-host against fake clusters on loopback, so build the components
//! first (scripts/test.sh).

mod support;

use base64::Engine as _;
use serde_json::{json, Value};
use support::{fake_cluster, pem_body_lines, secret_entry, send_full, upload, Certificates, TestApp, API_TOKEN};

const WEB: &str = "/api/v1/certificates/istio-system/web";

/// Builds the body of a `PUT` that rotates to `{host}.crt` and `{host}.key`.
fn rotation(certificates: &Certificates, host: &str) -> Value {
    json!({
        "certificate": certificates.read(&format!("{host}.crt")),
        "private_key": certificates.read(&format!("{host}.key")),
    })
}

fn versions(details: &Value) -> Vec<u64> {
    details["versions"].as_array().expect("versions array").iter().map(|entry| entry["version"].as_u64().unwrap()).collect()
}

fn warning_codes(body: &Value) -> Vec<String> {
    body["warnings"].as_array().map(|warnings| warnings.iter().map(|w| w["code"].as_str().unwrap().to_string()).collect()).unwrap_or_default()
}

fn stored_keys(test: &TestApp) -> Vec<String> {
    test.stored_values().into_iter().map(|(key, _)| key).collect()
}

fn stored_record(test: &TestApp, key: &str) -> Value {
    let (_, value) = test.stored_values().into_iter().find(|(stored, _)| stored == key).unwrap_or_else(|| panic!("{key} is not stored"));
    serde_json::from_str(&value).unwrap()
}

/// Certificates `v1` to `v{count}.example.test`, each with its own key.
fn hosts(count: usize) -> Certificates {
    let certificates = Certificates::new();
    for index in 1..=count {
        certificates.server(&format!("v{index}.example.test"), 365);
    }
    certificates
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_and_rollback_store_versions_and_resync() {
    let certificates = hosts(2);
    let east = fake_cluster("east").await;
    let test = TestApp::start().await;
    test.register(&east).await;
    let (status, created) = test.call("POST", "/api/v1/certificates", Some(&upload(&certificates, "web", "v1.example.test", "v1.example.test"))).await;
    assert_eq!(status, 201, "{created}");

    // Rotation: version 2 is stored, listed first and pushed.
    let (status, rotated) = test.call("PUT", WEB, Some(&rotation(&certificates, "v2.example.test"))).await;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(rotated["version"], 2);
    assert_eq!(versions(&rotated), [2, 1]);
    assert_eq!(rotated["leaf"]["subject"], "O=meshcert test,CN=v2.example.test");
    assert_eq!(rotated["sync"]["east"]["state"], "synced");
    assert_eq!(rotated["sync"]["east"]["version"], 2);
    let secret = east.secret("istio-system", "web").unwrap();
    assert_eq!(secret_entry(&secret, "tls.crt"), certificates.read("v2.example.test.crt"));
    assert_eq!(secret_entry(&secret, "tls.key"), certificates.read("v2.example.test.key"));
    assert_eq!(secret["metadata"]["annotations"]["meshcert.io/version"], "2");

    // The same content again stores nothing.
    let (status, unchanged) = test.call("PUT", WEB, Some(&rotation(&certificates, "v2.example.test"))).await;
    assert_eq!(status, 200, "{unchanged}");
    assert_eq!(unchanged["version"], 2);
    assert!(warning_codes(&unchanged).contains(&"unchanged".to_string()), "{unchanged}");

    // If-Match guards against rotating over someone else's change.
    let (status, mismatch) = test.call_with_headers("PUT", WEB, &[("if-match", "\"1\"")], Some(&rotation(&certificates, "v1.example.test"))).await;
    assert_eq!(status, 412, "{mismatch}");
    assert_eq!(mismatch["error"]["code"], "version_mismatch");
    assert_eq!(secret_entry(&east.secret("istio-system", "web").unwrap(), "tls.crt"), certificates.read("v2.example.test.crt"));

    // A bare version number is read like the quoted ETag.
    let (status, body) = test.call_with_headers("PUT", WEB, &[("if-match", "2")], Some(&rotation(&certificates, "v2.example.test"))).await;
    assert_eq!(status, 200, "{body}");

    // Rollback stores version 1's content as version 3 and pushes it.
    let (status, rolled_back) = test.call_with_headers("POST", &format!("{WEB}/rollback"), &[("if-match", "\"2\"")], Some(&json!({ "version": 1 }))).await;
    assert_eq!(status, 200, "{rolled_back}");
    assert_eq!(rolled_back["version"], 3);
    assert_eq!(versions(&rolled_back), [3, 2, 1]);
    assert_eq!(rolled_back["versions"][0]["restored_from"], 1);
    assert_eq!(rolled_back["leaf"]["sha256_fingerprint"], created["leaf"]["sha256_fingerprint"]);
    let secret = east.secret("istio-system", "web").unwrap();
    assert_eq!(secret_entry(&secret, "tls.crt"), certificates.read("v1.example.test.crt"));
    assert_eq!(secret["metadata"]["annotations"]["meshcert.io/version"], "3");

    let (status, current) = test.call("POST", &format!("{WEB}/rollback"), Some(&json!({ "version": 3 }))).await;
    assert_eq!((status, current["error"]["code"].as_str()), (409, Some("version_is_current")), "{current}");
    let (status, typed) = test.call("POST", &format!("{WEB}/rollback"), Some(&json!({ "version": "1" }))).await;
    assert_eq!(status, 400, "{typed}");
    assert!(typed["error"]["message"].as_str().unwrap().ends_with("expected a whole number, 0 or more"), "{typed}");
    let (status, not_object) = test.call("PUT", WEB, Some(&json!([]))).await;
    assert_eq!(status, 400, "{not_object}");
    assert!(not_object["error"]["message"].as_str().unwrap().ends_with("expected a JSON object"), "{not_object}");
    let (status, missing) = test.call("POST", &format!("{WEB}/rollback"), Some(&json!({ "version": 9 }))).await;
    assert_eq!((status, missing["error"]["code"].as_str()), (404, Some("version_not_found")), "{missing}");
    assert!(missing["error"]["message"].as_str().unwrap().contains("2, 1"), "{missing}");

    // The details carry the ETag of the current version and never the key.
    let (status, headers, body) = send_full(test.server.addr(), "GET", WEB, &[("authorization".into(), format!("Bearer {API_TOKEN}"))], Vec::new()).await;
    assert_eq!(status, 200);
    assert_eq!(headers["etag"], "\"3\"");
    let text = String::from_utf8(body).unwrap();
    assert!(!text.contains("BEGIN PRIVATE KEY"), "{text}");
    for line in pem_body_lines(&certificates.read("v1.example.test.key")) {
        assert!(!text.contains(&line));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_only_the_newest_versions() {
    let certificates = hosts(3);
    let test = TestApp::start_with(&[("kept_versions", "2")]).await;
    let (status, body) = test.call("POST", "/api/v1/certificates", Some(&upload(&certificates, "web", "v1.example.test", "v1.example.test"))).await;
    assert_eq!(status, 201, "{body}");

    for host in ["v2.example.test", "v3.example.test"] {
        let (status, body) = test.call("PUT", WEB, Some(&rotation(&certificates, host))).await;
        assert_eq!(status, 200, "{body}");
    }

    let (_, details) = test.call("GET", WEB, None).await;
    assert_eq!(versions(&details), [3, 2]);
    let keys = stored_keys(&test);
    assert!(!keys.contains(&"cert/istio-system/web/v/1".to_string()), "{keys:?}");
    assert!(keys.contains(&"cert/istio-system/web/v/2".to_string()), "{keys:?}");
    let (status, body) = test.call("POST", &format!("{WEB}/rollback"), Some(&json!({ "version": 1 }))).await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_absent_fields_and_checks_the_request() {
    let certificates = hosts(2);
    let test = TestApp::start().await;
    let mut body = upload(&certificates, "web", "v1.example.test", "v1.example.test");
    body["clusters"] = json!("env=prod");
    let (status, created) = test.call("POST", "/api/v1/certificates", Some(&body)).await;
    assert_eq!(status, 201, "{created}");

    let (status, rotated) = test.call("PUT", WEB, Some(&rotation(&certificates, "v2.example.test"))).await;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(rotated["clusters"], "env=prod");

    let mut misspelled = rotation(&certificates, "v1.example.test");
    misspelled["cluster"] = json!("env=dev");
    let (status, rejected) = test.call("PUT", WEB, Some(&misspelled)).await;
    assert_eq!(status, 400, "{rejected}");
    assert_eq!(rejected["error"]["field"], "cluster");

    let mut trailing = serde_json::to_vec(&rotation(&certificates, "v1.example.test")).unwrap();
    trailing.extend_from_slice(b" {}");
    let (status, _, body) = send_full(test.server.addr(), "PUT", WEB, &[("authorization".into(), format!("Bearer {API_TOKEN}"))], trailing).await;
    let rejected: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, rejected["error"]["code"].as_str()), (400, Some("invalid_json")), "{rejected}");

    let mismatched = json!({
        "certificate": certificates.read("v1.example.test.crt"),
        "private_key": certificates.read("v2.example.test.key"),
    });
    let (status, rejected) = test.call("PUT", WEB, Some(&mismatched)).await;
    assert_eq!((status, rejected["error"]["code"].as_str()), (422, Some("key_mismatch")), "{rejected}");
    let (_, details) = test.call("GET", WEB, None).await;
    assert_eq!(details["version"], 2);

    let (status, missing) = test.call("PUT", "/api/v1/certificates/istio-system/nothing", Some(&rotation(&certificates, "v1.example.test"))).await;
    assert_eq!((status, missing["error"]["code"].as_str()), (404, Some("certificate_not_found")), "{missing}");

    let oversized = json!({ "certificate": "A".repeat(1024 * 1024 + 1), "private_key": "" });
    let (status, too_large) = test.call("PUT", WEB, Some(&oversized)).await;
    assert_eq!((status, too_large["error"]["code"].as_str()), (413, Some("body_too_large")), "{too_large}");

    let (status, headers, _) = send_full(test.server.addr(), "PATCH", WEB, &[("authorization".into(), format!("Bearer {API_TOKEN}"))], Vec::new()).await;
    assert_eq!(status, 405);
    assert_eq!(headers["allow"], "GET, PUT, DELETE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_waits_for_unreachable_cluster() {
    let certificates = hosts(1);
    let east = fake_cluster("east").await;
    let west = fake_cluster("west").await;
    let test = TestApp::start().await;
    test.register(&east).await;
    test.register(&west).await;
    let (status, body) = test.call("POST", "/api/v1/certificates", Some(&upload(&certificates, "web", "v1.example.test", "v1.example.test"))).await;
    assert_eq!(status, 201, "{body}");

    // West is down: east's Secret goes, the certificate stays in state deleting.
    west.set_down(true).await.unwrap();
    let (status, pending) = test.call("DELETE", WEB, None).await;
    assert_eq!(status, 202, "{pending}");
    assert_eq!(pending["state"], "deleting");
    assert_eq!(pending["sync"]["west"]["state"], "deleting");
    assert!(pending["sync"]["west"]["last_error"]["kind"].is_string(), "{pending}");
    assert!(pending["sync"].get("east").is_none(), "{pending}");
    assert!(east.secret("istio-system", "web").is_none());
    let (status, body) = test.call("PUT", WEB, Some(&rotation(&certificates, "v1.example.test"))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("certificate_deleting")), "{body}");
    let (status, body) = test.call("POST", "/api/v1/certificates", Some(&upload(&certificates, "web", "v1.example.test", "v1.example.test"))).await;
    assert_eq!(status, 409, "{body}");

    // The next sync, once west is back, finishes the job.
    west.set_down(false).await.unwrap();
    let (status, report) = test.signed_sync("{}").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["deleted"], json!(["istio-system/web"]));
    assert!(west.secret("istio-system", "web").is_none());
    let (status, _) = test.call("GET", WEB, None).await;
    assert_eq!(status, 404);
    // Alerts stay, resolved, for the alert history; nothing else of the certificate does.
    let leftovers: Vec<String> = stored_keys(&test).into_iter().filter(|key| key.contains("istio-system/web") && !key.starts_with("alert/")).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_keeps_foreign_secret() {
    let certificates = hosts(1);
    let east = fake_cluster("east").await;
    let test = TestApp::start().await;
    test.register(&east).await;
    let (status, body) = test.call("POST", "/api/v1/certificates", Some(&upload(&certificates, "web", "v1.example.test", "v1.example.test"))).await;
    assert_eq!(status, 201, "{body}");

    // Someone replaces the Secret with their own, without meshcert's label.
    east.remove_secret("istio-system", "web");
    east.put_secret("istio-system", support::foreign_tls_secret("istio-system", "web")).unwrap();

    let (status, body) = test.call("DELETE", WEB, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deleted"], true);
    let kept = east.secret("istio-system", "web").expect("the unmanaged Secret is kept");
    assert_eq!(secret_entry(&kept, "tls.crt"), "theirs");

    // An upload over it is a conflict in that cluster, and the Secret stays as it is.
    let (status, created) = test.call("POST", "/api/v1/certificates", Some(&upload(&certificates, "web", "v1.example.test", "v1.example.test"))).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["sync"]["east"]["state"], "conflict", "{created}");
    assert_eq!(created["sync"]["east"]["last_error"]["kind"], "unmanaged_secret", "{created}");
    let kept = east.secret("istio-system", "web").expect("the unmanaged Secret is kept");
    assert_eq!(secret_entry(&kept, "tls.crt"), "theirs");
    assert!(kept["metadata"]["labels"].get("app.kubernetes.io/managed-by").is_none(), "{kept}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_and_pages() {
    let certificates = Certificates::new();
    certificates.server("long.example.test", 365);
    certificates.server("short.example.test", 1);
    let test = TestApp::start().await;
    for name in ["a", "b", "c", "d"] {
        let (status, body) = test.call("POST", "/api/v1/certificates", Some(&upload(&certificates, name, "long.example.test", "long.example.test"))).await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = test.call("POST", "/api/v1/certificates", Some(&upload(&certificates, "e", "short.example.test", "short.example.test"))).await;
    assert_eq!(status, 201, "{body}");

    let mut names = Vec::new();
    let mut pages = 0;
    let mut path = "/api/v1/certificates?limit=2".to_string();
    loop {
        let (status, page) = test.call("GET", &path, None).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        let items = page["certificates"].as_array().unwrap();
        assert!(items.len() <= 2, "{page}");
        names.extend(items.iter().map(|item| item["name"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/certificates?limit=2&cursor={}", url::form_urlencoded::byte_serialize(cursor.as_bytes()).collect::<String>()),
            None => break,
        }
    }
    assert_eq!(names, ["a", "b", "c", "d", "e"]);
    assert_eq!(pages, 3);

    let (_, expiring) = test.call("GET", "/api/v1/certificates?status=expiring", None).await;
    let expiring: Vec<&str> = expiring["certificates"].as_array().unwrap().iter().map(|item| item["name"].as_str().unwrap()).collect();
    assert_eq!(expiring, ["e"]);
    let (_, other_namespace) = test.call("GET", "/api/v1/certificates?namespace=default", None).await;
    assert_eq!(other_namespace["certificates"], json!([]));
    let (status, body) = test.call("GET", "/api/v1/certificates?limit=0", None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_limit")), "{body}");
    let (status, body) = test.call("GET", "/api/v1/certificates?cursor=garbage", None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_cursor")), "{body}");
    let (status, body) = test.call("GET", "/api/v1/certificates?statuss=expiring", None).await;
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("statuss")), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_token_writes_rejected_and_audited() {
    let certificates = hosts(1);
    let test = TestApp::start_with(&[("api_read_token", "reader-token-for-tests")]).await;
    let body = upload(&certificates, "web", "v1.example.test", "v1.example.test");
    let (status, created) = test.call("POST", "/api/v1/certificates", Some(&body)).await;
    assert_eq!(status, 201, "{created}");

    let reader = Some("reader-token-for-tests");
    let (status, _) = test.call_with_token("GET", WEB, reader, None).await;
    assert_eq!(status, 200);
    for (method, path) in [("PUT", WEB.to_string()), ("DELETE", WEB.to_string()), ("POST", format!("{WEB}/rollback"))] {
        let (status, body) = test.call_with_token(method, &path, reader, Some(&json!({}))).await;
        assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")), "{method} {path}: {body}");
    }
    let mut bad = body.clone();
    bad["name"] = json!("other");
    bad["private_key"] = json!(certificates.read("v1.example.test.crt"));
    let (status, _) = test.call("POST", "/api/v1/certificates", Some(&bad)).await;
    assert_eq!(status, 422);
    let (status, _) = test.call_with_token("DELETE", WEB, None, None).await;
    assert_eq!(status, 401);

    // Newest first: the rejected upload, three refused writes, the create. The request without a
    // token is not stored, so that it cannot fill the store.
    let (status, audit) = test.call_with_token("GET", "/api/v1/audit", reader, None).await;
    assert_eq!(status, 200, "{audit}");
    let entries = audit["entries"].as_array().unwrap();
    let summary: Vec<(String, String, String, u64)> = entries
        .iter()
        .map(|entry| {
            (
                entry["actor"].as_str().unwrap().to_string(),
                entry["action"].as_str().unwrap().to_string(),
                entry["outcome"].as_str().unwrap().to_string(),
                entry["status"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected = [
        ("admin", "certificate.create", "rejected", 422),
        ("reader", "certificate.rollback", "rejected", 403),
        ("reader", "certificate.delete", "rejected", 403),
        ("reader", "certificate.replace", "rejected", 403),
        ("admin", "certificate.create", "succeeded", 201),
    ];
    let expected: Vec<(String, String, String, u64)> = expected.iter().map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), *d)).collect();
    assert_eq!(summary, expected);
    assert_eq!(entries[0]["code"], "certificate_in_private_key_field");
    assert_eq!(entries[4]["target"], "certificate istio-system/web");
    assert!(entries[4]["summary"].as_str().unwrap().contains("version 1"), "{audit}");

    // Filters and pages.
    let (_, rejected) = test.call("GET", "/api/v1/audit?outcome=succeeded", None).await;
    assert_eq!(rejected["entries"].as_array().unwrap().len(), 1);
    let (_, first) = test.call("GET", "/api/v1/audit?limit=4", None).await;
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let (_, second) = test.call("GET", &format!("/api/v1/audit?limit=4&cursor={cursor}"), None).await;
    assert_eq!(second["entries"].as_array().unwrap().len(), 1, "{second}");
    assert_eq!(second["next_cursor"], Value::Null);

    // No audit record contains key material.
    for (key, value) in test.stored_values().into_iter().filter(|(key, _)| key.starts_with("audit/")) {
        for line in pem_body_lines(&certificates.read("v1.example.test.key")) {
            assert!(!value.contains(&line), "{key} holds key material");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encryption_key_rotation_reseals_records() {
    let certificates = hosts(2);
    let east = fake_cluster("east").await;
    let test = TestApp::start().await;
    test.register(&east).await;
    let (status, body) = test.call("POST", "/api/v1/certificates", Some(&upload(&certificates, "web", "v1.example.test", "v1.example.test"))).await;
    assert_eq!(status, 201, "{body}");
    let old_key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let new_key = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    let key_id = |test: &TestApp, key: &str, field: &str| stored_record(test, key)[field]["key_id"].as_str().unwrap().to_string();
    let old_id = key_id(&test, "cert/istio-system/web/v/1", "private_key");

    // Without the previous key the stored key and token cannot be opened: the sync fails, and
    // /healthz reports why.
    let test = test.restart_with(&[("encryption_key", &new_key)]).await;
    let (status, body) = test.signed_sync("{}").await;
    assert_eq!(status, 500, "{body}");
    let (status, health) = test.call_with_token("GET", "/healthz", None, None).await;
    assert_eq!(status, 503, "{health}");
    assert!(health["problems"][0].as_str().unwrap().contains("encryption_key_previous"), "{health}");

    // With it, everything is readable, and the next write seals with the new key.
    let test = test.restart_with(&[("encryption_key", &new_key), ("encryption_key_previous", &old_key)]).await;
    let (status, report) = test.signed_sync("{}").await;
    assert_eq!((status, report["failed"].as_u64()), (200, Some(0)), "{report}");
    assert_eq!(report["targets"][0]["state"], "synced", "{report}");
    let (status, body) = test.call("PUT", WEB, Some(&rotation(&certificates, "v2.example.test"))).await;
    assert_eq!(status, 200, "{body}");
    let new_id = key_id(&test, "cert/istio-system/web/v/2", "private_key");
    assert_ne!(new_id, old_id);
    assert_eq!(key_id(&test, "cert/istio-system/web/v/1", "private_key"), new_id, "kept versions move to the new key");
    assert_eq!(key_id(&test, "cluster/east", "token"), old_id);

    // A reseal moves the rest, so the previous key can go.
    let (status, resealed) = test.call("POST", "/api/v1/encryption/reseal", None).await;
    assert_eq!(status, 200, "{resealed}");
    assert_eq!(resealed["resealed"], 1);
    assert_eq!(key_id(&test, "cluster/east", "token"), new_id);
    let test = test.restart_with(&[("encryption_key", &new_key)]).await;
    let (status, report) = test.signed_sync("{}").await;
    assert_eq!((status, report["failed"].as_u64()), (200, Some(0)), "{report}");
    assert_eq!(report["targets"][0]["state"], "synced", "{report}");
    assert_eq!(secret_entry(&east.secret("istio-system", "web").unwrap(), "tls.crt"), certificates.read("v2.example.test.crt"));
}

/// A rotation writes the new version before the head that points to it. Failing
/// each write of a rotation in turn must leave a certificate that is served complete (its head's
/// version exists and its key opens, as the resync shows) and a rotation that succeeds on retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_survives_each_failed_write() {
    let certificates = hosts(2);
    let east = fake_cluster("east").await;

    // Count the writes of one rotation.
    let writes = {
        let test = TestApp::start().await;
        test.register(&east).await;
        let (status, body) = test.call("POST", "/api/v1/certificates", Some(&upload(&certificates, "web", "v1.example.test", "v1.example.test"))).await;
        assert_eq!(status, 201, "{body}");
        let before = test.app.key_value_faults().write_count();
        let (status, body) = test.call("PUT", WEB, Some(&rotation(&certificates, "v2.example.test"))).await;
        assert_eq!(status, 200, "{body}");
        test.app.key_value_faults().write_count() - before
    };
    assert!(writes >= 3, "a rotation writes the version, the head, the sync state and the audit entry; counted {writes}");

    for failing in 1..=writes {
        let test = TestApp::start().await;
        test.register(&east).await;
        let (status, body) = test.call("POST", "/api/v1/certificates", Some(&upload(&certificates, "web", "v1.example.test", "v1.example.test"))).await;
        assert_eq!(status, 201, "{body}");

        test.app.key_value_faults().fail_nth_write(failing);
        let (status, body) = test.call("PUT", WEB, Some(&rotation(&certificates, "v2.example.test"))).await;
        let fault = test.app.key_value_faults().injected();
        assert_eq!(fault.len(), 1, "write {failing} of {writes} was not reached");
        assert!(status == 200 || status == 500, "write {failing} ({}): {status} {body}", fault[0].key);
        if status == 500 {
            assert_eq!(body["error"]["code"], "internal_error", "{body}");
        }

        // Whatever version the head names is complete: the resync pushes exactly its content.
        let (status, details) = test.call("GET", WEB, None).await;
        assert_eq!(status, 200, "after failing write {failing} ({}): {details}", fault[0].key);
        let served = if details["version"] == 1 { "v1.example.test" } else { "v2.example.test" };
        let (status, report) = test.signed_sync("{}").await;
        assert_eq!((status, report["failed"].as_u64()), (200, Some(0)), "after failing write {failing} ({}): {report}", fault[0].key);
        let secret = east.secret("istio-system", "web").unwrap();
        assert_eq!(secret_entry(&secret, "tls.crt"), certificates.read(&format!("{served}.crt")), "after failing write {failing}");
        assert_eq!(secret_entry(&secret, "tls.key"), certificates.read(&format!("{served}.key")), "after failing write {failing}");

        // Retrying the rotation succeeds and leaves version 2 in place.
        let (status, retried) = test.call("PUT", WEB, Some(&rotation(&certificates, "v2.example.test"))).await;
        assert_eq!(status, 200, "retry after failing write {failing}: {retried}");
        assert_eq!(retried["version"], 2, "{retried}");
        assert_eq!(secret_entry(&east.secret("istio-system", "web").unwrap(), "tls.crt"), certificates.read("v2.example.test.crt"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_each_keep_their_audit_entry() {
    let test = TestApp::start().await;
    let requests = (0..40).map(|index| {
        let body = json!({ "name": format!("bad-{index}"), "certificate": "not a certificate", "private_key": "not a key" });
        let test = &test;
        async move { test.call("POST", "/api/v1/certificates", Some(&body)).await }
    });
    for (status, body) in futures::future::join_all(requests).await {
        assert_eq!(status, 422, "{body}");
    }

    let listed = |body: &Value| body["entries"].as_array().expect("entries array").len();
    let (_, audit) = test.call("GET", "/api/v1/audit?limit=1000", None).await;
    assert_eq!(listed(&audit), 40, "{audit}");

    // A scan on a later day folds the day into one record and the entries stay listed.
    test.app.clock().advance(std::time::Duration::from_secs(86_400));
    test.app.run_cron("expiry-cron").await.expect("cron handler");
    let audit_keys: Vec<String> = stored_keys(&test).into_iter().filter(|key| key.starts_with("audit/")).collect();
    assert_eq!(audit_keys.len(), 1, "{audit_keys:?}");
    let (_, folded) = test.call("GET", "/api/v1/audit?limit=1000", None).await;
    assert_eq!(folded["entries"], audit["entries"]);

    // Past the 90 days of retention, the day goes.
    test.app.clock().advance(std::time::Duration::from_secs(91 * 86_400));
    test.app.run_cron("expiry-cron").await.expect("cron handler");
    let (_, expired) = test.call("GET", "/api/v1/audit", None).await;
    assert_eq!(listed(&expired), 0, "{expired}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misplaced_secrets_never_echoed() {
    let certificates = hosts(1);
    let test = TestApp::start_with(&[("api_read_token", "reader-token-for-tests")]).await;
    let key = certificates.read("v1.example.test.key");
    let one_line = key.replace('\n', "");
    let escaped = key.replace('\n', "\\n");
    let bodies = [
        json!({ "name": "web", "certificate": certificates.read("v1.example.test.crt"), "private_key": one_line }),
        json!({ "name": "web", "certificate": certificates.read("v1.example.test.crt"), "private_key": escaped }),
        json!({ "name": "web", "certificate": one_line, "private_key": key }),
        json!({ "name": &one_line[28..90], "certificate": certificates.read("v1.example.test.crt"), "private_key": key }),
    ];
    for body in &bodies {
        let (status, response) = test.call("POST", "/api/v1/certificates", Some(body)).await;
        assert_eq!(status, 422, "{response}");
        for line in pem_body_lines(&key) {
            assert!(!response.to_string().contains(line.get(..40).unwrap_or(&line)), "the response quotes the key: {response}");
        }
    }
    let (_, response) = test.call("POST", "/api/v1/certificates", Some(&bodies[0])).await;
    assert_eq!(response["error"]["code"], "malformed_pem");
    assert!(response["error"]["message"].as_str().unwrap().contains("line breaks"), "{response}");

    // A cluster token with a line break inside could never be sent in a header.
    let cluster = json!({ "id": "east", "api_server": "http://127.0.0.1:1", "token": "first-half\nsecond-half" });
    let (status, response) = test.call("POST", "/api/v1/clusters", Some(&cluster)).await;
    assert_eq!((status, response["error"]["code"].as_str()), (422, Some("invalid_token")), "{response}");
    assert!(!response.to_string().contains("half"), "{response}");

    // Nothing of the key reached the audit trail, which the read-only token can list.
    let (_, audit) = test.call_with_token("GET", "/api/v1/audit?limit=100", Some("reader-token-for-tests"), None).await;
    assert_eq!(audit["entries"].as_array().unwrap().len(), bodies.len() + 2, "{audit}");
    for line in pem_body_lines(&key) {
        assert!(!audit.to_string().contains(line.get(..40).unwrap_or(&line)), "the audit trail quotes the key: {audit}");
    }
}
