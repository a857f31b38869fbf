//! The expiry scan: the cron trigger runs it every 6 hours, and `POST /hooks/scan` on demand.
//! It keeps every certificate's alert record in step with the expiry rule, posts new and changed
//! alerts to `alert_webhook_url`, and folds the audit entries of past days.
//!
//! An alert record is written only when an alert starts, changes or ends, or when its
//! notification went out, so a scan over an unchanged fleet writes only its `scan/last` record.
//! Each active alert is logged as one JSON line with a `certificate` field, which log searches
//! for "certificate" find.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use meshcert_core::alerts::{self, AlertRecord};
use meshcert_core::audit::{self, AuditDay, AuditEntry};
use meshcert_core::expiry;
use meshcert_core::expiry_index::{self, AlertSnapshot, IndexEntry, IndexMeta, IndexShard};
use meshcert_core::records::{self, CertificateHead, CertificateState, StoreKey};
use serde::{Deserialize, Serialize};
use spin_sdk::http::{Method, Request, Response};

use crate::{sleep, variable, with_timeout, Change, Store};

/// The key of the last scan's record.
pub const LAST_SCAN_KEY: &str = "scan/last";

/// Attempts per notification; the next scan retries one that failed them all.
const NOTIFY_ATTEMPTS: u32 = 3;

/// The wait before the second attempt of a notification; it doubles for the third.
const NOTIFY_BACKOFF: Duration = Duration::from_millis(500);

/// The time limit of one notification attempt.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(5);

/// The counts of one scan, stored as `scan/last`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ScanCounts {
    /// When the scan started: the time of the cron event or of the hook call.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// Certificates scanned.
    pub certificates: usize,
    /// Certificates with an active `expired` alert.
    pub expired: usize,
    /// Certificates with an active `expiring` alert.
    pub expiring: usize,
    /// Alert records written because they changed.
    pub records_written: usize,
    /// Alerts posted to `alert_webhook_url`.
    #[serde(default)]
    pub notified: usize,
    /// Alerts whose notification failed every attempt, left for the next scan.
    #[serde(default)]
    pub notifications_failed: usize,
    /// The `expiry_warning_days` used.
    pub warning_days: u32,
    /// Whether this scan rebuilt the expiry index from the heads, as it does once a day.
    #[serde(default)]
    pub rebuilt_index: bool,
    /// The reason `expiry_warning_days` or `alert_webhook_url` was unusable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration_error: Option<String>,
}

/// Runs the audit upkeep and the expiry scan at `now`, and logs both. A failure of the upkeep is
/// logged and does not stop the scan.
///
/// # Errors
///
/// A store failure of the scan; records written before it stay valid, and the next scan
/// completes the rest.
pub async fn run(now: DateTime<Utc>) -> anyhow::Result<ScanCounts> {
    match compact_audit(now) {
        Ok((folded, expired)) if folded + expired > 0 => tracing::info!(folded, expired, "audit entries compacted"),
        Ok(_) => {}
        Err(error) => tracing::error!(error = format!("{error:#}"), "audit compaction failed; the next run retries"),
    }

    // Repairs the list of cluster ids where a failure or an older replica left it behind.
    match Store::open().and_then(|store| crate::clusters::refresh(&store)) {
        Ok(true) => tracing::warn!("list of cluster ids repaired from the cluster records"),
        Ok(false) => {}
        Err(error) => tracing::error!(error = format!("{error:#}"), "list of cluster ids not checked; the next run retries"),
    }

    let counts = scan(now).await?;
    tracing::info!(
        certificates = counts.certificates,
        expired = counts.expired,
        expiring = counts.expiring,
        records_written = counts.records_written,
        notified = counts.notified,
        notifications_failed = counts.notifications_failed,
        warning_days = counts.warning_days,
        "expiry scan finished"
    );
    Ok(counts)
}

