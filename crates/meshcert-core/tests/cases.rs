//! The certificate cases under `tests/cases/`: certificate and key files that broke tools in the
//! field, each with the outcome meshcert must give in its `expected.json` (the folder's README.md
//! explains the format). Each case is validated at the instant it was generated, `generated_utc`,
//! so its dates never go stale. A case folder is a copy of the shared case set and is never
//! edited here: where meshcert disagrees with a case, meshcert changes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use meshcert_core::alerts;
use meshcert_core::certificate::CertificateSummary;
use meshcert_core::expiry;
use meshcert_core::kube::TlsSecret;
use meshcert_core::validate::{validate_upload, UploadError, UploadInput, ValidatedUpload};
use serde_json::Value;

/// The `expiry_warning_days` the cases assume: `expiring` means fewer than 30 days left.
const WARNING_DAYS: u32 = 30;

/// Private key lines shorter than this are not searched for in error messages, because a short
/// final base64 line could occur in unrelated text by chance.
const MIN_KEY_LINE_LENGTH: usize = 16;

/// Declares one test per case folder, and the list of folders that tests cover.
macro_rules! cases {
    ($($id:ident),* $(,)?) => {
        $(
            #[test]
            fn $id() {
                run_case(stringify!($id));
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
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases")
}

/// One case folder and its `expected.json`.
struct Case {
    id: String,
    dir: PathBuf,
    expected: Value,
    /// `generated_utc`: the instant at which the case's outcome applies.
    now: DateTime<Utc>,
}

impl Case {
    fn load(id: &str) -> Case {
        let dir = cases_dir().join(id);
        let text = std::fs::read_to_string(dir.join("expected.json")).unwrap_or_else(|error| panic!("{id}: read expected.json: {error}"));
        let expected: Value = serde_json::from_str(&text).unwrap_or_else(|error| panic!("{id}: parse expected.json: {error}"));
        assert_eq!(expected["case"], id, "{id}: expected.json names another case");
        let now = instant(&expected["generated_utc"]);
        Case { id: id.into(), dir, expected, now }
    }

    fn read(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.dir.join(file)).unwrap_or_else(|error| panic!("{}: read {file}: {error}", self.id))
    }

    fn details(&self) -> &Value {
        &self.expected["details"]
    }
}

/// The files of one upload: the case's inputs, or those with one variant swapped in.
#[derive(Clone)]
struct Files {
    /// What the files are, for failure messages: `inputs` or `variant key_pkcs1.pem`.
    label: String,
    certificate: Vec<u8>,
    private_key: Vec<u8>,
    ca_certificate: Option<Vec<u8>>,
}

impl Files {
    fn validate(&self, now: DateTime<Utc>) -> Result<ValidatedUpload, UploadError> {
        let input = UploadInput {
            certificate: &self.certificate,
            private_key: &self.private_key,
            ca_certificate: self.ca_certificate.as_deref(),
            mtls: self.mtls(),
            allow_expired: false,
        };
        validate_upload(&input, now, WARNING_DAYS)
    }

    /// Returns whether the upload is mTLS, which a case with a CA file is.
    fn mtls(&self) -> bool {
        self.ca_certificate.is_some()
    }
}

/// Validates the case's inputs, then each variant in place of the input it replaces, and checks
/// that every one gives the case's outcome.
fn run_case(id: &str) {
    let case = Case::load(id);
    let inputs = &case.expected["inputs"];
    let file = |role: &str| inputs[role].as_str().map(|name| case.read(name));
    let base = Files {
        label: "inputs".into(),
        certificate: file("cert").unwrap_or_else(|| panic!("{id}: inputs has no cert")),
        private_key: file("key").unwrap_or_else(|| panic!("{id}: inputs has no key")),
        ca_certificate: file("ca"),
    };
    check_outcome(&case, &base);

    let variants = case.expected["variants"].as_object().cloned().unwrap_or_default();
    for variant in variants.keys() {
        let mut files = base.clone();
        files.label = format!("variant {variant}");
        if variant.starts_with("key") {
            files.private_key = case.read(variant);
        } else if variant.starts_with("cert") {
            files.certificate = case.read(variant);
        } else {
            panic!("{id}: variant {variant} replaces neither the key (key*) nor the certificate (cert*)");
        }
        check_outcome(&case, &files);
    }
}

fn check_outcome(case: &Case, files: &Files) {
    let context = format!("{} ({})", case.id, files.label);
    let accept = case.expected["accept"].as_bool().unwrap_or_else(|| panic!("{context}: accept is not a boolean"));

    match (accept, files.validate(case.now)) {
        (true, Ok(validated)) => check_accepted(case, files, &validated, &context),
        (true, Err(error)) => panic!("{context}: expected acceptance, got {}: {error}", error.code()),
        (false, Ok(_)) => panic!("{context}: expected {}, but the upload was accepted", case.expected["error_kind"]),
        (false, Err(error)) => check_rejected(case, files, &error, &context),
    }
}

fn check_accepted(case: &Case, files: &Files, validated: &ValidatedUpload, context: &str) {
    let details = case.details();
    let summary = &validated.summary;

    // The leaf.
    let leaf = &details["leaf"];
    assert_eq!(summary.leaf.subject, text(&leaf["subject"]), "{context}: leaf subject");
    assert_eq!(summary.leaf.issuer, text(&leaf["issuer"]), "{context}: leaf issuer");
    let sans: Vec<String> = leaf["sans"].as_array().expect("leaf.sans").iter().map(|san| text(san).to_string()).collect();
    assert_eq!(summary.leaf.sans, sans, "{context}: leaf SANs");
    assert_eq!(summary.leaf.not_before, instant(&leaf["not_before"]), "{context}: leaf not_before");
    assert_eq!(summary.leaf.not_after, instant(&leaf["not_after"]), "{context}: leaf not_after");
    assert_eq!(summary.leaf.serial_hex, text(&leaf["serial_hex"]), "{context}: leaf serial");
    assert_eq!(
        fingerprint_digits(&summary.leaf.sha256_fingerprint),
        fingerprint_digits(text(&leaf["sha256_fingerprint"])),
        "{context}: leaf SHA-256 fingerprint"
    );
    assert_eq!(summary.leaf.key_algorithm, text(&leaf["key_algorithm"]), "{context}: leaf key algorithm");
    assert_eq!(u64::from(summary.leaf.key_size_bits), number(&leaf["key_size_bits"]), "{context}: leaf key size");
    if let Some(curve) = leaf["ec_curve"].as_str() {
        assert_eq!(summary.leaf.ec_curve.as_deref(), Some(curve), "{context}: leaf curve");
    }
    assert_eq!(summary.leaf.is_ca, leaf["is_ca"].as_bool().expect("leaf.is_ca"), "{context}: leaf CA flag");

    // The chain, each certificate once: a repeated certificate is dropped, so the summary is
    // compared with the input's chain without its repeats.
    let mut seen = BTreeSet::new();
    let unique_chain: Vec<&Value> = details["chain"]
        .as_array()
        .expect("details.chain")
        .iter()
        .filter(|member| seen.insert(fingerprint_digits(text(&member["sha256_fingerprint"]))))
        .collect();
    let members: Vec<&CertificateSummary> = std::iter::once(&summary.leaf).chain(&summary.intermediates).collect();
    assert_eq!(members.len(), unique_chain.len(), "{context}: number of chain members");
    for (index, (member, expected)) in members.iter().zip(&unique_chain).enumerate() {
        let member_context = format!("{context}: chain member {}", index + 1);
        assert!(has_common_name(&member.subject, text(&expected["subject_cn"])), "{member_context}: subject {}", member.subject);
        assert!(has_common_name(&member.issuer, text(&expected["issuer_cn"])), "{member_context}: issuer {}", member.issuer);
        assert_eq!(member.not_before, instant(&expected["not_before"]), "{member_context}: not_before");
        assert_eq!(member.not_after, instant(&expected["not_after"]), "{member_context}: not_after");
        assert_eq!(member.serial_hex, text(&expected["serial_hex"]), "{member_context}: serial");
        assert_eq!(
            fingerprint_digits(&member.sha256_fingerprint),
            fingerprint_digits(text(&expected["sha256_fingerprint"])),
            "{member_context}: fingerprint"
        );
        assert_eq!(member.is_ca, expected["is_ca"].as_bool().expect("chain is_ca"), "{member_context}: CA flag");
    }

    // The key: its algorithm and size, and the PEM label of the file that was uploaded.
    let key = &details["key"];
    assert_eq!(summary.key.algorithm, text(&key["algorithm"]), "{context}: key algorithm");
    assert_eq!(u64::from(summary.key.size_bits), number(&key["size_bits"]), "{context}: key size");
    assert_eq!(summary.key.ec_curve.as_deref(), key["ec_curve"].as_str(), "{context}: key curve");
    assert_eq!(Some(summary.key.pem_label.as_str()), pem_label(&files.private_key).as_deref(), "{context}: key PEM label");
    if files.label == "inputs" {
        assert_eq!(summary.key.pem_label, text(&key["pem_label"]), "{context}: key PEM label");
    }

    // The mTLS CA.
    match details["ca"].as_array().and_then(|cas| cas.first()) {
        Some(expected) => {
            let ca = summary.ca.as_ref().unwrap_or_else(|| panic!("{context}: the summary has no CA"));
            assert_eq!(ca.subject, text(&expected["subject"]), "{context}: CA subject");
            assert_eq!(ca.issuer, text(&expected["issuer"]), "{context}: CA issuer");
            assert_eq!(ca.not_before, instant(&expected["not_before"]), "{context}: CA not_before");
            assert_eq!(ca.not_after, instant(&expected["not_after"]), "{context}: CA not_after");
            assert_eq!(ca.serial_hex, text(&expected["serial_hex"]), "{context}: CA serial");
            assert_eq!(
                fingerprint_digits(&ca.sha256_fingerprint),
                fingerprint_digits(text(&expected["sha256_fingerprint"])),
                "{context}: CA fingerprint"
            );
            assert_eq!(ca.key_algorithm, text(&expected["key_algorithm"]), "{context}: CA key algorithm");
            assert_eq!(u64::from(ca.key_size_bits), number(&expected["key_size_bits"]), "{context}: CA key size");
            assert_eq!(ca.ec_curve.as_deref(), expected["ec_curve"].as_str(), "{context}: CA curve");
            assert!(ca.is_ca, "{context}: CA flag");
        }
        None => assert_eq!(summary.ca, None, "{context}: the case has no CA"),
    }

    // Expiry: the alert the upload raises at once, and the whole days left of the leaf.
    let alert = alerts::evaluate(summary, case.now, WARNING_DAYS).map(|(kind, _)| kind.as_str()).unwrap_or("none");
    assert_eq!(alert, text(&details["expiry_alert"]), "{context}: expiry alert");
    let leaf_not_after = instant(&leaf["not_after"]);
    let days_remaining = (leaf_not_after - case.now).num_seconds().div_euclid(86_400);
    assert_eq!(expiry::days_left(summary.leaf.not_after, case.now), days_remaining, "{context}: days remaining");
    // c19's leaf has exactly one day left at generated_utc, and whole days only a second later.
    if let Some(days) = details["days_remaining_right_after_generation"].as_i64() {
        let right_after = case.now + Duration::seconds(1);
        assert_eq!(expiry::days_left(summary.leaf.not_after, right_after), days, "{context}: days remaining a second later");
    }

    // Warnings the case requires. Others, such as certificate_expiring, may come with them.
    let codes: Vec<&str> = validated.warnings.iter().map(|warning| warning.code.as_str()).collect();
    for code in details["warnings"].as_array().expect("details.warnings") {
        assert!(codes.contains(&text(code)), "{context}: warning {code} is missing from {codes:?}");
    }

    check_secret(case, files, validated, context);
}

/// Checks the Secret built from the upload against `details.secret`, and that what is pushed is
/// canonical PEM: LF line endings, no indentation.
fn check_secret(case: &Case, files: &Files, validated: &ValidatedUpload, context: &str) {
    let secret = TlsSecret {
        namespace: "istio-system",
        name: &case.id,
        chain_pem: &validated.chain_pem,
        private_key_pem: &validated.private_key_pem,
        ca_pem: validated.ca_pem.as_deref().filter(|_| files.mtls()),
        version: 1,
    };
    let manifest = secret.manifest();
    let entry = |key: &str| -> String {
        let encoded = manifest["data"][key].as_str().unwrap_or_else(|| panic!("{context}: the Secret has no {key}"));
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).unwrap()).unwrap()
    };

    for key in ["tls.crt", "tls.key"] {
        let value = entry(key);
        assert!(!value.contains('\r'), "{context}: {key} has a CR");
        assert!(value.lines().all(|line| !line.starts_with(char::is_whitespace)), "{context}: {key} is indented");
    }

    let Some(expected) = case.details().get("secret") else {
        return;
    };
    assert_eq!(manifest["type"], expected["type"], "{context}: Secret type");
    let keys: BTreeSet<&str> = manifest["data"].as_object().expect("Secret data").keys().map(String::as_str).collect();
    let expected_keys: BTreeSet<&str> = expected["keys"].as_array().expect("secret.keys").iter().map(text).collect();
    assert_eq!(keys, expected_keys, "{context}: Secret data keys");
    assert_eq!(certificate_count(&entry("tls.crt")), number(&expected["tls_crt_cert_count"]), "{context}: certificates in tls.crt");
    if let Some(count) = expected["ca_crt_cert_count"].as_u64() {
        assert_eq!(certificate_count(&entry("ca.crt")), count, "{context}: certificates in ca.crt");
    }
}

