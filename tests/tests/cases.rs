//! The certificate cases of `crates/meshcert-core/tests/cases/` through the HTTP API: each case
//! and each of its variants is uploaded with `POST /api/v1/certificates` to the release .wasm
//! components in meshcert-host, with the host clock set to the case's `generated_utc`. Build the
//! components first (scripts/test.sh). The core's own test of the cases checks more details.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use support::TestApp;

/// The cases' `expiry_warning_days`, which is also the app's default.
const WARNING_DAYS: i64 = 30;

/// Private key lines shorter than this are not searched for in responses, because a short final
/// base64 line could occur in unrelated text by chance.
const MIN_KEY_LINE_LENGTH: usize = 16;

/// Declares one test per case folder, and the list of folders that tests cover.
macro_rules! cases {
    ($($id:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $id() {
                run_case(stringify!($id)).await;
            }
        )*

        const COVERED_CASES: &[&str] = &[$(stringify!($id)),*];
    };
}

cases!(c01, c02, c03, c04, c06, c07, c08, c10, c11, c13, c15, c17, c18, c19, c21, c24, c25, c27);

#[test]
fn every_case_folder_has_a_test() {
    let folders: BTreeSet<String> = std::fs::read_dir(cases_dir())
        .expect("read the cases folder")
        .map(|entry| entry.expect("read a cases folder entry").path())
        .filter(|path| path.join("expected.json").is_file())
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let covered: BTreeSet<String> = COVERED_CASES.iter().map(|id| id.to_string()).collect();

    let untested: Vec<&String> = folders.difference(&covered).collect();
    let missing: Vec<&String> = covered.difference(&folders).collect();

    assert!(untested.is_empty(), "case folders without a test: {untested:?}; add them to cases!(...)");
    assert!(missing.is_empty(), "tests without a case folder: {missing:?}");
}

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/meshcert-core/tests/cases")
}

/// One upload of a case: the certificate name it is stored under and its request fields.
#[derive(Clone)]
struct Upload {
    /// The case id for the inputs, `<case id>-v<n>` for the n-th variant.
    name: String,
    /// What the files are, for failure messages: `inputs` or `variant key_pkcs1.pem`.
    label: String,
    certificate: Vec<u8>,
    private_key: Vec<u8>,
    ca_certificate: Option<Vec<u8>>,
}

impl Upload {
    /// Builds the request body. Files are sent as text the way a client that reads them into a
    /// string does, so a binary file arrives with U+FFFD in place of its invalid UTF-8.
    fn body(&self) -> Value {
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        json!({
            "name": self.name,
            "namespace": "istio-system",
            "certificate": text(&self.certificate),
            "private_key": text(&self.private_key),
            "ca_certificate": self.ca_certificate.as_deref().map(text),
            "mtls": self.ca_certificate.is_some(),
        })
    }
}

/// Uploads the case's inputs and each variant in place of the input it replaces, and checks
/// that every upload gives the case's outcome.
async fn run_case(id: &str) {
    let dir = cases_dir().join(id);
    let read = |file: &str| std::fs::read(dir.join(file)).unwrap_or_else(|error| panic!("{id}: read {file}: {error}"));
    let expected: Value = serde_json::from_slice(&read("expected.json")).unwrap_or_else(|error| panic!("{id}: parse expected.json: {error}"));
    let inputs = &expected["inputs"];
    let input = |role: &str| inputs[role].as_str().map(read);
    let base = Upload {
        name: id.to_string(),
        label: "inputs".into(),
        certificate: input("cert").unwrap_or_else(|| panic!("{id}: inputs has no cert")),
        private_key: input("key").unwrap_or_else(|| panic!("{id}: inputs has no key")),
        ca_certificate: input("ca"),
    };

    let mut uploads = Vec::new();
    for (index, variant) in expected["variants"].as_object().cloned().unwrap_or_default().keys().enumerate() {
        let mut upload = Upload { name: format!("{id}-v{}", index + 1), label: format!("variant {variant}"), ..base.clone() };
        if variant.starts_with("key") {
            upload.private_key = read(variant);
        } else if variant.starts_with("cert") {
            upload.certificate = read(variant);
        } else {
            panic!("{id}: variant {variant} replaces neither the key (key*) nor the certificate (cert*)");
        }
        uploads.push(upload);
    }
    uploads.insert(0, base);

    let test = TestApp::start().await;
    let generated = instant(&expected["generated_utc"]);
    for upload in &uploads {
        // Each upload runs at the case's instant, and the clock keeps ticking from there.
        test.app.clock().set(SystemTime::from(generated));
        check_upload(&test, &expected, upload).await;
    }
}

