//! Request and response bodies of the HTTP API and of the sync webhook.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::alerts::{AlertKind, AlertMember};
use crate::kube::PlannedAction;
use crate::records::{ClusterSyncState, SyncError, SyncState, VersionEntry};
use crate::secret::SecretString;
use crate::validate::{UploadSummary, Warning};

/// The namespace a certificate goes to when the request names none.
pub const DEFAULT_NAMESPACE: &str = "istio-system";

fn default_namespace() -> String {
    DEFAULT_NAMESPACE.into()
}

/// `POST /api/v1/certificates`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCertificateRequest {
    /// Secret name, used by gateways as `credentialName`.
    pub name: String,
    /// Namespace of the gateway workload.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// PEM chain, leaf first.
    pub certificate: String,
    /// PEM private key.
    pub private_key: SecretString,
    /// PEM CA certificate for mutual TLS.
    #[serde(default)]
    pub ca_certificate: Option<String>,
    /// Whether the Secret carries `ca.crt`.
    #[serde(default)]
    pub mtls: bool,
    /// Store an expired certificate anyway.
    #[serde(default)]
    pub allow_expired: bool,
    /// Label selector of target clusters, such as `env=prod`; all clusters when absent.
    #[serde(default)]
    pub clusters: Option<String>,
    /// Also write the CA to a separate `{name}-cacert` Secret (key `cacert`); needs mTLS.
    #[serde(default)]
    pub separate_ca_secret: bool,
}

/// `PUT /api/v1/certificates/{namespace}/{name}`: new content for a certificate (rotation).
///
/// `certificate` and `private_key` are required. The other fields keep their current value when
/// absent, so a rotation sends only the new chain and key. `ca_certificate: null` removes the CA,
/// and `clusters: null` sends the certificate to every cluster.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaceCertificateRequest {
    /// PEM chain, leaf first.
    pub certificate: String,
    /// PEM private key.
    pub private_key: SecretString,
    /// PEM CA certificate for mutual TLS: absent keeps it, `null` removes it.
    #[serde(default, deserialize_with = "present")]
    pub ca_certificate: Option<Option<String>>,
    /// Whether the Secret carries `ca.crt`; absent keeps it.
    #[serde(default)]
    pub mtls: Option<bool>,
    /// Store an expired certificate anyway.
    #[serde(default)]
    pub allow_expired: bool,
    /// Label selector of target clusters: absent keeps it, `null` means every cluster.
    #[serde(default, deserialize_with = "present")]
    pub clusters: Option<Option<String>>,
    /// Whether the CA also goes to a separate `{name}-cacert` Secret; absent keeps it.
    #[serde(default)]
    pub separate_ca_secret: Option<bool>,
}

/// `POST /api/v1/certificates/{namespace}/{name}/rollback`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The kept version whose content becomes current again, as a new version.
    pub version: u32,
    /// Restore it even when it has expired since.
    #[serde(default)]
    pub allow_expired: bool,
}

/// Reads a field that may be absent (outer `None`), `null` (`Some(None)`) or a value.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// `POST /api/v1/clusters`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateClusterRequest {
    /// Cluster id, a DNS-1123 label.
    pub id: String,
    /// A name for people.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Base URL of the Kubernetes API server.
    pub api_server: String,
    /// Bearer token of meshcert's ServiceAccount; never returned.
    pub token: SecretString,
    /// PEM CA bundle of the API server.
    #[serde(default)]
    pub ca_bundle: Option<String>,
    /// Labels for cluster selectors.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// The error body of every failed request: `{"error": {...}}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ApiError,
}

