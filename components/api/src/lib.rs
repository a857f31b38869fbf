//! The api component: meshcert's REST API under `/api/v1`, and the operator console at `/`.
//!
//! Each request is authenticated with a bearer token, parsed, handed to `meshcert-core` for
//! validation, and stored in the key-value store. Changes are pushed to clusters by calling the
//! sync-webhook component through Spin service chaining.

mod alerts;
mod audit;
mod auth;
mod certificates;
mod clusters;
mod gateways;
mod imports;
mod console;
mod metrics;
mod hooks;
mod json;
mod reseal;
mod routes;

use meshcert_spin::{error_response, init_logs, json_response};
use routes::Route;
use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;

use crate::auth::Role;

/// Request bodies larger than this are rejected with 413 before parsing.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The OpenAPI 3.1 document of this API, served at `/api/v1/openapi.json`.
const OPENAPI: &str = include_str!("openapi.json");

#[http_component]
async fn handle(request: Request) -> Response {
    init_logs();
    let method = request.method().to_string().to_ascii_uppercase();
    let path = request.path().to_string();

    let (mut response, role) = route(&request, &method).await;
    // No response of the api is meant to be read as anything but its declared content type.
    response.set_header("x-content-type-options", "nosniff");

    // Every write with a valid token is audited, whether it was done or refused. Requests without
    // one are only logged: anyone who reaches the port could otherwise fill the store.
    // Imports audit each Secret themselves, one entry per import of a list.
    let audited_by_handler = routes::find(&path).is_some_and(|matched| matched.route == Route::Imports && matched.accepts(&method));
    if !matches!(method.as_str(), "GET" | "HEAD" | "OPTIONS") && role.is_some() && !audited_by_handler {
        audit::record(&method, &path, role, &response);
    }
    tracing::info!(method = %method, path = %path, status = *response.status(), "request finished");
    response
}

/// Authenticates, checks the route, method, body size and role, then dispatches. Returns the
/// response and the role of the token, when it was valid.
async fn route(request: &Request, method: &str) -> (Response, Option<Role>) {
    let path = request.path();
    // The console's page and files, like /healthz, need no token; its API calls do.
    if let Some(response) = console::respond(path, method) {
        return (response, None);
    }
    let matched = routes::find(path);

    if let Some(probe @ (Route::Health | Route::Live)) = matched.as_ref().map(|matched| matched.route) {
        let response = match (method, probe) {
            ("GET" | "HEAD", Route::Health) => health(),
            // Alive means the instance responds. It reads no store, so an outage of the store
            // fails readiness (/healthz) without a liveness probe restarting every replica.
            ("GET" | "HEAD", _) => json_response(200, &serde_json::json!({ "status": "alive" })),
            _ => method_not_allowed(path, "GET"),
        };
        return (response, None);
    }

    let role = match auth::authenticate(request) {
        Ok(role) => role,
        Err(response) => return (response, None),
    };
    if request.body().len() > MAX_BODY_BYTES {
        let message = format!("the request body is {} bytes; the limit is {MAX_BODY_BYTES} bytes", request.body().len());
        return (error_response(413, "body_too_large", &message, None), Some(role));
    }
    let Some(matched) = matched else {
        let message = format!("no route for {path:?}; the API lives under /api/v1, and GET /api/v1/openapi.json lists every route");
        return (error_response(404, "not_found", &message, None), Some(role));
    };
    if !matched.accepts(method) {
        return (method_not_allowed(path, &matched.allow()), Some(role));
    }
    // Every method but GET and HEAD writes, so a read-only token stops here.
    if !matches!(method, "GET" | "HEAD") {
        if let Err(response) = auth::require_admin(role) {
            return (response, Some(role));
        }
    }

    // HEAD is GET without a body; the server drops the body.
    let method = if method == "HEAD" { "GET" } else { method };

    // Handlers that read query parameters reject unknown ones themselves; the others take none.
    let reads_parameters = matches!((matched.route, method), (Route::Certificates, "GET") | (Route::Alerts, "GET") | (Route::Audit, "GET") | (Route::Cluster, "DELETE")
            | (Route::CertificateBindings, "DELETE")
            | (Route::CertificateGatewayManifest, "GET"));
    if !reads_parameters {
        if let Err(response) = json::reject_unknown_parameters(request, &[]) {
            return (response, Some(role));
        }
    }
    let response = match (matched.route, method, matched.parameters.as_slice()) {
        (Route::OpenApi, "GET", _) => openapi(),
        (Route::Certificates, "POST", _) => certificates::create(request, role).await,
        (Route::Certificates, "GET", _) => certificates::list(request),
        (Route::Certificate, "GET", [namespace, name]) => certificates::details(namespace, name),
        (Route::Certificate, "PUT", [namespace, name]) => certificates::replace(request, role, namespace, name).await,
        (Route::Certificate, "DELETE", [namespace, name]) => certificates::delete(request, namespace, name).await,
        (Route::CertificateRollback, "POST", [namespace, name]) => certificates::rollback(request, role, namespace, name).await,
        (Route::CertificateGateways, "GET", [namespace, name]) => gateways::usage(namespace, name).await,
        (Route::CertificateBindings, "POST", [namespace, name]) => gateways::bind(request, namespace, name).await,
        (Route::CertificateBindings, "DELETE", [namespace, name]) => gateways::unbind(request, namespace, name).await,
        (Route::CertificateGatewayManifest, "GET", [namespace, name]) => gateways::manifest(request, namespace, name),
        (Route::DanglingGateways, "GET", _) => gateways::dangling().await,
        (Route::ImportCandidates, "GET", _) => imports::candidates().await,
        (Route::Imports, "POST", _) => imports::import(request, role).await,
        (Route::Clusters, "POST", _) => clusters::create(request).await,
        (Route::Clusters, "GET", _) => clusters::list(),
        (Route::Cluster, "GET", [id]) => clusters::details(id).await,
        (Route::Cluster, "PATCH", [id]) => clusters::update(request, id).await,
        (Route::Cluster, "DELETE", [id]) => clusters::delete(request, id).await,
        (Route::ClusterCaBundle, "GET", [id]) => clusters::ca_bundle(id),
        (Route::ClientTlsConfig, "GET", _) => clusters::client_tls(),
        (Route::Alerts, "GET", _) => alerts::list(request),
        (Route::LastScan, "GET", _) => metrics::last_scan(),
        (Route::Metrics, "GET", _) => metrics::metrics(),
        (Route::Audit, "GET", _) => audit::list(request),
        (Route::EncryptionReseal, "POST", _) => reseal::reseal_all(),
        _ => internal_error(anyhow::anyhow!("route {} accepts {method} but has no handler", matched.template)),
    };
    (response, Some(role))
}

