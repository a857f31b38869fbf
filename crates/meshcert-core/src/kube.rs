//! Kubernetes requests as values: the Secrets meshcert applies, the HTTP requests that read,
//! write and delete them, and the meaning of the API server's responses. Nothing here sends
//! anything.

use std::collections::{BTreeMap, BTreeSet};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::records::SyncError;
use crate::secret::SecretString;

/// Label that marks a Secret as meshcert's; only Secrets with it are ever changed or deleted.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY_VALUE: &str = "meshcert";
/// The field manager of meshcert's writes.
pub const FIELD_MANAGER: &str = "meshcert";
/// Annotation with the certificate's version number.
pub const VERSION_ANNOTATION: &str = "meshcert.io/version";
/// Annotation with the certificate's content fingerprint ([`content_fingerprint`]).
pub const FINGERPRINT_ANNOTATION: &str = "meshcert.io/fingerprint";
/// Annotation with `namespace/name` of the certificate.
pub const CERTIFICATE_ANNOTATION: &str = "meshcert.io/certificate";
/// The maximum length of the bearer token meshcert sends. ServiceAccount tokens are JWTs of one or two KiB, and
/// a longer header exceeds what the host lets a component send (Spin limits the total size of a
/// request's header fields).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// The largest Secret the API server stores: 1 MiB.
pub const MAX_SECRET_BYTES: usize = 1024 * 1024;
/// The `type` of the Secret Istio gateways read a certificate from.
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";
/// The `type` of the separate CA Secret.
pub const OPAQUE_SECRET_TYPE: &str = "Opaque";
/// Suffix of the separate CA Secret's name: Istio reads `{credentialName}-cacert` before the
/// `ca.crt` inside `{credentialName}`.
pub const CA_SECRET_SUFFIX: &str = "-cacert";

/// The data keys from which Istio reads a certificate: the generic `cert`, `key`, `cacert`,
/// which it reads first, and the `kubernetes.io/tls` ones.
pub const ISTIO_KEYS: [&str; 6] = ["cert", "key", "cacert", "tls.crt", "tls.key", "ca.crt"];

/// The key names of a Secret's certificate entries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyFormat {
    /// `tls.crt`, `tls.key`, `ca.crt`.
    #[default]
    Tls,
    /// Istio's generic `cert`, `key`, `cacert`.
    Generic,
}

/// The `type` and key names of a Secret that meshcert adopted, in which it keeps writing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretFormat {
    /// `type`, such as `kubernetes.io/tls` or `Opaque`.
    #[serde(rename = "type")]
    pub secret_type: String,
    /// The key names.
    pub keys: KeyFormat,
}

/// The content of one certificate's Secrets, as read from the store.
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

    /// Builds the `kubernetes.io/tls` Secret named after the certificate.
    pub fn tls_secret(&self) -> DesiredSecret {
        self.tls_secret_in(None)
    }

    /// Builds the Secret named after the certificate in `format`. `None` is meshcert's own
    /// format (`kubernetes.io/tls` with `tls.crt`, `tls.key`, `ca.crt`). An adopted Secret keeps
    /// its `type` and key names, so the gateways that read it never see it deleted and created.
    pub fn tls_secret_in(&self, format: Option<&SecretFormat>) -> DesiredSecret {
        let (chain, key, ca) = match format.map(|format| format.keys) {
            Some(KeyFormat::Generic) => ("cert", "key", "cacert"),
            _ => ("tls.crt", "tls.key", "ca.crt"),
        };
        let mut data = BTreeMap::new();
        data.insert(chain, SecretString::new(self.chain_pem));
        data.insert(key, self.private_key_pem.clone());
        if let Some(ca_pem) = self.ca_pem {
            data.insert(ca, SecretString::new(ca_pem));
        }
        let secret_type = format.map_or(TLS_SECRET_TYPE, |format| format.secret_type.as_str());
        let mut secret = self.desired(self.name.to_string(), secret_type, data);
        secret.keeps_other_keys = format.is_some();
        secret
    }

    /// Builds the separate `{name}-cacert` Secret with the mTLS CA as `cacert`; `None` without a CA.
    pub fn ca_secret(&self) -> Option<DesiredSecret> {
        let ca_pem = self.ca_pem?;
        let data = BTreeMap::from([("cacert", SecretString::new(ca_pem))]);
        Some(self.desired(ca_secret_name(self.name), OPAQUE_SECRET_TYPE, data))
    }

    /// Builds the `kubernetes.io/tls` Secret object, as [`DesiredSecret::manifest`] does.
    pub fn manifest(&self) -> Value {
        self.tls_secret().manifest()
    }

    fn desired(&self, name: String, secret_type: &str, data: BTreeMap<&'static str, SecretString>) -> DesiredSecret {
        DesiredSecret {
            namespace: self.namespace.to_string(),
            name,
            certificate: format!("{}/{}", self.namespace, self.name),
            secret_type: secret_type.to_string(),
            keeps_other_keys: false,
            version: self.version,
            fingerprint: self.fingerprint(),
            data,
        }
    }
}

