//! Tests over loopback with a raw HTTP/1.1 client, so they see exactly what the server sends.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{DropFault, FakeCluster, FakeClusterConfig, SlowBody, StatusFault};

mod gateways;
mod https;
mod pods;

const TOKEN: &str = "east-token";
const NS: &str = "istio-system";
const APPLY: &str = "application/apply-patch+yaml";
const SECRET_PATH: &str = "/api/v1/namespaces/istio-system/secrets/east-tls";
const APPLY_PATH: &str =
    "/api/v1/namespaces/istio-system/secrets/east-tls?fieldManager=meshcert&force=true";

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

async fn start() -> FakeCluster {
    FakeCluster::start(FakeClusterConfig::new("east", TOKEN))
        .await
        .unwrap()
}

/// Sends one request on a new connection with `Connection: close` and reads the whole response.
async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> std::io::Result<Reply> {
    let stream = TcpStream::connect(addr).await?;
    exchange(stream, addr, method, path, token, content_type, body).await
}

/// Writes one request with `Connection: close` on `stream`, which may be a TLS stream, and reads
/// the whole response.
async fn exchange<S>(
    mut stream: S,
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> std::io::Result<Reply>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: fake-kube-tests/1.0\r\nContent-Length: {}\r\n", body.len());
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if let Some(content_type) = content_type {
        head.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;

    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "no complete response head",
            )
        })?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(Reply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

async fn get(cluster: &FakeCluster, path: &str) -> Reply {
    send(cluster.addr(), "GET", path, Some(TOKEN), None, b"")
        .await
        .unwrap()
}

async fn apply(cluster: &FakeCluster, path: &str, body: &Value) -> Reply {
    send(
        cluster.addr(),
        "PATCH",
        path,
        Some(TOKEN),
        Some(APPLY),
        body.to_string().as_bytes(),
    )
    .await
    .unwrap()
}

fn b64(text: &str) -> String {
    STANDARD.encode(text)
}

fn tls_secret(name: &str, cert: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": { "app.kubernetes.io/managed-by": "meshcert" },
            "annotations": { "meshcert.io/version": "1" },
        },
        "type": "kubernetes.io/tls",
        "data": { "tls.crt": b64(cert), "tls.key": b64("key") },
    })
}

fn assert_status(reply: &Reply, code: u16, reason: &str) {
    let body = reply.json();
    assert_eq!(reply.status, code, "HTTP status; body {body}");
    assert_eq!(body["kind"], "Status", "kind; body {body}");
    assert_eq!(body["apiVersion"], "v1", "apiVersion; body {body}");
    assert_eq!(body["status"], "Failure", "status; body {body}");
    assert_eq!(body["reason"], reason, "reason; body {body}");
    assert_eq!(body["code"], code, "code; body {body}");
}

fn resource_version(object: &Value) -> u64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn auth_rejects_missing_token() {
    let cluster = start().await;
    let reply = send(cluster.addr(), "GET", "/version", None, None, b"")
        .await
        .unwrap();
    assert_status(&reply, 401, "Unauthorized");
}

