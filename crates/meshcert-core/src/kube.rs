//! Kubernetes requests as values: the Secret meshcert applies, the HTTP request that applies it,
//! and the meaning of the API server's response. Nothing here sends anything.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::records::SyncError;
use crate::secret::SecretString;

/// Label that marks a Secret as meshcert's; only Secrets with it are ever changed or deleted.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY_VALUE: &str = "meshcert";
/// The server-side apply field manager.
pub const FIELD_MANAGER: &str = "meshcert";
/// Annotation with the certificate's version number.
pub const VERSION_ANNOTATION: &str = "meshcert.io/version";
/// Annotation with the SHA-256 of the Secret's data.
pub const FINGERPRINT_ANNOTATION: &str = "meshcert.io/fingerprint";
/// Annotation with `namespace/name` of the certificate.
pub const CERTIFICATE_ANNOTATION: &str = "meshcert.io/certificate";
/// The largest Secret the API server stores: 1 MiB.
pub const MAX_SECRET_BYTES: usize = 1024 * 1024;

/// The content of one `kubernetes.io/tls` Secret.
pub struct TlsSecret<'a> {
    /// Namespace: where the gateway workload runs.
    pub namespace: &'a str,
    /// Name: the gateways' `credentialName`.
    pub name: &'a str,
    /// `tls.crt`: the chain, leaf first.
    pub chain_pem: &'a str,
    /// `tls.key`.
    pub private_key_pem: &'a SecretString,
    /// `ca.crt`, for mutual TLS.
    pub ca_pem: Option<&'a str>,
    /// Version number, for the annotation.
    pub version: u32,
}

impl TlsSecret<'_> {
    /// SHA-256 over the data entries in key order, as lowercase hex. It identifies the content
    /// without revealing the key: SHA-256 cannot be inverted to a private key.
    pub fn fingerprint(&self) -> String {
        content_fingerprint(self.chain_pem, self.private_key_pem, self.ca_pem)
    }

    /// Builds the Secret object for server-side apply.
    pub fn manifest(&self) -> Value {
        let mut data = serde_json::Map::new();
        data.insert("tls.crt".into(), Value::String(BASE64.encode(self.chain_pem)));
        data.insert("tls.key".into(), Value::String(BASE64.encode(self.private_key_pem.expose())));
        if let Some(ca_pem) = self.ca_pem {
            data.insert("ca.crt".into(), Value::String(BASE64.encode(ca_pem)));
        }
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": { MANAGED_BY_LABEL: MANAGED_BY_VALUE },
                "annotations": {
                    VERSION_ANNOTATION: self.version.to_string(),
                    FINGERPRINT_ANNOTATION: self.fingerprint(),
                    CERTIFICATE_ANNOTATION: format!("{}/{}", self.namespace, self.name),
                },
            },
            "type": "kubernetes.io/tls",
            "data": data,
        })
    }
}

/// Computes the fingerprint of a Secret's content: SHA-256 over `tls.crt`, `tls.key` and `ca.crt`, each
/// prefixed with its name and length so that moving bytes between entries changes it.
pub fn content_fingerprint(chain_pem: &str, private_key_pem: &SecretString, ca_pem: Option<&str>) -> String {
    let mut hasher = Sha256::new();
    let entries = [("tls.crt", Some(chain_pem)), ("tls.key", Some(private_key_pem.expose())), ("ca.crt", ca_pem)];
    for (name, value) in entries {
        if let Some(value) = value {
            hasher.update(name.as_bytes());
            hasher.update((value.len() as u64).to_be_bytes());
            hasher.update(value.as_bytes());
        }
    }
    hex::encode(hasher.finalize())
}

/// The reason a request could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The cluster's `api_server` is not a usable base URL.
    #[error("api_server {0:?} is not a valid http(s) URL")]
    InvalidApiServer(String),
    /// The Secret is over the API server's limit.
    #[error("Secret {namespace}/{name} would be {size} bytes, over the 1 MiB limit of Kubernetes Secrets")]
    SecretTooLarge {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Size of the request body.
        size: usize,
    },
    /// The http crate rejected the request.
    #[error("cannot build the request: {0}")]
    Http(String),
}

