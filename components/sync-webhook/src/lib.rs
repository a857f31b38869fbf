//! The sync-webhook component: applies every certificate as a Kubernetes Secret to every
//! registered cluster, and records the outcome per (certificate, cluster).
//!
//! Entry points, each signed with `webhook_secret` (see `meshcert_core::signing`):
//! `POST /hooks/sync`, which the api component calls after each change and pipelines call to
//! resync, and `POST /hooks/probe`, with which the api checks that a cluster responds. The api
//! also reads and binds Gateways and reads Secrets to import through `POST /hooks/gateways`,
//! `/hooks/gateways/dangling`, `/hooks/bindings`, `/hooks/imports/candidates` and `/hooks/secret`,
//! since only this component may reach clusters.

mod apply;
mod client;
mod gateways;

use meshcert_core::api::{ProbeRequest, SyncReport, SyncRequest, SyncScope};
use meshcert_core::gateway::{BindingsHookRequest, GatewaysHookRequest};
use meshcert_core::import::ReadSecretRequest;
use meshcert_core::names;
use meshcert_core::records;
use meshcert_core::signing;
use meshcert_spin::{error_response, init_logs, json_response, now, secret_variable, Change, Store};
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;

/// Webhook bodies larger than this are rejected before the signature is checked.
const MAX_BODY_BYTES: usize = 64 * 1024;

#[http_component]
async fn handle(request: Request) -> Response {
    init_logs();
    let path = request.path().trim_end_matches('/').to_string();

    match (path.as_str(), request.method()) {
        ("/hooks/sync", Method::Post) => sync(request).await,
        ("/hooks/probe", Method::Post) => probe(request).await,
        ("/hooks/scan", Method::Post) => scan(request).await,
        ("/hooks/gateways", Method::Post) => gateway_usage(request).await,
        ("/hooks/gateways/dangling", Method::Post) => dangling(request).await,
        ("/hooks/bindings", Method::Post) => bindings(request).await,
        ("/hooks/imports/candidates", Method::Post) => candidates(request).await,
        ("/hooks/secret", Method::Post) => read_secret(request).await,
        ("/hooks/sync" | "/hooks/probe" | "/hooks/scan" | "/hooks/gateways" | "/hooks/gateways/dangling" | "/hooks/bindings" | "/hooks/imports/candidates" | "/hooks/secret", _) => {
            let mut response = error_response(405, "method_not_allowed", &format!("{path:?} accepts only POST"), None);
            response.set_header("allow", "POST");
            response
        }
        _ => error_response(404, "not_found", &format!("no hook at {path:?}; the sync hook is POST /hooks/sync"), None),
    }
}

async fn sync(request: Request) -> Response {
    if let Err(response) = verify(&request) {
        return response;
    }
    let body = request.body();

    let sync_request: SyncRequest = if body.iter().all(u8::is_ascii_whitespace) {
        SyncRequest::default()
    } else {
        match serde_json::from_slice(body) {
            Ok(sync_request) => sync_request,
            Err(error) => {
                return error_response(
                    400,
                    "invalid_json",
                    &format!("the body is not a sync request ({}); send {{}} or {{\"scope\": {{\"certificate\": \"namespace/name\"}}}} or {{\"scope\": {{\"cluster\": \"id\"}}}}", describe(&error)),
                    None,
                );
            }
        }
    };
    if sync_request.purge && !matches!(sync_request.scope, Some(SyncScope::Cluster(_))) {
        return error_response(400, "invalid_scope", "purge removes the Secrets of one cluster: send it with {\"scope\": {\"cluster\": \"id\"}}", Some("purge"));
    }
    if let Some(response) = missing_scope(sync_request.scope.as_ref()) {
        return response;
    }

    match apply::run(sync_request).await {
        Ok(report) => json_response(200, &report),
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "sync failed");
            error_response(500, "sync_failed", &format!("{error:#}"), None)
        }
    }
}

/// `POST /hooks/probe`: sends `GET /version` to one cluster with its stored token, once.
async fn probe(request: Request) -> Response {
    if let Err(response) = verify(&request) {
        return response;
    }
    let probe: ProbeRequest = match serde_json::from_slice(request.body()) {
        Ok(probe) => probe,
        Err(error) => return error_response(400, "invalid_json", &format!("the body is not a probe request ({}); send {{\"cluster\": \"id\"}}", describe(&error)), None),
    };
    if let Some(response) = missing_scope(Some(&SyncScope::Cluster(probe.cluster.clone()))) {
        return response;
    }
    match apply::probe(&probe.cluster).await {
        Ok(report) => json_response(200, &report),
        Err(error) => {
            tracing::error!(cluster = %probe.cluster, error = format!("{error:#}"), "probe failed");
            error_response(500, "internal_error", &format!("{error:#}"), None)
        }
    }
}

