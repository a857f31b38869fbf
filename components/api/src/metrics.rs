//! `GET /metrics` in the Prometheus text format, and `GET /api/v1/scans/last`.

use std::collections::BTreeMap;

use meshcert_core::alerts::{self, AlertKind, AlertRecord};
use meshcert_core::expiry;
use meshcert_core::metrics::{self, Exposition};
use meshcert_core::records::{self, CertificateHead, CertificateState, ClusterRecord, StoreKey, SyncRecord, SyncState};
use meshcert_core::selector::LabelSelector;
use meshcert_spin::{error_response, now, Store};
use spin_sdk::http::Response;

use crate::internal_error;

/// The key of the last expiry scan's record, written by expiry-cron.
const LAST_SCAN_KEY: &str = "scan/last";

/// `GET /metrics`: each certificate member's not_after and days left, active alerts by kind,
/// sync targets by state and the end of the last scan.
// NOTE: this reads every head, sync record and alert record. Its cost grows with the number of
// certificates, so scrape it once a minute or less often.
pub fn metrics() -> Response {
    match exposition() {
        Ok(text) => {
            let mut response = Response::new(200, text);
            response.set_header("content-type", metrics::CONTENT_TYPE);
            response
        }
        Err(error) => internal_error(error),
    }
}

/// `GET /api/v1/scans/last`: the counts of the last expiry scan.
pub fn last_scan() -> Response {
    match Store::open().and_then(|store| store.get::<serde_json::Value>(LAST_SCAN_KEY)) {
        Ok(Some(scan)) => meshcert_spin::json_response(200, &scan),
        Ok(None) => error_response(404, "no_scan_yet", "no expiry scan has run yet: the cron trigger runs one every 6 hours", None),
        Err(error) => internal_error(error),
    }
}

fn exposition() -> anyhow::Result<String> {
    let store = Store::open()?;
    let now = now();
    let mut clusters = Vec::new();
    for key in store.keys("cluster/")? {
        clusters.extend(store.get::<ClusterRecord>(&key)?);
    }

    let mut members = Vec::new();
    let mut targets: BTreeMap<&'static str, usize> = [SyncState::Pending, SyncState::Synced, SyncState::Failed, SyncState::Conflict, SyncState::Deleting]
        .into_iter()
        .map(|state| (state.as_str(), 0))
        .collect();
    for key in store.keys("cert/")? {
        let Some(StoreKey::CertificateHead { namespace, name }) = StoreKey::parse(&key) else {
            continue;
        };
        let Some(head) = store.get::<CertificateHead>(&key)? else {
            continue;
        };

        // Members are numbered where a role repeats, so each series has its own labels.
        let mut intermediates = 0;
        for member in alerts::members(&head.summary) {
            let label = match member.role.as_str() {
                "intermediate" => {
                    intermediates += 1;
                    format!("intermediate-{intermediates}")
                }
                role => role.to_string(),
            };
            members.push((namespace.clone(), name.clone(), label, member.not_after));
        }

        let record: SyncRecord = store.get(&records::sync_key(&namespace, &name))?.unwrap_or_default();
        // A stored selector was validated on upload, so it parses.
        let selector = LabelSelector::parse(head.clusters.as_deref().unwrap_or_default()).unwrap_or_default();
        let selected: Vec<(&str, bool)> =
            clusters.iter().map(|cluster| (cluster.id.as_str(), head.state == CertificateState::Active && selector.matches(&cluster.labels))).collect();
        for state in record.states_for(head.version, head.updated_at, &selected).values() {
            *targets.entry(state.state.as_str()).or_insert(0) += 1;
        }
    }

    let mut active: BTreeMap<AlertKind, usize> = [(AlertKind::Expired, 0), (AlertKind::Expiring, 0)].into();
    for key in store.keys("alert/")? {
        if let Some(record) = store.get::<AlertRecord>(&key)? {
            for alert in record.alerts.values().filter(|alert| alert.resolved_at.is_none()) {
                *active.entry(alert.kind).or_insert(0) += 1;
            }
        }
    }
    let last_scan = store
        .get::<serde_json::Value>(LAST_SCAN_KEY)?
        .and_then(|scan| scan["finished_at"].as_str().and_then(|time| chrono::DateTime::parse_from_rfc3339(time).ok()));

    let mut exposition = Exposition::default();
    let member_labels = |(namespace, name, member, _): &(String, String, String, chrono::DateTime<chrono::Utc>)| {
        vec![("namespace", namespace.clone()), ("name", name.clone()), ("member", member.clone())]
    };
    exposition.gauge(
        "meshcert_certificate_not_after_seconds",
        "End of validity of each certificate member (leaf, intermediate-N, ca), as Unix seconds.",
        members.iter().map(|member| (member_labels(member), member.3.timestamp() as f64)),
    );
    exposition.gauge(
        "meshcert_certificate_days_left",
        "Whole days left before each certificate member expires; negative once expired.",
        members.iter().map(|member| (member_labels(member), expiry::days_left(member.3, now) as f64)),
    );
    exposition.gauge("meshcert_alerts", "Active expiry alerts by kind.", active.iter().map(|(kind, count)| (vec![("kind", kind.as_str().to_string())], *count as f64)));
    exposition.gauge(
        "meshcert_sync_targets",
        "Certificates in registered clusters by sync state.",
        targets.iter().map(|(state, count)| (vec![("state", (*state).to_string())], *count as f64)),
    );
    if let Some(finished) = last_scan {
        exposition.gauge("meshcert_last_scan_timestamp_seconds", "End of the last expiry scan, as Unix seconds.", [(Vec::new(), finished.timestamp() as f64)]);
    }
    Ok(exposition.into_text())
}
