//! Records in the key-value store and their keys.
//!
//! | key | value |
//! |---|---|
//! | `cert/{namespace}/{name}` | [`CertificateHead`] |
//! | `cert/{namespace}/{name}/v/{n}` | [`CertificateVersion`] |
//! | `cluster/{id}` | [`ClusterRecord`] |
//! | `sync/{namespace}/{name}` | [`SyncRecord`] |
//! | `alert/{namespace}/{name}` | [`crate::alerts::AlertRecord`] |
//! | `audit/{yyyy-mm-dd}` | [`crate::audit::AuditDay`] |
//! | `audit/{yyyy-mm-dd}/{id}` | [`crate::audit::AuditEntry`] |
//!
//! The store has no transactions, so writers order their writes: a version is written before
//! the head that points to it, and a reader that finds a head always finds its version. Versions
//! that the head no longer lists are deleted after the head is written, so a crash leaves at
//! most an extra version behind, never a missing one.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::crypto::SealedSecret;
use crate::validate::UploadSummary;

/// The maximum key length of Spin's key-value stores, in bytes.
pub const MAX_KEY_BYTES: usize = 256;

/// Key of a certificate's head record.
pub fn certificate_key(namespace: &str, name: &str) -> String {
    format!("cert/{namespace}/{name}")
}

/// Key of one version of a certificate.
pub fn version_key(namespace: &str, name: &str, version: u32) -> String {
    format!("cert/{namespace}/{name}/v/{version}")
}

/// Key of a cluster record.
pub fn cluster_key(id: &str) -> String {
    format!("cluster/{id}")
}

/// Key of the list of registered cluster ids ([`ClusterIds`]).
pub const CLUSTER_IDS_KEY: &str = "clusters/ids";

/// Key of a certificate's sync state.
pub fn sync_key(namespace: &str, name: &str) -> String {
    format!("sync/{namespace}/{name}")
}

/// Key of a certificate's alerts.
pub fn alert_key(namespace: &str, name: &str) -> String {
    format!("alert/{namespace}/{name}")
}

/// Prefix of every version key of a certificate.
pub fn version_prefix(namespace: &str, name: &str) -> String {
    format!("cert/{namespace}/{name}/v/")
}

/// The default number of versions kept per certificate, the current one included.
pub const DEFAULT_KEPT_VERSIONS: usize = 5;

/// Checks that every key of a certificate fits the store's key limit, with the longest version
/// number. Returns the longest name that would fit in `namespace` when it does not.
pub fn check_key_length(namespace: &str, name: &str) -> Result<(), usize> {
    let longest = version_key(namespace, name, u32::MAX).len();
    if longest <= MAX_KEY_BYTES {
        return Ok(());
    }
    Err(name.len() - (longest - MAX_KEY_BYTES))
}

/// The record a key of the store refers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreKey {
    /// `cert/{namespace}/{name}`
    CertificateHead {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// `cert/{namespace}/{name}/v/{n}`
    CertificateVersion {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Version number.
        version: u32,
    },
    /// `cluster/{id}`
    Cluster {
        /// Cluster id.
        id: String,
    },
    /// `sync/{namespace}/{name}`
    Sync {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// `alert/{namespace}/{name}`
    Alert {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
}

impl StoreKey {
    /// Parses a key; `None` for keys meshcert does not write.
    pub fn parse(key: &str) -> Option<Self> {
        let parts: Vec<&str> = key.split('/').collect();
        let owned = |value: &str| value.to_string();
        match parts.as_slice() {
            ["cert", namespace, name] => Some(StoreKey::CertificateHead { namespace: owned(namespace), name: owned(name) }),
            ["cert", namespace, name, "v", version] => Some(StoreKey::CertificateVersion {
                namespace: owned(namespace),
                name: owned(name),
                version: version.parse().ok()?,
            }),
            ["cluster", id] => Some(StoreKey::Cluster { id: owned(id) }),
            ["sync", namespace, name] => Some(StoreKey::Sync { namespace: owned(namespace), name: owned(name) }),
            ["alert", namespace, name] => Some(StoreKey::Alert { namespace: owned(namespace), name: owned(name) }),
            _ => None,
        }
    }
}

/// Lifecycle of a certificate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertificateState {
    /// Stored and pushed to clusters.
    #[default]
    Active,
    /// Being removed from clusters; the records go when every cluster is clean.
    Deleting,
}

/// The head record of a certificate: which version is current, and its summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateHead {
    /// Kubernetes namespace of the Secret.
    pub namespace: String,
    /// Name of the Secret, which gateways use as `credentialName`.
    pub name: String,
    /// The current version number, starting at 1.
    pub version: u32,
    /// Active or being deleted.
    #[serde(default)]
    pub state: CertificateState,
    /// Whether the Secret carries `ca.crt` for mutual TLS.
    pub mtls: bool,
    /// Whether sync also writes the CA to a separate `{name}-cacert` Secret, for gateways that
    /// read that form. Only with mTLS.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub separate_ca_secret: bool,
    /// Label selector of the clusters that receive it, such as `env=prod`; `None` means all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clusters: Option<String>,
    /// Details of the current version.
    pub summary: UploadSummary,
    /// SHA-256 of the current version's Secret data, as in the Secret's annotation.
    pub content_fingerprint: String,
    /// When the certificate was first stored.
    pub created_at: DateTime<Utc>,
    /// When the current version was stored.
    pub updated_at: DateTime<Utc>,
    /// The stored versions, newest first; the first is the current one. Kept in the head so that
    /// the details need one read, not a scan of the store's keys.
    #[serde(default)]
    pub versions: Vec<VersionEntry>,
    /// When a delete was requested; set while the state is `deleting`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_requested_at: Option<DateTime<Utc>>,
    /// The `type` and key names of the Secret meshcert adopted for this certificate, in which
    /// sync keeps writing; `None` for meshcert's own `kubernetes.io/tls` format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_format: Option<crate::kube::SecretFormat>,
    /// The origin of the certificate, when it was imported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported_from: Option<ImportOrigin>,
}