/// Returns the name of the separate CA Secret of certificate `name`.
pub fn ca_secret_name(name: &str) -> String {
    format!("{name}{CA_SECRET_SUFFIX}")
}

/// A Secret as meshcert wants it in a cluster.
#[derive(Clone, Debug)]
pub struct DesiredSecret {
    /// Namespace.
    pub namespace: String,
    /// Name: the certificate's name, or [`ca_secret_name`] of it.
    pub name: String,
    /// `namespace/name` of the certificate, for [`CERTIFICATE_ANNOTATION`].
    pub certificate: String,
    /// `type`.
    pub secret_type: String,
    /// Whether data entries that Istio does not read as a certificate (a CRL, say) stay, as in
    /// an adopted Secret, instead of being removed.
    pub keeps_other_keys: bool,
    /// The certificate's version, for [`VERSION_ANNOTATION`].
    pub version: u32,
    /// The certificate's content fingerprint, for [`FINGERPRINT_ANNOTATION`].
    pub fingerprint: String,
    /// `data`, by key, before base64.
    data: BTreeMap<&'static str, SecretString>,
}

impl DesiredSecret {
    /// SHA-256 of each data entry, by key, as [`LiveSecret::data_digests`] contains them.
    pub fn data_digests(&self) -> BTreeMap<String, String> {
        self.data.iter().map(|(key, value)| ((*key).to_string(), digest(value.expose().as_bytes()))).collect()
    }

    /// Builds the Secret object: meshcert's label, the certificate's annotations, `type` and `data`.
    pub fn manifest(&self) -> Value {
        let data: serde_json::Map<String, Value> =
            self.data.iter().map(|(key, value)| ((*key).to_string(), Value::String(BASE64.encode(value.expose())))).collect();
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": { MANAGED_BY_LABEL: MANAGED_BY_VALUE },
                "annotations": {
                    VERSION_ANNOTATION: self.version.to_string(),
                    FINGERPRINT_ANNOTATION: self.fingerprint,
                    CERTIFICATE_ANNOTATION: self.certificate,
                },
            },
            "type": self.secret_type,
            "data": data,
        })
    }

    /// Serializes `object` as a request body, refusing a Secret over the API server's limit.
    fn body(&self, object: &Value) -> Result<Vec<u8>, RequestError> {
        let body = serde_json::to_vec(object).map_err(|error| RequestError::Http(error.to_string()))?;
        if body.len() > MAX_SECRET_BYTES {
            return Err(RequestError::SecretTooLarge { namespace: self.namespace.clone(), name: self.name.clone(), size: body.len() });
        }
        Ok(body)
    }
}

/// Computes the fingerprint of a certificate's content: SHA-256 over `tls.crt`, `tls.key` and
/// `ca.crt`, each prefixed with its name and length so that moving bytes between entries changes it.
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

fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The reason a request could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The cluster's `api_server` is not a usable base URL.
    #[error("api_server {0:?} is not a valid http(s) URL")]
    InvalidApiServer(String),
    /// The Secret is over the API server's limit.
    #[error("Secret {namespace}/{name} would be {size} bytes, over the 1 MiB limit of Kubernetes Secrets: shorten the chain or the CA bundle")]
    SecretTooLarge {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Size of the request body.
        size: usize,
    },
    /// The token is longer than [`MAX_TOKEN_BYTES`].
    #[error("the cluster's token is {0} bytes, over the limit of 16 KiB: rotate it with a PATCH of the cluster")]
    TokenTooLong(usize),
    /// The http crate rejected the request.
    #[error("cannot build the request: {0}")]
    Http(String),
}

impl RequestError {
    /// Converts the error to a recorded sync failure of kind `too_large`, `invalid_token` or `invalid`.
    pub fn into_sync_error(self) -> SyncError {
        let kind = match self {
            RequestError::SecretTooLarge { .. } => "too_large",
            RequestError::TokenTooLong(_) => "invalid_token",
            _ => "invalid",
        };
        SyncError { kind: kind.into(), message: self.to_string(), status: None }
    }
}

