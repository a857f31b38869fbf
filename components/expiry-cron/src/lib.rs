//! The expiry-cron component: every 6 hours (the cron trigger in spin.toml), run the expiry scan
//! of `meshcert_spin::scan`, then ask sync-webhook to resync every cluster, so that clusters that
//! failed or drifted are healed at least that often.
//!
//! The cron trigger cannot use service chaining, so the resync is a signed `POST /hooks/sync` to
//! the app's own URL, `self_url`.

use chrono::DateTime;
use meshcert_core::api::SyncRequest;
use meshcert_spin::{init_logs, now, scan, secret_variable, signed_hook_request, variable, with_timeout};

wit_bindgen::generate!({
    world: "spin-cron",
    path: "../../wit",
});

/// How long the resync may take before the cron handler stops waiting for its report; the sync
/// itself goes on in sync-webhook.
const RESYNC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

struct ExpiryCron;

export!(ExpiryCron);

impl Guest for ExpiryCron {
    fn handle_cron_event(metadata: Metadata) -> Result<(), Error> {
        init_logs();
        let now = i64::try_from(metadata.timestamp)
            .ok()
            .and_then(|seconds| DateTime::from_timestamp(seconds, 0))
            .ok_or_else(|| Error::Other(format!("cron timestamp {} is out of range", metadata.timestamp)))?;

        spin_sdk::http::run(async move {
            let scanned = scan::run(now).await;
            // The resync runs whether or not the scan failed: they guard against different faults.
            resync().await;
            scanned.map(|_| ()).map_err(|error| {
                tracing::error!(error = format!("{error:#}"), "expiry scan failed");
                Error::Other(format!("expiry scan failed: {error:#}"))
            })
        })
    }
}

/// Sends a signed `POST {self_url}/hooks/sync` for every certificate and cluster, and logs its
/// outcome. A failure is logged, not returned: the next run tries again.
async fn resync() {
    let base = variable("self_url").unwrap_or_default();
    let url = format!("{}/hooks/sync", base.trim().trim_end_matches('/'));
    let secret = match secret_variable("webhook_secret") {
        Ok(secret) if !secret.is_empty() => secret,
        _ => {
            tracing::error!("webhook_secret is not set, so the scheduled resync cannot be signed: set SPIN_VARIABLE_WEBHOOK_SECRET");
            return;
        }
    };
    let nonce = meshcert_core::audit::new_entry_id(now());
    let body = serde_json::to_vec(&SyncRequest { nonce: Some(nonce), ..SyncRequest::default() }).unwrap_or_default();
    let request = signed_hook_request(&url, body, &secret, now().timestamp());

    match with_timeout(RESYNC_TIMEOUT, spin_sdk::http::send::<_, spin_sdk::http::Response>(request)).await {
        Some(Ok(response)) if *response.status() == 200 => {
            let report: serde_json::Value = serde_json::from_slice(response.body()).unwrap_or_default();
            tracing::info!(url = %url, applied = %report["applied"], failed = %report["failed"], "scheduled resync finished");
        }
        Some(Ok(response)) => tracing::error!(url = %url, status = *response.status(), "scheduled resync rejected: check self_url and webhook_secret"),
        Some(Err(error)) => tracing::error!(url = %url, error = %error, "scheduled resync failed: check that self_url is the app's URL and allowed in allowed_outbound_hosts"),
        None => tracing::warn!(url = %url, timeout_s = RESYNC_TIMEOUT.as_secs(), "scheduled resync still running; its report is not awaited"),
    }
}