/// Builds the server-side apply request for `secret`:
/// `PATCH /api/v1/namespaces/{ns}/secrets/{name}?fieldManager=meshcert&force=true` with
/// `Content-Type: application/apply-patch+yaml` (JSON is valid YAML).
///
/// # Errors
///
/// [`RequestError`] for a bad `api_server` or a Secret over 1 MiB.
pub fn apply_secret_request(api_server: &str, token: &SecretString, secret: &TlsSecret<'_>) -> Result<http::Request<Vec<u8>>, RequestError> {
    let body = serde_json::to_vec(&secret.manifest()).map_err(|error| RequestError::Http(error.to_string()))?;
    if body.len() > MAX_SECRET_BYTES {
        return Err(RequestError::SecretTooLarge { namespace: secret.namespace.into(), name: secret.name.into(), size: body.len() });
    }
    let url = secret_url(api_server, secret.namespace, secret.name, "?fieldManager=meshcert&force=true")?;

    http::Request::builder()
        .method(http::Method::PATCH)
        .uri(url)
        .header(http::header::AUTHORIZATION, format!("Bearer {}", token.expose()))
        .header(http::header::CONTENT_TYPE, "application/apply-patch+yaml")
        .header(http::header::ACCEPT, "application/json")
        .body(body)
        .map_err(|error| RequestError::Http(error.to_string()))
}

/// Builds `GET /api/v1/namespaces/{ns}/secrets/{name}`, which reads a live Secret before it is
/// deleted, so that only a Secret meshcert manages is ever removed.
///
/// # Errors
///
/// [`RequestError::InvalidApiServer`] for a bad `api_server`.
pub fn get_secret_request(api_server: &str, token: &SecretString, namespace: &str, name: &str) -> Result<http::Request<Vec<u8>>, RequestError> {
    let url = secret_url(api_server, namespace, name, "")?;
    http::Request::builder()
        .method(http::Method::GET)
        .uri(url)
        .header(http::header::AUTHORIZATION, format!("Bearer {}", token.expose()))
        .header(http::header::ACCEPT, "application/json")
        .body(Vec::new())
        .map_err(|error| RequestError::Http(error.to_string()))
}

/// Builds the `DELETE` of a Secret with a `resourceVersion` precondition: the API server refuses
/// it with 409 when the Secret changed after meshcert read it, so a Secret that someone replaced
/// in between is never removed.
///
/// # Errors
///
/// [`RequestError::InvalidApiServer`] for a bad `api_server`.
pub fn delete_secret_request(
    api_server: &str,
    token: &SecretString,
    namespace: &str,
    name: &str,
    resource_version: &str,
) -> Result<http::Request<Vec<u8>>, RequestError> {
    let url = secret_url(api_server, namespace, name, "")?;
    let options = json!({
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "preconditions": { "resourceVersion": resource_version },
    });
    http::Request::builder()
        .method(http::Method::DELETE)
        .uri(url)
        .header(http::header::AUTHORIZATION, format!("Bearer {}", token.expose()))
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json")
        .body(options.to_string().into_bytes())
        .map_err(|error| RequestError::Http(error.to_string()))
}

/// The facts meshcert reads from a live Secret: its owner, its revision, and whether its content
/// is what meshcert last applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveSecret {
    /// `metadata.resourceVersion`.
    pub resource_version: Option<String>,
    /// Whether it carries `app.kubernetes.io/managed-by: meshcert`.
    pub managed: bool,
    /// The `meshcert.io/certificate` annotation: `namespace/name` of the certificate it holds.
    pub certificate: Option<String>,
    /// The `meshcert.io/version` annotation.
    pub version: Option<u32>,
    /// The `meshcert.io/fingerprint` annotation: the content meshcert applied.
    pub fingerprint: Option<String>,
    /// The fingerprint of its current content, computed as [`content_fingerprint`] does;
    /// `None` when `tls.crt` or `tls.key` is missing or not UTF-8.
    pub data_fingerprint: Option<String>,
}