/// Builds the server-side apply of `secret`:
/// `PATCH /api/v1/namespaces/{ns}/secrets/{name}?fieldManager=meshcert&force=true` with
/// `Content-Type: application/apply-patch+yaml` (JSON is valid YAML). It creates the Secret or
/// overwrites it, so it is sent only for a Secret that meshcert manages.
///
/// With `resource_version`, that of the Secret the sync read, the apply carries it in
/// `metadata.resourceVersion`, which the API server takes as a precondition: 409 Conflict
/// ([`status_error`] kind `conflict`) when the Secret changed after the read. So a sync that read an older head
/// cannot write over the newer version that another sync wrote meanwhile.
///
/// # Errors
///
/// [`RequestError`] for a bad `api_server` or a Secret over 1 MiB.
pub fn apply_secret_request(
    api_server: &str,
    token: &SecretString,
    secret: &DesiredSecret,
    resource_version: Option<&str>,
) -> Result<http::Request<Vec<u8>>, RequestError> {
    let mut manifest = secret.manifest();
    if let Some(resource_version) = resource_version {
        manifest["metadata"]["resourceVersion"] = resource_version.into();
    }
    let body = secret.body(&manifest)?;
    let url = secret_url(api_server, &secret.namespace, Some(&secret.name), &format!("?fieldManager={FIELD_MANAGER}&force=true"))?;
    request(http::Method::PATCH, url, token, Some("application/apply-patch+yaml"), body)
}

/// Builds `POST /api/v1/namespaces/{ns}/secrets?fieldManager=meshcert`, which creates `secret`
/// and fails with 409 `AlreadyExists` when a Secret of that name exists: a Secret that meshcert
/// does not manage is never overwritten, even when it appears between the LIST and the write.
///
/// # Errors
///
/// [`RequestError`] for a bad `api_server` or a Secret over 1 MiB.
pub fn create_secret_request(api_server: &str, token: &SecretString, secret: &DesiredSecret) -> Result<http::Request<Vec<u8>>, RequestError> {
    let body = secret.body(&secret.manifest())?;
    let url = secret_url(api_server, &secret.namespace, None, &format!("?fieldManager={FIELD_MANAGER}"))?;
    request(http::Method::POST, url, token, Some("application/json"), body)
}

/// Builds a JSON merge patch that writes `secret` over the managed Secret at `resource_version`
/// and removes the data entries `stale_keys`. Server-side apply removes only the entries that
/// meshcert's own apply wrote, so an entry written another way (`ca.crt` from a create, generic
/// `cert`/`key` added by hand) needs this patch. The resourceVersion is a precondition: the API
/// server responds 409 when the Secret changed after meshcert read it.
///
/// # Errors
///
/// [`RequestError`] for a bad `api_server` or a Secret over 1 MiB.
pub fn replace_data_request(
    api_server: &str,
    token: &SecretString,
    secret: &DesiredSecret,
    stale_keys: &[String],
    resource_version: &str,
) -> Result<http::Request<Vec<u8>>, RequestError> {
    let mut patch = secret.manifest();
    patch["metadata"]["resourceVersion"] = resource_version.into();
    for key in stale_keys {
        patch["data"][key.as_str()] = Value::Null;
    }
    let body = secret.body(&patch)?;
    let url = secret_url(api_server, &secret.namespace, Some(&secret.name), &format!("?fieldManager={FIELD_MANAGER}"))?;
    request(http::Method::PATCH, url, token, Some("application/merge-patch+json"), body)
}

/// Builds the LIST of meshcert's Secrets in `namespace`:
/// `GET /api/v1/namespaces/{ns}/secrets?labelSelector=app.kubernetes.io/managed-by=meshcert`.
/// One such request gives the live state of every Secret meshcert manages there.
///
/// # Errors
///
/// [`RequestError::InvalidApiServer`] for a bad `api_server`.
pub fn list_secrets_request(api_server: &str, token: &SecretString, namespace: &str) -> Result<http::Request<Vec<u8>>, RequestError> {
    let url = secret_url(api_server, namespace, None, &format!("?labelSelector={MANAGED_BY_LABEL}%3D{MANAGED_BY_VALUE}"))?;
    request(http::Method::GET, url, token, None, Vec::new())
}

/// Builds the LIST of every Secret in `namespace`, meshcert's or not, to find Secrets to adopt.
///
/// # Errors
///
/// [`RequestError::InvalidApiServer`] for a bad `api_server`.
pub fn list_all_secrets_request(api_server: &str, token: &SecretString, namespace: &str) -> Result<http::Request<Vec<u8>>, RequestError> {
    let url = secret_url(api_server, namespace, None, "")?;
    request(http::Method::GET, url, token, None, Vec::new())
}

