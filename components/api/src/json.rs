//! Request bodies: JSON parsing with errors that never echo values.

use meshcert_spin::error_response;
use serde::de::DeserializeOwned;
use spin_sdk::http::{Request, Response};

/// Parses a JSON body. Unknown fields are rejected by name.
///
/// serde's messages quote the offending value ("invalid type: string \"...\""), which could be
/// a private key pasted into the wrong field, so quoted text is replaced before it is returned.
pub fn parse_body<T: DeserializeOwned>(request: &Request) -> Result<T, Response> {
    serde_json::from_slice(request.body()).map_err(|error| {
        let message = redact_quoted(&error.to_string());
        let field = unknown_field(&message);
        error_response(
            400,
            "invalid_json",
            &format!("the request body is not valid JSON for this endpoint: {message}"),
            field.as_deref(),
        )
    })
}

fn redact_quoted(message: &str) -> String {
    let mut output = String::with_capacity(message.len());
    let mut inside = false;
    for character in message.chars() {
        if character == '"' {
            if inside {
                output.push_str("\"…\"");
            }
            inside = !inside;
            continue;
        }
        if !inside {
            output.push(character);
        }
    }
    output
}

fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest.split('`').next()?.to_string())
}

/// Returns the value of a query parameter.
pub fn query_parameter(request: &Request, name: &str) -> Option<String> {
    url::form_urlencoded::parse(request.query().as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}