/// An API error: a stable code, a message naming the value and the fix, and the field.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApiError {
    /// Stable code, such as `key_mismatch`.
    pub code: String,
    /// The failure, the offending value and the fix.
    pub message: String,
    /// The request field concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// A certificate as the list shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct CertificateListItem {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `valid`, `expiring` or `expired`, from the earliest not_after of its members.
    pub status: String,
    /// Days left of the earliest member.
    pub days_left: i64,
    /// not_after of the leaf.
    pub not_after: DateTime<Utc>,
    /// Current version.
    pub version: u32,
    /// One word: `synced`, `partial`, `failed`, `pending` or `none`.
    pub sync: String,
    /// The state in each registered cluster the certificate goes to, by cluster id, so that a
    /// list shows where it is without reading each certificate's details.
    pub cluster_states: BTreeMap<String, ClusterStateSummary>,
    /// `active` or `deleting`.
    pub state: String,
}

/// A certificate's state in one cluster, as the list shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct ClusterStateSummary {
    /// `synced`, `pending`, `failed`, `conflict` or `deleting`.
    pub state: SyncState,
    /// The last failure, while the state is not `synced`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<SyncError>,
}

/// `GET /api/v1/certificates/{namespace}/{name}` and the body of a 201 create.
#[derive(Debug, Serialize, Deserialize)]
pub struct CertificateDetails {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Current version.
    pub version: u32,
    /// `active` or `deleting`.
    pub state: String,
    /// `valid`, `expiring` or `expired`.
    pub status: String,
    /// Days left of the earliest member.
    pub days_left: i64,
    /// Whether the Secret carries `ca.crt`.
    pub mtls: bool,
    /// Whether the CA also goes to a separate `{name}-cacert` Secret.
    pub separate_ca_secret: bool,
    /// Cluster selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clusters: Option<String>,
    /// Leaf, chain, CA and key details.
    #[serde(flatten)]
    pub summary: UploadSummary,
    /// Fingerprint of the Secret data.
    pub content_fingerprint: String,
    /// First stored.
    pub created_at: DateTime<Utc>,
    /// Current version stored.
    pub updated_at: DateTime<Utc>,
    /// The kept versions, newest first; the first is current.
    pub versions: Vec<VersionEntry>,
    /// When a delete was requested, while the state is `deleting`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_requested_at: Option<DateTime<Utc>>,
    /// The `type` and key names of an adopted Secret, which sync keeps writing; absent for
    /// meshcert's own `kubernetes.io/tls` format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_format: Option<crate::kube::SecretFormat>,
    /// The origin of an imported certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported_from: Option<crate::records::ImportOrigin>,
    /// State in each cluster.
    pub sync: BTreeMap<String, ClusterSyncState>,
    /// Findings of the upload; only in the response of a write.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Warning>,
}

/// A cluster as the API shows it: never the token.
#[derive(Debug, Serialize, Deserialize)]
pub struct ClusterView {
    /// Id.
    pub id: String,
    /// Name for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// API server URL.
    pub api_server: String,
    /// Whether a CA bundle is stored.
    pub has_ca_bundle: bool,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Registered at.
    pub created_at: DateTime<Utc>,
}

/// An alert as `GET /api/v1/alerts` shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct AlertView {
    /// Namespace of the certificate.
    pub namespace: String,
    /// Name of the certificate.
    pub name: String,
    /// `expired` or `expiring`.
    pub kind: AlertKind,
    /// `active` or `resolved`.
    pub status: String,
    /// Subject of the member with the earliest not_after.
    pub subject: String,
    /// Role of that member: `leaf`, `intermediate` or `ca`.
    pub role: String,
    /// Its not_after.
    pub not_after: DateTime<Utc>,
    /// Days left at the time of the request.
    pub days_left: i64,
    /// Every member in this state.
    pub members: Vec<AlertMember>,
    /// First seen.
    pub first_seen: DateTime<Utc>,
    /// Resolved at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<DateTime<Utc>>,
    /// When `alert_webhook_url` accepted its notification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notified_at: Option<DateTime<Utc>>,
}