/// Folds the audit entries of past days into one record per day and deletes days past the
/// retention. Returns the number of entry keys folded and of keys deleted.
///
/// The day record is written before its entry keys are deleted, and folding is idempotent, so a
/// failure in between only leaves work for the next run. It is written with compare-and-swap, so
/// two scans folding a day at once (two replicas) both land.
fn compact_audit(now: DateTime<Utc>) -> anyhow::Result<(usize, usize)> {
    let store = Store::open()?;
    let plan = audit::plan_compaction(&store.keys(audit::AUDIT_PREFIX)?, now);

    let mut folded = 0;
    for (day, keys) in plan.fold {
        let mut entries = Vec::new();
        for key in &keys {
            if let Some(entry) = store.get::<AuditEntry>(key)? {
                entries.push(entry);
            }
        }
        store.update(&audit::day_key(day), |record: Option<AuditDay>| {
            let mut record = record.unwrap_or_default();
            record.fold(entries.clone());
            Ok(Change::Write(record, ()))
        })?;
        for key in &keys {
            store.delete(key)?;
        }
        folded += keys.len();
    }

    for key in &plan.expired {
        store.delete(key)?;
    }
    Ok((folded, plan.expired.len()))
}

/// Scans every certificate at `now`, from the expiry index. An entry whose alert snapshot matches
/// the rule's result, with nothing to notify, costs no read; only the others read and write their
/// alert record.
///
/// Guarantees: every certificate's alert record reflects the rule at `now` when the scan
/// returns `Ok`; records of deleted certificates have their alerts resolved.
async fn scan(now: DateTime<Utc>) -> anyhow::Result<ScanCounts> {
    let store = Store::open()?;
    let mut counts = ScanCounts { started_at: Some(now), ..ScanCounts::default() };
    let raw_days = variable("expiry_warning_days").unwrap_or_default();
    counts.warning_days = match expiry::parse_warning_days(&raw_days) {
        Ok(days) => days,
        Err(message) => {
            tracing::error!(error = %message, fallback = expiry::DEFAULT_WARNING_DAYS, "invalid expiry_warning_days");
            counts.configuration_error = Some(message);
            expiry::DEFAULT_WARNING_DAYS
        }
    };
    let mut notifier = Notifier::from_variables(&mut counts);

    let meta: IndexMeta = store.get(expiry_index::META_KEY)?.unwrap_or_default();
    let rebuilding = meta.needs_rebuild(now);
    let shards = if rebuilding { rebuild_index(&store, now)? } else { read_index(&store)? };
    counts.rebuilt_index = rebuilding;

    for (number, shard) in shards.iter().enumerate() {
        // The entries' new alert snapshots, written at the end of the shard over the shard as it
        // is then, so entries the api writes meanwhile are kept.
        let mut snapshots = BTreeMap::new();
        for (id, entry) in &shard.entries {
            counts.certificates += 1;
            // A certificate being deleted no longer deserves an alert.
            let evaluation = if entry.deleting { None } else { alerts::evaluate_members(entry.members.clone(), now, counts.warning_days) };
            if let Some((kind, members)) = &evaluation {
                log_alert(id, *kind, &members[0], now, &mut counts);
            }
            if AlertSnapshot::is_current(entry.alert.as_ref(), evaluation.as_ref(), notifier.is_some()) {
                continue;
            }

            let Some((namespace, name)) = id.split_once('/') else {
                continue;
            };
            let record = refresh_alert(&store, namespace, name, evaluation, notifier.as_mut(), now, &mut counts).await?;
            let snapshot = AlertSnapshot::of(record.as_ref());
            if snapshot != entry.alert {
                snapshots.insert(id.clone(), snapshot);
            }
        }
        let rebuilt = rebuilding.then_some(shard);
        if rebuilt.is_some() || !snapshots.is_empty() {
            write_shard(&store, number as u8, rebuilt, &snapshots)?;
        }
    }
    if rebuilding {
        store.set(expiry_index::META_KEY, &IndexMeta { rebuilt_at: Some(now) })?;
    }

    counts.finished_at = Some(crate::now());
    store.set(LAST_SCAN_KEY, &counts)?;
    Ok(counts)
}