async fn check_upload(test: &TestApp, expected: &Value, upload: &Upload) {
    let context = format!("{} ({})", expected["case"].as_str().unwrap_or("?"), upload.label);
    let path = format!("/api/v1/certificates/istio-system/{}", upload.name);
    let before = whole_seconds(test.app.clock().now());

    let (status, created) = test.call("POST", "/api/v1/certificates", Some(&upload.body())).await;

    let key_lines = private_key_lines(&String::from_utf8_lossy(&upload.private_key));
    assert!(!key_lines.is_empty(), "{context}: the key file has no base64 line to look for");
    for line in &key_lines {
        assert!(!created.to_string().contains(line.as_str()), "{context}: the response quotes a key line: {created}");
    }

    if expected["accept"] == json!(false) {
        assert_eq!(status, 422, "{context}: {created}");
        assert_eq!(created["error"]["code"], expected["error_kind"], "{context}: {created}");
        let (status, body) = test.call("GET", &path, None).await;
        assert_eq!(status, 404, "{context}: a rejected upload was stored: {body}");
        return;
    }

    assert_eq!(status, 201, "{context}: {created}");
    let codes: Vec<&str> = created["warnings"].as_array().map(|warnings| warnings.iter().filter_map(|w| w["code"].as_str()).collect()).unwrap_or_default();
    for code in expected["details"]["warnings"].as_array().expect("details.warnings") {
        assert!(codes.contains(&code.as_str().unwrap()), "{context}: warning {code} is missing from {codes:?}");
    }

    let (status, details) = test.call("GET", &path, None).await;
    let after = test.app.clock().now();
    assert_eq!(status, 200, "{context}: {details}");
    for line in &key_lines {
        assert!(!details.to_string().contains(line.as_str()), "{context}: the details quote a key line");
    }
    check_details(expected, &details, &context, before, after.into());
}

