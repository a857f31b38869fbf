//! Istio Gateways (`networking.istio.io`, kind `Gateway`), served the way kube-apiserver serves a
//! custom resource. One object is stored per namespace and name and returned at whichever served
//! version the request URL names, with unknown fields kept as sent. This module also serves API
//! discovery for the group.
//!
//! Writes follow kube-apiserver's rules for custom resources: `apiVersion` and `kind` are required
//! in POST and PUT bodies, a PUT must carry `metadata.resourceVersion`, a strategic merge patch is
//! rejected with 415, and `metadata.generation` counts the changes of `spec`.

mod validation;

use std::cmp::Ordering;
use std::collections::BTreeMap;

use hyper::Method;
use serde_json::{json, Map, Value};

use crate::api::{self, ok, ApiRequest, ApiResult, ClusterState};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::{self, ApiError, FieldCause};
use crate::util;

pub(crate) const GROUP: &str = "networking.istio.io";
const RESOURCE: &str = "gateways";
const KIND: &str = "Gateway";

/// The versions a cluster serves unless its config sets others. Istio 1.22 added `v1` and still
/// serves `v1beta1` and `v1alpha3` (https://istio.io/latest/blog/2024/v1-apis/).
// NOTE: v1alpha3 is left out of the default. A test that needs it passes it to
// FakeClusterConfig::gateway_versions.
pub(crate) const DEFAULT_VERSIONS: [&str; 2] = ["v1", "v1beta1"];

/// The fields that a `fieldSelector` on a custom resource may name.
const GATEWAY_FIELDS: [&str; 2] = ["metadata.name", "metadata.namespace"];

/// The metadata fields that the server owns. A write cannot set them, and they are stored in
/// [`StoredGateway`] fields rather than in its content.
const SERVER_METADATA: [&str; 9] = [
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
];

/// A Gateway as the fake cluster stores it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredGateway {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub resource_version: u64,
    /// Starts at 1 and increments with every write that changes `spec`.
    pub generation: u64,
    pub creation_timestamp: String,
    /// The object as written, without `apiVersion`, `kind` and the [`SERVER_METADATA`] fields.
    /// `metadata` keeps labels, annotations and any other field the client sent.
    pub content: Map<String, Value>,
}

impl StoredGateway {
    /// Returns `metadata.labels`, which decoding checked to be a map of strings.
    pub fn labels(&self) -> BTreeMap<String, String> {
        string_map_at(&self.content, "labels")
    }

    fn annotations(&self) -> BTreeMap<String, String> {
        string_map_at(&self.content, "annotations")
    }

    /// Renders the Gateway as the API returns it at `version`, such as `v1`. Items of a custom
    /// resource list carry `apiVersion` and `kind` too, unlike items of a core list.
    pub fn to_json(&self, version: &str) -> Value {
        let mut object = self.content.clone();
        let metadata = object
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        if !metadata.is_object() {
            *metadata = Value::Object(Map::new());
        }
        if let Value::Object(metadata) = metadata {
            metadata.insert("name".into(), json!(self.name));
            metadata.insert("namespace".into(), json!(self.namespace));
            metadata.insert("uid".into(), json!(self.uid));
            metadata.insert(
                "resourceVersion".into(),
                json!(self.resource_version.to_string()),
            );
            metadata.insert("generation".into(), json!(self.generation));
            metadata.insert("creationTimestamp".into(), json!(self.creation_timestamp));
        }
        object.insert("apiVersion".into(), json!(format!("{GROUP}/{version}")));
        object.insert("kind".into(), json!(KIND));
        Value::Object(object)
    }

    /// Builds the next version of this Gateway with `content`, counting a `spec` change in the
    /// generation. The resourceVersion is set when the write is stored.
    fn with_content(&self, content: Map<String, Value>) -> StoredGateway {
        let spec_changed = content.get("spec") != self.content.get("spec");
        StoredGateway {
            content,
            generation: self.generation + u64::from(spec_changed),
            ..self.clone()
        }
    }

    fn validate(&self) -> Result<(), ApiError> {
        let causes = validation::validate(
            &self.name,
            &self.content,
            &self.labels(),
            &self.annotations(),
        );
        if causes.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid_in_group(GROUP, KIND, &self.name, &causes))
        }
    }
}