/// Brings the alert record of `namespace/name` in step with `evaluation`, and sends its due
/// notifications. Returns the record as this scan left it.
///
/// Scans on two replicas at once write each alert once and send each notification once: the
/// record is written with compare-and-swap, and a notification is claimed in the record before it
/// is sent, then marked sent (`alerts::claim_notifications`). A scan that stops between the two
/// leaves a claim, which expires, so the notification is sent again later: at least once, and
/// once when nothing fails.
async fn refresh_alert(
    store: &Store,
    namespace: &str,
    name: &str,
    evaluation: Option<(alerts::AlertKind, Vec<alerts::AlertMember>)>,
    mut notifier: Option<&mut Notifier>,
    now: DateTime<Utc>,
    counts: &mut ScanCounts,
) -> anyhow::Result<Option<AlertRecord>> {
    let key = records::alert_key(namespace, name);
    let claiming = notifier.as_ref().is_some_and(|notifier| !notifier.unreachable);
    let (record, claimed, written) = store.update(&key, |existing: Option<AlertRecord>| {
        let changed = alerts::reconcile(existing.as_ref(), namespace, name, evaluation.clone(), now);
        let Some(mut record) = changed.clone().or(existing) else {
            return Ok(Change::Keep((None, Vec::new(), false)));
        };
        let claimed = if claiming { alerts::claim_notifications(&mut record, now) } else { Vec::new() };
        if changed.is_none() && claimed.is_empty() {
            return Ok(Change::Keep((Some(record), claimed, false)));
        }
        Ok(Change::Write(record.clone(), (Some(record), claimed, true)))
    })?;
    counts.records_written += usize::from(written);
    let Some(record) = record else {
        return Ok(None);
    };
    if claimed.is_empty() {
        if notifier.is_some() && !claiming {
            // Left for the next scan, as the endpoint failed on an earlier alert of this scan.
            counts.notifications_failed += record.alerts.values().filter(|alert| alert.resolved_at.is_none() && alert.notified_at.is_none()).count();
        }
        return Ok(Some(record));
    }
    let Some(notifier) = notifier.as_mut() else {
        return Ok(Some(record));
    };

    let mut sent = Vec::with_capacity(claimed.len());
    for kind in claimed {
        let delivered = notifier.send(&record, kind, now, counts).await;
        sent.push((kind, delivered));
    }
    let finished = store.update(&key, |current: Option<AlertRecord>| {
        let Some(mut current) = current else {
            return Ok(Change::Keep((None, false)));
        };
        let mut changed = false;
        for (kind, delivered) in &sent {
            changed |= alerts::finish_notification(&mut current, *kind, now, *delivered);
        }
        Ok(if changed { Change::Write(current.clone(), (Some(current), true)) } else { Change::Keep((Some(current), false)) })
    })?;
    let (finished, written) = finished;
    counts.records_written += usize::from(written);
    Ok(finished)
}

/// Writes this scan's alert snapshots into index shard `number` with compare-and-swap, over the
/// shard as it is at the write. With `rebuilt`, the shard built from the heads replaces it first.
fn write_shard(store: &Store, number: u8, rebuilt: Option<&IndexShard>, snapshots: &BTreeMap<String, Option<AlertSnapshot>>) -> anyhow::Result<()> {
    store.update(&expiry_index::shard_key(number), |current: Option<IndexShard>| {
        let mut shard = current.unwrap_or_default();
        let mut changed = false;
        let mut read_again = BTreeSet::new();
        if let Some(rebuilt) = rebuilt {
            (shard, read_again) = merge_rebuilt(store, rebuilt, shard)?;
            changed = true;
        }
        // An entry read again has the snapshot of the newest alert record already.
        for (id, snapshot) in snapshots.iter().filter(|(id, _)| !read_again.contains(*id)) {
            if let Some(entry) = shard.entries.get_mut(id).filter(|entry| entry.alert != *snapshot) {
                entry.alert = snapshot.clone();
                changed = true;
            }
        }
        Ok(if changed { Change::Write(shard, ()) } else { Change::Keep(()) })
    })
}

