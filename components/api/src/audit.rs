//! The audit trail: every write request to the api, accepted or rejected, is stored as one
//! entry under its own key, and `GET /api/v1/audit` lists the entries newest first. The expiry
//! scan folds past days into day records (see `meshcert_core::audit`).

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use meshcert_core::api::{self, ErrorBody};
use meshcert_core::audit::{self, AuditDay, AuditEntry, AuditKey, AuditOutcome};
use meshcert_spin::{error_response, json_response, now, Store};
use spin_sdk::http::{Request, Response};

use crate::auth::Role;
use crate::internal_error;
use crate::json::{query_parameter, reject_unknown_parameters};
use crate::routes;

/// Maximum length of an entry's summary, in characters.
const MAX_SUMMARY_CHARS: usize = 500;

/// Appends the audit entry of a write. A failure is logged and does not change the response: the
/// write itself has happened, or been refused, either way.
pub fn record(method: &str, path: &str, role: Option<Role>, response: &Response) {
    record_for(method, path, role, response, None);
}

/// Appends the audit entry of one part of a write that does several, such as one import of a
/// list, naming its own `target`.
pub fn record_for(method: &str, path: &str, role: Option<Role>, response: &Response, target: Option<String>) {
    let mut entry = entry(method, path, role, response, now());
    if let Some(target) = target {
        entry.target = target;
    }
    if let Err(error) = append(entry) {
        tracing::error!(error = format!("{error:#}"), method = %method, "audit entry not written");
    }
}

fn entry(method: &str, path: &str, role: Option<Role>, response: &Response, time: DateTime<Utc>) -> AuditEntry {
    let matched = routes::find(path);
    let action = matched
        .as_ref()
        .and_then(|matched| matched.action(method))
        .map_or_else(|| format!("{method} {}", matched.as_ref().map_or("(no route)", |matched| matched.template)), str::to_string);
    let status = *response.status();

    // Error bodies carry a code and a message that never quote secrets. Success bodies give the
    // version that was written and name what a create created.
    let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap_or_default();
    let target = match (&body["namespace"], &body["name"], &body["id"]) {
        (serde_json::Value::String(namespace), serde_json::Value::String(name), _) => format!("certificate {namespace}/{name}"),
        (_, _, serde_json::Value::String(id)) => format!("cluster {id}"),
        _ => matched.as_ref().map_or_else(|| "(no route)".to_string(), routes::Matched::target),
    };
    let (code, summary) = match serde_json::from_value::<ErrorBody>(body.clone()) {
        Ok(error) => (Some(error.error.code), error.error.message),
        Err(_) => (None, success_summary(&body)),
    };

    AuditEntry {
        id: audit::new_entry_id(time),
        time,
        actor: role.map_or("anonymous", Role::as_str).into(),
        action,
        target,
        outcome: AuditOutcome::of_status(status),
        status,
        code,
        summary: summary.chars().take(MAX_SUMMARY_CHARS).collect(),
    }
}

/// Summarizes a successful write in one line, from the response's own fields.
fn success_summary(body: &serde_json::Value) -> String {
    let mut facts = Vec::new();
    if let Some(version) = body["version"].as_u64() {
        facts.push(format!("version {version}"));
    }
    if let Some(fingerprint) = body["leaf"]["sha256_fingerprint"].as_str() {
        facts.push(format!("leaf sha256 {fingerprint}"));
    }
    if let Some(restored) = body["versions"][0]["restored_from"].as_u64() {
        facts.push(format!("restored from version {restored}"));
    }
    if let Some(state) = body["state"].as_str() {
        facts.push(format!("state {state}"));
    }
    if body["deleted"].as_bool() == Some(true) {
        facts.push("deleted".into());
    }
    if let Some(id) = body["id"].as_str() {
        facts.push(format!("cluster {id}"));
    }
    if let Some(resealed) = body["resealed"].as_u64() {
        facts.push(format!("{resealed} records sealed again"));
    }
    facts.join(", ")
}

/// Writes the entry under its own key, so concurrent requests never overwrite each other.
fn append(entry: AuditEntry) -> anyhow::Result<()> {
    let store = Store::open()?;
    store.set(&audit::entry_key(entry.time, &entry.id), &entry)
}

