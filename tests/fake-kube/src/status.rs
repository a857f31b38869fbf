//! Kubernetes `Status` error objects (`kind: Status`, `apiVersion: v1`), shaped like the ones that
//! kube-apiserver returns, so clients under test parse the same `reason`, `code` and `details`.

use serde_json::{json, Map, Value};

/// An error response: an HTTP status code with a `Status` body.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub code: u16,
    pub body: Value,
}

/// One entry of `details.causes` in an `Invalid` (422) Status, such as `type: Invalid value: ...`.
#[derive(Debug, Clone)]
pub(crate) struct FieldCause {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueTooLong`, `FieldValueForbidden`,
    /// `FieldValueNotSupported` or `FieldValueTypeInvalid`.
    pub reason: &'static str,
    /// The field path, such as `data[tls.crt]` or `metadata.labels`.
    pub field: String,
    /// The message without the field path, such as `Required value`.
    pub message: String,
}

impl FieldCause {
    pub fn invalid(field: impl Into<String>, value: &str, detail: &str) -> Self {
        FieldCause {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!("Invalid value: {}: {detail}", json!(value)),
        }
    }

    /// Builds an `Invalid value` cause for a value of any JSON type, such as a port number.
    pub fn invalid_value(field: impl Into<String>, value: &Value, detail: &str) -> Self {
        FieldCause {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!("Invalid value: {value}: {detail}"),
        }
    }

    pub fn required(field: impl Into<String>) -> Self {
        FieldCause {
            reason: "FieldValueRequired",
            field: field.into(),
            message: "Required value".into(),
        }
    }

    /// Appends a detail to the message, as in `Required value: is required for apply patch`.
    pub fn with_detail(mut self, detail: &str) -> Self {
        self.message = format!("{}: {detail}", self.message);
        self
    }

    pub fn too_long(field: impl Into<String>, max_bytes: usize) -> Self {
        FieldCause {
            reason: "FieldValueTooLong",
            field: field.into(),
            message: format!("Too long: must have at most {max_bytes} bytes"),
        }
    }

    /// Builds a cause for a value outside an enumeration, such as a TLS mode.
    pub fn not_supported(field: impl Into<String>, value: &str, supported: &[&str]) -> Self {
        let listed: Vec<String> = supported.iter().map(|v| json!(v).to_string()).collect();
        FieldCause {
            reason: "FieldValueNotSupported",
            field: field.into(),
            message: format!(
                "Unsupported value: {}: supported values: {}",
                json!(value),
                listed.join(", ")
            ),
        }
    }

    /// Builds a cause for a value of the wrong JSON type, as schema validation of a custom
    /// resource reports it, such as `spec.servers in body must be of type array: "object"`.
    pub fn wrong_type(field: impl Into<String>, found: &Value, expected: &str) -> Self {
        let field = field.into();
        let found = json_type_name(found);
        FieldCause {
            reason: "FieldValueTypeInvalid",
            message: format!(
                "Invalid value: {}: {field} in body must be of type {expected}: {}",
                json!(found),
                json!(found)
            ),
            field,
        }
    }

    pub fn forbidden(field: impl Into<String>, detail: &str) -> Self {
        FieldCause {
            reason: "FieldValueForbidden",
            field: field.into(),
            message: format!("Forbidden: {detail}"),
        }
    }
}

/// Returns the OpenAPI type name of a JSON value, as schema validation messages use it.
fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Returns the `reason` (`metav1.StatusReason`) that kube-apiserver pairs with an HTTP status code,
/// or an empty string when the API defines none, as for 502.
pub(crate) fn reason_for_code(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        406 => "NotAcceptable",
        409 => "Conflict",
        410 => "Expired",
        413 => "RequestEntityTooLarge",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "",
    }
}

impl ApiError {
    pub fn new(
        code: u16,
        reason: &str,
        message: impl Into<String>,
        details: Option<Value>,
    ) -> Self {
        let mut body = Map::new();
        body.insert("kind".into(), json!("Status"));
        body.insert("apiVersion".into(), json!("v1"));
        body.insert("metadata".into(), json!({}));
        body.insert("status".into(), json!("Failure"));
        body.insert("message".into(), json!(message.into()));
        if !reason.is_empty() {
            body.insert("reason".into(), json!(reason));
        }
        body.insert("details".into(), details.unwrap_or_else(|| json!({})));
        body.insert("code".into(), json!(code));
        ApiError {
            code,
            body: Value::Object(body),
        }
    }

    pub fn unauthorized() -> Self {
        ApiError::new(401, "Unauthorized", "Unauthorized", None)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, "BadRequest", message, None)
    }

    /// Builds a 404 for a named object, such as `secrets "east-tls" not found`. `resource` is the
    /// plural resource name (`secrets`, `namespaces`).
    pub fn not_found(resource: &str, name: &str) -> Self {
        ApiError::not_found_in_group("", resource, name)
    }

    /// Builds a 404 for a named object of an API group, such as
    /// `gateways.networking.istio.io "east" not found`. An empty `group` is the core group.
    pub fn not_found_in_group(group: &str, resource: &str, name: &str) -> Self {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", qualified(group, resource)),
            Some(details(group, resource, name)),
        )
    }

    /// Builds a 404 for a path that no route serves.
    pub fn path_not_found() -> Self {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
            None,
        )
    }

    pub fn method_not_allowed() -> Self {
        ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
            None,
        )
    }

    pub fn already_exists(resource: &str, name: &str) -> Self {
        ApiError::already_exists_in_group("", resource, name)
    }

    pub fn already_exists_in_group(group: &str, resource: &str, name: &str) -> Self {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", qualified(group, resource)),
            Some(details(group, resource, name)),
        )
    }

    /// Builds the optimistic-concurrency 409 for a stale `metadata.resourceVersion`.
    pub fn stale_resource_version(resource: &str, name: &str) -> Self {
        ApiError::stale_resource_version_in_group("", resource, name)
    }

    pub fn stale_resource_version_in_group(group: &str, resource: &str, name: &str) -> Self {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                qualified(group, resource)
            ),
            Some(details(group, resource, name)),
        )
    }

    /// Builds the 409 for a failed precondition of a write or delete, where `detail` names the
    /// mismatch, such as `ResourceVersion in precondition: 4, ResourceVersion in object meta: 7`.
    pub fn precondition_failed(group: &str, resource: &str, name: &str, detail: &str) -> Self {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: {detail}",
                qualified(group, resource)
            ),
            Some(details(group, resource, name)),
        )
    }

    /// Builds the server-side apply 409 for fields that another field manager owns. `conflicts`
    /// pairs each field path (`.data.tls.crt`) with the manager that owns it.
    pub fn apply_conflict(conflicts: &[(String, String)]) -> Self {
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|(field, manager)| {
                json!({
                    "reason": "FieldManagerConflict",
                    "message": format!("conflict with \"{manager}\" using v1"),
                    "field": field,
                })
            })
            .collect();
        let listed: Vec<String> = conflicts
            .iter()
            .map(|(field, manager)| format!("conflict with \"{manager}\" using v1: {field}"))
            .collect();
        let noun = if conflicts.len() == 1 {
            "conflict"
        } else {
            "conflicts"
        };
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Apply failed with {} {noun}: {}",
                conflicts.len(),
                listed.join(", ")
            ),
            Some(json!({ "causes": causes })),
        )
    }

    /// Builds a 422 that lists every failed field check, such as
    /// `Secret "east-tls" is invalid: type: Invalid value: "Opaque": field is immutable`.
    pub fn invalid(kind: &str, name: &str, causes: &[FieldCause]) -> Self {
        ApiError::invalid_in_group("", kind, name, causes)
    }

    /// Builds a 422 for an object of an API group, such as
    /// `Gateway.networking.istio.io "east" is invalid: ...`, with `details.group` set.
    pub fn invalid_in_group(group: &str, kind: &str, name: &str, causes: &[FieldCause]) -> Self {
        let rendered: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        let summary = match rendered.as_slice() {
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        };
        let cause_values: Vec<Value> = causes
            .iter()
            .map(|c| json!({ "reason": c.reason, "message": c.message, "field": c.field }))
            .collect();
        let mut details = details(group, kind, name);
        details["causes"] = Value::Array(cause_values);
        ApiError::new(
            422,
            "Invalid",
            format!(
                "{} \"{name}\" is invalid: {summary}",
                qualified(group, kind)
            ),
            Some(details),
        )
    }

    pub fn unsupported_media_type(content_type: &str, accepted: &str) -> Self {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format ({content_type:?}) - accepted media types include: {accepted}"
            ),
            None,
        )
    }

    pub fn too_large(max_bytes: usize) -> Self {
        ApiError::new(
            413,
            "RequestEntityTooLarge",
            format!("the request body is larger than {max_bytes} bytes"),
            None,
        )
    }

    /// Builds the response of a status fault that a test injected.
    pub fn injected(code: u16) -> Self {
        ApiError::new(
            code,
            reason_for_code(code),
            format!("fake-kube: injected fault with status code {code}"),
            None,
        )
    }
}

/// Builds the `Status` object of a successful DELETE. An empty `group` is the core group.
pub(crate) fn success_status(group: &str, resource: &str, name: &str, uid: &str) -> Value {
    let mut details = details(group, resource, name);
    details["uid"] = json!(uid);
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}

/// Names a resource or kind as kube-apiserver messages do: `secrets` in the core group,
/// `gateways.networking.istio.io` in another.
fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_owned()
    } else {
        format!("{resource}.{group}")
    }
}

/// Builds `details` with `name`, `kind` and, outside the core group, `group`.
fn details(group: &str, kind: &str, name: &str) -> Value {
    let mut details = json!({ "name": name, "kind": kind });
    if !group.is_empty() {
        details["group"] = json!(group);
    }
    details
}
