//! Calls to the sync-webhook component through Spin service chaining.

use anyhow::Context as _;
use meshcert_core::api::{ProbeReport, ProbeRequest, SyncReport, SyncRequest, SyncScope};
use meshcert_spin::{now, secret_variable, signed_hook_request};
use serde::de::DeserializeOwned;
use serde::Serialize;
use spin_sdk::http::Response;

/// The hooks, reached in-process through Spin service chaining; the manifest allows this host in
/// this component's `allowed_outbound_hosts`.
const SYNC_URL: &str = "http://sync-webhook.spin.internal/hooks/sync";
const PROBE_URL: &str = "http://sync-webhook.spin.internal/hooks/probe";

/// Asks sync-webhook to apply `scope` now and returns its per-target report.
///
/// # Errors
///
/// When the call fails or sync-webhook responds with an error.
pub async fn sync(scope: SyncScope) -> anyhow::Result<SyncReport> {
    call(SYNC_URL, &SyncRequest { scope: Some(scope), dry_run: false, nonce: Some(nonce()), purge: false }).await
}

/// Asks sync-webhook to remove every Secret meshcert manages in cluster `id`.
///
/// # Errors
///
/// When the call fails or sync-webhook responds with an error.
pub async fn purge(id: &str) -> anyhow::Result<SyncReport> {
    call(SYNC_URL, &SyncRequest { scope: Some(SyncScope::Cluster(id.into())), dry_run: false, nonce: Some(nonce()), purge: true }).await
}

/// Asks sync-webhook whether cluster `id` responds to `GET /version` with its stored token.
///
/// # Errors
///
/// When the call fails or sync-webhook responds with an error.
pub async fn probe(id: &str) -> anyhow::Result<ProbeReport> {
    call(PROBE_URL, &ProbeRequest { cluster: id.into(), nonce: Some(nonce()) }).await
}

/// Keeps two identical calls in one second apart, since each signature is accepted once.
fn nonce() -> String {
    meshcert_core::audit::new_entry_id(now())
}

async fn call<B: Serialize, T: DeserializeOwned>(url: &str, body: &B) -> anyhow::Result<T> {
    let body = serde_json::to_vec(body)?;
    let secret = secret_variable("webhook_secret")?;
    let request = signed_hook_request(url, body, &secret, now().timestamp());

    let response: Response = spin_sdk::http::send(request).await.with_context(|| format!("failed to call {url}"))?;

    let status = *response.status();
    if status != 200 {
        let body = String::from_utf8_lossy(response.body());
        anyhow::bail!("{url} returned HTTP {status}: {}", body.trim());
    }
    serde_json::from_slice(response.body()).with_context(|| format!("{url} returned an answer that is not valid JSON"))
}