fn openapi() -> Response {
    let mut response = Response::new(200, OPENAPI);
    response.set_header("content-type", "application/json");
    response
}

/// `GET /healthz`: 200 when the configuration is usable, 503 naming each problem otherwise, so
/// that a bad variable shows at deployment instead of on the first write. Never shows values.
fn health() -> Response {
    let mut problems = Vec::new();
    // A store that cannot be reached (Redis down, a wrong database in the runtime configuration)
    // fails every request, so a readiness probe must see it.
    if let Err(error) = meshcert_spin::Store::open().and_then(|store| store.exists(meshcert_spin::scan::LAST_SCAN_KEY)) {
        problems.push(format!(
            "the key-value store \"default\" cannot be read ({error:#}): check key_value_store.default in the runtime configuration and that its server is up"
        ));
    }
    for name in ["api_token", "webhook_secret"] {
        if meshcert_spin::secret_variable(name).map(|value| value.is_empty()).unwrap_or(true) {
            problems.push(format!("{name} is not set: set SPIN_VARIABLE_{}", name.to_uppercase()));
        }
    }
    match meshcert_spin::cipher() {
        Ok(cipher) => problems.extend(sealed_records_problem(&cipher)),
        Err(error) => problems.push(format!("{error:#}")),
    }
    let warning_days = meshcert_spin::variable("expiry_warning_days").unwrap_or_default();
    if let Err(message) = meshcert_core::expiry::parse_warning_days(&warning_days) {
        problems.push(format!("expiry_warning_days is invalid ({message}); 30 is used until it is fixed"));
    }
    if let Err(message) = certificates::parse_kept_versions(&meshcert_spin::variable("kept_versions").unwrap_or_default()) {
        problems.push(format!("{message}; 5 is used until it is fixed"));
    }

    if problems.is_empty() {
        return json_response(200, &serde_json::json!({ "status": "ok" }));
    }
    tracing::error!(problems = ?problems, "configuration is not usable");
    json_response(503, &serde_json::json!({ "status": "misconfigured", "problems": problems }))
}

/// Opens one stored cluster token and the newest stored private key, so that a changed
/// `encryption_key` without `encryption_key_previous` shows here, not as failed syncs.
fn sealed_records_problem(cipher: &meshcert_core::crypto::Cipher) -> Option<String> {
    use meshcert_core::records::{CertificateVersion, ClusterRecord, StoreKey};

    let store = meshcert_spin::Store::open().ok()?;
    let cluster_key = meshcert_spin::clusters::ids(&store).ok()?.into_iter().next().map(|id| meshcert_core::records::cluster_key(&id));
    let sealed = match cluster_key {
        Some(key) => store.get::<ClusterRecord>(&key).ok()?.map(|record| (key, record.token)),
        None => {
            let key = store.keys("cert/").ok()?.into_iter().find(|key| matches!(StoreKey::parse(key), Some(StoreKey::CertificateVersion { .. })))?;
            store.get::<CertificateVersion>(&key).ok()?.map(|version| (key, version.private_key))
        }
    };
    let (key, sealed) = sealed?;
    cipher.open(&sealed, &key).err().map(|error| format!("stored record {key:?} cannot be decrypted ({error}): set encryption_key_previous to the key it was written with"))
}

fn method_not_allowed(path: &str, allowed: &str) -> Response {
    let mut response = error_response(405, "method_not_allowed", &format!("{path:?} accepts only {allowed}"), None);
    response.set_header("allow", allowed);
    response
}

/// Logs an error the client cannot fix and returns it as a 500 response.
fn internal_error(error: anyhow::Error) -> Response {
    tracing::error!(error = format!("{error:#}"), "request failed");
    error_response(500, "internal_error", &format!("{error:#}"), None)
}