/// The Secret an imported certificate came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportOrigin {
    /// Cluster id.
    pub cluster: String,
    /// When it was imported.
    pub imported_at: DateTime<Utc>,
}

impl CertificateHead {
    /// The version that follows every version this head has listed, including ones it dropped.
    pub fn next_version(&self) -> u32 {
        let listed = self.versions.iter().map(|entry| entry.version).max().unwrap_or(0);
        self.version.max(listed) + 1
    }
}

/// A stored version as the head lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionEntry {
    /// Version number.
    pub version: u32,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
    /// Role of the token that wrote it.
    pub author: String,
    /// Subject of its leaf.
    pub subject: String,
    /// not_after of its leaf.
    pub not_after: DateTime<Utc>,
    /// SHA-256 fingerprint of its leaf.
    pub sha256_fingerprint: String,
    /// SHA-256 of the Secret data it produces.
    pub content_fingerprint: String,
    /// The version it restored, when it was written by a rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_from: Option<u32>,
}

impl VersionEntry {
    /// Describes a version record for the head's list.
    pub fn of(version: &CertificateVersion, restored_from: Option<u32>) -> Self {
        Self {
            version: version.version,
            created_at: version.created_at,
            author: version.author.clone(),
            subject: version.summary.leaf.subject.clone(),
            not_after: version.summary.leaf.not_after,
            sha256_fingerprint: version.summary.leaf.sha256_fingerprint.clone(),
            content_fingerprint: version.content_fingerprint.clone(),
            restored_from,
        }
    }
}

/// Puts `entry` first in `versions` and keeps at most `kept` entries. Returns the version numbers
/// that dropped out, whose records the caller deletes after writing the head.
pub fn push_version(versions: &mut Vec<VersionEntry>, entry: VersionEntry, kept: usize) -> Vec<u32> {
    versions.retain(|existing| existing.version != entry.version);
    versions.insert(0, entry);
    let kept = kept.max(1);
    if versions.len() <= kept {
        return Vec::new();
    }
    versions.split_off(kept).into_iter().map(|dropped| dropped.version).collect()
}

/// One version of a certificate's content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateVersion {
    /// Version number.
    pub version: u32,
    /// The chain as canonical PEM, leaf first.
    pub chain_pem: String,
    /// The private key, encrypted for the context [`version_key`].
    pub private_key: SealedSecret,
    /// The mTLS CA certificate as PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// Whether the Secret carries `ca.crt`.
    pub mtls: bool,
    /// Details of this version.
    pub summary: UploadSummary,
    /// SHA-256 of the Secret data this version produces.
    pub content_fingerprint: String,
    /// Role of the token that wrote it (`admin`).
    pub author: String,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

/// The ids of the registered clusters, so that reading every cluster takes one read per cluster
/// instead of a listing of every key in the store. An id whose record is missing counts for
/// nothing: a registration writes its record first, and a removal deletes it first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterIds {
    /// Cluster ids.
    pub ids: std::collections::BTreeSet<String>,
}

