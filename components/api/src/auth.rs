//! Bearer tokens: `api_token` may do everything, `api_read_token` (optional) may only read.

use meshcert_spin::{error_response, secret_variable};
use spin_sdk::http::{Request, Response};
use subtle::ConstantTimeEq as _;

/// The permissions of a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `api_token`: reads and writes.
    Admin,
    /// `api_read_token`: reads only.
    Reader,
}

impl Role {
    /// Returns the role name written as the author of records.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Reader => "reader",
        }
    }
}

/// Checks the `Authorization: Bearer` header against the configured tokens in constant time.
pub fn authenticate(request: &Request) -> Result<Role, Response> {
    // RFC 7235: the scheme name is case-insensitive.
    let presented = request
        .header("authorization")
        .and_then(|value| value.as_str())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let Some(presented) = presented.filter(|token| !token.is_empty()) else {
        return Err(unauthorized("missing bearer token: send the header \"Authorization: Bearer <api_token>\""));
    };

    let admin = match secret_variable("api_token") {
        Ok(token) if !token.is_empty() => token,
        _ => {
            tracing::error!("variable api_token is not set; every request is rejected");
            return Err(error_response(500, "not_configured", "the api_token variable is not set: set SPIN_VARIABLE_API_TOKEN and restart", None));
        }
    };
    if bool::from(presented.as_bytes().ct_eq(admin.expose().as_bytes())) {
        return Ok(Role::Admin);
    }
    if let Ok(reader) = secret_variable("api_read_token") {
        if !reader.is_empty() && bool::from(presented.as_bytes().ct_eq(reader.expose().as_bytes())) {
            return Ok(Role::Reader);
        }
    }

    tracing::warn!("request with an invalid bearer token rejected");
    Err(unauthorized("invalid bearer token: use the value of api_token (or api_read_token for reads)"))
}

/// Rejects a read-only token on a write.
pub fn require_admin(role: Role) -> Result<(), Response> {
    match role {
        Role::Admin => Ok(()),
        Role::Reader => Err(error_response(403, "forbidden", "this token may only read: use api_token for writes", None)),
    }
}

fn unauthorized(message: &str) -> Response {
    let mut response = error_response(401, "unauthorized", message, None);
    response.set_header("www-authenticate", "Bearer");
    response
}