/// `POST /hooks/sync`: what to sync. `{}` syncs every certificate to every cluster.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    /// One certificate or one cluster; everything when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<SyncScope>,
    /// Report the plan and change nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// Any unique value, so that two identical requests in the same second have different
    /// signatures: a signature is accepted only once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// With a cluster scope: remove every Secret meshcert manages in that cluster instead of
    /// applying, before the cluster is unregistered.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub purge: bool,
    /// With a certificate scope: the clusters (ids, or `*` for all) where a same-named Secret
    /// that meshcert does not manage is taken over, not reported as a conflict. An import sets
    /// it for the Secret's own cluster, and for every cluster when it replaces the other copies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adopt: Vec<String>,
}

/// `POST /hooks/probe`: check that a cluster's API server responds to the stored token.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeRequest {
    /// Cluster id.
    pub cluster: String,
    /// Any unique value, as in [`SyncRequest::nonce`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

/// The response of a cluster's API server to `GET /version` with the stored token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProbeReport {
    /// Whether it responded 200.
    pub reachable: bool,
    /// The HTTP status, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// `gitVersion` from the answer, such as `v1.31.2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    /// The reason it is not reachable, with the fix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<SyncError>,
    /// Time of the probe in milliseconds.
    pub duration_ms: u64,
}

/// `PATCH /api/v1/clusters/{id}`: absent fields keep their values.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateClusterRequest {
    /// A name for people: absent keeps it, `null` removes it.
    #[serde(default, deserialize_with = "present")]
    pub display_name: Option<Option<String>>,
    /// Base URL of the Kubernetes API server.
    #[serde(default)]
    pub api_server: Option<String>,
    /// A new bearer token (rotation); never returned.
    #[serde(default)]
    pub token: Option<SecretString>,
    /// PEM CA bundle of the API server: absent keeps it, `null` removes it.
    #[serde(default, deserialize_with = "present")]
    pub ca_bundle: Option<Option<String>>,
    /// The new labels, replacing all current ones.
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
}

/// `GET /api/v1/clusters/{id}`: the cluster, whether it answers, and its Secrets by state.
#[derive(Debug, Serialize, Deserialize)]
pub struct ClusterDetails {
    /// The registered cluster.
    #[serde(flatten)]
    pub cluster: ClusterView,
    /// The answer to `GET /version` with the stored token, sent for this request.
    pub reachability: ProbeReport,
    /// Certificates meant for this cluster, by sync state (`synced`, `pending`, `failed`,
    /// `conflict`, `deleting`).
    pub secrets: BTreeMap<String, usize>,
    /// Whether Spin trusts the cluster's CA bundle.
    pub client_tls: ClientTlsStatus,
}

/// Whether the running Spin configuration trusts a cluster's CA bundle.
#[derive(Debug, Serialize, Deserialize)]
pub struct ClientTlsStatus {
    /// `not_needed` (no CA bundle stored), `trusted` (TLS with it works), `not_trusted` (TLS
    /// failed: the runtime configuration lacks the CA), or `unknown` (the probe did not get as
    /// far as TLS).
    pub state: String,
    /// The action to take, when one is needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The scope of a sync.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SyncScope {
    /// `namespace/name` of one certificate, to every cluster.
    Certificate(String),
    /// Every certificate, to one cluster id.
    Cluster(String),
}

/// The outcome of one (certificate, cluster) target.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TargetReport {
    /// `namespace/name`.
    pub certificate: String,
    /// Cluster id.
    pub cluster: String,
    /// State after the sync.
    pub state: SyncState,
    /// Version applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// Attempts made.
    pub attempts: u32,
    /// The action taken, or with `dry_run` planned, decided from the live Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<PlannedAction>,
    /// The error, when failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<SyncError>,
}

