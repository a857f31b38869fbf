//! `GET /api/v1/alerts`: expiry alerts written by the scan and by uploads.

use meshcert_core::alerts::AlertRecord;
use meshcert_core::api::AlertView;
use meshcert_core::expiry;
use meshcert_spin::{error_response, json_response, now, Store};
use spin_sdk::http::{Request, Response};

use crate::internal_error;
use crate::json::{query_parameter, reject_unknown_parameters};

/// Lists alerts, filtered by `kind` (`expired`, `expiring`), `namespace` and `status`
/// (`active`, the default, or `resolved`).
pub fn list(request: &Request) -> Response {
    if let Err(response) = reject_unknown_parameters(request, &["kind", "namespace", "status"]) {
        return response;
    }
    let kind = query_parameter(request, "kind");
    let namespace = query_parameter(request, "namespace");
    let status = query_parameter(request, "status").unwrap_or_else(|| "active".into());
    if let Some(kind) = kind.as_deref().filter(|kind| !matches!(*kind, "expired" | "expiring")) {
        return error_response(400, "invalid_filter", &format!("kind {kind:?} is not one of expired, expiring"), Some("kind"));
    }
    if !matches!(status.as_str(), "active" | "resolved") {
        return error_response(400, "invalid_filter", &format!("status {status:?} is not one of active, resolved"), Some("status"));
    }
    let now = now();

    let result = (|| -> anyhow::Result<Vec<AlertView>> {
        let store = Store::open()?;
        let mut views = Vec::new();
        for key in store.keys("alert/")? {
            let Some(record) = store.get::<AlertRecord>(&key)? else {
                continue;
            };
            if namespace.as_deref().is_some_and(|namespace| namespace != record.namespace) {
                continue;
            }
            for alert in record.alerts.values() {
                let alert_status = if alert.resolved_at.is_some() { "resolved" } else { "active" };
                if alert_status != status || kind.as_deref().is_some_and(|kind| kind != alert.kind.as_str()) {
                    continue;
                }
                views.push(AlertView {
                    namespace: record.namespace.clone(),
                    name: record.name.clone(),
                    kind: alert.kind,
                    status: alert_status.into(),
                    subject: alert.member.subject.clone(),
                    role: alert.member.role.clone(),
                    not_after: alert.member.not_after,
                    days_left: expiry::days_left(alert.member.not_after, now),
                    members: alert.members.clone(),
                    first_seen: alert.first_seen,
                    resolved_at: alert.resolved_at,
                    notified_at: alert.notified_at,
                });
            }
        }
        Ok(views)
    })();

    match result {
        Ok(alerts) => json_response(200, &serde_json::json!({ "alerts": alerts })),
        Err(error) => internal_error(error),
    }
}