/// A registered cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRecord {
    /// Id, a DNS-1123 label.
    pub id: String,
    /// A name for people; the id when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Base URL of the Kubernetes API server.
    pub api_server: String,
    /// Bearer token, encrypted for the context [`cluster_key`].
    pub token: SealedSecret,
    /// PEM CA bundle of the API server, for Spin's `[[client_tls]]` runtime configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,
    /// Labels, matched by certificates' cluster selectors.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

/// Sync state of one certificate in one cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncState {
    /// Not yet attempted.
    Pending,
    /// The cluster stores the current version.
    Synced,
    /// The last attempt failed; see `last_error`.
    Failed,
    /// A Secret of that name exists and meshcert does not manage it.
    Conflict,
    /// The certificate is being deleted and this cluster still stores its Secret.
    Deleting,
    /// The Secret was removed, or was never there; reported by a sync, never stored.
    Deleted,
}

impl SyncState {
    /// Returns the state name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::Pending => "pending",
            SyncState::Synced => "synced",
            SyncState::Failed => "failed",
            SyncState::Conflict => "conflict",
            SyncState::Deleting => "deleting",
            SyncState::Deleted => "deleted",
        }
    }
}

/// A failed sync attempt, as recorded and shown. The message never contains a token or key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncError {
    /// Stable kind: `unauthorized`, `forbidden`, `namespace_not_found`, `not_found`, `conflict`,
    /// `invalid`, `rate_limited`, `server_error`, `timeout`, `connection_refused`,
    /// `connection_failed`, `tls_failed`, `outbound_denied`, `decrypt_failed`,
    /// `unexpected_response`, `unmanaged_secret` (recorded as the state `conflict`).
    pub kind: String,
    /// The failure and the fix.
    pub message: String,
    /// HTTP status from the API server, when one was returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

/// The state of one certificate in one cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSyncState {
    /// Current state.
    pub state: SyncState,
    /// Version the cluster holds, when synced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// Content fingerprint the cluster holds, when synced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The Secret's resourceVersion after the last apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Attempts in the last sync.
    pub attempts: u32,
    /// The last error, kept until a later attempt succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<SyncError>,
    /// When this state was recorded.
    pub updated_at: DateTime<Utc>,
    /// When the cluster last confirmed the current content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_at: Option<DateTime<Utc>>,
}

/// Per-cluster sync state of one certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRecord {
    /// State per cluster id.
    pub clusters: BTreeMap<String, ClusterSyncState>,
}

impl SyncRecord {
    /// Returns the state of a certificate at `version` (current since `since`) in each registered
    /// cluster, given as `(id, selected)`, as the API shows it. A selected cluster with no record
    /// yet, or one that contains an older version, is `pending`. A cluster that is not selected
    /// (the selector no longer matches it, or the certificate is being deleted) is shown only
    /// while a failure keeps it there. A cluster that is no longer registered is left out.
    pub fn states_for(&self, version: u32, since: DateTime<Utc>, clusters: &[(&str, bool)]) -> BTreeMap<String, ClusterSyncState> {
        let mut states = BTreeMap::new();
        for &(id, selected) in clusters {
            let recorded = self.clusters.get(id);
            let state = match recorded {
                Some(recorded) if !selected && matches!(recorded.state, SyncState::Synced | SyncState::Pending) => continue,
                None if !selected => continue,
                Some(recorded) if recorded.state == SyncState::Synced && recorded.version != Some(version) => {
                    ClusterSyncState { state: SyncState::Pending, ..recorded.clone() }
                }
                Some(recorded) => recorded.clone(),
                None => ClusterSyncState {
                    state: SyncState::Pending,
                    version: None,
                    fingerprint: None,
                    resource_version: None,
                    attempts: 0,
                    last_error: None,
                    updated_at: since,
                    synced_at: None,
                },
            };
            states.insert(id.to_string(), state);
        }
        states
    }
}

