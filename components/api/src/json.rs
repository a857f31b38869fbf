//! Request bodies: JSON parsing with errors that never echo values.

use meshcert_spin::error_response;
use serde::de::DeserializeOwned;
use spin_sdk::http::{Request, Response};

/// Parses a JSON body. Unknown fields are rejected by name.
///
/// serde's messages quote the offending value ("invalid type: string \"...\""), which could be
/// a private key pasted into the wrong field, so the message is rebuilt from the field path and
/// the expected type only, and never contains a value of the request.
pub fn parse_body<T: DeserializeOwned>(request: &Request) -> Result<T, Response> {
    let mut deserializer = serde_json::Deserializer::from_slice(request.body());
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        let (message, field) = describe(&inner, &path);
        tracing::warn!(error = %message, "request body rejected");
        error_response(400, "invalid_json", &message, field.as_deref())
    })?;

    // Text after the object means the body is not what the client meant to send.
    deserializer.end().map_err(|error| {
        let (message, _) = describe(&error, ".");
        tracing::warn!(error = %message, "request body rejected");
        error_response(400, "invalid_json", &message, None)
    })?;
    Ok(value)
}

/// Builds a message and the field it concerns from a serde_json error without quoting input.
pub(crate) fn describe(error: &serde_json::Error, path: &str) -> (String, Option<String>) {
    let text = error.to_string();
    let location = format!("line {} column {}", error.line(), error.column());
    let field = (path != "." && is_safe_name(path)).then(|| path.to_string());

    if error.classify() != serde_json::error::Category::Data {
        return (format!("the request body is not valid JSON ({}); send a JSON object", strip_location(&text)), None);
    }
    if let Some(rest) = text.strip_prefix("unknown field `") {
        let name = rest.split('`').next().unwrap_or_default();
        let expected = rest.rsplit_once("expected ").map(|(_, expected)| strip_location(expected)).unwrap_or_default();
        let message = if is_safe_name(name) {
            format!("unknown field {name:?} at {location}; this endpoint accepts {expected}")
        } else {
            format!("unknown field at {location}; this endpoint accepts {expected}")
        };
        return (message, is_safe_name(name).then(|| name.to_string()));
    }
    if let Some(rest) = text.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or_default();
        return (format!("missing field {name:?}: add it to the request body"), Some(name.to_string()));
    }
    // "invalid type: <value>, expected <type>": the type after the last ", expected " comes
    // from this endpoint's schema, while everything before it may quote the request.
    let expected = text.rsplit_once(", expected ").map(|(_, expected)| strip_location(expected));
    let subject = field.as_deref().map_or_else(|| "a value".to_string(), |field| format!("field {field:?}"));
    match expected.as_deref().map(plain_type) {
        Some(expected) => (format!("{subject} has the wrong type or value at {location}: expected {expected}"), field),
        None => (format!("{subject} is not valid for this endpoint at {location}"), field),
    }
}

/// Rewrites serde's Rust type names (`struct X with 6 elements`, `u32`) in the words of JSON.
fn plain_type(expected: &str) -> String {
    if expected.starts_with("struct ") || expected.starts_with("a map") {
        return "a JSON object".into();
    }
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number, 0 or more".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".into(),
        "bool" => "a boolean".into(),
        other => other.into(),
    }
}

/// Removes serde_json's " at line L column C" suffix.
fn strip_location(text: &str) -> String {
    match text.rfind(" at line ") {
        Some(index) => text[..index].to_string(),
        None => text.to_string(),
    }
}

/// Returns whether a field path is short and plain enough to repeat: letters, digits, `_` and `.` only.
fn is_safe_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

/// Returns the value of a query parameter.
pub fn query_parameter(request: &Request, name: &str) -> Option<String> {
    url::form_urlencoded::parse(request.query().as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// Rejects query parameters that the endpoint does not know, so that a misspelled filter is an
/// error instead of an unfiltered list.
pub fn reject_unknown_parameters(request: &Request, known: &[&str]) -> Result<(), Response> {
    let mut seen = std::collections::BTreeSet::new();
    for (name, _) in url::form_urlencoded::parse(request.query().as_bytes()) {
        if !known.contains(&name.as_ref()) {
            let quoted = if is_safe_name(&name) { format!("{name:?}") } else { "with an unusual name".to_string() };
            let accepted = if known.is_empty() { "no query parameters".to_string() } else { known.join(", ") };
            return Err(error_response(
                400,
                "unknown_parameter",
                &format!("query parameter {quoted} is not known here; this endpoint accepts {accepted}"),
                is_safe_name(&name).then_some(name.as_ref()),
            ));
        }
        // Only the first value would be read, so a repeated parameter would be silently dropped.
        if !seen.insert(name.clone()) {
            return Err(error_response(
                400,
                "repeated_parameter",
                &format!("query parameter {name:?} is given more than once; send it once (a list parameter takes comma-separated values)"),
                Some(name.as_ref()),
            ));
        }
    }
    Ok(())
}