/// Builds `GET /api/v1/namespaces/{ns}/secrets/{name}`.
///
/// # Errors
///
/// [`RequestError::InvalidApiServer`] for a bad `api_server`.
pub fn get_secret_request(api_server: &str, token: &SecretString, namespace: &str, name: &str) -> Result<http::Request<Vec<u8>>, RequestError> {
    let url = secret_url(api_server, namespace, Some(name), "")?;
    request(http::Method::GET, url, token, None, Vec::new())
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
    let url = secret_url(api_server, namespace, Some(name), "")?;
    let options = json!({
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "preconditions": { "resourceVersion": resource_version },
    });
    request(http::Method::DELETE, url, token, Some("application/json"), options.to_string().into_bytes())
}

/// Builds `GET /version`, which any authenticated client may read: it shows that the API server
/// responds and accepts the token.
///
/// # Errors
///
/// [`RequestError::InvalidApiServer`] for a bad `api_server`.
pub fn version_request(api_server: &str, token: &SecretString) -> Result<http::Request<Vec<u8>>, RequestError> {
    let url = format!("{}/version", base_url(api_server)?);
    request(http::Method::GET, url, token, None, Vec::new())
}

pub(crate) fn request(method: http::Method, url: String, token: &SecretString, content_type: Option<&str>, body: Vec<u8>) -> Result<http::Request<Vec<u8>>, RequestError> {
    if token.expose().len() > MAX_TOKEN_BYTES {
        return Err(RequestError::TokenTooLong(token.expose().len()));
    }
    let mut builder = http::Request::builder()
        .method(method)
        .uri(url)
        .header(http::header::AUTHORIZATION, format!("Bearer {}", token.expose()))
        .header(http::header::ACCEPT, "application/json");
    if let Some(content_type) = content_type {
        builder = builder.header(http::header::CONTENT_TYPE, content_type);
    }
    builder.body(body).map_err(|error| RequestError::Http(error.to_string()))
}

/// The facts meshcert reads from a live Secret: its owner, its revision, and whether its content
/// is what meshcert last applied. The data itself is kept only as digests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveSecret {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.resourceVersion`.
    pub resource_version: Option<String>,
    /// `type`.
    pub secret_type: Option<String>,
    /// Whether it carries `app.kubernetes.io/managed-by: meshcert`.
    pub managed: bool,
    /// The `meshcert.io/certificate` annotation: `namespace/name` of the certificate it holds.
    pub certificate: Option<String>,
    /// The `meshcert.io/version` annotation.
    pub version: Option<u32>,
    /// The `meshcert.io/fingerprint` annotation: the content meshcert applied.
    pub fingerprint: Option<String>,
    /// SHA-256 of each `data` entry's decoded bytes, by key; an entry that is not valid base64
    /// gets an empty digest, which matches nothing.
    pub data_digests: BTreeMap<String, String>,
}

impl LiveSecret {
    /// Reads a Secret object from a GET response body; `None` when it is not one.
    pub fn parse(body: &[u8]) -> Option<Self> {
        Self::from_object(&serde_json::from_slice(body).ok()?)
    }

    /// Reads the items of a `SecretList` response body; `None` when it is not one.
    pub fn parse_list(body: &[u8]) -> Option<Vec<Self>> {
        let list: Value = serde_json::from_slice(body).ok()?;
        list.get("items")?.as_array()?.iter().map(Self::from_object).collect()
    }