/// Summarizes per-cluster states in one word for the list view. `synced`: every cluster contains
/// the current version. `partial`: some do and another failed. `failed`: a cluster failed (a
/// removal included) and none contains it. `pending`: the rest waits for a sync. `none`: no
/// registered cluster is selected.
pub fn sync_summary(states: &BTreeMap<String, ClusterSyncState>) -> &'static str {
    if states.is_empty() {
        return "none";
    }
    let synced = states.values().filter(|state| state.state == SyncState::Synced).count();
    // A Deleting state is a removal that failed.
    let failed = states.values().any(|state| matches!(state.state, SyncState::Failed | SyncState::Conflict | SyncState::Deleting));
    match (synced, failed) {
        (synced, _) if synced == states.len() => "synced",
        (0, true) => "failed",
        (_, true) => "partial",
        _ => "pending",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_key_parses_each_kind() {
        assert_eq!(
            StoreKey::parse("cert/istio-system/web"),
            Some(StoreKey::CertificateHead { namespace: "istio-system".into(), name: "web".into() })
        );
        assert_eq!(
            StoreKey::parse("cert/istio-system/web.example.com/v/3"),
            Some(StoreKey::CertificateVersion { namespace: "istio-system".into(), name: "web.example.com".into(), version: 3 })
        );
        assert_eq!(StoreKey::parse("cluster/east"), Some(StoreKey::Cluster { id: "east".into() }));
        assert_eq!(StoreKey::parse("cert/a/b/v/x"), None);
        assert_eq!(StoreKey::parse("other"), None);
    }

    fn entry(version: u32) -> VersionEntry {
        VersionEntry {
            version,
            created_at: DateTime::from_timestamp(0, 0).unwrap(),
            author: "admin".into(),
            subject: "CN=web".into(),
            not_after: DateTime::from_timestamp(0, 0).unwrap(),
            sha256_fingerprint: String::new(),
            content_fingerprint: String::new(),
            restored_from: None,
        }
    }

    #[test]
    fn push_version_keeps_newest() {
        let mut versions = Vec::new();
        for version in 1..=5 {
            assert!(push_version(&mut versions, entry(version), 5).is_empty());
        }

        let dropped = push_version(&mut versions, entry(6), 5);

        assert_eq!(dropped, vec![1]);
        assert_eq!(versions.iter().map(|entry| entry.version).collect::<Vec<_>>(), vec![6, 5, 4, 3, 2]);
        assert_eq!(push_version(&mut versions, entry(7), 2), vec![5, 4, 3, 2]);
    }

    #[test]
    fn key_length_reports_longest_name() {
        assert_eq!(check_key_length("istio-system", "web"), Ok(()));

        let longest = check_key_length("istio-system", &"a".repeat(253)).unwrap_err();

        assert_eq!(version_key("istio-system", &"a".repeat(longest), u32::MAX).len(), MAX_KEY_BYTES);
    }

    fn state(state: SyncState, version: u32) -> ClusterSyncState {
        ClusterSyncState {
            state,
            version: Some(version),
            fingerprint: None,
            resource_version: None,
            attempts: 1,
            last_error: None,
            updated_at: DateTime::from_timestamp(0, 0).unwrap(),
            synced_at: None,
        }
    }

    #[test]
    fn states_show_pending_and_skip_unselected_clusters() {
        let clusters = [("east", true), ("west", true), ("north", true), ("lab", false)];
        let record = SyncRecord {
            clusters: BTreeMap::from([
                ("east".to_string(), state(SyncState::Synced, 2)),
                ("west".to_string(), state(SyncState::Synced, 1)),
                ("lab".to_string(), state(SyncState::Synced, 1)),
                ("gone".to_string(), state(SyncState::Synced, 2)),
            ]),
        };

        let states = record.states_for(2, DateTime::from_timestamp(0, 0).unwrap(), &clusters);

        let names: Vec<(&str, SyncState)> = states.iter().map(|(id, state)| (id.as_str(), state.state)).collect();
        assert_eq!(names, vec![("east", SyncState::Synced), ("north", SyncState::Pending), ("west", SyncState::Pending)]);
        assert_eq!(sync_summary(&states), "pending");
    }

    #[test]
    fn summary_words() {
        let of = |states: &[SyncState]| -> BTreeMap<String, ClusterSyncState> {
            states.iter().enumerate().map(|(index, s)| (index.to_string(), state(*s, 1))).collect()
        };

        assert_eq!(sync_summary(&of(&[])), "none");
        assert_eq!(sync_summary(&of(&[SyncState::Synced, SyncState::Synced])), "synced");
        assert_eq!(sync_summary(&of(&[SyncState::Synced, SyncState::Failed])), "partial");
        assert_eq!(sync_summary(&of(&[SyncState::Conflict, SyncState::Pending])), "failed");
        assert_eq!(sync_summary(&of(&[SyncState::Synced, SyncState::Pending])), "pending");
    }
}