impl LiveSecret {
    /// Reads a Secret object from a GET response body; `None` when it is not one.
    pub fn parse(body: &[u8]) -> Option<Self> {
        let secret: Value = serde_json::from_slice(body).ok()?;
        let metadata = secret.get("metadata")?;
        let annotation = |name: &str| metadata["annotations"][name].as_str().map(str::to_string);
        Some(Self {
            resource_version: metadata["resourceVersion"].as_str().map(str::to_string),
            managed: metadata["labels"][MANAGED_BY_LABEL].as_str() == Some(MANAGED_BY_VALUE),
            certificate: annotation(CERTIFICATE_ANNOTATION),
            version: annotation(VERSION_ANNOTATION).and_then(|version| version.parse().ok()),
            fingerprint: annotation(FINGERPRINT_ANNOTATION),
            data_fingerprint: data_fingerprint(&secret["data"]),
        })
    }

    /// Returns whether meshcert may delete it as the Secret of certificate `namespace/name`: it carries
    /// meshcert's label, and its certificate annotation, when present, names this certificate.
    pub fn deletable_for(&self, namespace: &str, name: &str) -> bool {
        self.managed && self.certificate.as_deref().is_none_or(|certificate| certificate == format!("{namespace}/{name}"))
    }
}

/// Fingerprints the `tls.crt`, `tls.key` and `ca.crt` entries of a live Secret's `data`.
fn data_fingerprint(data: &Value) -> Option<String> {
    let entry = |name: &str| -> Option<String> {
        let encoded = data.get(name)?.as_str()?;
        String::from_utf8(BASE64.decode(encoded).ok()?).ok()
    };
    let key = SecretString::new(entry("tls.key")?);
    Some(content_fingerprint(&entry("tls.crt")?, &key, entry("ca.crt").as_deref()))
}

/// The action of a sync on one (certificate, cluster) target, decided from the live Secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlannedAction {
    /// No Secret of that name: apply creates it.
    Create,
    /// meshcert's Secret contains another version: apply replaces it.
    Update,
    /// meshcert's Secret contains this version, untouched: nothing to send.
    Unchanged,
    /// meshcert's Secret claims this version but its data was edited in the cluster: apply repairs it.
    Drifted,
    /// A Secret of that name that meshcert does not manage: left alone.
    Conflict,
    /// The certificate is being deleted and meshcert's Secret is there: it is removed.
    Delete,
    /// The certificate is being deleted and no Secret of meshcert's is there: nothing to do.
    Absent,
}

impl PlannedAction {
    /// Returns whether the action sends a server-side apply.
    pub fn applies(self) -> bool {
        matches!(self, PlannedAction::Create | PlannedAction::Update | PlannedAction::Drifted)
    }
}

/// Decides what to do with the Secret of certificate `namespace/name` at `version`, whose content
/// has the fingerprint `fingerprint`, given the live Secret (`None` when the cluster has none).
pub fn plan_apply(live: Option<&LiveSecret>, namespace: &str, name: &str, version: u32, fingerprint: &str) -> PlannedAction {
    let Some(live) = live else {
        return PlannedAction::Create;
    };
    if !live.deletable_for(namespace, name) {
        return PlannedAction::Conflict;
    }
    let claims_this_version = live.version == Some(version) && live.fingerprint.as_deref() == Some(fingerprint);
    match (claims_this_version, live.data_fingerprint.as_deref() == Some(fingerprint)) {
        (true, true) => PlannedAction::Unchanged,
        (true, false) => PlannedAction::Drifted,
        (false, _) => PlannedAction::Update,
    }
}

