//! Calls to the sync-webhook component through Spin service chaining.

use anyhow::Context as _;
use meshcert_core::api::{ProbeReport, ProbeRequest, SyncReport, SyncRequest, SyncScope};
use meshcert_core::gateway::{BindingReport, BindingRequest, BindingsHookRequest, DanglingReport, GatewayUsage, GatewaysHookRequest, UnbindRequest};
use meshcert_core::import::{CandidatesReport, ReadSecretReport, ReadSecretRequest};
use meshcert_spin::{now, secret_variable, signed_hook_request};
use serde::de::DeserializeOwned;
use serde::Serialize;
use spin_sdk::http::Response;

/// The hooks, reached in-process through Spin service chaining; the manifest allows this host in
/// this component's `allowed_outbound_hosts`.
const SYNC_URL: &str = "http://sync-webhook.spin.internal/hooks/sync";
const PROBE_URL: &str = "http://sync-webhook.spin.internal/hooks/probe";
const GATEWAYS_URL: &str = "http://sync-webhook.spin.internal/hooks/gateways";
const DANGLING_URL: &str = "http://sync-webhook.spin.internal/hooks/gateways/dangling";
const BINDINGS_URL: &str = "http://sync-webhook.spin.internal/hooks/bindings";
const CANDIDATES_URL: &str = "http://sync-webhook.spin.internal/hooks/imports/candidates";
const SECRET_URL: &str = "http://sync-webhook.spin.internal/hooks/secret";

/// Asks sync-webhook to apply `scope` now and returns its per-target report.
///
/// # Errors
///
/// When the call fails or sync-webhook responds with an error.
pub async fn sync(scope: SyncScope) -> anyhow::Result<SyncReport> {
    sync_adopting(scope, Vec::new()).await
}

/// Asks sync-webhook to apply `scope` now, taking over same-named Secrets that meshcert does not
/// manage in the clusters `adopt` (ids, or `*`), and returns its per-target report.
///
/// # Errors
///
/// When the call fails or sync-webhook responds with an error.
pub async fn sync_adopting(scope: SyncScope, adopt: Vec<String>) -> anyhow::Result<SyncReport> {
    call(SYNC_URL, &SyncRequest { scope: Some(scope), nonce: Some(nonce()), adopt, ..SyncRequest::default() }).await
}

/// Asks sync-webhook for the Gateways, in every cluster or in `clusters`, that use certificate
/// `namespace/name`; with `single_attempt`, each request is sent once.
///
/// # Errors
///
/// When the call fails or sync-webhook responds with an error.
pub async fn gateways(certificate: &str, clusters: Option<Vec<String>>, single_attempt: bool) -> anyhow::Result<GatewayUsage> {
    call(GATEWAYS_URL, &GatewaysHookRequest { certificate: certificate.into(), clusters, single_attempt, nonce: Some(nonce()) }).await
}

/// Asks sync-webhook for the `credentialName`s that Gateways reference without a Secret.
///
/// # Errors
///
/// When the call fails or sync-webhook responds with an error.
pub async fn dangling() -> anyhow::Result<DanglingReport> {
    call(DANGLING_URL, &serde_json::json!({ "nonce": nonce() })).await
}

/// Asks sync-webhook to bind or unbind certificate `namespace/name` on Gateway servers.
///
/// # Errors
///
/// When the call fails or sync-webhook responds with an error.
pub async fn bindings(certificate: &str, bind: Option<BindingRequest>, unbind: Option<UnbindRequest>) -> anyhow::Result<BindingReport> {
    call(BINDINGS_URL, &BindingsHookRequest { certificate: certificate.into(), bind, unbind, nonce: Some(nonce()) }).await
}

/// Asks sync-webhook for the Secrets that could be imported.
///
/// # Errors
///
/// When the call fails or sync-webhook responds with an error.
pub async fn candidates() -> anyhow::Result<CandidatesReport> {
    call(CANDIDATES_URL, &serde_json::json!({ "nonce": nonce() })).await
}

/// Asks sync-webhook to read one Secret for an import. `Ok(Err(response))` carries
/// sync-webhook's own error response (404 for a missing Secret, 422 for a Secret without a
/// certificate, 502 for a cluster failure), which the api passes on.
///
/// # Errors
///
/// When the call fails or sync-webhook's response is not JSON.
pub async fn read_secret(cluster: &str, namespace: &str, name: &str) -> anyhow::Result<Result<ReadSecretReport, Response>> {
    let request = ReadSecretRequest { cluster: cluster.into(), namespace: namespace.into(), name: name.into(), nonce: Some(nonce()) };
    let response = send(SECRET_URL, &request).await?;
    let status = *response.status();
    if status == 200 {
        return Ok(Ok(serde_json::from_slice(response.body()).with_context(|| format!("{SECRET_URL} returned an answer that is not valid JSON"))?));
    }
    if matches!(status, 404 | 422 | 502) {
        return Ok(Err(meshcert_spin::json_response(status, &serde_json::from_slice::<serde_json::Value>(response.body()).unwrap_or_default())));
    }
    anyhow::bail!("{SECRET_URL} returned HTTP {status}: {}", String::from_utf8_lossy(response.body()).trim())
}

/// Asks sync-webhook to remove every Secret meshcert manages in cluster `id`.
///
/// # Errors
///
/// When the call fails or sync-webhook responds with an error.
pub async fn purge(id: &str) -> anyhow::Result<SyncReport> {
    call(SYNC_URL, &SyncRequest { scope: Some(SyncScope::Cluster(id.into())), nonce: Some(nonce()), purge: true, ..SyncRequest::default() }).await
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

async fn send<B: Serialize>(url: &str, body: &B) -> anyhow::Result<Response> {
    let body = serde_json::to_vec(body)?;
    let secret = secret_variable("webhook_secret")?;
    let request = signed_hook_request(url, body, &secret, now().timestamp());
    spin_sdk::http::send(request).await.with_context(|| format!("failed to call {url}"))
}

async fn call<B: Serialize, T: DeserializeOwned>(url: &str, body: &B) -> anyhow::Result<T> {
    let response = send(url, body).await?;

    let status = *response.status();
    if status != 200 {
        let body = String::from_utf8_lossy(response.body());
        anyhow::bail!("{url} returned HTTP {status}: {}", body.trim());
    }
    serde_json::from_slice(response.body()).with_context(|| format!("{url} returned an answer that is not valid JSON"))
}