fn string_map_at(content: &Map<String, Value>, field: &str) -> BTreeMap<String, String> {
    content
        .get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_object)
        .map(|entries| {
            entries
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// A Gateway decoded from a request body: the fields the server reads, and the content to store.
#[derive(Debug, Clone, Default)]
struct GatewayInput {
    api_version: Option<String>,
    kind: Option<String>,
    name: Option<String>,
    namespace: Option<String>,
    resource_version: Option<String>,
    uid: Option<String>,
    creation_timestamp: Option<String>,
    content: Map<String, Value>,
}

/// Decodes a Gateway body. Type errors in the fields the server reads are 400s, as kube-apiserver's
/// decoder returns them. Every other field is kept as sent.
fn decode(value: &Value) -> Result<GatewayInput, ApiError> {
    let decode_error = |detail: String| {
        ApiError::bad_request(format!("the body cannot be decoded as a {KIND}: {detail}"))
    };
    let Value::Object(object) = value else {
        return Err(decode_error("the body is not a JSON object".into()));
    };
    let string_at = |map: &Map<String, Value>, field: &str, path: &str| match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(decode_error(format!(
            "{path}: expected a string, found {other}"
        ))),
    };

    let mut content = object.clone();
    content.remove("apiVersion");
    content.remove("kind");
    let mut metadata = match content.remove("metadata") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(decode_error(format!(
                "metadata: expected an object, found {other}"
            )))
        }
    };
    for field in ["labels", "annotations"] {
        match metadata.get(field) {
            None | Some(Value::Null) => {
                metadata.remove(field);
            }
            Some(Value::Object(entries)) => {
                if let Some((key, other)) = entries.iter().find(|(_, v)| !v.is_string()) {
                    return Err(decode_error(format!(
                        "metadata.{field}[{key}]: expected a string, found {other}"
                    )));
                }
            }
            Some(other) => {
                return Err(decode_error(format!(
                    "metadata.{field}: expected an object, found {other}"
                )))
            }
        }
    }

    let input = GatewayInput {
        api_version: string_at(object, "apiVersion", "apiVersion")?,
        kind: string_at(object, "kind", "kind")?,
        name: string_at(&metadata, "name", "metadata.name")?,
        namespace: string_at(&metadata, "namespace", "metadata.namespace")?,
        resource_version: string_at(&metadata, "resourceVersion", "metadata.resourceVersion")?,
        uid: string_at(&metadata, "uid", "metadata.uid")?,
        creation_timestamp: string_at(
            &metadata,
            "creationTimestamp",
            "metadata.creationTimestamp",
        )?,
        content: Map::new(),
    };
    for field in SERVER_METADATA {
        metadata.remove(field);
    }
    content.insert("metadata".into(), Value::Object(metadata));
    Ok(GatewayInput { content, ..input })
}

/// Sorts versions as Kubernetes API discovery does: GA before beta before alpha, higher numbers
/// first within each, and versions of another form last in alphabetical order.
pub(crate) fn sort_versions(versions: &mut [String]) {
    versions.sort_by(|a, b| compare_versions(a, b));
}

fn compare_versions(a: &str, b: &str) -> Ordering {
    match (version_rank(a), version_rank(b)) {
        (Some(a), Some(b)) => b.cmp(&a),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// Ranks `v2` > `v1` > `v1beta2` > `v1beta1` > `v1alpha1`, or `None` for a version of another
/// form.
fn version_rank(version: &str) -> Option<(u8, u64, u64)> {
    let rest = version.strip_prefix('v')?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let major: u64 = rest[..digits].parse().ok()?;
    let (stability, minor) = match &rest[digits..] {
        "" => (2, 0),
        tail => {
            let (stability, number) = if let Some(n) = tail.strip_prefix("beta") {
                (1, n)
            } else {
                (0, tail.strip_prefix("alpha")?)
            };
            let minor: u64 = number.parse().ok()?;
            (stability, minor)
        }
    };
    (major > 0).then_some((stability, major, minor))
}

/// Checks that `version` is a Kubernetes API version name, such as `v1` or `v1beta1`.
pub(crate) fn is_version_name(version: &str) -> bool {
    version_rank(version).is_some()
}

/// Returns the version a test helper renders Gateways at: the preferred served version, or `v1`
/// when the cluster serves none.
pub(crate) fn preferred_version(served: &[String]) -> &str {
    served.first().map_or("v1", String::as_str)
}

/// Builds the `GET /apis` body (`APIGroupList`), which lists `networking.istio.io` when the
/// cluster serves a version of it.
pub(crate) fn api_group_list(served: &[String]) -> Value {
    let groups: Vec<Value> = if served.is_empty() {
        Vec::new()
    } else {
        vec![api_group(served)]
    };
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

fn api_group(served: &[String]) -> Value {
    let versions: Vec<Value> = served
        .iter()
        .map(|v| json!({ "groupVersion": format!("{GROUP}/{v}"), "version": v }))
        .collect();
    json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": GROUP,
        "versions": versions,
        "preferredVersion": versions.first().cloned().unwrap_or(Value::Null),
    })
}

/// Builds the `GET /apis/networking.istio.io/{version}` body (`APIResourceList`).
// NOTE: the real list has every Istio networking resource and the verbs watch and
// deletecollection. This one lists only gateways with the verbs the fake implements.
fn api_resource_list(version: &str) -> Value {
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": format!("{GROUP}/{version}"),
        "resources": [{
            "name": RESOURCE,
            "singularName": "gateway",
            "namespaced": true,
            "kind": KIND,
            "verbs": ["create", "delete", "get", "list", "patch", "update"],
            "shortNames": ["gw"],
            "categories": ["istio-io", "networking-istio-io"],
        }],
    })
}