fn secret_url(api_server: &str, namespace: &str, name: &str, query: &str) -> Result<String, RequestError> {
    let base = url::Url::parse(api_server).map_err(|_| RequestError::InvalidApiServer(api_server.into()))?;
    if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
        return Err(RequestError::InvalidApiServer(api_server.into()));
    }
    // Namespace and name are DNS-1123 names, so they need no percent-encoding.
    Ok(format!("{}/api/v1/namespaces/{namespace}/secrets/{name}{query}", base.as_str().trim_end_matches('/')))
}

/// The outcome of an apply, read from the API server's response.
#[derive(Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Applied; the Secret's new resourceVersion.
    Applied {
        /// `metadata.resourceVersion` of the stored Secret.
        resource_version: Option<String>,
    },
    /// Rejected, with the reason kept in its Kubernetes meaning.
    Failed(SyncError),
}

/// Reads the response to an apply: a 2xx with the Secret, or a Kubernetes `Status` error.
pub fn read_apply_response(status: u16, body: &[u8]) -> ApplyOutcome {
    if (200..300).contains(&status) {
        let resource_version = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|secret| secret["metadata"]["resourceVersion"].as_str().map(str::to_string));
        return ApplyOutcome::Applied { resource_version };
    }
    ApplyOutcome::Failed(status_error(status, body))
}

