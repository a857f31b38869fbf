//! Crash safety of `POST /api/v1/certificates`: each key-value write of a create is made to fail
//! in turn, and the api must leave either no certificate or a complete one that a retry and the
//! next sync or scan finish. Build the components first (scripts/test.sh).

mod support;

use serde_json::{json, Value};
use support::{fake_cluster, secret_entry, upload, Certificates, TestApp};

/// One kind of upload: a certificate for `host`, valid for `days`, stored as `name`.
struct Case {
    name: &'static str,
    host: &'static str,
    days: u32,
}

/// A certificate valid for a year: the api stores a version and a head.
const VALID: Case = Case { name: "shop", host: "shop.example.test", days: 365 };

/// A certificate valid for a day, inside the 30-day warning window: the api also stores an alert.
const EXPIRING: Case = Case { name: "short", host: "short.example.test", days: 1 };

const NAMESPACE: &str = "istio-system";

impl Case {
    fn create_body(&self, certificates: &Certificates) -> Value {
        upload(certificates, self.name, self.host, self.host)
    }

    fn path(&self) -> String {
        format!("/api/v1/certificates/{NAMESPACE}/{}", self.name)
    }

    fn head_key(&self) -> String {
        format!("cert/{NAMESPACE}/{}", self.name)
    }

    fn version_key(&self) -> String {
        format!("cert/{NAMESPACE}/{}/v/1", self.name)
    }
}

/// Lists the keys in the store.
fn stored_keys(test: &TestApp) -> Vec<String> {
    test.stored_values().into_iter().map(|(key, _)| key).collect()
}

/// Creates the certificate of `case` in a new app without faults. Returns the number of writes
/// the create made and its 201 response body.
async fn count_create_writes(certificates: &Certificates, case: &Case) -> (u64, Value) {
    let test = TestApp::start().await;
    let faults = test.app.key_value_faults();
    let before = faults.write_count();

    let (status, body) = test.call("POST", "/api/v1/certificates", Some(&case.create_body(certificates))).await;

    assert_eq!(status, 201, "{body}");
    let writes = faults.write_count() - before;
    let keys = stored_keys(&test);
    assert!(faults.injected().is_empty(), "no fault was requested: {:?}", faults.injected());
    assert!(keys.contains(&case.head_key()), "the create stored no head: {keys:?}");
    assert!(keys.contains(&case.version_key()), "the create stored no version 1: {keys:?}");
    assert!(writes >= keys.len() as u64, "{writes} writes cannot have stored {} keys: {keys:?}", keys.len());
    (writes, body)
}

/// Checks that the served details are those of the reference create.
fn assert_same_certificate(details: &Value, reference: &Value, when: &str) {
    for field in ["namespace", "name", "version", "state", "content_fingerprint"] {
        assert_eq!(details[field], reference[field], "{when}: field {field:?} differs from a create without faults");
    }
    assert_eq!(
        details["leaf"]["sha256_fingerprint"], reference["leaf"]["sha256_fingerprint"],
        "{when}: the leaf differs from a create without faults"
    );
}

