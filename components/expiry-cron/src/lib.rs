//! The expiry-cron component: every 6 hours (the cron trigger in spin.toml), scan every stored
//! certificate and keep its alert record in step with the expiry rule.
//!
//! An alert record is written only when an alert starts, changes kind or ends, so a scan over an
//! unchanged fleet writes only its `scan/last` record. Each active alert is logged as one JSON
//! line with a `certificate` field, which log searches for "certificate" find.
//!
//! Each run also folds the audit entries of past days into one record per day and deletes audit
//! days past the retention, so the audit trail's keys do not pile up.

use chrono::{DateTime, Utc};
use meshcert_core::alerts::{self, AlertRecord};
use meshcert_core::audit::{self, AuditDay, AuditEntry};
use meshcert_core::expiry;
use meshcert_core::records::{self, CertificateHead, CertificateState, StoreKey};
use meshcert_spin::{init_logs, variable, Store};
use serde::Serialize;

wit_bindgen::generate!({
    world: "spin-cron",
    path: "../../wit",
});

struct ExpiryCron;

export!(ExpiryCron);

impl Guest for ExpiryCron {
    fn handle_cron_event(metadata: Metadata) -> Result<(), Error> {
        init_logs();
        let now = i64::try_from(metadata.timestamp)
            .ok()
            .and_then(|seconds| DateTime::from_timestamp(seconds, 0))
            .ok_or_else(|| Error::Other(format!("cron timestamp {} is out of range", metadata.timestamp)))?;

        // The audit trail's upkeep rides on the scan's schedule; a failure there is logged and
        // does not stop the scan.
        match compact_audit(now) {
            Ok((folded, expired)) if folded + expired > 0 => tracing::info!(folded, expired, "audit entries compacted"),
            Ok(_) => {}
            Err(error) => tracing::error!(error = format!("{error:#}"), "audit compaction failed; the next run retries"),
        }

        match scan(now) {
            Ok(counts) => {
                tracing::info!(
                    certificates = counts.certificates,
                    expired = counts.expired,
                    expiring = counts.expiring,
                    records_written = counts.records_written,
                    warning_days = counts.warning_days,
                    "expiry scan finished"
                );
                Ok(())
            }
            Err(error) => {
                tracing::error!(error = format!("{error:#}"), "expiry scan failed");
                Err(Error::Other(format!("expiry scan failed: {error:#}")))
            }
        }
    }
}

/// The counts of one scan, also stored as `scan/last`.
#[derive(Debug, Default, Serialize)]
struct ScanCounts {
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    certificates: usize,
    expired: usize,
    expiring: usize,
    records_written: usize,
    warning_days: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    configuration_error: Option<String>,
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

/// Scans every certificate at `now`.
///
/// Guarantees: every certificate's alert record reflects the rule at `now` when the scan
/// returns `Ok`; records of deleted certificates have their alerts resolved.
///
/// # Errors
///
/// A store failure; records written before it stay valid, and the next scan completes the rest.
fn scan(now: DateTime<Utc>) -> anyhow::Result<ScanCounts> {
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

    // Certificates: evaluate each, write its alert record when it changed.
    let mut scanned = std::collections::BTreeSet::new();
    for key in store.keys("cert/")? {
        let Some(StoreKey::CertificateHead { namespace, name }) = StoreKey::parse(&key) else {
            continue;
        };
        let Some(head) = store.get::<CertificateHead>(&key)? else {
            continue;
        };
        counts.certificates += 1;
        scanned.insert((namespace.clone(), name.clone()));

        let alert_key = records::alert_key(&namespace, &name);
        let existing: Option<AlertRecord> = store.get(&alert_key)?;
        // A certificate being deleted no longer deserves an alert.
        let evaluation = match head.state {
            CertificateState::Active => alerts::evaluate(&head.summary, now, counts.warning_days),
            CertificateState::Deleting => None,
        };
        if let Some((kind, members)) = &evaluation {
            match kind {
                alerts::AlertKind::Expired => counts.expired += 1,
                alerts::AlertKind::Expiring => counts.expiring += 1,
            }
            let member = &members[0];
            tracing::warn!(
                certificate = format!("{namespace}/{name}"),
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
        if let Some(record) = alerts::reconcile(existing.as_ref(), &namespace, &name, evaluation, now) {
            store.set(&alert_key, &record)?;
            counts.records_written += 1;
        }
    }

    // Alert records whose certificate is gone: resolve what is still active.
    for key in store.keys("alert/")? {
        let Some(StoreKey::Alert { namespace, name }) = StoreKey::parse(&key) else {
            continue;
        };
        if scanned.contains(&(namespace, name)) {
            continue;
        }
        let Some(existing) = store.get::<AlertRecord>(&key)? else {
            continue;
        };
        if let Some(record) = alerts::resolve_all(&existing, now) {
            store.set(&key, &record)?;
            counts.records_written += 1;
        }
    }

    counts.finished_at = Some(meshcert_spin::now());
    store.set("scan/last", &counts)?;
    Ok(counts)
}
