//! The operator console: a page at `/` and its scripts, styles and icon under `/console/`.
//!
//! The files are embedded at build time, so the console works offline and needs nothing but this
//! component. They are served without a token: the page requests one from the user and sends it
//! with each API call. Every console response carries a Content-Security-Policy that lets the page
//! load only its own files and talk only to its own origin. Text that the API returns therefore
//! cannot run as code, even where the page shows it by mistake.

use spin_sdk::http::Response;

/// The policy of every console response. `form-action 'none'` stops a form from ever being sent
/// by the browser itself, which would put its fields in a URL; the scripts send them as JSON.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Every console file: path, content type and content.
const FILES: &[(&str, &str, &str)] = &[
    ("/", "text/html; charset=utf-8", include_str!("console/index.html")),
    ("/console/app.css", "text/css; charset=utf-8", include_str!("console/app.css")),
    ("/console/app.js", "text/javascript; charset=utf-8", include_str!("console/app.js")),
    ("/console/api.js", "text/javascript; charset=utf-8", include_str!("console/api.js")),
    ("/console/dom.js", "text/javascript; charset=utf-8", include_str!("console/dom.js")),
    ("/console/forms.js", "text/javascript; charset=utf-8", include_str!("console/forms.js")),
    ("/console/certificates.js", "text/javascript; charset=utf-8", include_str!("console/certificates.js")),
    ("/console/operations.js", "text/javascript; charset=utf-8", include_str!("console/operations.js")),
    ("/console/icon.svg", "image/svg+xml", include_str!("console/icon.svg")),
];

/// Returns the response for a console path, or `None` when `path` belongs to the API. Paths
/// under `/console/` that name no file get 404, and methods other than GET and HEAD get 405.
pub fn respond(path: &str, method: &str) -> Option<Response> {
    let file = FILES.iter().find(|(file_path, ..)| *file_path == path);
    if file.is_none() && !path.starts_with("/console/") {
        return None;
    }

    let mut response = match file {
        // HEAD is accepted wherever GET is, as on the API's routes.
        _ if !matches!(method, "GET" | "HEAD") => crate::method_not_allowed(path, "GET"),
        Some((_, content_type, content)) => {
            let mut response = Response::new(200, *content);
            response.set_header("content-type", *content_type);
            response
        }
        None => {
            let mut response = Response::new(404, format!("no console file {path:?}; open / for the console\n"));
            response.set_header("content-type", "text/plain; charset=utf-8");
            response
        }
    };
    response.set_header("content-security-policy", CONTENT_SECURITY_POLICY);
    response.set_header("x-content-type-options", "nosniff");
    response.set_header("referrer-policy", "no-referrer");
    response.set_header("x-frame-options", "DENY");
    // The files change only with a new build; revalidating keeps an upgraded app from running an
    // old script against a new API.
    response.set_header("cache-control", "no-cache");
    Some(response)
}