/// Fails write `n` of a create of `case` in a new app, then checks what the api serves, that
/// a retry succeeds, and that the certificate reaches a cluster and the alerts. Returns the key
/// of the failed write.
async fn check_failed_write(certificates: &Certificates, case: &Case, n: u64, reference: &Value) -> String {
    let test = TestApp::start().await;
    let faults = test.app.key_value_faults();
    let create = case.create_body(certificates);

    // The create with write n failing.
    faults.fail_nth_write(n);
    let (status, body) = test.call("POST", "/api/v1/certificates", Some(&create)).await;
    let injected = faults.injected();
    assert_eq!(injected.len(), 1, "write {n}: the create made fewer than {n} writes, so the fault was not used");
    let failed = &injected[0];
    let when = format!("after write {n} ({:?} {:?} by {}) failed", failed.operation, failed.key, failed.component);
    // Without clusters, the api writes the certificate and sync-webhook only its replay guard.
    // The list of cluster ids is stored by its first reader, which is the sync unless its write
    // failed, and then the api's read of the details.
    let expected_components: &[&str] = match failed.key.as_str() {
        "clusters/ids" => &["sync-webhook", "api"],
        key if key.starts_with("hooks/") => &["sync-webhook"],
        _ => &["api"],
    };
    assert!(expected_components.contains(&failed.component.as_str()), "{when}: unexpected writer during a create without clusters");
    if ["audit/", "alert/", "hooks/", "index/", "clusters/"].iter().any(|prefix| failed.key.starts_with(prefix)) {
        // These come after the version and its head are stored. The scan redoes the alert and
        // the expiry index (it rebuilds the index), the next sync redoes the sync call, and the
        // audit entry is written once the response is decided.
        // A failure of any of them is logged only.
        assert_eq!(status, 201, "{when}: a failure after the certificate was stored changed the response: {body}");
    } else {
        assert!((500..600).contains(&status), "{when}: the create returned {status}, expected a 5xx error: {body}");
        assert!(body["error"]["code"].is_string(), "{when}: the 5xx response is not a JSON error: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("injected fault"), "{when}: the error does not report the failed write: {body}");
    }

    // What is served: nothing, or the complete certificate.
    let (status, details) = test.call("GET", &case.path(), None).await;
    let keys = stored_keys(&test);
    let head_stored = keys.contains(&case.head_key());
    match status {
        404 => assert!(!head_stored, "{when}: the head is stored but GET returned 404"),
        200 => {
            assert!(head_stored, "{when}: GET returned 200 without a stored head");
            assert_same_certificate(&details, reference, &when);
        }
        _ => panic!("{when}: GET returned {status}, expected 404 or 200: {details}"),
    }
    if head_stored {
        assert!(keys.contains(&case.version_key()), "{when}: the head is stored without version 1: {keys:?}");
    }

    // A retry of the same create finishes it, or finds it finished.
    let (status, body) = test.call("POST", "/api/v1/certificates", Some(&create)).await;
    let expected = if head_stored { 409 } else { 201 };
    assert_eq!(status, expected, "{when}: the retry returned {status}: {body}");
    let (status, details) = test.call("GET", &case.path(), None).await;
    assert_eq!(status, 200, "{when}: GET after the retry returned {status}: {details}");
    assert_same_certificate(&details, reference, &format!("{when}, after the retry"));

    // The certificate is whole: registering a cluster syncs it from the stored version.
    let cluster = fake_cluster("east").await;
    test.register(&cluster).await;
    let secret = cluster
        .secret(NAMESPACE, case.name)
        .unwrap_or_else(|| panic!("{when}: the cluster registered after the retry has no Secret {}", case.name));
    assert_eq!(secret_entry(&secret, "tls.crt"), certificates.read(&format!("{}.crt", case.host)), "{when}: tls.crt");
    assert_eq!(secret_entry(&secret, "tls.key"), certificates.read(&format!("{}.key", case.host)), "{when}: tls.key");

    // An expiring certificate is alerted at the latest by the next scan.
    if case.days <= 30 {
        test.app.run_cron("expiry-cron").await.expect("the expiry scan failed");
        let (status, alerts) = test.call("GET", &format!("/api/v1/alerts?namespace={NAMESPACE}"), None).await;
        assert_eq!(status, 200, "{alerts}");
        let names: Vec<&Value> = alerts["alerts"].as_array().expect("alerts array").iter().map(|alert| &alert["name"]).collect();
        assert_eq!(names, [&json!(case.name)], "{when}: alerts after the scan: {alerts}");
    }

    failed.key.clone()
}

/// Counts the writes of a create, then fails each one in turn and checks what remains.
async fn check_every_write(case: &Case) -> Vec<String> {
    let certificates = Certificates::new();
    certificates.server(case.host, case.days);
    let (writes, reference) = count_create_writes(&certificates, case).await;
    eprintln!("a create of {:?}, valid for {} day(s), makes {writes} key-value writes", case.name, case.days);

    let mut failed_keys = Vec::new();
    for n in 1..=writes {
        failed_keys.push(check_failed_write(&certificates, case, n, &reference).await);
    }
    failed_keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_counts_its_writes() {
    let certificates = Certificates::new();
    certificates.server(VALID.host, VALID.days);

    // count_create_writes checks the count against the stored keys.
    let (writes, _) = count_create_writes(&certificates, &VALID).await;

    eprintln!("a create of {:?} makes {writes} key-value writes", VALID.name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_survives_each_failed_write() {
    let failed_keys = check_every_write(&VALID).await;

    let version = failed_keys.iter().position(|key| *key == VALID.version_key());
    let head = failed_keys.iter().position(|key| *key == VALID.head_key());
    assert!(version.is_some(), "no write of a create stores version 1: {failed_keys:?}");
    assert!(head.is_some(), "no write of a create stores the head: {failed_keys:?}");
    assert!(version < head, "the head is written before its version: {failed_keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiring_create_survives_each_failed_write() {
    let failed_keys = check_every_write(&EXPIRING).await;

    let alert_key = format!("alert/{NAMESPACE}/{}", EXPIRING.name);
    assert!(failed_keys.contains(&alert_key), "an expiring create writes no alert: {failed_keys:?}");
}