#[tokio::test]
async fn auth_rejects_wrong_token() {
    let cluster = start().await;
    let reply = send(
        cluster.addr(),
        "GET",
        "/version",
        Some("west-token"),
        None,
        b"",
    )
    .await
    .unwrap();
    assert_status(&reply, 401, "Unauthorized");
    let reply = get(&cluster, "/version").await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn clusters_have_separate_tokens() {
    let east = start().await;
    let west = FakeCluster::start(FakeClusterConfig::new("west", "west-token"))
        .await
        .unwrap();
    assert_ne!(east.addr(), west.addr());
    let reply = send(west.addr(), "GET", "/version", Some(TOKEN), None, b"")
        .await
        .unwrap();
    assert_status(&reply, 401, "Unauthorized");
    let reply = send(
        west.addr(),
        "GET",
        "/version",
        Some("west-token"),
        None,
        b"",
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn version_returns_git_version() {
    let cluster = start().await;
    let reply = get(&cluster, "/version").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let body = reply.json();
    assert_eq!(body["gitVersion"], "v1.31.0");
    assert_eq!(body["major"], "1");
    assert_eq!(body["minor"], "31");
}

#[tokio::test]
async fn namespace_get_and_missing() {
    let cluster = start().await;
    let reply = get(&cluster, "/api/v1/namespaces/istio-system").await;
    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(body["kind"], "Namespace");
    assert_eq!(body["metadata"]["name"], NS);
    assert_eq!(body["status"]["phase"], "Active");

    let reply = get(&cluster, "/api/v1/namespaces/payments").await;
    assert_status(&reply, 404, "NotFound");
    assert_eq!(reply.json()["details"]["kind"], "namespaces");

    cluster.add_namespace("payments").unwrap();
    assert_eq!(
        get(&cluster, "/api/v1/namespaces/payments").await.status,
        200
    );
    assert!(cluster.add_namespace("Bad_Name").is_err());
}

#[tokio::test]
async fn apply_creates_secret() {
    let cluster = start().await;
    let before = cluster.resource_version();
    let reply = apply(&cluster, APPLY_PATH, &tls_secret("east-tls", "chain-v1")).await;
    assert_eq!(reply.status, 201, "body {}", reply.json());
    let body = reply.json();
    assert_eq!(body["kind"], "Secret");
    assert_eq!(body["type"], "kubernetes.io/tls");
    assert_eq!(body["data"]["tls.crt"], b64("chain-v1"));
    assert_eq!(
        body["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "meshcert"
    );
    assert_eq!(body["metadata"]["uid"].as_str().unwrap().len(), 36);
    assert!(body["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    assert_eq!(resource_version(&body), before + 1);
    assert_eq!(body["metadata"]["managedFields"][0]["manager"], "meshcert");
    assert_eq!(body["metadata"]["managedFields"][0]["operation"], "Apply");

    assert_eq!(cluster.secret(NS, "east-tls"), Some(body.clone()));
    assert_eq!(get(&cluster, SECRET_PATH).await.json(), body);
    assert_eq!(
        cluster.secret_data(NS, "east-tls").unwrap()["tls.key"],
        b"key".to_vec()
    );
    assert_eq!(cluster.requests()[0].content_type.as_deref(), Some(APPLY));
}

#[tokio::test]
async fn apply_updates_secret() {
    let cluster = start().await;
    let created = apply(&cluster, APPLY_PATH, &tls_secret("east-tls", "chain-v1"))
        .await
        .json();
    let reply = apply(&cluster, APPLY_PATH, &tls_secret("east-tls", "chain-v2")).await;
    assert_eq!(reply.status, 200);
    let updated = reply.json();
    assert_eq!(updated["data"]["tls.crt"], b64("chain-v2"));
    assert_eq!(updated["metadata"]["uid"], created["metadata"]["uid"]);
    assert_eq!(resource_version(&updated), resource_version(&created) + 1);

    // An identical apply changes nothing, so the resourceVersion stays.
    let again = apply(&cluster, APPLY_PATH, &tls_secret("east-tls", "chain-v2")).await;
    assert_eq!(again.status, 200);
    assert_eq!(resource_version(&again.json()), resource_version(&updated));
}

#[tokio::test]
async fn apply_bumps_cluster_wide_version() {
    let cluster = start().await;
    let first = apply(&cluster, APPLY_PATH, &tls_secret("east-tls", "a"))
        .await
        .json();
    let other_path =
        "/api/v1/namespaces/istio-system/secrets/west-tls?fieldManager=meshcert&force=true";
    let second = apply(&cluster, other_path, &tls_secret("west-tls", "b"))
        .await
        .json();
    assert!(resource_version(&second) > resource_version(&first));
    assert_eq!(cluster.resource_version(), resource_version(&second));
}

#[tokio::test]
async fn apply_rejects_type_change() {
    let cluster = start().await;
    apply(&cluster, APPLY_PATH, &tls_secret("east-tls", "chain")).await;
    let mut opaque = tls_secret("east-tls", "chain");
    opaque["type"] = json!("Opaque");
    let reply = apply(&cluster, APPLY_PATH, &opaque).await;
    assert_status(&reply, 422, "Invalid");
    let body = reply.json();
    assert_eq!(body["details"]["kind"], "Secret");
    assert_eq!(body["details"]["causes"][0]["field"], "type");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("field is immutable"),
        "{body}"
    );
    assert_eq!(
        cluster.secret(NS, "east-tls").unwrap()["type"],
        "kubernetes.io/tls"
    );
}

#[tokio::test]
async fn apply_missing_namespace_404() {
    let cluster = start().await;
    let path = "/api/v1/namespaces/payments/secrets/east-tls?fieldManager=meshcert&force=true";
    let mut secret = tls_secret("east-tls", "chain");
    secret["metadata"]["namespace"] = json!("payments");
    let reply = apply(&cluster, path, &secret).await;
    assert_status(&reply, 404, "NotFound");
    let body = reply.json();
    assert_eq!(body["details"]["kind"], "namespaces");
    assert_eq!(body["details"]["name"], "payments");
    assert_eq!(body["message"], "namespaces \"payments\" not found");
}

#[tokio::test]
async fn apply_requires_field_manager() {
    let cluster = start().await;
    let reply = apply(&cluster, SECRET_PATH, &tls_secret("east-tls", "chain")).await;
    assert_status(&reply, 422, "Invalid");
    assert!(reply.json()["message"]
        .as_str()
        .unwrap()
        .contains("fieldManager: Required value"));
    assert!(cluster.secret(NS, "east-tls").is_none());
}

#[tokio::test]
async fn apply_rejects_non_json_body() {
    let cluster = start().await;
    let yaml = b"apiVersion: v1\nkind: Secret\nmetadata:\n  name: east-tls\n";
    let reply = send(
        cluster.addr(),
        "PATCH",
        APPLY_PATH,
        Some(TOKEN),
        Some(APPLY),
        yaml,
    )
    .await
    .unwrap();
    assert_status(&reply, 400, "BadRequest");
    assert!(reply.json()["message"]
        .as_str()
        .unwrap()
        .contains("JSON only"));
}

#[tokio::test]
async fn apply_rejects_mismatched_object() {
    let cluster = start().await;
    let cases = [
        (
            "/metadata/name",
            json!("other"),
            "does not match the name on the URL",
        ),
        (
            "/metadata/namespace",
            json!("default"),
            "does not match the namespace",
        ),
        ("/apiVersion", json!("v2"), "Incorrect version"),
        ("/kind", json!("ConfigMap"), "ConfigMap"),
    ];
    for (pointer, value, expected) in cases {
        let mut secret = tls_secret("east-tls", "chain");
        *secret.pointer_mut(pointer).unwrap() = value;
        let reply = apply(&cluster, APPLY_PATH, &secret).await;
        assert_status(&reply, 400, "BadRequest");
        let message = reply.json()["message"].as_str().unwrap().to_owned();
        assert!(message.contains(expected), "{pointer}: message {message:?}");
    }
}

#[tokio::test]
async fn apply_rejects_invalid_base64() {
    let cluster = start().await;
    let mut secret = tls_secret("east-tls", "chain");
    secret["data"]["tls.crt"] = json!("not base64!");
    let reply = apply(&cluster, APPLY_PATH, &secret).await;
    assert_status(&reply, 400, "BadRequest");
    assert!(reply.json()["message"]
        .as_str()
        .unwrap()
        .contains("illegal base64 data at input byte 3"));
}

#[tokio::test]
async fn apply_rejects_oversized_data() {
    let cluster = start().await;
    let mut secret = tls_secret("east-tls", "chain");
    secret["data"]["tls.crt"] = json!(STANDARD.encode(vec![b'a'; crate::MAX_SECRET_BYTES]));
    let reply = apply(&cluster, APPLY_PATH, &secret).await;
    assert_status(&reply, 422, "Invalid");
    let body = reply.json();
    assert_eq!(body["details"]["causes"][0]["reason"], "FieldValueTooLong");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("must have at most 1048576 bytes"));

    // Exactly 1 MiB in total is allowed.
    secret["data"]["tls.crt"] = json!(STANDARD.encode(vec![b'a'; crate::MAX_SECRET_BYTES - 3]));
    assert_eq!(apply(&cluster, APPLY_PATH, &secret).await.status, 201);
}

#[tokio::test]
async fn apply_requires_tls_keys() {
    let cluster = start().await;
    let mut secret = tls_secret("east-tls", "chain");
    secret["data"] = json!({ "cert": b64("chain") });
    let reply = apply(&cluster, APPLY_PATH, &secret).await;
    assert_status(&reply, 422, "Invalid");
    let causes = reply.json()["details"]["causes"].clone();
    assert_eq!(causes[0]["field"], "data[tls.crt]");
    assert_eq!(causes[1]["field"], "data[tls.key]");
}

#[tokio::test]
async fn apply_converts_string_data() {
    let cluster = start().await;
    let mut secret = tls_secret("east-tls", "chain");
    secret["stringData"] = json!({ "ca.crt": "ca-pem" });
    let body = apply(&cluster, APPLY_PATH, &secret).await.json();
    assert_eq!(body["data"]["ca.crt"], b64("ca-pem"));
    assert!(body.get("stringData").is_none());
}

#[tokio::test]
async fn apply_removes_dropped_keys() {
    let cluster = start().await;
    let mut secret = tls_secret("east-tls", "chain");
    secret["data"]["ca.crt"] = json!(b64("ca"));
    apply(&cluster, APPLY_PATH, &secret).await;
    let body = apply(&cluster, APPLY_PATH, &tls_secret("east-tls", "chain"))
        .await
        .json();
    assert!(body["data"].get("ca.crt").is_none(), "{body}");
    assert!(body["data"].get("tls.crt").is_some());
}

#[tokio::test]
async fn apply_keeps_keys_of_other_managers() {
    let cluster = start().await;
    // An unmanaged Secret, as if created with kubectl: the test manager owns every field.
    cluster
        .put_secret(
            NS,
            json!({
                "metadata": { "name": "east-tls" },
                "type": "kubernetes.io/tls",
                "data": { "tls.crt": b64("old"), "tls.key": b64("key"), "cert": b64("stale") },
            }),
        )
        .unwrap();

    let no_force = "/api/v1/namespaces/istio-system/secrets/east-tls?fieldManager=meshcert";
    let reply = apply(&cluster, no_force, &tls_secret("east-tls", "new")).await;
    assert_status(&reply, 409, "Conflict");
    let message = reply.json()["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("conflict with \"fake-kube-test\""),
        "{message}"
    );
    assert!(message.contains(".data.tls.crt"), "{message}");

    let body = apply(&cluster, APPLY_PATH, &tls_secret("east-tls", "new"))
        .await
        .json();
    assert_eq!(body["data"]["tls.crt"], b64("new"));
    // Server-side apply leaves keys that another manager owns, so the stale key stays.
    assert_eq!(body["data"]["cert"], b64("stale"));
}

#[tokio::test]
async fn apply_precondition_rejects_stale_version() {
    let cluster = start().await;
    apply(&cluster, APPLY_PATH, &tls_secret("east-tls", "a")).await;
    let mut secret = tls_secret("east-tls", "b");
    secret["metadata"]["resourceVersion"] = json!("1");
    let reply = apply(&cluster, APPLY_PATH, &secret).await;
    assert_status(&reply, 409, "Conflict");
}

#[tokio::test]
async fn apply_dry_run_stores_nothing() {
    let cluster = start().await;
    let before = cluster.resource_version();
    let reply = apply(
        &cluster,
        &format!("{APPLY_PATH}&dryRun=All"),
        &tls_secret("east-tls", "a"),
    )
    .await;
    assert_eq!(reply.status, 201);
    assert!(cluster.secret(NS, "east-tls").is_none());
    assert_eq!(cluster.resource_version(), before);
}

#[tokio::test]
async fn patch_rejects_json_patch() {
    let cluster = start().await;
    let reply = send(
        cluster.addr(),
        "PATCH",
        APPLY_PATH,
        Some(TOKEN),
        Some("application/json-patch+json"),
        b"[]",
    )
    .await
    .unwrap();
    assert_status(&reply, 415, "UnsupportedMediaType");
}

#[tokio::test]
async fn merge_patch_updates_labels() {
    let cluster = start().await;
    apply(&cluster, APPLY_PATH, &tls_secret("east-tls", "a")).await;
    let patch = json!({ "metadata": { "labels": { "tier": "edge", "app.kubernetes.io/managed-by": null } } });
    let reply = send(
        cluster.addr(),
        "PATCH",
        SECRET_PATH,
        Some(TOKEN),
        Some("application/merge-patch+json"),
        patch.to_string().as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    let labels = reply.json()["metadata"]["labels"].clone();
    assert_eq!(labels, json!({ "tier": "edge" }));
}

#[tokio::test]
async fn list_filters_by_label_selector() {
    let cluster = start().await;
    apply(&cluster, APPLY_PATH, &tls_secret("east-tls", "a")).await;
    cluster
        .put_secret(NS, json!({ "metadata": { "name": "helm-tls", "labels": { "app.kubernetes.io/managed-by": "helm" } } }))
        .unwrap();
    cluster
        .put_secret(NS, json!({ "metadata": { "name": "plain" } }))
        .unwrap();

    let cases = [
        (
            "app.kubernetes.io%2Fmanaged-by%3Dmeshcert",
            vec!["east-tls"],
        ),
        (
            "app.kubernetes.io/managed-by!=meshcert",
            vec!["helm-tls", "plain"],
        ),
        ("app.kubernetes.io/managed-by", vec!["east-tls", "helm-tls"]),
        (
            "app.kubernetes.io/managed-by,app.kubernetes.io/managed-by!=helm",
            vec!["east-tls"],
        ),
        ("", vec!["east-tls", "helm-tls", "plain"]),
    ];
    for (selector, expected) in cases {
        let reply = get(
            &cluster,
            &format!("/api/v1/namespaces/istio-system/secrets?labelSelector={selector}"),
        )
        .await;
        assert_eq!(reply.status, 200, "selector {selector}");
        let body = reply.json();
        assert_eq!(body["kind"], "SecretList");
        assert_eq!(resource_version(&body), cluster.resource_version());
        let names: Vec<&str> = body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, expected, "selector {selector}");
        assert!(
            body["items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|i| i.get("kind").is_none()),
            "items carry no kind"
        );
    }

    let reply = get(
        &cluster,
        "/api/v1/namespaces/istio-system/secrets?labelSelector=a%3Db%3Dc",
    )
    .await;
    assert_status(&reply, 400, "BadRequest");
    let reply = get(&cluster, "/api/v1/namespaces/payments/secrets").await;
    assert_eq!(reply.json()["items"], json!([]));
}

#[tokio::test]
async fn delete_returns_success_status() {
    let cluster = start().await;
    let created = apply(&cluster, APPLY_PATH, &tls_secret("east-tls", "a"))
        .await
        .json();
    let reply = send(
        cluster.addr(),
        "DELETE",
        SECRET_PATH,
        Some(TOKEN),
        None,
        b"",
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["status"], "Success");
    assert_eq!(body["details"]["uid"], created["metadata"]["uid"]);
    assert!(cluster.secret(NS, "east-tls").is_none());
    assert!(cluster.resource_version() > resource_version(&created));

    let reply = send(
        cluster.addr(),
        "DELETE",
        SECRET_PATH,
        Some(TOKEN),
        None,
        b"",
    )
    .await
    .unwrap();
    assert_status(&reply, 404, "NotFound");
    assert_eq!(reply.json()["message"], "secrets \"east-tls\" not found");
}

#[tokio::test]
async fn create_rejects_duplicate() {
    let cluster = start().await;
    let body = tls_secret("east-tls", "a").to_string();
    let path = "/api/v1/namespaces/istio-system/secrets";
    let reply = send(
        cluster.addr(),
        "POST",
        path,
        Some(TOKEN),
        Some("application/json"),
        body.as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 201);
    assert_eq!(
        reply.json()["metadata"]["managedFields"][0]["manager"],
        "fake-kube-tests"
    );
    let reply = send(
        cluster.addr(),
        "POST",
        path,
        Some(TOKEN),
        Some("application/json"),
        body.as_bytes(),
    )
    .await
    .unwrap();
    assert_status(&reply, 409, "AlreadyExists");
}

#[tokio::test]
async fn replace_rejects_stale_version() {
    let cluster = start().await;
    let created = apply(&cluster, APPLY_PATH, &tls_secret("east-tls", "a"))
        .await
        .json();
    let mut replacement = created.clone();
    replacement["data"]["tls.crt"] = json!(b64("b"));
    let put = |body: Value| {
        let addr = cluster.addr();
        async move {
            send(
                addr,
                "PUT",
                SECRET_PATH,
                Some(TOKEN),
                Some("application/json"),
                body.to_string().as_bytes(),
            )
            .await
            .unwrap()
        }
    };
    let reply = put(replacement.clone()).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["data"]["tls.crt"], b64("b"));

    // The same resourceVersion again is now stale.
    replacement["data"]["tls.crt"] = json!(b64("c"));
    let reply = put(replacement).await;
    assert_status(&reply, 409, "Conflict");
    assert!(reply.json()["message"]
        .as_str()
        .unwrap()
        .contains("the object has been modified"));
}

#[tokio::test]
async fn unknown_path_404() {
    let cluster = start().await;
    for path in [
        "/api/v1/configmaps",
        "/apis/networking.istio.io/v1/virtualservices",
        "/apis/gateway.networking.k8s.io/v1/gateways",
    ] {
        let reply = get(&cluster, path).await;
        assert_status(&reply, 404, "NotFound");
        assert_eq!(
            reply.json()["message"],
            "the server could not find the requested resource",
            "{path}"
        );
    }
}

#[tokio::test]
async fn wrong_method_405() {
    let cluster = start().await;
    let reply = send(cluster.addr(), "DELETE", "/version", Some(TOKEN), None, b"")
        .await
        .unwrap();
    assert_status(&reply, 405, "MethodNotAllowed");
}

#[tokio::test]
async fn down_refuses_then_recovers() {
    let cluster = start().await;
    apply(&cluster, APPLY_PATH, &tls_secret("east-tls", "a")).await;
    cluster.set_down(true).await.unwrap();
    assert!(cluster.is_down());
    let error = TcpStream::connect(cluster.addr()).await.unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused);

    cluster.set_down(false).await.unwrap();
    let reply = get(&cluster, SECRET_PATH).await;
    assert_eq!(reply.status, 200, "state survives the outage");
}

#[tokio::test]
async fn status_fault_with_prefix_and_count() {
    let cluster = start().await;
    cluster.set_status_fault(Some(
        StatusFault::new(429)
            .path_prefix("/api/v1/namespaces/istio-system/secrets")
            .times(2),
    ));
    assert_eq!(
        get(&cluster, "/version").await.status,
        200,
        "other paths are not affected"
    );
    for _ in 0..2 {
        let reply = get(&cluster, SECRET_PATH).await;
        assert_status(&reply, 429, "TooManyRequests");
        assert_eq!(reply.header("retry-after"), Some("1"));
    }
    assert_status(&get(&cluster, SECRET_PATH).await, 404, "NotFound");

    cluster.set_status_fault(Some(StatusFault::new(503)));
    assert_status(&get(&cluster, "/version").await, 503, "ServiceUnavailable");
    cluster.clear_faults();
    assert_eq!(get(&cluster, "/version").await.status, 200);
}

#[tokio::test]
async fn latency_delays_response() {
    let cluster = start().await;
    cluster.set_latency(Duration::from_millis(300));
    let started = Instant::now();
    assert_eq!(get(&cluster, "/version").await.status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "elapsed {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn drop_fault_closes_connection() {
    let cluster = start().await;
    cluster.set_drop_fault(Some(DropFault::new().times(1)));
    let result = send(cluster.addr(), "GET", "/version", Some(TOKEN), None, b"").await;
    assert!(result.is_err(), "expected no response");
    assert_eq!(get(&cluster, "/version").await.status, 200);
    assert_eq!(cluster.requests().len(), 2, "the dropped request is logged");
}

#[tokio::test]
async fn slow_body_streams_pieces() {
    let cluster = start().await;
    cluster.set_slow_body(Some(SlowBody {
        chunk_bytes: 64,
        delay: Duration::from_millis(50),
    }));
    let started = Instant::now();
    let reply = get(&cluster, "/version").await;
    let pieces = reply.body.len().div_ceil(64) as u32;
    assert!(pieces >= 3, "body of {} bytes", reply.body.len());
    assert!(
        started.elapsed() >= Duration::from_millis(50) * pieces,
        "elapsed {:?}",
        started.elapsed()
    );
    assert_eq!(reply.json()["gitVersion"], "v1.31.0");
}

#[tokio::test]
async fn max_in_flight_counts_concurrency() {
    let cluster = start().await;
    cluster.set_latency(Duration::from_millis(300));
    let addr = cluster.addr();
    let requests: Vec<_> = (0..5)
        .map(|_| {
            tokio::spawn(async move {
                send(addr, "GET", "/version", Some(TOKEN), None, b"")
                    .await
                    .unwrap()
                    .status
            })
        })
        .collect();
    for request in requests {
        assert_eq!(request.await.unwrap(), 200);
    }
    assert_eq!(cluster.max_in_flight(), 5);
    assert_eq!(cluster.in_flight(), 0);
}

#[tokio::test]
async fn request_log_records_requests() {
    let cluster = start().await;
    apply(&cluster, APPLY_PATH, &tls_secret("east-tls", "a")).await;
    get(&cluster, "/version").await;
    let log = cluster.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].method, "PATCH");
    assert_eq!(log[0].path, APPLY_PATH);
    assert_eq!(log[0].content_type.as_deref(), Some(APPLY));
    assert_eq!(log[1].method, "GET");
    assert_eq!(log[1].content_type, None);
    cluster.clear_requests();
    assert!(cluster.requests().is_empty());
}

#[tokio::test]
async fn put_secret_simulates_drift() {
    let cluster = start().await;
    let mut secret = apply(&cluster, APPLY_PATH, &tls_secret("east-tls", "a"))
        .await
        .json();
    secret["data"]["tls.crt"] = json!(b64("edited"));
    let stored = cluster.put_secret(NS, secret.clone()).unwrap();
    assert_eq!(stored["metadata"]["uid"], secret["metadata"]["uid"]);
    assert!(resource_version(&stored) > resource_version(&secret));
    assert_eq!(
        get(&cluster, SECRET_PATH).await.json()["data"]["tls.crt"],
        b64("edited")
    );

    // The applier still owns the key, so a plain apply restores it.
    let no_force = "/api/v1/namespaces/istio-system/secrets/east-tls?fieldManager=meshcert";
    let restored = apply(&cluster, no_force, &tls_secret("east-tls", "a")).await;
    assert_eq!(restored.status, 200);
    assert_eq!(restored.json()["data"]["tls.crt"], b64("a"));
    assert!(cluster.put_secret("payments", secret).is_err());
}

#[tokio::test]
async fn start_rejects_non_loopback() {
    let mut config = FakeClusterConfig::new("east", TOKEN);
    config.listen = Some("0.0.0.0:0".parse().unwrap());
    let error = FakeCluster::start(config).await.unwrap_err();
    assert!(
        error.to_string().contains("not a loopback address"),
        "{error}"
    );
}

#[tokio::test]
async fn cli_serves_until_stopped() {
    // Find a free port, then let the CLI bind it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let args: Vec<String> = [
        "--listen",
        &listen,
        "--token",
        TOKEN,
        "--namespace",
        "istio-system",
        "--namespace",
        "payments",
        "--name",
        "east",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let server = tokio::spawn(crate::run_cli(args));

    let addr: SocketAddr = listen.parse().unwrap();
    let mut reply = None;
    for _ in 0..100 {
        if let Ok(r) = send(
            addr,
            "GET",
            "/api/v1/namespaces/payments",
            Some(TOKEN),
            None,
            b"",
        )
        .await
        {
            reply = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.abort();
    let reply = reply.expect("the CLI server never accepted a connection");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["metadata"]["name"], "payments");
}