/// Compares `GET /api/v1/certificates/{ns}/{name}` with the case's details.
fn check_details(expected: &Value, details: &Value, context: &str, before: DateTime<Utc>, after: DateTime<Utc>) {
    let expected_details = &expected["details"];

    // The leaf.
    let leaf = &expected_details["leaf"];
    let api_leaf = &details["leaf"];
    for field in ["subject", "issuer", "serial_hex", "key_algorithm", "key_size_bits"] {
        assert_eq!(api_leaf[field], leaf[field], "{context}: leaf {field}");
    }
    assert_eq!(api_leaf["sans"], leaf["sans"], "{context}: leaf SANs");
    for field in ["not_before", "not_after"] {
        assert_eq!(instant(&api_leaf[field]), instant(&leaf[field]), "{context}: leaf {field}");
    }
    assert_eq!(fingerprint_digits(&api_leaf["sha256_fingerprint"]), fingerprint_digits(&leaf["sha256_fingerprint"]), "{context}: leaf fingerprint");
    if leaf.get("ec_curve").is_some() {
        assert_eq!(api_leaf["ec_curve"], leaf["ec_curve"], "{context}: leaf curve");
    }

    // The chain after the leaf, each certificate once.
    let mut seen = BTreeSet::new();
    let unique_fingerprints: Vec<String> = expected_details["chain"]
        .as_array()
        .expect("details.chain")
        .iter()
        .map(|member| fingerprint_digits(&member["sha256_fingerprint"]))
        .filter(|fingerprint| seen.insert(fingerprint.clone()))
        .collect();
    let intermediates = details["intermediates"].as_array().unwrap_or_else(|| panic!("{context}: no intermediates in {details}"));
    let api_fingerprints: Vec<String> = std::iter::once(api_leaf).chain(intermediates).map(|member| fingerprint_digits(&member["sha256_fingerprint"])).collect();
    assert_eq!(api_fingerprints, unique_fingerprints, "{context}: chain members");

    // The key and the mTLS CA.
    assert_eq!(details["key"]["algorithm"], expected_details["key"]["algorithm"], "{context}: key algorithm");
    assert_eq!(details["key"]["size_bits"], expected_details["key"]["size_bits"], "{context}: key size");
    if let Some(ca) = expected_details["ca"].as_array().and_then(|cas| cas.first()) {
        assert_eq!(details["ca"]["subject"], ca["subject"], "{context}: CA subject");
        assert_eq!(fingerprint_digits(&details["ca"]["sha256_fingerprint"]), fingerprint_digits(&ca["sha256_fingerprint"]), "{context}: CA fingerprint");
        assert_eq!(details["mtls"], true, "{context}: mtls");
    }

    // Expiry: the status names the alert, and days_left counts whole days to the earliest
    // not_after of the chain and the CA at the moment of the request, which lies between
    // `before` and `after`.
    let status = match expected_details["expiry_alert"].as_str() {
        Some("none") => "valid",
        Some(kind) => kind,
        None => panic!("{context}: expiry_alert is not a string"),
    };
    assert_eq!(details["status"], status, "{context}: status");
    let earliest = expected_details["chain"]
        .as_array()
        .unwrap()
        .iter()
        .chain(expected_details["ca"].as_array().into_iter().flatten())
        .map(|member| instant(&member["not_after"]))
        .min()
        .unwrap();
    let days_at = |now: DateTime<Utc>| (earliest - now).num_seconds().div_euclid(86_400);
    let days_left = details["days_left"].as_i64().unwrap_or_else(|| panic!("{context}: no days_left in {details}"));
    assert!((days_at(after)..=days_at(before)).contains(&days_left), "{context}: days_left {days_left}, expected {} to {}", days_at(after), days_at(before));
    if status == "expiring" {
        assert!(days_left < WARNING_DAYS, "{context}: days_left {days_left} of an expiring certificate");
    }
}

fn private_key_lines(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut inside_key = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with("-----BEGIN") {
            inside_key = line.contains("PRIVATE KEY");
        } else if line.starts_with("-----END") {
            inside_key = false;
        } else if inside_key && line.len() >= MIN_KEY_LINE_LENGTH && !line.contains(':') {
            lines.push(line.to_string());
        }
    }
    lines
}

/// Reduces a fingerprint to its uppercase hex digits, so `AB:CD` and `abcd` compare equal.
fn fingerprint_digits(value: &Value) -> String {
    let fingerprint = value.as_str().unwrap_or_else(|| panic!("{value} is not a fingerprint"));
    fingerprint.chars().filter(|character| *character != ':').collect::<String>().to_uppercase()
}

fn instant(value: &Value) -> DateTime<Utc> {
    let text = value.as_str().unwrap_or_else(|| panic!("{value} is not a time"));
    DateTime::parse_from_rfc3339(text).unwrap_or_else(|error| panic!("{text:?} is not an RFC 3339 time: {error}")).with_timezone(&Utc)
}

/// Cuts a time to whole seconds, so that a lower bound still holds if a component reads the
/// clock in whole seconds.
fn whole_seconds(time: SystemTime) -> DateTime<Utc> {
    let time = DateTime::<Utc>::from(time);
    DateTime::from_timestamp(time.timestamp(), 0).expect("a time in range")
}
