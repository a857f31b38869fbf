//! Tests of the operator console that the api serves at `/`: its files and security headers over
//! plain HTTP, and the console itself in headless Chromium. The browser test runs
//! tests/console/console.mjs (Playwright) against the release components and fake clusters on
//! loopback, and saves screenshots of the list and of the details in target/console/.
//!
//! Needs the components built (scripts/test.sh), Debian's `chromium` package and `npm ci` in
//! tests/console; `.ci/run` installs both.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use serde_json::json;
use support::{fake_cluster, send_full, TestApp, API_TOKEN};

const READ_TOKEN: &str = "read-token-for-console-tests";

/// The Chromium of Debian's `chromium` package. Playwright's own browser download cannot run
/// here, so the script starts this one.
const CHROMIUM: &str = "/usr/bin/chromium";

/// The maximum time the browser script may take; it takes about 10 s on 2 cores.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

/// Every file of the console, with the start of its content type.
const CONSOLE_FILES: [(&str, &str); 9] = [
    ("/", "text/html"),
    ("/console/app.css", "text/css"),
    ("/console/app.js", "text/javascript"),
    ("/console/api.js", "text/javascript"),
    ("/console/dom.js", "text/javascript"),
    ("/console/forms.js", "text/javascript"),
    ("/console/certificates.js", "text/javascript"),
    ("/console/operations.js", "text/javascript"),
    ("/console/icon.svg", "image/svg+xml"),
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn header<'a>(headers: &'a http::HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_files_have_security_headers() {
    let test = TestApp::start().await;
    let addr = test.server.addr();

    for (path, content_type) in CONSOLE_FILES {
        // No token: the page requests one, and only its API calls send it.
        let (status, headers, body) = send_full(addr, "GET", path, &[], Vec::new()).await;

        assert_eq!(status, 200, "GET {path}: {}", String::from_utf8_lossy(&body));
        assert!(header(&headers, "content-type").starts_with(content_type), "GET {path}: content-type {:?}", header(&headers, "content-type"));
        let policy = header(&headers, "content-security-policy");
        for directive in ["default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"] {
            assert!(policy.split(';').any(|part| part.trim() == directive), "GET {path}: the policy {policy:?} lacks {directive:?}");
        }
        assert!(!policy.contains("unsafe"), "GET {path}: the policy {policy:?} allows unsafe sources");
        assert_eq!(header(&headers, "x-content-type-options"), "nosniff", "GET {path}");
        assert_eq!(header(&headers, "referrer-policy"), "no-referrer", "GET {path}");
        assert!(!body.is_empty(), "GET {path}: empty body");
    }

    let (status, headers, _) = send_full(addr, "HEAD", "/", &[], Vec::new()).await;
    assert_eq!(status, 200, "HEAD /");
    assert!(!header(&headers, "content-security-policy").is_empty(), "HEAD / has no policy");
    let (status, headers, _) = send_full(addr, "POST", "/", &[], b"{}".to_vec()).await;
    assert_eq!(status, 405, "POST /");
    assert_eq!(header(&headers, "allow"), "GET");
    let (status, _, _) = send_full(addr, "GET", "/console/missing.js", &[], Vec::new()).await;
    assert_eq!(status, 404, "an unknown console file");

    // The API keeps its token check and gets nosniff too.
    let (status, headers, _) = send_full(addr, "GET", "/api/v1/certificates", &[], Vec::new()).await;
    assert_eq!(status, 401, "the API without a token");
    assert_eq!(header(&headers, "x-content-type-options"), "nosniff", "an API response");
    let authorization = vec![("authorization".to_string(), format!("Bearer {API_TOKEN}"))];
    let (status, headers, _) = send_full(addr, "GET", "/api/v1/certificates", &authorization, Vec::new()).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-content-type-options"), "nosniff", "an API response");
}

/// The policy forbids inline scripts and styles, and the scripts build the page from text
/// nodes: checked on the embedded sources, since a forbidden inline script fails silently.
#[test]
fn console_sources_insert_no_html() {
    let directory = workspace().join("components/api/src/console");
    let html = std::fs::read_to_string(directory.join("index.html")).expect("read index.html");
    for forbidden in ["<style", " style=", "onclick=", "onload=", "javascript:"] {
        assert!(!html.contains(forbidden), "index.html contains {forbidden:?}, which the policy blocks");
    }
    for script in html.match_indices("<script").map(|(at, _)| &html[at..at + html[at..].find('>').unwrap_or(0)]) {
        assert!(script.contains("src=\"/console/"), "an inline script in index.html: {script}");
    }

    let mut scripts = 0;
    for entry in std::fs::read_dir(&directory).expect("read the console directory") {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|extension| extension != "js") {
            continue;
        }
        scripts += 1;
        let source = std::fs::read_to_string(&path).unwrap();
        for forbidden in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "localStorage"] {
            assert!(!source.contains(forbidden), "{} uses {forbidden}", path.display());
        }
    }
    assert_eq!(scripts, 6, "every script is listed in CONSOLE_FILES and embedded by console.rs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_manages_certificates_in_browser() {
    let script_directory = workspace().join("tests/console");
    assert!(
        Path::new(CHROMIUM).exists() && script_directory.join("node_modules/playwright-core").exists(),
        "the console tests need {CHROMIUM} and playwright-core: install chromium and run npm ci in tests/console \
         (apt-get install -y --no-install-recommends chromium; cd tests/console && npm ci)"
    );
    let files = tempfile::tempdir().unwrap();
    let pki = TestPki::new();
    pki.write_files(files.path());

    // east has both namespaces, west lacks `payments`, so a certificate there fails in west
    // with an error to show. north is registered through the console.
    let east = fake_cluster("east").await;
    east.add_namespace("payments").unwrap();
    let west = fake_cluster("west").await;
    let north = fake_cluster("north").await;
    // A Gateway in east that will use the certificate web, which the console creates: one of its
    // hosts is not covered, and its pods run in istio-system, not in web's namespace.
    east.put_pod("istio-system", "ingress-1", &[("istio", "ingressgateway")]).unwrap();
    let server = json!({ "port": { "number": 443, "name": "https", "protocol": "HTTPS" }, "hosts": ["web.example.test", "shop.example.test"], "tls": { "mode": "SIMPLE", "credentialName": "web" } });
    let public = json!({ "apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": { "namespace": "payments", "name": "public" }, "spec": { "selector": { "istio": "ingressgateway" }, "servers": [server] } });
    east.put_gateway("payments", public).unwrap();
    let test = TestApp::start_with(&[("api_read_token", READ_TOKEN)]).await;
    test.register(&east).await;
    test.register_with_labels(&west, json!({ "env": "prod" })).await;

    // Certificates the console finds stored: one expiring, one expired, one to delete.
    let day = 86_400;
    for (name, from, to, allow_expired) in [("soon", -day, 10 * day, false), ("legacy-api", -90 * day, -5 * day, true), ("checkout", -day, 200 * day, false)] {
        let (chain, key) = pki.leaf(&format!("{name}.example.test"), from, to);
        let body = json!({ "name": name, "certificate": chain, "private_key": key, "allow_expired": allow_expired });
        let (status, response) = test.call("POST", "/api/v1/certificates", Some(&body)).await;
        assert_eq!(status, 201, "create {name}: {response}");
    }

    let screenshots = workspace().join("target/console");
    std::fs::create_dir_all(&screenshots).unwrap();
    // A failure.png left by an earlier failed run would mislead.
    let _ = std::fs::remove_file(screenshots.join("failure.png"));
    let run = tokio::process::Command::new("node")
        .arg(script_directory.join("console.mjs"))
        .current_dir(&script_directory)
        .env("MESHCERT_CONSOLE_URL", format!("http://{}", test.server.addr()))
        .env("MESHCERT_CONSOLE_TOKEN", API_TOKEN)
        .env("MESHCERT_CONSOLE_READ_TOKEN", READ_TOKEN)
        .env("MESHCERT_CONSOLE_FILES", files.path())
        .env("MESHCERT_CONSOLE_SCREENSHOTS", &screenshots)
        .env("MESHCERT_CONSOLE_NORTH_URL", north.url())
        .env("MESHCERT_CONSOLE_NORTH_TOKEN", north.token())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(SCRIPT_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| panic!("tests/console/console.mjs did not finish within {SCRIPT_TIMEOUT:?}"))
        .expect("run node (install Node.js 20 or newer)");
    let report = format!("{}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "tests/console/console.mjs failed ({}):\n{report}", output.status);

    // What the browser did, as the API and the clusters see it.
    let (status, web) = test.call("GET", "/api/v1/certificates/payments/web", None).await;
    assert_eq!(status, 200, "{web}");
    assert_eq!(web["version"], 3, "create, rotation and rollback make three versions: {web}");
    assert_eq!(web["versions"][0]["restored_from"], 1, "{web}");
    assert!(web["mtls"].as_bool().unwrap(), "{web}");
    assert!(east.secret("payments", "web").is_some(), "east has no Secret web");
    let (status, _) = test.call("GET", "/api/v1/certificates/payments/mixed", None).await;
    assert_eq!(status, 404, "the upload with a mismatched key stored something");
    let (status, _) = test.call("GET", "/api/v1/certificates/istio-system/checkout", None).await;
    assert_eq!(status, 404, "checkout was not deleted");
    assert!(east.secret("istio-system", "checkout").is_none(), "east still holds checkout");
    assert!(west.secret("istio-system", "checkout").is_none(), "west still holds checkout");
    let (_, clusters) = test.call("GET", "/api/v1/clusters", None).await;
    let ids: Vec<&str> = clusters["clusters"].as_array().unwrap().iter().map(|cluster| cluster["id"].as_str().unwrap()).collect();
    assert!(!ids.contains(&"north"), "north was registered and removed in the console: {ids:?}");
    assert!(north.requests().iter().any(|request| request.path.contains("/secrets")), "north was never synced while registered");
    let (_, audit) = test.call("GET", "/api/v1/audit?outcome=rejected", None).await;
    let rejected: Vec<&str> = audit["entries"].as_array().unwrap().iter().map(|entry| entry["code"].as_str().unwrap_or_default()).collect();
    assert!(rejected.contains(&"key_mismatch"), "{audit}");
    assert!(rejected.contains(&"forbidden"), "the read-only token's delete: {audit}");
    for screenshot in ["list.png", "details.png"] {
        let size = std::fs::metadata(screenshots.join(screenshot)).map(|metadata| metadata.len()).unwrap_or(0);
        assert!(size > 10_000, "target/console/{screenshot} is missing or empty");
    }
}

/// A root CA and an intermediate that issue the leaves of the browser test.
struct TestPki {
    root_pem: String,
    intermediate: CertifiedIssuer<'static, KeyPair>,
}

impl TestPki {
    fn new() -> TestPki {
        let now = time::OffsetDateTime::now_utc();
        let mut root = CertificateParams::new(Vec::<String>::new()).unwrap();
        root.distinguished_name.push(DnType::OrganizationName, "meshcert console tests");
        root.distinguished_name.push(DnType::CommonName, "console test root");
        root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        root.not_before = now - time::Duration::days(2);
        root.not_after = now + time::Duration::days(3650);
        let root = CertifiedIssuer::self_signed(root, KeyPair::generate().unwrap()).unwrap();

        let mut intermediate = CertificateParams::new(Vec::<String>::new()).unwrap();
        intermediate.distinguished_name.push(DnType::OrganizationName, "meshcert console tests");
        intermediate.distinguished_name.push(DnType::CommonName, "console test intermediate");
        intermediate.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        intermediate.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        intermediate.not_before = now - time::Duration::days(2);
        intermediate.not_after = now + time::Duration::days(1825);
        intermediate.use_authority_key_identifier_extension = true;
        let intermediate = CertifiedIssuer::signed_by(intermediate, KeyPair::generate().unwrap(), &root).unwrap();

        TestPki { root_pem: root.pem(), intermediate }
    }

    /// Issues a leaf for `host`, valid from `from` to `to` seconds from now, and returns the
    /// chain (leaf, intermediate) and the key as PEM.
    fn leaf(&self, host: &str, from: i64, to: i64) -> (String, String) {
        let now = time::OffsetDateTime::now_utc();
        let key = KeyPair::generate().unwrap();
        let mut leaf = CertificateParams::new(vec![host.to_string(), format!("www.{host}")]).unwrap();
        leaf.distinguished_name.push(DnType::CommonName, host);
        leaf.not_before = now + time::Duration::seconds(from);
        leaf.not_after = now + time::Duration::seconds(to);
        leaf.use_authority_key_identifier_extension = true;
        let pem = leaf.signed_by(&key, &self.intermediate).unwrap().pem();
        (format!("{pem}{}", self.intermediate.pem()), key.serialize_pem())
    }

    /// Writes what the browser uploads: `web` for the create, `web-rotated` for the rotation,
    /// `other.key` that matches neither, and the root as the mTLS CA.
    fn write_files(&self, directory: &Path) {
        let day = 86_400;
        for (name, days) in [("web", 365), ("web-rotated", 400)] {
            let (chain, key) = self.leaf("web.example.test", -day, days * day);
            std::fs::write(directory.join(format!("{name}.crt")), chain).unwrap();
            std::fs::write(directory.join(format!("{name}.key")), key).unwrap();
        }
        std::fs::write(directory.join("other.key"), KeyPair::generate().unwrap().serialize_pem()).unwrap();
        std::fs::write(directory.join("ca.crt"), &self.root_pem).unwrap();
    }
}
