//! The audit trail: every write request to the api, accepted or rejected, with the token role
//! that sent it, the target and the outcome.
//!
//! Each entry is first written under a key of its own, `audit/{yyyy-mm-dd}/{id}`, where the id
//! starts with the time in nanoseconds: concurrent requests never write the same key, so no entry
//! is lost to a read-modify-write race. The expiry scan later folds the entries of past days into
//! one record per day, `audit/{yyyy-mm-dd}`, so that the number of keys stays near one day's
//! writes, and deletes days past [`RETENTION_DAYS`].
//!
//! The api builds each entry's summary from names, versions, fingerprints and error messages
//! only. No private key, token or PEM text goes into an entry.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// Entries kept in one day's record. Each is about 400 bytes, so a full day stays well under
/// the 1 MB value limit of Spin's stores.
pub const MAX_ENTRIES_PER_DAY: usize = 2000;

/// Days of audit records kept.
pub const RETENTION_DAYS: i64 = 90;

/// Prefix of every audit key.
pub const AUDIT_PREFIX: &str = "audit/";

/// An audit key: a day's folded record, or one entry not yet folded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditKey {
    /// `audit/{yyyy-mm-dd}`: the folded record of a day.
    Day(NaiveDate),
    /// `audit/{yyyy-mm-dd}/{id}`: one entry.
    Entry {
        /// The UTC day of the entry.
        day: NaiveDate,
        /// The entry id.
        id: String,
    },
}

impl AuditKey {
    /// Parses an audit key; `None` for other keys.
    pub fn parse(key: &str) -> Option<Self> {
        let rest = key.strip_prefix(AUDIT_PREFIX)?;
        let (day, id) = match rest.split_once('/') {
            Some((day, id)) => (day, Some(id)),
            None => (rest, None),
        };
        let day = NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
        match id {
            None => Some(AuditKey::Day(day)),
            Some(id) if !id.is_empty() && !id.contains('/') => Some(AuditKey::Entry { day, id: id.to_string() }),
            Some(_) => None,
        }
    }

    /// Returns the UTC day the key belongs to.
    pub fn day(&self) -> NaiveDate {
        match self {
            AuditKey::Day(day) | AuditKey::Entry { day, .. } => *day,
        }
    }
}

/// Key of a day's folded record.
pub fn day_key(day: NaiveDate) -> String {
    format!("{AUDIT_PREFIX}{}", day.format("%Y-%m-%d"))
}

/// Builds the id of an entry written at `time`: the nanoseconds since the Unix epoch, zero-padded
/// so that ids sort by time, then `nonce` (random hex), which keeps two entries of one
/// nanosecond apart.
pub fn entry_id(time: DateTime<Utc>, nonce: &str) -> String {
    let nanos = time.timestamp_nanos_opt().unwrap_or_default().max(0);
    format!("{nanos:020}-{nonce}")
}

/// Returns whether `id` has the form of [`entry_id`]: 20 digits, `-`, lowercase hex.
pub fn is_entry_id(id: &str) -> bool {
    match id.split_once('-') {
        Some((nanos, nonce)) => {
            nanos.len() == 20
                && nanos.bytes().all(|b| b.is_ascii_digit())
                && !nonce.is_empty()
                && nonce.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        }
        None => false,
    }
}

/// Builds a fresh entry id for `time` with 8 random hex digits.
pub fn new_entry_id(time: DateTime<Utc>) -> String {
    let mut nonce = [0u8; 4];
    // Without randomness two entries of the same nanosecond could share a key. The time alone
    // still separates nearly every entry, so the entry is written anyway.
    let _ = getrandom::fill(&mut nonce);
    entry_id(time, &hex::encode(nonce))
}

/// Key of one entry written at `time`.
pub fn entry_key(time: DateTime<Utc>, id: &str) -> String {
    entry_key_of_day(time.date_naive(), id)
}

/// Key of one entry of `day`.
pub fn entry_key_of_day(day: NaiveDate, id: &str) -> String {
    format!("{}/{id}", day_key(day))
}

/// Returns whether a day is past the retention at `now`.
pub fn is_expired(day: NaiveDate, now: DateTime<Utc>) -> bool {
    (now.date_naive() - day).num_days() > RETENTION_DAYS
}

/// The outcome of a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    /// Done (2xx).
    Succeeded,
    /// Rejected because of the request: bad input, conflict, missing or read-only token (4xx).
    Rejected,
    /// Failed inside meshcert (5xx).
    Failed,
}

impl AuditOutcome {
    /// Maps an HTTP status to its outcome.
    pub fn of_status(status: u16) -> Self {
        match status {
            200..=399 => AuditOutcome::Succeeded,
            400..=499 => AuditOutcome::Rejected,
            _ => AuditOutcome::Failed,
        }
    }

    /// Returns the outcome name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Succeeded => "succeeded",
            AuditOutcome::Rejected => "rejected",
            AuditOutcome::Failed => "failed",
        }
    }
}

/// One write, as the audit trail records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Unique id, ordered by time: see [`entry_id`].
    pub id: String,
    /// When the request finished.
    pub time: DateTime<Utc>,
    /// Role of the token: `admin`, `reader`, or `anonymous` without a valid token.
    pub actor: String,
    /// The requested action, such as `certificate.create` or `cluster.register`.
    pub action: String,
    /// The object it concerned, such as `certificate istio-system/web`.
    pub target: String,
    /// Its outcome.
    pub outcome: AuditOutcome,
    /// HTTP status of the response.
    pub status: u16,
    /// Error code of a rejected or failed write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Facts of the write: versions, fingerprints, the error message. Never a secret.
    pub summary: String,
}