/// Merges a shard rebuilt from the heads with the shard as it is now. Where the two differ, an api
/// write or delete may have come between the read of the heads and this write, so that
/// certificate is read again. Returns the merged shard and the ids read again.
fn merge_rebuilt(store: &Store, rebuilt: &IndexShard, current: IndexShard) -> anyhow::Result<(IndexShard, BTreeSet<String>)> {
    let mut merged = rebuilt.clone();
    let mut read_again = BTreeSet::new();
    let ids: BTreeSet<&String> = rebuilt.entries.keys().chain(current.entries.keys()).collect();
    for id in ids {
        if rebuilt.entries.get(id) == current.entries.get(id) {
            continue;
        }
        let Some((namespace, name)) = id.split_once('/') else {
            continue;
        };
        // Absent from the index: lost, which is why indexes are rebuilt, or removed by a delete
        // that finished after the heads were read. Only the head's existence distinguishes them.
        if !current.entries.contains_key(id) {
            if !store.exists(&records::certificate_key(namespace, name))? {
                merged.entries.remove(id);
            }
            continue;
        }
        match index_entry(store, namespace, name)? {
            Some(entry) => merged.entries.insert(id.clone(), entry),
            None => merged.entries.remove(id),
        };
        read_again.insert(id.clone());
    }
    Ok((merged, read_again))
}

/// Builds the index entry of `namespace/name` from its head and alert record; `None` when the
/// certificate does not exist.
fn index_entry(store: &Store, namespace: &str, name: &str) -> anyhow::Result<Option<IndexEntry>> {
    let Some(head) = store.get::<CertificateHead>(&records::certificate_key(namespace, name))? else {
        return Ok(None);
    };
    let record: Option<AlertRecord> = store.get(&records::alert_key(namespace, name))?;
    Ok(Some(IndexEntry {
        members: alerts::members(&head.summary),
        deleting: head.state == CertificateState::Deleting,
        alert: AlertSnapshot::of(record.as_ref()),
    }))
}

/// Logs one line for an active alert, and counts it.
fn log_alert(id: &str, kind: alerts::AlertKind, member: &alerts::AlertMember, now: DateTime<Utc>, counts: &mut ScanCounts) {
    match kind {
        alerts::AlertKind::Expired => counts.expired += 1,
        alerts::AlertKind::Expiring => counts.expiring += 1,
    }
    let (namespace, name) = id.split_once('/').unwrap_or((id, ""));
    tracing::warn!(
        certificate = %id,
        namespace = %namespace,
        name = %name,
        kind = kind.as_str(),
        subject = %member.subject,
        role = %member.role,
        not_after = %member.not_after.to_rfc3339(),
        days_left = expiry::days_left(member.not_after, now),
        "certificate {}",
        kind.as_str()
    );
}

fn read_index(store: &Store) -> anyhow::Result<Vec<IndexShard>> {
    (0..expiry_index::SHARDS).map(|shard| Ok(store.get(&expiry_index::shard_key(shard))?.unwrap_or_default())).collect()
}