/// Routes a request under `/apis/networking.istio.io/`, where `segments` are the path segments
/// after the group. A version the cluster does not serve is a 404 with the message kube-apiserver
/// gives for an unknown resource, so clients can fall back to another version.
pub(crate) fn handle(
    state: &mut ClusterState,
    segments: &[&str],
    request: &ApiRequest,
) -> ApiResult {
    let method = request.method;
    let [version, rest @ ..] = segments else {
        return match *method {
            Method::GET => ok(200, api_group(&state.gateway_versions)),
            _ => Err(ApiError::method_not_allowed()),
        };
    };
    if !state.gateway_versions.iter().any(|v| v == version) {
        return Err(ApiError::path_not_found());
    }
    match rest {
        [] => match *method {
            Method::GET => ok(200, api_resource_list(version)),
            _ => Err(ApiError::method_not_allowed()),
        },
        [RESOURCE] => match *method {
            Method::GET => list_gateways(state, version, None, request),
            _ => Err(ApiError::method_not_allowed()),
        },
        ["namespaces", namespace, RESOURCE] => match *method {
            Method::GET => list_gateways(state, version, Some(namespace), request),
            Method::POST => create_gateway(state, version, namespace, request),
            _ => Err(ApiError::method_not_allowed()),
        },
        ["namespaces", namespace, RESOURCE, name] => match *method {
            Method::GET => get_gateway(state, version, namespace, name),
            Method::PUT => replace_gateway(state, version, namespace, name, request),
            Method::PATCH => patch_gateway(state, version, namespace, name, request),
            Method::DELETE => delete_gateway(state, namespace, name, request),
            _ => Err(ApiError::method_not_allowed()),
        },
        _ => Err(ApiError::path_not_found()),
    }
}

/// Lists the Gateways of a namespace, or of all namespaces for `None`, that match `labelSelector`
/// and `fieldSelector`.
// NOTE: `limit` and `continue` are ignored, so the whole list comes in one page.
fn list_gateways(
    state: &ClusterState,
    version: &str,
    namespace: Option<&str>,
    request: &ApiRequest,
) -> ApiResult {
    api::reject_watch(request)?;
    let labels = LabelSelector::parse(request.query_value("labelSelector").unwrap_or(""))?;
    let fields = FieldSelector::parse(
        request.query_value("fieldSelector").unwrap_or(""),
        &GATEWAY_FIELDS,
    )?;
    let items: Vec<Value> = api::in_namespace(&state.gateways, namespace)
        .filter(|gateway| labels.matches(&gateway.labels()))
        .filter(|gateway| {
            fields.matches(|field| match field {
                "metadata.name" => &gateway.name,
                _ => &gateway.namespace,
            })
        })
        .map(|gateway| gateway.to_json(version))
        .collect();
    ok(
        200,
        json!({
            "apiVersion": format!("{GROUP}/{version}"),
            "kind": "GatewayList",
            "metadata": { "resourceVersion": state.resource_version.to_string(), "continue": "" },
            "items": items,
        }),
    )
}

fn get_gateway(state: &ClusterState, version: &str, namespace: &str, name: &str) -> ApiResult {
    match state.gateways.get(&(namespace.to_owned(), name.to_owned())) {
        Some(gateway) => ok(200, gateway.to_json(version)),
        None => Err(ApiError::not_found_in_group(GROUP, RESOURCE, name)),
    }
}

