//! The expiry scan: the cron trigger runs it every 6 hours, and `POST /hooks/scan` on demand.
//! It keeps every certificate's alert record in step with the expiry rule, posts new and changed
//! alerts to `alert_webhook_url`, and folds the audit entries of past days.
//!
//! An alert record is written only when an alert starts, changes or ends, or when its
//! notification went out, so a scan over an unchanged fleet writes only its `scan/last` record.
//! Each active alert is logged as one JSON line with a `certificate` field, which log searches
//! for "certificate" find.

use std::time::Duration;

use chrono::{DateTime, Utc};
use meshcert_core::alerts::{self, AlertRecord};
use meshcert_core::audit::{self, AuditDay, AuditEntry};
use meshcert_core::expiry;
use meshcert_core::expiry_index::{self, AlertSnapshot, IndexEntry, IndexMeta, IndexShard};
use meshcert_core::records::{self, CertificateHead, CertificateState, StoreKey};
use serde::{Deserialize, Serialize};
use spin_sdk::http::{Method, Request, Response};

use crate::{sleep, variable, with_timeout, Store};

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
/// failure in between only leaves work for the next run.
// TODO: Two scans running at once (two replicas) can each fold a day, and the later write loses
// the entries only the other one read. Remove when the day record is written with
// wasi:keyvalue/atomics compare-and-swap.
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
        let day_key = audit::day_key(day);
        let mut record: AuditDay = store.get(&day_key)?.unwrap_or_default();
        record.fold(entries);
        store.set(&day_key, &record)?;
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
    let mut shards = if rebuilding { rebuild_index(&store, now)? } else { read_index(&store)? };
    counts.rebuilt_index = rebuilding;

    for (number, shard) in shards.iter_mut().enumerate() {
        let mut changed_shard = rebuilding;
        for (id, entry) in shard.entries.iter_mut() {
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
            let alert_key = records::alert_key(namespace, name);
            let existing: Option<AlertRecord> = store.get(&alert_key)?;
            let changed = alerts::reconcile(existing.as_ref(), namespace, name, evaluation, now);
            let mut record = changed.clone().or(existing);
            let notified = match (&mut notifier, &mut record) {
                (Some(notifier), Some(record)) => notifier.notify(record, now, &mut counts).await,
                _ => false,
            };
            if let Some(record) = record.as_ref().filter(|_| changed.is_some() || notified) {
                store.set(&alert_key, record)?;
                counts.records_written += 1;
            }
            let snapshot = AlertSnapshot::of(record.as_ref());
            if snapshot != entry.alert {
                entry.alert = snapshot;
                changed_shard = true;
            }
        }
        if changed_shard {
            store.set(&expiry_index::shard_key(number as u8), shard)?;
        }
    }
    if rebuilding {
        store.set(expiry_index::META_KEY, &IndexMeta { rebuilt_at: Some(now) })?;
    }

    counts.finished_at = Some(crate::now());
    store.set(LAST_SCAN_KEY, &counts)?;
    Ok(counts)
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
        let Some(head) = store.get::<CertificateHead>(&key)? else {
            continue;
        };
        let record: Option<AlertRecord> = store.get(&records::alert_key(&namespace, &name))?;
        let entry = IndexEntry {
            members: alerts::members(&head.summary),
            deleting: head.state == CertificateState::Deleting,
            alert: AlertSnapshot::of(record.as_ref()),
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
        if let Some(resolved) = store.get::<AlertRecord>(&key)?.and_then(|existing| alerts::resolve_all(&existing, now)) {
            store.set(&key, &resolved)?;
        }
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

    /// Posts each active alert of `record` that was not notified yet, and marks those that the
    /// endpoint accepted. Returns whether any was marked.
    async fn notify(&mut self, record: &mut AlertRecord, now: DateTime<Utc>, counts: &mut ScanCounts) -> bool {
        let mut marked = false;
        let pending: Vec<alerts::AlertKind> =
            record.alerts.values().filter(|alert| alert.resolved_at.is_none() && alert.notified_at.is_none()).map(|alert| alert.kind).collect();
        for kind in pending {
            if self.unreachable {
                counts.notifications_failed += 1;
                continue;
            }
            let body = alerts::notification(record, &record.alerts[&kind], now);
            if self.post(&body).await {
                if let Some(alert) = record.alerts.get_mut(&kind) {
                    alert.notified_at = Some(now);
                }
                counts.notified += 1;
                marked = true;
            } else {
                self.unreachable = true;
                counts.notifications_failed += 1;
            }
        }
        marked
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