    /// Reads a Secret object, such as an item of a list already parsed; `None` when it is not one.
    pub fn from_object(secret: &Value) -> Option<Self> {
        let metadata = secret.get("metadata")?;
        let annotation = |name: &str| metadata["annotations"][name].as_str().map(str::to_string);
        let data_digests = secret["data"]
            .as_object()
            .map(|data| {
                data.iter()
                    .map(|(key, value)| {
                        let decoded = value.as_str().and_then(|encoded| BASE64.decode(encoded).ok());
                        (key.clone(), decoded.map(|bytes| digest(&bytes)).unwrap_or_default())
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(Self {
            name: metadata["name"].as_str().unwrap_or_default().to_string(),
            resource_version: metadata["resourceVersion"].as_str().map(str::to_string),
            secret_type: secret["type"].as_str().map(str::to_string),
            managed: metadata["labels"][MANAGED_BY_LABEL].as_str() == Some(MANAGED_BY_VALUE),
            certificate: annotation(CERTIFICATE_ANNOTATION),
            version: annotation(VERSION_ANNOTATION).and_then(|version| version.parse().ok()),
            fingerprint: annotation(FINGERPRINT_ANNOTATION),
            data_digests,
        })
    }

    /// Returns whether meshcert may change or delete it as a Secret of certificate `certificate`
    /// (`namespace/name`): it carries meshcert's label, and its certificate annotation, when
    /// present, names that certificate.
    pub fn managed_for(&self, certificate: &str) -> bool {
        self.managed && self.certificate.as_deref().is_none_or(|annotated| annotated == certificate)
    }

    /// The data entries it has that `desired` does not, which a write must remove: Istio reads a
    /// generic `cert`/`key` before `tls.crt`/`tls.key`, so a stale one would shadow the new content.
    pub fn stale_keys(&self, desired: &DesiredSecret) -> Vec<String> {
        let wanted: BTreeSet<&str> = desired.data.keys().copied().collect();
        self.data_digests
            .keys()
            .filter(|key| !wanted.contains(key.as_str()))
            .filter(|key| !desired.keeps_other_keys || ISTIO_KEYS.contains(&key.as_str()))
            .cloned()
            .collect()
    }

    /// Returns the digests of the entries `desired` manages: every entry, or in a Secret that keeps
    /// other entries, only those Istio reads as a certificate.
    fn managed_digests(&self, desired: &DesiredSecret) -> BTreeMap<String, String> {
        self.data_digests
            .iter()
            .filter(|(key, _)| !desired.keeps_other_keys || ISTIO_KEYS.contains(&key.as_str()))
            .map(|(key, digest)| (key.clone(), digest.clone()))
            .collect()
    }
}

/// The action of a sync on one Secret, decided from the live Secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlannedAction {
    /// No Secret of that name: it is created.
    Create,
    /// meshcert's Secret contains another version: it is replaced.
    Update,
    /// meshcert's Secret contains this version, untouched: nothing to send.
    Unchanged,
    /// meshcert's Secret claims this version but its data was edited in the cluster: it is repaired.
    Drifted,
    /// meshcert's Secret has another `type`, which cannot change in place: it is deleted and created.
    Recreate,
    /// meshcert's Secret contains a newer version of the certificate than this sync's, which a
    /// sync that read a newer head wrote: left as it is. The caller checks that the head moved on (see
    /// [`plan_apply`]).
    Superseded,
    /// A Secret of that name that meshcert does not manage: left alone.
    Conflict,
    /// A Secret of that name that meshcert did not manage, taken over because an import asked
    /// for it: labelled and written with the certificate.
    Adopt,
    /// meshcert's Secret is no longer wanted there: it is removed.
    Delete,
    /// Nothing of meshcert's is there and nothing should be: nothing to do.
    Absent,
}

impl PlannedAction {
    /// Returns whether the action writes the Secret.
    pub fn applies(self) -> bool {
        matches!(self, PlannedAction::Create | PlannedAction::Update | PlannedAction::Drifted | PlannedAction::Recreate | PlannedAction::Adopt)
    }
}

/// Decides what to do with the Secret `desired`, given the live Secret of that name (`None` when
/// the cluster has none).
pub fn plan_apply(live: Option<&LiveSecret>, desired: &DesiredSecret) -> PlannedAction {
    let Some(live) = live else {
        return PlannedAction::Create;
    };
    if !live.managed_for(&desired.certificate) {
        return PlannedAction::Conflict;
    }
    if live.secret_type.as_deref() != Some(desired.secret_type.as_str()) {
        return PlannedAction::Recreate;
    }
    // A newer version of the certificate, which a concurrent sync wrote. A leftover of a deleted
    // certificate of the same name can carry a higher number too, so the caller writes over it
    // unless the head moved past `desired.version`.
    if live.version.is_some_and(|version| version > desired.version) {
        return PlannedAction::Superseded;
    }
    let claims_this_version = live.version == Some(desired.version) && live.fingerprint.as_deref() == Some(desired.fingerprint.as_str());
    match (claims_this_version, live.managed_digests(desired) == desired.data_digests()) {
        (true, true) => PlannedAction::Unchanged,
        (true, false) => PlannedAction::Drifted,
        (false, _) => PlannedAction::Update,
    }
}

/// Decides what to do with a Secret that meshcert no longer wants in a cluster, because its
/// certificate is deleted, its selector no longer matches, or mTLS was turned off. It is removed
/// when it is meshcert's Secret of `certificate`, and otherwise left alone.
pub fn plan_removal(live: Option<&LiveSecret>, certificate: &str) -> PlannedAction {
    match live {
        Some(live) if live.managed_for(certificate) => PlannedAction::Delete,
        _ => PlannedAction::Absent,
    }
}

pub(crate) fn base_url(api_server: &str) -> Result<String, RequestError> {
    let base = url::Url::parse(api_server).map_err(|_| RequestError::InvalidApiServer(api_server.into()))?;
    if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
        return Err(RequestError::InvalidApiServer(api_server.into()));
    }
    Ok(base.as_str().trim_end_matches('/').to_string())
}

fn secret_url(api_server: &str, namespace: &str, name: Option<&str>, query: &str) -> Result<String, RequestError> {
    // Namespace and name are DNS-1123 names, so they need no percent-encoding.
    let base = base_url(api_server)?;
    Ok(match name {
        Some(name) => format!("{base}/api/v1/namespaces/{namespace}/secrets/{name}{query}"),
        None => format!("{base}/api/v1/namespaces/{namespace}/secrets{query}"),
    })
}

/// The outcome of a write, read from the API server's response.
#[derive(Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Written; the Secret's new resourceVersion.
    Applied {
        /// `metadata.resourceVersion` of the stored Secret.
        resource_version: Option<String>,
    },
    /// Rejected, with the reason kept in its Kubernetes meaning.
    Failed(SyncError),
}

/// Reads the response to a write: a 2xx with the Secret, or a Kubernetes `Status` error.
pub fn read_apply_response(status: u16, body: &[u8]) -> ApplyOutcome {
    if (200..300).contains(&status) {
        let resource_version = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|secret| secret["metadata"]["resourceVersion"].as_str().map(str::to_string));
        return ApplyOutcome::Applied { resource_version };
    }
    ApplyOutcome::Failed(status_error(status, body))
}