/// Checks `apiVersion` and `kind` of a POST or PUT body against the URL. A custom resource body
/// must state both, because kube-apiserver has no built-in type to fill them in from.
fn check_type_meta(input: &GatewayInput, version: &str) -> Result<(), ApiError> {
    let expected = format!("{GROUP}/{version}");
    match input.api_version.as_deref() {
        None | Some("") => {
            return Err(ApiError::bad_request(
                "Object 'apiVersion' is missing in the request body",
            ))
        }
        Some(api_version) if api_version != expected => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({api_version}) does not match the expected API version ({expected})"
            )))
        }
        Some(_) => {}
    }
    match input.kind.as_deref() {
        None | Some("") => Err(ApiError::bad_request(
            "Object 'Kind' is missing in the request body",
        )),
        Some(KIND) => Ok(()),
        Some(kind) => Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({KIND})"
        ))),
    }
}

fn create_gateway(
    state: &mut ClusterState,
    version: &str,
    namespace: &str,
    request: &ApiRequest,
) -> ApiResult {
    api::require_json(request)?;
    let input = decode(&api::parse_json_body(request.body)?)?;
    check_type_meta(&input, version)?;
    api::check_namespace(input.namespace.as_deref(), namespace)?;
    let Some(name) = input.name.clone().filter(|n| !n.is_empty()) else {
        return Err(ApiError::invalid_in_group(
            GROUP,
            KIND,
            "",
            &[FieldCause::required("metadata.name")
                .with_detail("name or generateName is required")],
        ));
    };
    if !state.namespaces.contains_key(namespace) {
        return Err(ApiError::not_found("namespaces", namespace));
    }

    let created = new_gateway(namespace, &name, input.content);
    // Validation comes before the existence check, as admission runs before the storage write.
    created.validate()?;
    if state
        .gateways
        .contains_key(&(namespace.to_owned(), name.clone()))
    {
        return Err(ApiError::already_exists_in_group(GROUP, RESOURCE, &name));
    }
    commit(state, created, version, request.is_dry_run(), 201)
}

fn new_gateway(namespace: &str, name: &str, content: Map<String, Value>) -> StoredGateway {
    StoredGateway {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        uid: util::new_uid(),
        resource_version: 0,
        generation: 1,
        creation_timestamp: util::now_rfc3339(),
        content,
    }
}

/// Stores a Gateway with a new resourceVersion (unless dry-run) and returns it at `version`.
fn commit(
    state: &mut ClusterState,
    mut gateway: StoredGateway,
    version: &str,
    dry_run: bool,
    code: u16,
) -> ApiResult {
    if !dry_run {
        gateway.resource_version = state.next_resource_version();
        state.gateways.insert(
            (gateway.namespace.clone(), gateway.name.clone()),
            gateway.clone(),
        );
    }
    ok(code, gateway.to_json(version))
}

/// Checks the preconditions a write body carries: `metadata.resourceVersion` (409 Conflict when
/// stale) and `metadata.uid` (409 when it names another object).
fn check_preconditions(input: &GatewayInput, current: &StoredGateway) -> Result<(), ApiError> {
    if let Some(rv) = input
        .resource_version
        .as_deref()
        .filter(|rv| !rv.is_empty())
    {
        if rv != current.resource_version.to_string() {
            return Err(ApiError::stale_resource_version_in_group(
                GROUP,
                RESOURCE,
                &current.name,
            ));
        }
    }
    if let Some(uid) = input.uid.as_deref().filter(|uid| !uid.is_empty()) {
        if uid != current.uid {
            return Err(ApiError::precondition_failed(
                GROUP,
                RESOURCE,
                &current.name,
                &format!(
                    "UID in precondition: {uid}, UID in object meta: {}",
                    current.uid
                ),
            ));
        }
    }
    Ok(())
}

fn replace_gateway(
    state: &mut ClusterState,
    version: &str,
    namespace: &str,
    name: &str,
    request: &ApiRequest,
) -> ApiResult {
    api::require_json(request)?;
    let input = decode(&api::parse_json_body(request.body)?)?;
    // kube-apiserver does not allow unconditional updates of custom resources.
    if input.resource_version.as_deref().unwrap_or("").is_empty() {
        return Err(ApiError::invalid_in_group(
            GROUP,
            KIND,
            name,
            &[FieldCause {
                reason: "FieldValueInvalid",
                field: "metadata.resourceVersion".into(),
                message: "Invalid value: 0x0: must be specified for an update".into(),
            }],
        ));
    }
    update_gateway(state, version, namespace, name, input, request)
}