/// The folded record of one day, entries in id order (oldest first).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditDay {
    /// The entries.
    pub entries: Vec<AuditEntry>,
    /// Entries not kept because the day was full.
    #[serde(default)]
    pub dropped: u64,
}

impl AuditDay {
    /// Adds `entries` that the day does not have yet (by id), keeps the id order, and counts in
    /// `dropped` those past [`MAX_ENTRIES_PER_DAY`]. Folding the same entries twice, as after a
    /// crash between writing the day and deleting the entry keys, changes nothing.
    pub fn fold(&mut self, entries: Vec<AuditEntry>) {
        let mut by_id: BTreeMap<String, AuditEntry> = self.entries.drain(..).map(|entry| (entry.id.clone(), entry)).collect();
        for entry in entries {
            by_id.entry(entry.id.clone()).or_insert(entry);
        }
        let mut entries: Vec<AuditEntry> = by_id.into_values().collect();
        if entries.len() > MAX_ENTRIES_PER_DAY {
            self.dropped += (entries.len() - MAX_ENTRIES_PER_DAY) as u64;
            entries.truncate(MAX_ENTRIES_PER_DAY);
        }
        self.entries = entries;
    }
}

/// The plan of a compaction of the audit keys: which entry keys to fold into which day, and which
/// keys to delete because their day is past the retention.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Compaction {
    /// Entry keys of past days, per day.
    pub fold: BTreeMap<NaiveDate, Vec<String>>,
    /// Keys of days past the retention, folded or not.
    pub expired: Vec<String>,
}

/// Plans the compaction of `keys` at `now`: entries of days before today are folded, and every
/// key of a day past the retention is deleted. Today's entries stay as they are, because
/// requests are still adding to that day.
pub fn plan_compaction(keys: &[String], now: DateTime<Utc>) -> Compaction {
    let today = now.date_naive();
    let mut plan = Compaction::default();
    for key in keys {
        let Some(parsed) = AuditKey::parse(key) else {
            continue;
        };
        if is_expired(parsed.day(), now) {
            plan.expired.push(key.clone());
        } else if matches!(parsed, AuditKey::Entry { .. }) && parsed.day() < today {
            plan.fold.entry(parsed.day()).or_default().push(key.clone());
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn time(day: u32, second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, day, 10, 0, second).unwrap()
    }

    fn entry(time: DateTime<Utc>, nonce: &str) -> AuditEntry {
        AuditEntry {
            id: entry_id(time, nonce),
            time,
            actor: "admin".into(),
            action: "certificate.create".into(),
            target: "certificate istio-system/web".into(),
            outcome: AuditOutcome::Succeeded,
            status: 201,
            code: None,
            summary: "version 1".into(),
        }
    }

    #[test]
    fn keys_parse_by_kind() {
        let day = NaiveDate::from_ymd_opt(2026, 12, 4).unwrap();
        let id = entry_id(time(4, 0), "ab12");

        assert_eq!(AuditKey::parse(&day_key(day)), Some(AuditKey::Day(day)));
        assert_eq!(AuditKey::parse(&entry_key(time(4, 0), &id)), Some(AuditKey::Entry { day, id }));
        assert_eq!(AuditKey::parse("audit/latest"), None);
        assert_eq!(AuditKey::parse("audit/2026-12-04/a/b"), None);
        assert_eq!(AuditKey::parse("cert/a/b"), None);
    }

    #[test]
    fn ids_sort_by_time() {
        let earlier = entry_id(time(4, 9), "ff");
        let later = entry_id(time(4, 10), "00");

        assert!(earlier < later);
        assert!(is_entry_id(&earlier));
        assert!(!is_entry_id("12-ab"));
        assert!(!is_entry_id(&format!("{}-", "0".repeat(20))));
    }

    #[test]
    fn fold_is_idempotent_and_ordered() {
        let mut day = AuditDay::default();
        let (first, second) = (entry(time(4, 1), "aa"), entry(time(4, 2), "bb"));

        day.fold(vec![second.clone(), first.clone()]);
        day.fold(vec![first.clone()]);

        assert_eq!(day.entries, vec![first, second]);
        assert_eq!(day.dropped, 0);
    }

    #[test]
    fn full_day_counts_dropped_entries() {
        let mut day = AuditDay::default();
        let entries: Vec<AuditEntry> = (0..=MAX_ENTRIES_PER_DAY).map(|index| entry(time(4, 0), &format!("{index:06}"))).collect();

        day.fold(entries);

        assert_eq!(day.entries.len(), MAX_ENTRIES_PER_DAY);
        assert_eq!(day.dropped, 1);
    }

    #[test]
    fn compaction_folds_past_days_and_expires_old_ones() {
        let now = time(4, 0);
        let yesterday = entry_key(time(3, 0), &entry_id(time(3, 0), "aa"));
        let today = entry_key(time(4, 0), &entry_id(time(4, 0), "bb"));
        let old_day = day_key(NaiveDate::from_ymd_opt(2026, 9, 4).unwrap());
        let kept_day = day_key(NaiveDate::from_ymd_opt(2026, 9, 5).unwrap());
        let keys = vec![yesterday.clone(), today, old_day.clone(), kept_day, "cert/a/b".to_string()];

        let plan = plan_compaction(&keys, now);

        assert_eq!(plan.fold.into_values().collect::<Vec<_>>(), vec![vec![yesterday]]);
        assert_eq!(plan.expired, vec![old_day]);
    }

    #[test]
    fn outcome_follows_status() {
        assert_eq!(AuditOutcome::of_status(201), AuditOutcome::Succeeded);
        assert_eq!(AuditOutcome::of_status(422), AuditOutcome::Rejected);
        assert_eq!(AuditOutcome::of_status(500), AuditOutcome::Failed);
    }
}
