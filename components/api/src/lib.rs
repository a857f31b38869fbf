//! The api component: meshcert's REST API under `/api/v1`.
//!
//! Each request is authenticated with a bearer token, parsed, handed to `meshcert-core` for
//! validation, and stored in the key-value store. Changes are pushed to clusters by calling the
//! sync-webhook component through Spin service chaining.

mod alerts;
mod auth;
mod certificates;
mod clusters;
mod hooks;
mod json;

use meshcert_spin::{error_response, init_logs, json_response};
use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;

/// Request bodies larger than this are rejected with 413 before parsing.
const MAX_BODY_BYTES: usize = 1024 * 1024;

#[http_component]
async fn handle(request: Request) -> Response {
    init_logs();
    let method = request.method().clone();
    let path = request.path().to_string();

    let response = route(request).await;

    tracing::info!(method = %method, path = %path, status = *response.status(), "request finished");
    response
}

async fn route(request: Request) -> Response {
    let path = request.path().trim_end_matches('/').to_string();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let method = request.method().clone();

    if segments == ["healthz"] {
        return match method {
            Method::Get | Method::Head => health(),
            _ => method_not_allowed(&path, "GET"),
        };
    }

    let role = match auth::authenticate(&request) {
        Ok(role) => role,
        Err(response) => return response,
    };
    if request.body().len() > MAX_BODY_BYTES {
        return error_response(
            413,
            "body_too_large",
            &format!("the request body is {} bytes; the limit is {MAX_BODY_BYTES} bytes", request.body().len()),
            None,
        );
    }

    // Every method but GET and HEAD writes, so a read-only token stops here.
    if !matches!(method, Method::Get | Method::Head) {
        if let Err(response) = auth::require_admin(role) {
            return response;
        }
    }

    // HEAD is GET without a body; the server drops the body.
    let method = if method == Method::Head { Method::Get } else { method };
    match (segments.as_slice(), &method) {
        (["api", "v1", "certificates"], Method::Post) => certificates::create(&request, role).await,
        (["api", "v1", "certificates"], Method::Get) => certificates::list(&request),
        (["api", "v1", "certificates"], _) => method_not_allowed(&path, "GET, POST"),
        (["api", "v1", "certificates", namespace, name], Method::Get) => certificates::details(namespace, name),
        (["api", "v1", "certificates", _, _], _) => method_not_allowed(&path, "GET"),
        (["api", "v1", "clusters"], Method::Post) => clusters::create(&request).await,
        (["api", "v1", "clusters"], Method::Get) => clusters::list(),
        (["api", "v1", "clusters"], _) => method_not_allowed(&path, "GET, POST"),
        (["api", "v1", "alerts"], Method::Get) => alerts::list(&request),
        (["api", "v1", "alerts"], _) => method_not_allowed(&path, "GET"),
        _ => error_response(404, "not_found", &format!("no route for {path:?}; the API lives under /api/v1"), None),
    }
}

/// `GET /healthz`: 200 when the configuration is usable, 503 naming each problem otherwise, so
/// that a bad variable shows at deployment instead of on the first write. Never shows values.
fn health() -> Response {
    let mut problems = Vec::new();
    for name in ["api_token", "webhook_secret"] {
        if meshcert_spin::secret_variable(name).map(|value| value.is_empty()).unwrap_or(true) {
            problems.push(format!("{name} is not set: set SPIN_VARIABLE_{}", name.to_uppercase()));
        }
    }
    if let Err(error) = meshcert_spin::cipher() {
        problems.push(format!("{error:#}"));
    }

    if problems.is_empty() {
        return json_response(200, &serde_json::json!({ "status": "ok" }));
    }
    tracing::error!(problems = ?problems, "configuration is not usable");
    json_response(503, &serde_json::json!({ "status": "misconfigured", "problems": problems }))
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
