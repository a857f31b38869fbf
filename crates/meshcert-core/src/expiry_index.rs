//! The expiry index: what the scan needs of every certificate, in a few fixed records, so that a
//! scan of 10,000 certificates reads 32 records instead of 10,000 heads and their alerts. Spin's
//! key-value API lists keys only all at once, so the index also saves the scan that listing.
//!
//! Each certificate has one [`IndexEntry`] in the shard its `namespace/name` hashes to. The api
//! writes an entry with each version and marks it when a delete starts, sync-webhook removes it
//! when the delete finishes, and the scan writes the alert snapshot when an alert record changes.
//! A scan rebuilds the index from the heads when it is missing or a day old, which also repairs
//! an entry that two writers raced on.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::alerts::{AlertKind, AlertMember, AlertRecord};

/// The number of shards. At 10,000 certificates a shard contains about 300 entries, some 60 KiB
/// by estimate, so the store's 1 MB value limit is reached near 150,000 certificates.
pub const SHARDS: u8 = 32;

/// Key of the index's metadata.
pub const META_KEY: &str = "index/expiry/meta";

/// The age after which a scan rebuilds the index from the heads.
pub const REBUILD_AFTER_HOURS: i64 = 24;

/// Returns the shard of certificate `namespace/name`.
pub fn shard_of(namespace: &str, name: &str) -> u8 {
    let digest = Sha256::digest(format!("{namespace}/{name}").as_bytes());
    digest[0] % SHARDS
}

/// Returns the key of shard `shard`.
pub fn shard_key(shard: u8) -> String {
    format!("index/expiry/{shard:02}")
}

/// The index's metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexMeta {
    /// When a scan last built the index from the heads.
    pub rebuilt_at: Option<DateTime<Utc>>,
}

impl IndexMeta {
    /// Returns whether a scan at `now` rebuilds the index.
    pub fn needs_rebuild(&self, now: DateTime<Utc>) -> bool {
        self.rebuilt_at.is_none_or(|rebuilt_at| now - rebuilt_at >= chrono::Duration::hours(REBUILD_AFTER_HOURS))
    }
}

/// One shard: entries by `namespace/name`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexShard {
    /// Entries by `namespace/name`.
    pub entries: BTreeMap<String, IndexEntry>,
}

/// The facts the scan needs of one certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// The certificate's members (leaf, intermediates, CA) with their not_after.
    pub members: Vec<AlertMember>,
    /// Being deleted: no alert.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleting: bool,
    /// The active alert of its alert record, as last written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<AlertSnapshot>,
}

/// The active alert of an alert record, enough to tell whether a scan must rewrite it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertSnapshot {
    /// Kind.
    pub kind: AlertKind,
    /// Every member in that state, earliest first.
    pub members: Vec<AlertMember>,
    /// Whether `alert_webhook_url` accepted it.
    pub notified: bool,
}

impl AlertSnapshot {
    /// Takes the snapshot of a record's active alert; `None` when none is active.
    pub fn of(record: Option<&AlertRecord>) -> Option<AlertSnapshot> {
        let alert = record?.alerts.values().find(|alert| alert.resolved_at.is_none())?;
        Some(AlertSnapshot { kind: alert.kind, members: alert.members.clone(), notified: alert.notified_at.is_some() })
    }

    /// Returns whether the record needs no write for `evaluation`, and no notification when
    /// `notifying`.
    pub fn is_current(snapshot: Option<&AlertSnapshot>, evaluation: Option<&(AlertKind, Vec<AlertMember>)>, notifying: bool) -> bool {
        match (snapshot, evaluation) {
            (None, None) => true,
            (Some(snapshot), Some((kind, members))) => snapshot.kind == *kind && snapshot.members == *members && (snapshot.notified || !notifying),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(days: i64) -> AlertMember {
        AlertMember { role: "leaf".into(), subject: "CN=web".into(), not_after: DateTime::from_timestamp(1_800_000_000 + days * 86_400, 0).unwrap() }
    }

    #[test]
    fn shards_spread_and_stay_put() {
        let shards: std::collections::BTreeSet<u8> = (0..500).map(|index| shard_of("istio-system", &format!("web-{index}"))).collect();

        assert_eq!(shards.len(), usize::from(SHARDS));
        assert_eq!(shard_of("istio-system", "web"), shard_of("istio-system", "web"));
        assert_eq!(shard_key(7), "index/expiry/07");
    }

    #[test]
    fn snapshot_tells_when_a_record_is_current() {
        let snapshot = AlertSnapshot { kind: AlertKind::Expiring, members: vec![member(10)], notified: false };
        let same = (AlertKind::Expiring, vec![member(10)]);
        let worse = (AlertKind::Expired, vec![member(10)]);

        assert!(AlertSnapshot::is_current(None, None, true));
        assert!(AlertSnapshot::is_current(Some(&snapshot), Some(&same), false));
        assert!(!AlertSnapshot::is_current(Some(&snapshot), Some(&same), true), "a notification is due");
        assert!(!AlertSnapshot::is_current(Some(&snapshot), Some(&worse), false));
        assert!(!AlertSnapshot::is_current(Some(&snapshot), None, false));
        assert!(!AlertSnapshot::is_current(None, Some(&same), false));
    }

    #[test]
    fn rebuild_when_missing_or_old() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();

        assert!(IndexMeta::default().needs_rebuild(now));
        assert!(!IndexMeta { rebuilt_at: Some(now - chrono::Duration::hours(23)) }.needs_rebuild(now));
        assert!(IndexMeta { rebuilt_at: Some(now - chrono::Duration::hours(24)) }.needs_rebuild(now));
    }
}