/// Replaces a Gateway with the whole of `input`, as PUT does. A merge patch arrives here after
/// merging. Custom resources cannot be created by an update, so a missing one is a 404.
fn update_gateway(
    state: &mut ClusterState,
    version: &str,
    namespace: &str,
    name: &str,
    input: GatewayInput,
    request: &ApiRequest,
) -> ApiResult {
    check_type_meta(&input, version)?;
    api::check_namespace(input.namespace.as_deref(), namespace)?;
    api::check_name(input.name.as_deref(), name)?;
    let current = state
        .gateways
        .get(&(namespace.to_owned(), name.to_owned()))
        .ok_or_else(|| ApiError::not_found_in_group(GROUP, RESOURCE, name))?;
    check_preconditions(&input, current)?;

    let updated = current.with_content(input.content);
    updated.validate()?;
    if updated.content == current.content {
        // A no-op write keeps the resourceVersion, as kube-apiserver skips writing an unchanged object.
        return ok(200, current.to_json(version));
    }
    commit(state, updated, version, request.is_dry_run(), 200)
}

fn patch_gateway(
    state: &mut ClusterState,
    version: &str,
    namespace: &str,
    name: &str,
    request: &ApiRequest,
) -> ApiResult {
    // kube-apiserver rejects strategic merge patches of custom resources, which have no patch
    // strategy, so only these two are accepted.
    const ACCEPTED: &str = "application/merge-patch+json, application/apply-patch+yaml";
    match request.media_type().as_deref() {
        Some("application/merge-patch+json") => {
            merge_patch_gateway(state, version, namespace, name, request)
        }
        Some("application/apply-patch+yaml") => {
            apply_gateway(state, version, namespace, name, request)
        }
        // NOTE: application/json-patch+json (RFC 6902) is valid for the real API but not implemented here.
        other => Err(ApiError::unsupported_media_type(
            other.unwrap_or(""),
            ACCEPTED,
        )),
    }
}

/// Applies an RFC 7386 merge patch: objects merge, lists such as `spec.servers` are replaced
/// whole, and a `metadata.resourceVersion` in the patch is a precondition.
fn merge_patch_gateway(
    state: &mut ClusterState,
    version: &str,
    namespace: &str,
    name: &str,
    request: &ApiRequest,
) -> ApiResult {
    let patch = api::parse_json_body(request.body)?;
    let current = state
        .gateways
        .get(&(namespace.to_owned(), name.to_owned()))
        .ok_or_else(|| ApiError::not_found_in_group(GROUP, RESOURCE, name))?;
    let mut merged = current.to_json(version);
    api::json_merge_patch(&mut merged, &patch);
    let input = decode(&merged)?;
    update_gateway(state, version, namespace, name, input, request)
}

/// Server-side apply of a Gateway: creates it when absent (201), otherwise merges the applied
/// fields into it (200). Labels and annotations merge key by key, and every other top-level field
/// of the body, `spec` included, replaces the stored one whole.
// NOTE: field ownership is not tracked for Gateways, so there are no apply conflicts, `force` is
// ignored, and fields that an earlier apply set and this one omits stay, except inside `spec`.
fn apply_gateway(
    state: &mut ClusterState,
    version: &str,
    namespace: &str,
    name: &str,
    request: &ApiRequest,
) -> ApiResult {
    api::apply_field_manager(request)?;
    let body = api::parse_apply_body(request)?;
    api::check_apply_type_meta(&body, &format!("{GROUP}/{version}"), KIND, RESOURCE)?;
    let input = decode(&body)?;
    api::check_namespace(input.namespace.as_deref(), namespace)?;
    api::check_name(input.name.as_deref(), name)?;
    if !state.namespaces.contains_key(namespace) {
        return Err(ApiError::not_found("namespaces", namespace));
    }

    let Some(current) = state.gateways.get(&(namespace.to_owned(), name.to_owned())) else {
        let created = new_gateway(namespace, name, input.content);
        created.validate()?;
        return commit(state, created, version, request.is_dry_run(), 201);
    };
    check_preconditions(&input, current)?;

    let updated = current.with_content(merge_applied(&current.content, input.content));
    updated.validate()?;
    if updated.content == current.content {
        return ok(200, current.to_json(version));
    }
    commit(state, updated, version, request.is_dry_run(), 200)
}