/// `POST /hooks/scan`: runs the expiry scan now, as the cron trigger does every 6 hours, then
/// resyncs every cluster. For hosts without the cron trigger, such as SpinKube, where a
/// Kubernetes CronJob calls it. The body is `{}` or `{"nonce": "..."}`.
async fn scan(request: Request) -> Response {
    if let Err(response) = verify(&request) {
        return response;
    }
    let body = request.body();
    if !body.iter().all(u8::is_ascii_whitespace) {
        if let Err(error) = serde_json::from_slice::<ScanRequest>(body) {
            return error_response(400, "invalid_json", &format!("the body is not a scan request ({}); send {{}} or {{\"nonce\": \"...\"}}", describe(&error)), None);
        }
    }

    let counts = match meshcert_spin::scan::run(now()).await {
        Ok(counts) => counts,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "expiry scan failed");
            return error_response(500, "scan_failed", &format!("{error:#}"), None);
        }
    };
    let sync = match apply::run(SyncRequest::default()).await {
        Ok(report) => serde_json::to_value(report).unwrap_or_default(),
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "resync after the scan failed");
            serde_json::json!({ "error": { "code": "sync_failed", "message": format!("{error:#}") } })
        }
    };
    json_response(200, &serde_json::json!({ "scan": counts, "sync": sync }))
}

/// `POST /hooks/gateways`: the Gateways that use one certificate.
async fn gateway_usage(request: Request) -> Response {
    let body: GatewaysHookRequest = match verified_body(&request, "{\"certificate\": \"namespace/name\"}") {
        Ok(body) => body,
        Err(response) => return response,
    };
    if let Some(response) = missing_scope(Some(&SyncScope::Certificate(body.certificate.clone()))) {
        return response;
    }
    answer("reading gateways", gateways::usage(&body.certificate, body.clusters.as_deref(), body.single_attempt).await)
}

/// `POST /hooks/gateways/dangling`: the `credentialName`s without a Secret.
async fn dangling(request: Request) -> Response {
    if let Err(response) = verified_body::<ScanRequest>(&request, "{}") {
        return response;
    }
    answer("reading dangling references", gateways::dangling().await)
}

/// `POST /hooks/bindings`: binds a certificate to a Gateway server, or unbinds it.
async fn bindings(request: Request) -> Response {
    let body: BindingsHookRequest = match verified_body(&request, "{\"certificate\": \"namespace/name\", \"bind\": {...}} or {..., \"unbind\": {...}}") {
        Ok(body) => body,
        Err(response) => return response,
    };
    if let Some(response) = missing_scope(Some(&SyncScope::Certificate(body.certificate.clone()))) {
        return response;
    }
    answer("binding", gateways::bindings(&body.certificate, body.bind, body.unbind).await)
}

/// `POST /hooks/imports/candidates`: Secrets that could be adopted.
async fn candidates(request: Request) -> Response {
    if let Err(response) = verified_body::<ScanRequest>(&request, "{}") {
        return response;
    }
    answer("reading import candidates", gateways::candidates().await)
}

/// `POST /hooks/secret`: one Secret read for an import, its private key sealed. 404 when the
/// Secret does not exist, 422 when it contains no certificate, 502 when the cluster fails.
async fn read_secret(request: Request) -> Response {
    let body: ReadSecretRequest = match verified_body(&request, "{\"cluster\": \"id\", \"namespace\": \"...\", \"name\": \"...\"}") {
        Ok(body) => body,
        Err(response) => return response,
    };
    if let Some(response) = missing_scope(Some(&SyncScope::Cluster(body.cluster.clone()))) {
        return response;
    }
    match gateways::read_secret(&body).await {
        Ok(Ok(Some(report))) => json_response(200, &report),
        Ok(Ok(None)) => error_response(
            404,
            "secret_not_found",
            &format!("Secret {}/{} does not exist in cluster {}: GET /api/v1/imports/candidates lists the Secrets that can be imported", body.namespace, body.name, body.cluster),
            Some("secret"),
        ),
        // A Secret without a certificate is the request's mistake; anything else is the cluster's.
        Ok(Err(error)) if error.kind == "no_certificate" => error_response(422, &error.kind, &error.message, Some("secret")),
        Ok(Err(error)) => json_response(502, &serde_json::json!({ "error": { "code": error.kind, "message": error.message } })),
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "reading a Secret for an import failed");
            error_response(500, "internal_error", &format!("{error:#}"), None)
        }
    }
}

/// Checks a hook call and parses its body. `usage` shows the expected body in the 400 response.
fn verified_body<T: serde::de::DeserializeOwned>(request: &Request, usage: &str) -> Result<T, Response> {
    verify(request)?;
    let body = request.body();
    let body = if body.iter().all(u8::is_ascii_whitespace) { b"{}".as_slice() } else { body };
    serde_json::from_slice(body).map_err(|error| error_response(400, "invalid_json", &format!("the body is not valid for this hook ({}); send {usage}", describe(&error)), None))
}

/// Responds with the report, or with a 500 that names the failed step.
fn answer<T: serde::Serialize>(what: &str, result: anyhow::Result<T>) -> Response {
    match result {
        Ok(report) => json_response(200, &report),
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "{what} failed");
            error_response(500, "internal_error", &format!("{what} failed: {error:#}"), None)
        }
    }
}