/// Builds the index from every head and alert record, and resolves the alerts of certificates
/// that no longer exist. It reads every record, so it runs only when the index is missing or a
/// day old.
fn rebuild_index(store: &Store, now: DateTime<Utc>) -> anyhow::Result<Vec<IndexShard>> {
    let mut shards = vec![IndexShard::default(); usize::from(expiry_index::SHARDS)];
    let mut indexed = std::collections::BTreeSet::new();
    for key in store.keys("cert/")? {
        let Some(StoreKey::CertificateHead { namespace, name }) = StoreKey::parse(&key) else {
            continue;
        };
        let Some(entry) = index_entry(store, &namespace, &name)? else {
            continue;
        };
        let shard = usize::from(expiry_index::shard_of(&namespace, &name));
        shards[shard].entries.insert(format!("{namespace}/{name}"), entry);
        indexed.insert(format!("{namespace}/{name}"));
    }

    for key in store.keys("alert/")? {
        let Some(StoreKey::Alert { namespace, name }) = StoreKey::parse(&key) else {
            continue;
        };
        if indexed.contains(&format!("{namespace}/{name}")) {
            continue;
        }
        store.update(&key, |existing: Option<AlertRecord>| {
            Ok(match existing.as_ref().and_then(|existing| alerts::resolve_all(existing, now)) {
                Some(resolved) => Change::Write(resolved, ()),
                None => Change::Keep(()),
            })
        })?;
    }
    tracing::info!(certificates = indexed.len(), "expiry index rebuilt from the heads");
    Ok(shards)
}

/// Posts alerts to `alert_webhook_url`.
struct Notifier {
    url: String,
    /// Set after a notification failed every attempt: the rest of this scan's notifications
    /// are left for the next scan instead of each waiting for the same failing endpoint.
    unreachable: bool,
}

impl Notifier {
    /// Creates the notifier of `alert_webhook_url`; `None` when the variable is empty or not a URL.
    fn from_variables(counts: &mut ScanCounts) -> Option<Notifier> {
        let url = variable("alert_webhook_url").unwrap_or_default().trim().to_string();
        if url.is_empty() {
            return None;
        }
        if !url::Url::parse(&url).is_ok_and(|parsed| matches!(parsed.scheme(), "http" | "https")) {
            let message = "alert_webhook_url is not an http(s) URL: set it to the webhook's full URL, or empty to send no notifications".to_string();
            tracing::error!(error = %message, "alert notifications are off");
            counts.configuration_error.get_or_insert(message);
            return None;
        }
        Some(Notifier { url, unreachable: false })
    }

    /// Posts the alert of `kind` in `record`, claimed by this scan, and counts the outcome.
    /// Returns whether the endpoint accepted it.
    async fn send(&mut self, record: &AlertRecord, kind: alerts::AlertKind, now: DateTime<Utc>, counts: &mut ScanCounts) -> bool {
        if self.unreachable {
            counts.notifications_failed += 1;
            return false;
        }
        let body = alerts::notification(record, &record.alerts[&kind], now);
        if self.post(&body).await {
            counts.notified += 1;
            return true;
        }
        self.unreachable = true;
        counts.notifications_failed += 1;
        false
    }

    /// Sends one notification, retrying with backoff; returns whether a 2xx came back.
    async fn post(&self, body: &serde_json::Value) -> bool {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let mut backoff = NOTIFY_BACKOFF;
        for attempt in 1..=NOTIFY_ATTEMPTS {
            let request = Request::builder().method(Method::Post).uri(&self.url).header("content-type", "application/json").body(bytes.clone()).build();
            let outcome = with_timeout(NOTIFY_TIMEOUT, spin_sdk::http::send::<_, Response>(request)).await;
            // The URL may carry a token in its path (chat webhooks do), so only its host is logged.
            let host = url::Url::parse(&self.url).ok().and_then(|url| url.host_str().map(str::to_string)).unwrap_or_default();
            match outcome {
                Some(Ok(response)) if (200..300).contains(response.status()) => return true,
                Some(Ok(response)) => tracing::warn!(host = %host, status = *response.status(), attempt, "alert notification rejected"),
                Some(Err(error)) => tracing::warn!(host = %host, error = %error, attempt, "alert notification failed"),
                None => tracing::warn!(host = %host, attempt, timeout_s = NOTIFY_TIMEOUT.as_secs(), "alert notification timed out"),
            }
            if attempt < NOTIFY_ATTEMPTS {
                sleep(backoff).await;
                backoff *= 2;
            }
        }
        tracing::error!(certificate = %body["certificate"], kind = %body["kind"], "alert notification failed every attempt; the next scan retries");
        false
    }
}