/// `GET /api/v1/audit`: entries newest first, `limit` per page from `cursor`, filtered by
/// `action`, `outcome` and `target`.
pub fn list(request: &Request) -> Response {
    if let Err(response) = reject_unknown_parameters(request, &["limit", "cursor", "action", "outcome", "target"]) {
        return response;
    }
    let limit = match api::parse_limit(query_parameter(request, "limit").as_deref()) {
        Ok(limit) => limit,
        Err(message) => return error_response(400, "invalid_limit", &message, Some("limit")),
    };
    let outcome = query_parameter(request, "outcome");
    if let Some(outcome) = outcome.as_deref().filter(|outcome| !matches!(*outcome, "succeeded" | "rejected" | "failed")) {
        return error_response(400, "invalid_filter", &format!("outcome {outcome:?} is not one of succeeded, rejected, failed"), Some("outcome"));
    }
    let action = query_parameter(request, "action");
    let target = query_parameter(request, "target");
    let cursor = match query_parameter(request, "cursor").map(|cursor| parse_cursor(&cursor)) {
        Some(Some(cursor)) => Some(cursor),
        Some(None) => return error_response(400, "invalid_cursor", "cursor is not one this endpoint returned: start again without it", Some("cursor")),
        None => None,
    };
    let matches = |entry: &AuditEntry| {
        action.as_deref().is_none_or(|action| entry.action == action)
            && outcome.as_deref().is_none_or(|outcome| entry.outcome.as_str() == outcome)
            && target.as_deref().is_none_or(|target| entry.target.contains(target))
    };

    let result = (|| -> anyhow::Result<(Vec<AuditEntry>, Option<String>)> {
        let store = Store::open()?;

        // The keys of each day, newest day first: its folded record and its own entry keys.
        let mut days: BTreeMap<NaiveDate, (bool, Vec<String>)> = BTreeMap::new();
        for key in store.keys(audit::AUDIT_PREFIX)? {
            match AuditKey::parse(&key) {
                Some(AuditKey::Day(day)) => days.entry(day).or_default().0 = true,
                Some(AuditKey::Entry { day, id }) => days.entry(day).or_default().1.push(id),
                None => {}
            }
        }

        let mut page: Vec<AuditEntry> = Vec::new();
        for (day, (folded, mut ids)) in days.into_iter().rev() {
            if cursor.as_ref().is_some_and(|(cursor_day, _)| day > *cursor_day) {
                continue;
            }
            let before_cursor = |id: &str| cursor.as_ref().is_none_or(|(cursor_day, cursor_id)| day < *cursor_day || id < cursor_id.as_str());

            // Entries not yet folded are the newest of their day; their ids sort by time, so only
            // as many as a page needs are read.
            ids.sort_unstable_by(|a, b| b.cmp(a));
            for id in ids.into_iter().filter(|id| before_cursor(id)) {
                let Some(entry) = store.get::<AuditEntry>(&audit::entry_key_of_day(day, &id))? else {
                    continue;
                };
                if matches(&entry) {
                    page.push(entry);
                    if page.len() > limit {
                        return Ok(finish_page(page, limit));
                    }
                }
            }
            if folded {
                let record: AuditDay = store.get(&audit::day_key(day))?.unwrap_or_default();
                for entry in record.entries.into_iter().rev().filter(|entry| before_cursor(&entry.id) && matches(entry)) {
                    page.push(entry);
                    if page.len() > limit {
                        return Ok(finish_page(page, limit));
                    }
                }
            }
        }
        Ok((page, None))
    })();

    match result {
        Ok((entries, next_cursor)) => json_response(200, &serde_json::json!({ "entries": entries, "next_cursor": next_cursor })),
        Err(error) => internal_error(error),
    }
}

/// Cuts a page that found one entry more than `limit`: the cursor names the last entry returned.
fn finish_page(mut page: Vec<AuditEntry>, limit: usize) -> (Vec<AuditEntry>, Option<String>) {
    page.truncate(limit);
    let next = page.last().map(|entry| format!("{}.{}", entry.time.date_naive().format("%Y-%m-%d"), entry.id));
    (page, next)
}

/// Reads a cursor `yyyy-mm-dd.id`: the day and id of the last entry returned.
fn parse_cursor(cursor: &str) -> Option<(NaiveDate, String)> {
    let (day, id) = cursor.split_once('.')?;
    let day = NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
    audit::is_entry_id(id).then(|| (day, id.to_string()))
}
