//! HTTPS to clusters with a private CA: the app under meshcert-host with a runtime config whose
//! `[[client_tls]]` entry trusts the fake cluster's CA, and presents a client certificate where
//! the cluster requires one. Build the components first (scripts/test.sh).

mod support;

use std::path::{Path, PathBuf};

use meshcert_fake_kube::{ClientCa, FakeCluster};
use serde_json::Value;
use support::{fake_cluster_with, upload, Certificates, TestApp};

/// Lets sync-webhook reach HTTPS clusters on any loopback port.
const LOOPBACK_HTTPS: [(&str, &str); 1] = [("extra_cluster_hosts", "https://127.0.0.1:*")];

/// Writes `runtime-config.toml` and the files it names into `dir`. `entry` contains the lines of one
/// `[[client_tls]]` table, or `None` for a file without one. Paths in the entry are relative to
/// `dir`, as Spin resolves them against the runtime config file's directory.
fn runtime_config(dir: &Path, entry: Option<&str>, files: &[(&str, &str)]) -> PathBuf {
    for (name, contents) in files {
        std::fs::write(dir.join(name), contents).unwrap();
    }
    let text = match entry {
        Some(entry) => format!("[[client_tls]]\n{entry}\n"),
        None => String::new(),
    };
    let path = dir.join("runtime-config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Registers `cluster` and uploads one certificate, returning the upload's response.
async fn register_and_upload(test: &TestApp, cluster: &FakeCluster) -> Value {
    let certificates = Certificates::new();
    certificates.server("shop.example.test", 365);
    test.register(cluster).await;
    let (status, body) = test
        .call("POST", "/api/v1/certificates", Some(&upload(&certificates, "shop", "shop.example.test", "shop.example.test")))
        .await;
    assert_eq!(status, 201, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_tls_trusts_private_ca() {
    let east = fake_cluster_with("east", |config| config.https()).await;
    assert!(east.url().starts_with("https://127.0.0.1:"), "{}", east.url());
    let dir = tempfile::tempdir().unwrap();
    let path = runtime_config(
        dir.path(),
        Some("component_ids = [\"sync-webhook\"]\nhosts = [\"127.0.0.1\"]\nca_roots_file = \"east-ca.pem\""),
        &[("east-ca.pem", east.ca_pem().unwrap())],
    );
    let test = TestApp::start_with_runtime_config(&LOOPBACK_HTTPS, &path).await;

    let body = register_and_upload(&test, &east).await;

    assert_eq!(body["sync"]["east"]["state"], "synced", "{body}");
    let secret = east.secret("istio-system", "shop").expect("the Secret reached the HTTPS cluster");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    let (_, details) = test.call("GET", "/api/v1/certificates/istio-system/shop", None).await;
    assert_eq!(details["sync"]["east"]["state"], "synced", "{details}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_tls_presents_client_certificate() {
    let east = fake_cluster_with("east", |config| config.require_client_certificate(ClientCa::Generate)).await;
    let client = east.issue_client_certificate("meshcert").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = runtime_config(
        dir.path(),
        Some(
            "component_ids = [\"sync-webhook\"]\nhosts = [\"127.0.0.1\"]\nca_roots_file = \"east-ca.pem\"\n\
             client_cert_file = \"client.crt\"\nclient_private_key_file = \"client.key\"",
        ),
        &[
            ("east-ca.pem", east.ca_pem().unwrap()),
            ("client.crt", &client.certificate_pem),
            ("client.key", &client.private_key_pem),
        ],
    );
    let test = TestApp::start_with_runtime_config(&LOOPBACK_HTTPS, &path).await;

    let body = register_and_upload(&test, &east).await;

    assert_eq!(body["sync"]["east"]["state"], "synced", "{body}");
    assert!(east.secret("istio-system", "shop").is_some(), "the Secret reached the cluster");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_tls_missing_entry_fails_tls() {
    let east = fake_cluster_with("east", |config| config.https()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = runtime_config(dir.path(), None, &[]);
    let test = TestApp::start_with_runtime_config(&LOOPBACK_HTTPS, &path).await;

    let body = register_and_upload(&test, &east).await;

    assert_eq!(body["sync"]["east"]["state"], "failed", "{body}");
    assert_eq!(body["sync"]["east"]["last_error"]["kind"], "tls_failed", "{body}");
    assert!(east.secret("istio-system", "shop").is_none());
    assert!(east.requests().is_empty(), "a request got past the TLS handshake");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_tls_entry_for_other_component() {
    let east = fake_cluster_with("east", |config| config.https()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = runtime_config(
        dir.path(),
        Some("component_ids = [\"api\"]\nhosts = [\"127.0.0.1\"]\nca_roots_file = \"east-ca.pem\""),
        &[("east-ca.pem", east.ca_pem().unwrap())],
    );
    let test = TestApp::start_with_runtime_config(&LOOPBACK_HTTPS, &path).await;

    let body = register_and_upload(&test, &east).await;

    assert_eq!(body["sync"]["east"]["state"], "failed", "{body}");
    assert_eq!(body["sync"]["east"]["last_error"]["kind"], "tls_failed", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_tls_without_client_certificate_fails() {
    let east = fake_cluster_with("east", |config| config.require_client_certificate(ClientCa::Generate)).await;
    let dir = tempfile::tempdir().unwrap();
    let path = runtime_config(
        dir.path(),
        Some("component_ids = [\"sync-webhook\"]\nhosts = [\"127.0.0.1\"]\nca_roots_file = \"east-ca.pem\""),
        &[("east-ca.pem", east.ca_pem().unwrap())],
    );
    let test = TestApp::start_with_runtime_config(&LOOPBACK_HTTPS, &path).await;

    let body = register_and_upload(&test, &east).await;

    // In TLS 1.3 the client finishes its handshake before the server checks the client
    // certificate, so the rejection arrives as an alert on the first read. Spin 4.0 reports that
    // as HttpProtocolError, not as a TLS error, and sync-webhook records it as connection_failed.
    assert_eq!(body["sync"]["east"]["state"], "failed", "{body}");
    assert_eq!(body["sync"]["east"]["last_error"]["kind"], "connection_failed", "{body}");
    assert!(east.secret("istio-system", "shop").is_none());
    assert!(east.requests().is_empty(), "a client without a certificate reached the API");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn printed_runtime_config_trusts_cluster() {
    let east = fake_cluster_with("east", |config| config.https()).await;
    let registration = serde_json::json!({ "id": "east", "api_server": east.url(), "token": east.token(), "ca_bundle": east.ca_pem().unwrap() });

    // Without the entry, TLS fails and the cluster's details show the reason.
    let untrusting = TestApp::start_with(&LOOPBACK_HTTPS).await;
    let (status, body) = untrusting.call("POST", "/api/v1/clusters", Some(&registration)).await;
    assert_eq!(status, 201, "{body}");
    let (_, details) = untrusting.call("GET", "/api/v1/clusters/east", None).await;
    assert_eq!(details["client_tls"]["state"], "not_trusted", "{details}");
    assert_eq!(details["reachability"]["error"]["kind"], "tls_failed", "{details}");

    // The printed entries and the saved bundle, written as the README instructs operators.
    let (status, printed) = untrusting.call("GET", "/api/v1/runtime-config/client-tls", None).await;
    assert_eq!(status, 200);
    let printed = printed.as_str().expect("the runtime configuration is text").to_string();
    let (status, bundle) = untrusting.call("GET", "/api/v1/clusters/east/ca-bundle", None).await;
    assert_eq!(status, 200);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("client-tls")).unwrap();
    std::fs::write(dir.path().join("client-tls/east.pem"), bundle.as_str().unwrap()).unwrap();
    std::fs::write(dir.path().join("runtime-config.toml"), &printed).unwrap();

    // A restart with them trusts the cluster.
    let trusting = TestApp::start_with_runtime_config(&LOOPBACK_HTTPS, &dir.path().join("runtime-config.toml")).await;
    let (status, body) = trusting.call("POST", "/api/v1/clusters", Some(&registration)).await;
    assert_eq!(status, 201, "{body}");
    let (_, details) = trusting.call("GET", "/api/v1/clusters/east", None).await;
    assert_eq!(details["client_tls"]["state"], "trusted", "{printed}\n{details}");
    assert_eq!(details["reachability"]["reachable"], true, "{details}");
}