/// Turns a non-2xx response into a [`SyncError`] that keeps the status's Kubernetes meaning.
pub fn status_error(status: u16, body: &[u8]) -> SyncError {
    let server_message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|value| value["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).trim().to_string());

    let (kind, advice) = match status {
        401 => ("unauthorized", "the cluster rejected the token: check that meshcert's ServiceAccount token in this cluster is still valid"),
        403 => ("forbidden", "the token lacks RBAC permission: grant get, list, patch and delete on Secrets in this namespace"),
        404 => ("namespace_not_found", "the namespace does not exist in this cluster: create it, or move the certificate to the gateway's namespace"),
        409 => ("conflict", "the Secret changed during the update: the next sync retries"),
        422 => ("invalid", "the API server rejected the Secret as invalid"),
        429 => ("rate_limited", "the API server is throttling requests: the next sync retries"),
        500..=599 => ("server_error", "the API server failed: the next sync retries"),
        _ => ("unexpected_response", "unexpected answer from the API server"),
    };
    let message = if server_message.is_empty() {
        format!("HTTP {status}: {advice}")
    } else {
        format!("HTTP {status}: {advice} (server said: {server_message})")
    };
    SyncError { kind: kind.into(), message, status: Some(status) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(key: &SecretString) -> TlsSecret<'_> {
        TlsSecret { namespace: "istio-system", name: "web", chain_pem: "CHAIN", private_key_pem: key, ca_pem: None, version: 2 }
    }

    #[test]
    fn manifest_has_tls_type_and_label() {
        let key = SecretString::new("KEY");

        let manifest = secret(&key).manifest();

        assert_eq!(manifest["type"], "kubernetes.io/tls");
        assert_eq!(manifest["metadata"]["labels"][MANAGED_BY_LABEL], "meshcert");
        assert_eq!(manifest["metadata"]["annotations"][VERSION_ANNOTATION], "2");
        assert_eq!(manifest["data"]["tls.crt"], BASE64.encode("CHAIN"));
        assert_eq!(manifest["data"]["tls.key"], BASE64.encode("KEY"));
        assert!(manifest["data"].get("ca.crt").is_none());
    }

    #[test]
    fn apply_request_is_server_side_apply() {
        let key = SecretString::new("KEY");

        let request = apply_secret_request("https://east.example:6443/", &SecretString::new("t0ken"), &secret(&key)).unwrap();

        assert_eq!(request.method(), http::Method::PATCH);
        assert_eq!(
            request.uri().to_string(),
            "https://east.example:6443/api/v1/namespaces/istio-system/secrets/web?fieldManager=meshcert&force=true"
        );
        assert_eq!(request.headers()[http::header::CONTENT_TYPE], "application/apply-patch+yaml");
        assert_eq!(request.headers()[http::header::AUTHORIZATION], "Bearer t0ken");
    }

    #[test]
    fn apply_request_rejects_bad_server() {
        let key = SecretString::new("KEY");

        assert!(apply_secret_request("ftp://x", &SecretString::new("t"), &secret(&key)).is_err());
        assert!(apply_secret_request("not a url", &SecretString::new("t"), &secret(&key)).is_err());
    }

    #[test]
    fn delete_request_has_precondition() {
        let request = delete_secret_request("https://east.example:6443", &SecretString::new("t"), "istio-system", "web", "42").unwrap();

        let options: Value = serde_json::from_slice(request.body()).unwrap();

        assert_eq!(request.method(), http::Method::DELETE);
        assert_eq!(request.uri().to_string(), "https://east.example:6443/api/v1/namespaces/istio-system/secrets/web");
        assert_eq!(options["preconditions"]["resourceVersion"], "42");
    }

    #[test]
    fn live_secret_is_deletable_only_when_managed() {
        let key = SecretString::new("KEY");
        let mut managed = secret(&key).manifest();
        managed["metadata"]["resourceVersion"] = "7".into();
        let unmanaged = json!({ "metadata": { "name": "web", "resourceVersion": "8" }, "type": "kubernetes.io/tls" });
        let other = json!({ "metadata": { "labels": { MANAGED_BY_LABEL: MANAGED_BY_VALUE }, "annotations": { CERTIFICATE_ANNOTATION: "shop/web" } } });

        let live = LiveSecret::parse(managed.to_string().as_bytes()).unwrap();

        assert_eq!(live.resource_version.as_deref(), Some("7"));
        assert!(live.deletable_for("istio-system", "web"));
        assert!(!LiveSecret::parse(unmanaged.to_string().as_bytes()).unwrap().deletable_for("istio-system", "web"));
        assert!(!LiveSecret::parse(other.to_string().as_bytes()).unwrap().deletable_for("istio-system", "web"));
        assert_eq!(LiveSecret::parse(b"not json"), None);
    }

    #[test]
    fn plan_compares_live_content() {
        let key = SecretString::new("KEY");
        let ours = secret(&key);
        let fingerprint = ours.fingerprint();
        let mut manifest = ours.manifest();
        let live = LiveSecret::parse(manifest.to_string().as_bytes()).unwrap();

        assert_eq!(plan_apply(None, "istio-system", "web", 2, &fingerprint), PlannedAction::Create);
        assert_eq!(plan_apply(Some(&live), "istio-system", "web", 2, &fingerprint), PlannedAction::Unchanged);
        assert_eq!(plan_apply(Some(&live), "istio-system", "web", 3, "other"), PlannedAction::Update);

        manifest["data"]["tls.crt"] = BASE64.encode("EDITED").into();
        let edited = LiveSecret::parse(manifest.to_string().as_bytes()).unwrap();
        assert_eq!(plan_apply(Some(&edited), "istio-system", "web", 2, &fingerprint), PlannedAction::Drifted);

        manifest["metadata"]["labels"] = json!({});
        let foreign = LiveSecret::parse(manifest.to_string().as_bytes()).unwrap();
        assert_eq!(plan_apply(Some(&foreign), "istio-system", "web", 2, &fingerprint), PlannedAction::Conflict);
    }

    #[test]
    fn status_error_keeps_meaning() {
        let body = br#"{"kind":"Status","message":"namespaces \"shop\" not found","reason":"NotFound","code":404}"#;

        let error = status_error(404, body);

        assert_eq!(error.kind, "namespace_not_found");
        assert!(error.message.contains("namespaces \"shop\" not found"));
        assert_eq!(status_error(403, b"").kind, "forbidden");
        assert_eq!(status_error(503, b"").kind, "server_error");
    }

    #[test]
    fn fingerprint_changes_with_content() {
        let key = SecretString::new("KEY");
        let other_key = SecretString::new("KEY2");

        assert_ne!(secret(&key).fingerprint(), secret(&other_key).fingerprint());
        assert_eq!(secret(&key).fingerprint(), secret(&key).fingerprint());
    }
}
