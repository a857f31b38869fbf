//! Calls to the sync-webhook component through Spin service chaining.

use anyhow::Context as _;
use meshcert_core::api::{SyncReport, SyncRequest, SyncScope};
use meshcert_spin::{now, secret_variable, signed_hook_request};
use spin_sdk::http::Response;

/// The sync endpoint, reached in-process through Spin service chaining; the manifest allows it in
/// this component's `allowed_outbound_hosts`.
const SYNC_URL: &str = "http://sync-webhook.spin.internal/hooks/sync";

/// Asks sync-webhook to apply `scope` now and returns its per-target report.
///
/// # Errors
///
/// When the call fails or sync-webhook responds with an error.
pub async fn sync(scope: SyncScope) -> anyhow::Result<SyncReport> {
    // The nonce keeps two identical calls in one second apart, since each signature is accepted once.
    let nonce = meshcert_core::audit::new_entry_id(now());
    let body = serde_json::to_vec(&SyncRequest { scope: Some(scope), dry_run: false, nonce: Some(nonce) })?;
    let secret = secret_variable("webhook_secret")?;
    let request = signed_hook_request(SYNC_URL, body, &secret, now().timestamp());

    let response: Response = spin_sdk::http::send(request).await.with_context(|| format!("failed to call {SYNC_URL}"))?;

    let status = *response.status();
    if status != 200 {
        let body = String::from_utf8_lossy(response.body());
        anyhow::bail!("{SYNC_URL} returned HTTP {status}: {}", body.trim());
    }
    serde_json::from_slice(response.body()).with_context(|| format!("{SYNC_URL} returned a report that is not valid JSON"))
}