/// Builds the content after an apply: `current` with each field of `applied` set, where the
/// entries of `metadata.labels` and `metadata.annotations` merge by key.
fn merge_applied(current: &Map<String, Value>, applied: Map<String, Value>) -> Map<String, Value> {
    let mut merged = current.clone();
    for (key, value) in applied {
        if key != "metadata" {
            merged.insert(key, value);
            continue;
        }
        let Value::Object(applied_metadata) = value else {
            continue;
        };
        let metadata = merged
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        if !metadata.is_object() {
            *metadata = Value::Object(Map::new());
        }
        let Value::Object(metadata) = metadata else {
            continue;
        };
        for (field, field_value) in applied_metadata {
            match (field.as_str(), field_value, metadata.get_mut(&field)) {
                ("labels" | "annotations", Value::Object(entries), Some(Value::Object(stored))) => {
                    stored.extend(entries);
                }
                (_, field_value, _) => {
                    metadata.insert(field, field_value);
                }
            }
        }
    }
    merged
}

/// Deletes a Gateway and returns a `Status` with `status: Success`. A `DeleteOptions` body may set
/// `preconditions.resourceVersion` and `preconditions.uid`, and a mismatch is a 409.
fn delete_gateway(
    state: &mut ClusterState,
    namespace: &str,
    name: &str,
    request: &ApiRequest,
) -> ApiResult {
    let key = (namespace.to_owned(), name.to_owned());
    let current = state
        .gateways
        .get(&key)
        .ok_or_else(|| ApiError::not_found_in_group(GROUP, RESOURCE, name))?;
    api::check_delete_preconditions(
        request,
        (GROUP, RESOURCE, name),
        current.resource_version,
        &current.uid,
    )?;

    let uid = current.uid.clone();
    if !request.is_dry_run() {
        state.gateways.remove(&key);
        state.next_resource_version();
    }
    ok(200, status::success_status(GROUP, RESOURCE, name, &uid))
}

/// Builds the Gateway that a test stores directly, as the next version of the stored one if there
/// is one, and validates it. `value` has the API form, with `metadata.name` required and
/// `metadata.namespace` ignored. The `uid` and `creationTimestamp` of the value are kept, then
/// those of a replaced Gateway, and new ones are generated otherwise. The caller sets the
/// resourceVersion when it stores the result. Fails with the validation message.
pub(crate) fn build_for_test(
    state: &ClusterState,
    namespace: &str,
    value: &Value,
) -> Result<StoredGateway, String> {
    let message_of = |error: ApiError| {
        error.body["message"]
            .as_str()
            .unwrap_or("invalid Gateway")
            .to_owned()
    };
    let input = decode(value).map_err(message_of)?;
    let name = input
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or("the Gateway has no metadata.name")?;

    let mut gateway = match state.gateways.get(&(namespace.to_owned(), name.clone())) {
        Some(current) => current.with_content(input.content),
        None => new_gateway(namespace, &name, input.content),
    };
    if let Some(uid) = input.uid.filter(|uid| !uid.is_empty()) {
        gateway.uid = uid;
    }
    if let Some(timestamp) = input.creation_timestamp.filter(|t| !t.is_empty()) {
        gateway.creation_timestamp = timestamp;
    }
    gateway.validate().map_err(message_of)?;
    Ok(gateway)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_by_priority() {
        let mut versions: Vec<String> = ["v1alpha3", "v1beta1", "v2", "v1", "custom", "v1beta2"]
            .iter()
            .map(|v| v.to_string())
            .collect();
        sort_versions(&mut versions);
        assert_eq!(
            versions,
            ["v2", "v1", "v1beta2", "v1beta1", "v1alpha3", "custom"]
        );
    }

    #[test]
    fn version_names() {
        for valid in ["v1", "v1beta1", "v1alpha3", "v12"] {
            assert!(is_version_name(valid), "{valid}");
        }
        for invalid in ["1", "v", "v0", "v1gamma1", "v1beta", "V1", ""] {
            assert!(!is_version_name(invalid), "{invalid}");
        }
    }

    #[test]
    fn apply_merges_labels_and_replaces_spec() {
        let current = json!({
            "metadata": { "labels": { "a": "1", "b": "2" } },
            "spec": { "selector": { "istio": "ingressgateway" }, "servers": [1, 2] },
        });
        let applied = json!({
            "metadata": { "labels": { "b": "3" } },
            "spec": { "servers": [3] },
        });
        let merged = merge_applied(
            current.as_object().unwrap(),
            applied.as_object().unwrap().clone(),
        );
        assert_eq!(
            Value::Object(merged),
            json!({
                "metadata": { "labels": { "a": "1", "b": "3" } },
                "spec": { "servers": [3] },
            })
        );
    }
}