/// Returns whether a response is a `Status` with reason `AlreadyExists`: a create found a
/// Secret of that name.
pub fn is_already_exists(status: u16, body: &[u8]) -> bool {
    status == 409 && serde_json::from_slice::<Value>(body).is_ok_and(|status| status["reason"] == "AlreadyExists")
}

/// Turns a non-2xx response into a [`SyncError`] that keeps the status's Kubernetes meaning.
pub fn status_error(status: u16, body: &[u8]) -> SyncError {
    let parsed = serde_json::from_slice::<Value>(body).ok();
    let server_message = parsed
        .as_ref()
        .and_then(|value| value["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).trim().to_string());
    let missing_namespace = parsed.as_ref().is_some_and(|value| value["details"]["kind"] == "namespaces") || server_message.starts_with("namespaces \"");

    let (kind, advice) = match status {
        401 => ("unauthorized", "the cluster rejected the token: check that meshcert's ServiceAccount token in this cluster is still valid, and rotate it with a PATCH of this cluster"),
        403 => ("forbidden", "the token lacks RBAC permission: grant get, list, create, patch and delete on Secrets in this namespace (see the README)"),
        404 if missing_namespace => ("namespace_not_found", "the namespace does not exist in this cluster: create it, or move the certificate to the gateway's namespace"),
        404 => ("not_found", "the Secret disappeared during the sync: the next sync creates it again"),
        409 => ("conflict", "the Secret changed during the sync: the next sync reads it again"),
        422 => ("invalid", "the API server rejected the Secret as invalid"),
        429 => ("rate_limited", "the API server kept throttling requests: the next sync retries"),
        500..=599 => ("server_error", "the API server kept failing: the next sync retries"),
        _ => ("unexpected_response", "unexpected answer from the API server"),
    };
    let message = if server_message.is_empty() {
        format!("HTTP {status}: {advice}")
    } else {
        format!("HTTP {status}: {advice} (server said: {server_message})")
    };
    SyncError { kind: kind.into(), message, status: Some(status) }
}

/// Returns whether a failed request is worth repeating within the same sync. Throttling, server
/// errors, timeouts and refused connections are, because they pass; another 4xx fails the same way again.
pub fn is_retryable(error: &SyncError) -> bool {
    matches!(error.kind.as_str(), "rate_limited" | "server_error" | "timeout" | "connection_refused")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(key: &SecretString) -> TlsSecret<'_> {
        TlsSecret { namespace: "istio-system", name: "web", chain_pem: "CHAIN", private_key_pem: key, ca_pem: None, version: 2 }
    }

    fn live(manifest: &Value) -> LiveSecret {
        LiveSecret::parse(manifest.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn manifest_has_tls_type_and_label() {
        let key = SecretString::new("KEY");

        let manifest = secret(&key).manifest();

        assert_eq!(manifest["type"], "kubernetes.io/tls");
        assert_eq!(manifest["metadata"]["labels"][MANAGED_BY_LABEL], "meshcert");
        assert_eq!(manifest["metadata"]["annotations"][VERSION_ANNOTATION], "2");
        assert_eq!(manifest["metadata"]["annotations"][CERTIFICATE_ANNOTATION], "istio-system/web");
        assert_eq!(manifest["data"]["tls.crt"], BASE64.encode("CHAIN"));
        assert_eq!(manifest["data"]["tls.key"], BASE64.encode("KEY"));
        assert!(manifest["data"].get("ca.crt").is_none());
    }

    #[test]
    fn ca_secret_holds_only_the_ca() {
        let key = SecretString::new("KEY");
        let mtls = TlsSecret { ca_pem: Some("CA"), ..secret(&key) };

        let manifest = mtls.ca_secret().unwrap().manifest();

        assert!(secret(&key).ca_secret().is_none());
        assert_eq!(manifest["metadata"]["name"], "web-cacert");
        assert_eq!(manifest["type"], "Opaque");
        assert_eq!(manifest["data"], json!({ "cacert": BASE64.encode("CA") }));
        assert_eq!(manifest["metadata"]["annotations"][CERTIFICATE_ANNOTATION], "istio-system/web");
        assert_eq!(mtls.tls_secret().manifest()["data"]["ca.crt"], BASE64.encode("CA"));
    }

    #[test]
    fn apply_request_is_server_side_apply() {
        let key = SecretString::new("KEY");

        let request = apply_secret_request("https://east.example:6443/", &SecretString::new("t0ken"), &secret(&key).tls_secret(), None).unwrap();

        assert_eq!(request.method(), http::Method::PATCH);
        assert_eq!(
            request.uri().to_string(),
            "https://east.example:6443/api/v1/namespaces/istio-system/secrets/web?fieldManager=meshcert&force=true"
        );
        assert_eq!(request.headers()[http::header::CONTENT_TYPE], "application/apply-patch+yaml");
        assert_eq!(request.headers()[http::header::AUTHORIZATION], "Bearer t0ken");
        let body: Value = serde_json::from_slice(request.body()).unwrap();
        assert!(body["metadata"].get("resourceVersion").is_none(), "{body}");

        let conditional = apply_secret_request("https://east.example:6443/", &SecretString::new("t0ken"), &secret(&key).tls_secret(), Some("41")).unwrap();
        let body: Value = serde_json::from_slice(conditional.body()).unwrap();
        assert_eq!(body["metadata"]["resourceVersion"], "41");
    }

    #[test]
    fn create_and_list_requests() {
        let key = SecretString::new("KEY");
        let token = SecretString::new("t");

        let create = create_secret_request("https://east.example:6443", &token, &secret(&key).tls_secret()).unwrap();
        let list = list_secrets_request("https://east.example:6443", &token, "istio-system").unwrap();

        assert_eq!(create.method(), http::Method::POST);
        assert_eq!(create.uri().to_string(), "https://east.example:6443/api/v1/namespaces/istio-system/secrets?fieldManager=meshcert");
        assert_eq!(list.method(), http::Method::GET);
        assert_eq!(
            list.uri().to_string(),
            "https://east.example:6443/api/v1/namespaces/istio-system/secrets?labelSelector=app.kubernetes.io/managed-by%3Dmeshcert"
        );
    }

    #[test]
    fn merge_patch_removes_stale_keys() {
        let key = SecretString::new("KEY");

        let request =
            replace_data_request("https://east.example:6443", &SecretString::new("t"), &secret(&key).tls_secret(), &["cert".into()], "41").unwrap();
        let patch: Value = serde_json::from_slice(request.body()).unwrap();

        assert_eq!(request.headers()[http::header::CONTENT_TYPE], "application/merge-patch+json");
        assert_eq!(patch["metadata"]["resourceVersion"], "41");
        assert_eq!(patch["data"]["cert"], Value::Null);
        assert_eq!(patch["data"]["tls.key"], BASE64.encode("KEY"));
    }

    #[test]
    fn requests_refuse_a_secret_over_one_mebibyte() {
        let key = SecretString::new("KEY");
        let chain = "A".repeat(MAX_SECRET_BYTES);
        let big = TlsSecret { chain_pem: &chain, ..secret(&key) };

        let error = create_secret_request("https://east.example:6443", &SecretString::new("t"), &big.tls_secret()).unwrap_err();

        assert!(matches!(error, RequestError::SecretTooLarge { .. }));
        assert_eq!(error.into_sync_error().kind, "too_large");
    }

    #[test]
    fn apply_request_rejects_bad_server() {
        let key = SecretString::new("KEY");

        assert!(apply_secret_request("ftp://x", &SecretString::new("t"), &secret(&key).tls_secret(), None).is_err());
        assert!(apply_secret_request("not a url", &SecretString::new("t"), &secret(&key).tls_secret(), None).is_err());
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
    fn live_secret_is_managed_only_with_label_and_own_annotation() {
        let key = SecretString::new("KEY");
        let mut managed = secret(&key).manifest();
        managed["metadata"]["resourceVersion"] = "7".into();
        let unmanaged = json!({ "metadata": { "name": "web", "resourceVersion": "8" }, "type": "kubernetes.io/tls" });
        let other = json!({ "metadata": { "labels": { MANAGED_BY_LABEL: MANAGED_BY_VALUE }, "annotations": { CERTIFICATE_ANNOTATION: "shop/web" } } });

        let parsed = live(&managed);

        assert_eq!(parsed.resource_version.as_deref(), Some("7"));
        assert_eq!(parsed.name, "web");
        assert!(parsed.managed_for("istio-system/web"));
        assert!(!live(&unmanaged).managed_for("istio-system/web"));
        assert!(!live(&other).managed_for("istio-system/web"));
        assert_eq!(LiveSecret::parse(b"not json"), None);
    }

    #[test]
    fn list_parses_items() {
        let key = SecretString::new("KEY");
        let list = json!({ "kind": "SecretList", "items": [secret(&key).manifest()] });

        let items = LiveSecret::parse_list(list.to_string().as_bytes()).unwrap();

        assert_eq!(items.len(), 1);
        assert_eq!(items[0].data_digests.len(), 2);
        assert_eq!(LiveSecret::parse_list(b"{}"), None);
    }

    #[test]
    fn plan_compares_live_content() {
        let key = SecretString::new("KEY");
        let desired = secret(&key).tls_secret();
        let mut manifest = desired.manifest();
        let newer = TlsSecret { version: 3, ..secret(&key) }.tls_secret();

        assert_eq!(plan_apply(None, &desired), PlannedAction::Create);
        assert_eq!(plan_apply(Some(&live(&manifest)), &desired), PlannedAction::Unchanged);
        assert_eq!(plan_apply(Some(&live(&manifest)), &newer), PlannedAction::Update);
        let newer_manifest = newer.manifest();
        assert_eq!(plan_apply(Some(&live(&newer_manifest)), &desired), PlannedAction::Superseded);

        manifest["data"]["tls.crt"] = BASE64.encode("EDITED").into();
        assert_eq!(plan_apply(Some(&live(&manifest)), &desired), PlannedAction::Drifted);

        manifest["type"] = "Opaque".into();
        assert_eq!(plan_apply(Some(&live(&manifest)), &desired), PlannedAction::Recreate);

        manifest["metadata"]["labels"] = json!({});
        assert_eq!(plan_apply(Some(&live(&manifest)), &desired), PlannedAction::Conflict);
    }

    #[test]
    fn generic_entries_are_drift_and_stale() {
        let key = SecretString::new("KEY");
        let desired = secret(&key).tls_secret();
        let mut manifest = desired.manifest();
        manifest["data"]["cert"] = BASE64.encode("OLD").into();

        let parsed = live(&manifest);

        assert_eq!(plan_apply(Some(&parsed), &desired), PlannedAction::Drifted);
        assert_eq!(parsed.stale_keys(&desired), vec!["cert".to_string()]);
    }

    #[test]
    fn removal_only_of_managed_secrets() {
        let key = SecretString::new("KEY");
        let mut manifest = secret(&key).manifest();

        assert_eq!(plan_removal(Some(&live(&manifest)), "istio-system/web"), PlannedAction::Delete);
        assert_eq!(plan_removal(None, "istio-system/web"), PlannedAction::Absent);

        manifest["metadata"]["labels"] = json!({});
        assert_eq!(plan_removal(Some(&live(&manifest)), "istio-system/web"), PlannedAction::Absent);
    }

    #[test]
    fn status_error_keeps_meaning() {
        let body = br#"{"kind":"Status","message":"namespaces \"shop\" not found","reason":"NotFound","details":{"name":"shop","kind":"namespaces"},"code":404}"#;
        let gone = br#"{"kind":"Status","message":"secrets \"web\" not found","reason":"NotFound","details":{"name":"web","kind":"secrets"},"code":404}"#;

        let error = status_error(404, body);

        assert_eq!(error.kind, "namespace_not_found");
        assert!(error.message.contains("namespaces \"shop\" not found"));
        assert_eq!(status_error(404, gone).kind, "not_found");
        assert_eq!(status_error(403, b"").kind, "forbidden");
        assert_eq!(status_error(503, b"").kind, "server_error");
        assert!(is_retryable(&status_error(429, b"")));
        assert!(!is_retryable(&status_error(422, b"")));
        assert!(is_already_exists(409, br#"{"kind":"Status","reason":"AlreadyExists","code":409}"#));
        assert!(!is_already_exists(409, br#"{"kind":"Status","reason":"Conflict","code":409}"#));
    }

    #[test]
    fn fingerprint_changes_with_content() {
        let key = SecretString::new("KEY");
        let other_key = SecretString::new("KEY2");

        assert_ne!(secret(&key).fingerprint(), secret(&other_key).fingerprint());
        assert_eq!(secret(&key).fingerprint(), secret(&key).fingerprint());
    }
}