/// The body of `POST /hooks/scan`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ScanRequest {
    /// Any unique value, so that two calls in one second have different signatures.
    #[allow(dead_code)]
    #[serde(default)]
    nonce: Option<String>,
}

/// Checks the size, signature and freshness of a hook call, and records its signature so that
/// it is accepted once.
fn verify(request: &Request) -> Result<(), Response> {
    let body = request.body();
    if body.len() > MAX_BODY_BYTES {
        return Err(error_response(413, "body_too_large", &format!("the body is {} bytes; the limit is {MAX_BODY_BYTES}", body.len()), None));
    }

    // The signature first: nothing is parsed or read for an unsigned caller.
    let secret = match secret_variable("webhook_secret") {
        Ok(secret) if !secret.is_empty() => secret,
        _ => {
            tracing::error!("variable webhook_secret is not set; every hook call is rejected");
            return Err(error_response(500, "not_configured", "the webhook_secret variable is not set: set SPIN_VARIABLE_WEBHOOK_SECRET and restart", None));
        }
    };
    let header = |name: &str| request.header(name).and_then(|value| value.as_str());
    if let Err(error) = signing::verify(
        secret.expose().as_bytes(),
        header(signing::TIMESTAMP_HEADER),
        header(signing::SIGNATURE_HEADER),
        body,
        now().timestamp(),
    ) {
        tracing::warn!(error = %error, "hook call with an invalid signature rejected");
        return Err(error_response(401, "invalid_signature", &error.to_string(), None));
    }
    // verify accepted the timestamp, so it parses.
    let timestamp: i64 = header(signing::TIMESTAMP_HEADER).and_then(|text| text.trim().parse().ok()).unwrap_or_default();
    match record_signature(header(signing::SIGNATURE_HEADER).unwrap_or_default(), timestamp) {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!("hook call with a signature already used rejected");
            return Err(error_response(
                401,
                "replayed_signature",
                "this signature was already used in the last 5 minutes: sign each call anew, with a fresh timestamp or a \"nonce\" field in the body",
                None,
            ));
        }
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "failed to record the hook signature");
            return Err(error_response(500, "internal_error", &format!("{error:#}"), None));
        }
    }
    Ok(())
}

/// Records a verified signature; `false` when it was already seen in the timestamp window.
///
/// Every hook call writes the record, so it is written with compare-and-swap: of two calls at once
/// with one signature (a replay sent to two replicas), exactly one is accepted.
fn record_signature(signature: &str, timestamp: i64) -> anyhow::Result<bool> {
    let store = Store::open()?;
    let now = now().timestamp();
    store.update(&signing::seen_signatures_key(signature), |seen: Option<signing::SeenSignatures>| {
        let mut seen = seen.unwrap_or_default();
        Ok(match seen.record(signature, timestamp, now) {
            true => Change::Write(seen, true),
            false => Change::Keep(false),
        })
    })
}

/// Describes a JSON error without quoting the body, which may hold a secret pasted by mistake.
fn describe(error: &serde_json::Error) -> String {
    let what = match error.classify() {
        serde_json::error::Category::Io | serde_json::error::Category::Syntax => "not valid JSON",
        serde_json::error::Category::Eof => "JSON that ends early",
        serde_json::error::Category::Data => "a field of the wrong name or type",
    };
    format!("{what} at line {} column {}", error.line(), error.column())
}

/// Returns a 404 response when the scope names a certificate or cluster that does not exist, so
/// that a typo in a pipeline is an error, not an empty report.
fn missing_scope(scope: Option<&SyncScope>) -> Option<Response> {
    let (key, what) = match scope? {
        SyncScope::Certificate(id) => {
            let valid = id.split_once('/').filter(|(namespace, name)| names::check_dns1123_label(namespace).is_ok() && names::check_dns1123_subdomain(name).is_ok());
            let Some((namespace, name)) = valid else {
                return Some(error_response(400, "invalid_scope", "the certificate scope is not namespace/name of Kubernetes names, such as istio-system/web", Some("scope")));
            };
            (records::certificate_key(namespace, name), format!("certificate {id:?}"))
        }
        SyncScope::Cluster(id) if names::check_dns1123_label(id).is_err() => {
            return Some(error_response(400, "invalid_scope", "the cluster scope is not a cluster id (a DNS-1123 label, such as east)", Some("scope")));
        }
        SyncScope::Cluster(id) => (records::cluster_key(id), format!("cluster {id:?}")),
    };
    match Store::open().and_then(|store| store.exists(&key)) {
        Ok(true) => None,
        Ok(false) => Some(error_response(404, "scope_not_found", &format!("{what} does not exist; list them under /api/v1"), Some("scope"))),
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "failed to look up the sync scope");
            Some(error_response(500, "internal_error", &format!("{error:#}"), None))
        }
    }
}

/// Logs the one summary line of a sync.
fn log_summary(report: &SyncReport) {
    tracing::info!(
        targets = report.targets.len(),
        applied = report.applied,
        unchanged = report.unchanged,
        drifted = report.drifted,
        removed = report.removed,
        requests = report.requests,
        dry_run = report.dry_run,
        failed = report.failed,
        duration_ms = report.duration_ms,
        "sync finished"
    );
}