fn check_rejected(case: &Case, files: &Files, error: &UploadError, context: &str) {
    let message = error.to_string();
    assert_eq!(Some(error.code()), case.expected["error_kind"].as_str(), "{context}: error code; message: {message}");

    // The facts each case's notes ask the message to name.
    let details = case.details();
    let leaf = &details["leaf"];
    let names = |fact: &str| assert!(message.contains(fact), "{context}: the message does not name {fact:?}: {message}");
    match case.id.as_str() {
        "c02" => names(text(&leaf["subject"])),
        "c03" => {
            // The key matches a later certificate, which is the leaf and must come first.
            let key_index = number(&details["key"]["matches_cert_at_index"]);
            names("certificate 1");
            names("certificate 2");
            names(&format!("the private key matches certificate {}", key_index + 1));
            names("must come first");
        }
        "c04" => names("encrypted"),
        "c07" => {
            names(&format!("{}-bit", number(&details["key"]["size_bits"])));
            names("RSA");
        }
        "c13" => names(text(&leaf["serial_hex"])),
        "c17" => {
            names(text(&leaf["not_before"]));
            assert!(!message.contains("expired"), "{context}: a certificate that is not yet valid is called expired: {message}");
        }
        "c18" => names(text(&leaf["not_after"])),
        // The notes name block 2, the one cut short.
        "c24" => names("block 2"),
        "c25" => {
            names("DER");
            names("openssl x509 -inform der");
        }
        other => panic!("{other}: a rejected case without message checks; add the facts its notes ask for"),
    }

    // No line of the private key may appear in the message or the Debug output.
    let debug = format!("{error:?}");
    let key_lines = private_key_lines(&String::from_utf8_lossy(&files.private_key));
    assert!(!key_lines.is_empty(), "{context}: the key file has no base64 line to look for");
    for line in &key_lines {
        assert!(!message.contains(line.as_str()), "{context}: the message quotes a key line: {message}");
        assert!(!debug.contains(line.as_str()), "{context}: the Debug output quotes a key line");
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

/// Returns the label of the first PEM block of a file, such as `RSA PRIVATE KEY`.
fn pem_label(file: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(file);
    let line = text.lines().map(str::trim).find(|line| line.starts_with("-----BEGIN "))?;
    Some(line.strip_prefix("-----BEGIN ")?.strip_suffix("-----")?.to_string())
}

fn certificate_count(pem: &str) -> u64 {
    pem.matches("-----BEGIN CERTIFICATE-----").count() as u64
}

/// Returns whether a distinguished name such as `CN=example.test,O=Example Test Org` has the
/// common name `common_name`.
fn has_common_name(name: &str, common_name: &str) -> bool {
    name.split(',').any(|attribute| attribute == format!("CN={common_name}"))
}

/// Reduces a fingerprint to its uppercase hex digits, so `AB:CD` and `abcd` compare equal.
fn fingerprint_digits(fingerprint: &str) -> String {
    fingerprint.chars().filter(|character| *character != ':').collect::<String>().to_uppercase()
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_else(|| panic!("expected a string in expected.json, found {value}"))
}

fn number(value: &Value) -> u64 {
    value.as_u64().unwrap_or_else(|| panic!("expected a whole number in expected.json, found {value}"))
}

fn instant(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text(value))
        .unwrap_or_else(|error| panic!("{value} is not an RFC 3339 time: {error}"))
        .with_timezone(&Utc)
}