/// The response of `POST /hooks/sync`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SyncReport {
    /// Whether this is a plan only: nothing was applied, deleted or recorded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// One entry per target.
    pub targets: Vec<TargetReport>,
    /// Targets applied.
    pub applied: usize,
    /// Targets already holding the current content, to which nothing was sent.
    #[serde(default)]
    pub unchanged: usize,
    /// Targets whose Secret was edited in the cluster and was applied again.
    #[serde(default)]
    pub drifted: usize,
    /// Targets that failed.
    pub failed: usize,
    /// Targets whose Secrets were removed: the certificate is being deleted, or its selector no
    /// longer matches the cluster.
    #[serde(default)]
    pub removed: usize,
    /// Requests sent to API servers, LISTs and retries included.
    #[serde(default)]
    pub requests: usize,
    /// Certificates whose deletion finished: no cluster stores their Secret, and their records are gone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deleted: Vec<String>,
    /// Wall time of the sync in milliseconds.
    pub duration_ms: u64,
}

/// The page size of list endpoints when the request names none.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// The largest `limit` a list endpoint accepts.
pub const MAX_PAGE_SIZE: usize = 1000;

/// Reads a `limit` query parameter: absent gives [`DEFAULT_PAGE_SIZE`].
///
/// # Errors
///
/// A message naming the value and the accepted range.
pub fn parse_limit(value: Option<&str>) -> Result<usize, String> {
    let Some(value) = value else {
        return Ok(DEFAULT_PAGE_SIZE);
    };
    match value.trim().parse::<usize>() {
        Ok(limit) if (1..=MAX_PAGE_SIZE).contains(&limit) => Ok(limit),
        _ => Err(format!("limit {value:?} is not a whole number from 1 to {MAX_PAGE_SIZE}")),
    }
}

/// Takes one page from `items`, which are sorted by `key`: the first `limit` items whose key
/// sorts after `cursor`. Returns the page and the cursor of the next page, when there is one.
///
/// The cursor is the key of the last item returned, so a page stays correct when items before
/// it are added or removed between requests.
pub fn paginate<T>(items: Vec<T>, key: impl Fn(&T) -> String, cursor: Option<&str>, limit: usize) -> (Vec<T>, Option<String>) {
    let mut page: Vec<T> = items.into_iter().filter(|item| cursor.is_none_or(|cursor| key(item).as_str() > cursor)).collect();
    if page.len() <= limit {
        return (page, None);
    }
    page.truncate(limit);
    let next = page.last().map(&key);
    (page, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paginate_walks_every_item_once() {
        let items: Vec<String> = (0..7).map(|index| format!("ns/c{index}")).collect();

        let (first, cursor) = paginate(items.clone(), String::clone, None, 3);
        let (second, cursor) = paginate(items.clone(), String::clone, cursor.as_deref(), 3);
        let (third, cursor) = paginate(items, String::clone, cursor.as_deref(), 3);

        assert_eq!(first, ["ns/c0", "ns/c1", "ns/c2"]);
        assert_eq!(second, ["ns/c3", "ns/c4", "ns/c5"]);
        assert_eq!(third, ["ns/c6"]);
        assert_eq!(cursor, None);
    }

    #[test]
    fn limit_is_bounded() {
        assert_eq!(parse_limit(None), Ok(DEFAULT_PAGE_SIZE));
        assert_eq!(parse_limit(Some("5")), Ok(5));
        assert!(parse_limit(Some("0")).is_err());
        assert!(parse_limit(Some("1001")).is_err());
        assert!(parse_limit(Some("ten")).unwrap_err().contains("\"ten\""));
    }

    #[test]
    fn replace_request_tells_absent_from_null() {
        let absent: ReplaceCertificateRequest = serde_json::from_str(r#"{"certificate": "C", "private_key": "K"}"#).unwrap();
        let null: ReplaceCertificateRequest =
            serde_json::from_str(r#"{"certificate": "C", "private_key": "K", "clusters": null, "ca_certificate": null}"#).unwrap();

        assert_eq!(absent.clusters, None);
        assert_eq!(absent.ca_certificate, None);
        assert_eq!(null.clusters, Some(None));
        assert_eq!(null.ca_certificate, Some(None));
    }
}
