//! Request and response bodies of the HTTP API and of the sync webhook.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::alerts::{AlertKind, AlertMember};
use crate::records::{ClusterSyncState, SyncError, SyncState};
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
    /// `active` or `deleting`.
    pub state: String,
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
    /// The error, when failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<SyncError>,
}

/// The response of `POST /hooks/sync`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SyncReport {
    /// One entry per target.
    pub targets: Vec<TargetReport>,
    /// Targets applied.
    pub applied: usize,
    /// Targets that failed.
    pub failed: usize,
    /// Wall time of the sync in milliseconds.
    pub duration_ms: u64,
}
