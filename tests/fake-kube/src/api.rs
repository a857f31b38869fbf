//! Routing of the Kubernetes API paths the fake serves, the handlers of `/version`, namespaces and
//! core/v1 Secrets, and the request helpers that the Gateway and Pod handlers share. Handlers run
//! synchronously under the cluster's state lock, so every request is atomic, as a single etcd
//! transaction would be.

use std::collections::BTreeMap;

use hyper::Method;
use serde_json::{json, Map, Value};

use crate::gateway::{self, StoredGateway};
use crate::pod::{self, StoredPod};
use crate::secret::{self, FieldSet, StoredSecret};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::{self, ApiError, FieldCause};
use crate::util;

/// The fields that a `fieldSelector` on Secrets may name.
const SECRET_FIELDS: [&str; 3] = ["metadata.name", "metadata.namespace", "type"];

/// The state of one fake cluster.
#[derive(Debug, Default)]
pub(crate) struct ClusterState {
    /// The cluster-wide resourceVersion counter. Every write increments it and stamps the written
    /// object with the new value, so versions increase across all objects, as etcd revisions do.
    pub resource_version: u64,
    pub namespaces: BTreeMap<String, NamespaceRecord>,
    /// Secrets keyed by (namespace, name).
    pub secrets: BTreeMap<(String, String), StoredSecret>,
    /// Istio Gateways keyed by (namespace, name).
    pub gateways: BTreeMap<(String, String), StoredGateway>,
    /// Pods keyed by (namespace, name).
    pub pods: BTreeMap<(String, String), StoredPod>,
    /// The versions of `networking.istio.io` that the cluster serves, highest priority first, as
    /// API discovery orders them. Empty means Istio's CRDs are not installed.
    pub gateway_versions: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct NamespaceRecord {
    pub uid: String,
    pub resource_version: u64,
    pub creation_timestamp: String,
}

impl ClusterState {
    pub fn next_resource_version(&mut self) -> u64 {
        self.resource_version += 1;
        self.resource_version
    }

    /// Adds a namespace unless it exists, and returns whether it was added.
    pub fn add_namespace(&mut self, name: &str) -> bool {
        if self.namespaces.contains_key(name) {
            return false;
        }
        let resource_version = self.next_resource_version();
        self.namespaces.insert(
            name.to_owned(),
            NamespaceRecord {
                uid: util::new_uid(),
                resource_version,
                creation_timestamp: util::now_rfc3339(),
            },
        );
        true
    }

    fn namespace_json(&self, name: &str) -> Option<Value> {
        let record = self.namespaces.get(name)?;
        Some(json!({
            "kind": "Namespace",
            "apiVersion": "v1",
            "metadata": {
                "name": name,
                "uid": record.uid,
                "resourceVersion": record.resource_version.to_string(),
                "creationTimestamp": record.creation_timestamp,
                "labels": { "kubernetes.io/metadata.name": name },
            },
            "spec": { "finalizers": ["kubernetes"] },
            "status": { "phase": "Active" },
        }))
    }
}

/// The parts of an HTTP request the handlers need, with the body already read.
pub(crate) struct ApiRequest<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Vec<(String, String)>,
    pub content_type: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub body: &'a [u8],
}

impl ApiRequest<'_> {
    pub fn query_value(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Checks for `dryRun=All`, which requests validation and a response without storing anything.
    pub fn is_dry_run(&self) -> bool {
        self.query_value("dryRun") == Some("All")
    }

    /// Returns the field manager of a non-apply write: the `fieldManager` parameter, else the user
    /// agent up to its first `/`, which is how kube-apiserver names managers of clients that set none.
    fn update_manager(&self) -> String {
        if let Some(manager) = self.query_value("fieldManager").filter(|m| !m.is_empty()) {
            return manager.to_owned();
        }
        match self
            .user_agent
            .and_then(|ua| ua.split('/').next())
            .filter(|p| !p.is_empty())
        {
            Some(prefix) => prefix.to_owned(),
            None => "unknown".to_owned(),
        }
    }

    /// Returns the media type, lowercased and without parameters such as `; charset=utf-8`.
    pub fn media_type(&self) -> Option<String> {
        self.content_type.map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
    }
}

/// A successful response: HTTP status code and JSON body.
pub(crate) struct ApiResponse {
    pub code: u16,
    pub body: Value,
}

pub(crate) type ApiResult = Result<ApiResponse, ApiError>;

pub(crate) fn ok(code: u16, body: Value) -> ApiResult {
    Ok(ApiResponse { code, body })
}

/// Routes an authenticated request and runs its handler.
pub(crate) fn handle(state: &mut ClusterState, version: &Value, request: &ApiRequest) -> ApiResult {
    let segments: Vec<String> = request
        .path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| util::percent_decode(s, false))
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let method = request.method;

    match segments.as_slice() {
        ["version"] => match *method {
            Method::GET => ok(200, version.clone()),
            _ => Err(ApiError::method_not_allowed()),
        },
        ["api", "v1", "namespaces"] => match *method {
            Method::GET => list_namespaces(state),
            _ => Err(ApiError::method_not_allowed()),
        },
        ["api", "v1", "namespaces", namespace] => match *method {
            Method::GET => state.namespace_json(namespace).map_or_else(
                || Err(ApiError::not_found("namespaces", namespace)),
                |ns| ok(200, ns),
            ),
            _ => Err(ApiError::method_not_allowed()),
        },
        ["api", "v1", "secrets"] => match *method {
            Method::GET => list_secrets(state, None, request),
            _ => Err(ApiError::method_not_allowed()),
        },
        ["api", "v1", "namespaces", namespace, "secrets"] => match *method {
            Method::GET => list_secrets(state, Some(namespace), request),
            Method::POST => create_secret(state, namespace, request),
            _ => Err(ApiError::method_not_allowed()),
        },
        ["api", "v1", "namespaces", namespace, "secrets", name] => match *method {
            Method::GET => get_secret(state, namespace, name),
            Method::PUT => replace_secret(state, namespace, name, request),
            Method::PATCH => patch_secret(state, namespace, name, request),
            Method::DELETE => delete_secret(state, namespace, name, request),
            _ => Err(ApiError::method_not_allowed()),
        },
        ["api", "v1", "pods"] => match *method {
            Method::GET => pod::list_pods(state, None, request),
            _ => Err(ApiError::method_not_allowed()),
        },
        ["api", "v1", "namespaces", namespace, "pods"] => match *method {
            Method::GET => pod::list_pods(state, Some(namespace), request),
            _ => Err(ApiError::method_not_allowed()),
        },
        ["api", "v1", "namespaces", namespace, "pods", name] => match *method {
            Method::GET => pod::get_pod(state, namespace, name),
            _ => Err(ApiError::method_not_allowed()),
        },
        ["apis"] => match *method {
            Method::GET => ok(200, gateway::api_group_list(&state.gateway_versions)),
            _ => Err(ApiError::method_not_allowed()),
        },
        ["apis", gateway::GROUP, rest @ ..] if !state.gateway_versions.is_empty() => {
            gateway::handle(state, rest, request)
        }
        _ => Err(ApiError::path_not_found()),
    }
}

/// Rejects `watch=true`, which the fake does not implement, on a list request.
pub(crate) fn reject_watch(request: &ApiRequest) -> Result<(), ApiError> {
    if request
        .query_value("watch")
        .is_some_and(|w| w == "true" || w == "1")
    {
        return Err(ApiError::bad_request(
            "fake-kube does not implement watch requests",
        ));
    }
    Ok(())
}

fn list_namespaces(state: &ClusterState) -> ApiResult {
    let items: Vec<Value> = state
        .namespaces
        .keys()
        .filter_map(|name| state.namespace_json(name))
        .map(|mut ns| {
            strip_type_meta(&mut ns);
            ns
        })
        .collect();
    ok(
        200,
        json!({
            "kind": "NamespaceList",
            "apiVersion": "v1",
            "metadata": { "resourceVersion": state.resource_version.to_string() },
            "items": items,
        }),
    )
}

fn strip_type_meta(object: &mut Value) {
    if let Some(map) = object.as_object_mut() {
        map.remove("kind");
        map.remove("apiVersion");
    }
}

fn get_secret(state: &ClusterState, namespace: &str, name: &str) -> ApiResult {
    match state.secrets.get(&(namespace.to_owned(), name.to_owned())) {
        Some(secret) => ok(200, secret.to_json(true)),
        None => Err(ApiError::not_found("secrets", name)),
    }
}

/// Lists the Secrets of a namespace, or of all namespaces when `namespace` is `None`, that match
/// `labelSelector` and `fieldSelector`. A namespace that does not exist gives an empty list, as
/// with kube-apiserver.
// NOTE: `limit` and `continue` are ignored, so the whole list comes in one page.
fn list_secrets(state: &ClusterState, namespace: Option<&str>, request: &ApiRequest) -> ApiResult {
    reject_watch(request)?;
    let labels = LabelSelector::parse(request.query_value("labelSelector").unwrap_or(""))?;
    let fields = FieldSelector::parse(
        request.query_value("fieldSelector").unwrap_or(""),
        &SECRET_FIELDS,
    )?;

    let items: Vec<Value> = in_namespace(&state.secrets, namespace)
        .filter(|secret| labels.matches(&secret.labels))
        .filter(|secret| {
            fields.matches(|field| match field {
                "metadata.name" => &secret.name,
                "metadata.namespace" => &secret.namespace,
                _ => &secret.secret_type,
            })
        })
        .map(|secret| secret.to_json(false))
        .collect();
    ok(
        200,
        json!({
            "kind": "SecretList",
            "apiVersion": "v1",
            "metadata": { "resourceVersion": state.resource_version.to_string() },
            "items": items,
        }),
    )
}

/// Iterates over the objects of one namespace, or of all namespaces for `None`, in (namespace,
/// name) order.
pub(crate) fn in_namespace<'a, T>(
    objects: &'a BTreeMap<(String, String), T>,
    namespace: Option<&str>,
) -> Box<dyn Iterator<Item = &'a T> + 'a> {
    match namespace {
        Some(namespace) => {
            let namespace = namespace.to_owned();
            Box::new(
                objects
                    .range((namespace.clone(), String::new())..)
                    .take_while(move |((ns, _), _)| *ns == namespace)
                    .map(|(_, object)| object),
            )
        }
        None => Box::new(objects.values()),
    }
}

/// Parses a JSON request body. The real API also accepts YAML and protobuf, but the fake does not.
pub(crate) fn parse_json_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
    })
}

pub(crate) fn require_json(request: &ApiRequest) -> Result<(), ApiError> {
    match request.media_type().as_deref() {
        Some("application/json") => Ok(()),
        other => Err(ApiError::unsupported_media_type(
            other.unwrap_or(""),
            "application/json",
        )),
    }
}

/// Checks `apiVersion` and `kind` of a POST or PUT body, where either may be omitted.
fn check_type_meta(input: &secret::SecretInput) -> Result<(), ApiError> {
    if let Some(api_version) = input.api_version.as_deref().filter(|v| *v != "v1") {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version (v1)"
        )));
    }
    if let Some(kind) = input.kind.as_deref().filter(|k| *k != "Secret") {
        return Err(ApiError::bad_request(format!("Secret in version \"v1\" cannot be handled as a {kind}: the kind in the body does not match the URL")));
    }
    Ok(())
}

pub(crate) fn check_namespace(
    body_namespace: Option<&str>,
    url_namespace: &str,
) -> Result<(), ApiError> {
    match body_namespace {
        Some(ns) if !ns.is_empty() && ns != url_namespace => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => Ok(()),
    }
}

pub(crate) fn check_name(body_name: Option<&str>, url_name: &str) -> Result<(), ApiError> {
    let body_name = body_name.unwrap_or("");
    if body_name == url_name {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({url_name})"
        )))
    }
}

fn check_valid(name: &str, causes: Vec<FieldCause>) -> Result<(), ApiError> {
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid("Secret", name, &causes))
    }
}

fn create_secret(state: &mut ClusterState, namespace: &str, request: &ApiRequest) -> ApiResult {
    require_json(request)?;
    let input = secret::decode_input(&parse_json_body(request.body)?)?;
    check_type_meta(&input)?;
    check_namespace(input.namespace.as_deref(), namespace)?;
    let name = match input.name.clone().filter(|n| !n.is_empty()) {
        Some(name) => name,
        None => {
            return Err(ApiError::invalid(
                "Secret",
                "",
                &[FieldCause {
                    reason: "FieldValueRequired",
                    field: "metadata.name".into(),
                    message: "Required value: name or generateName is required".into(),
                }],
            ))
        }
    };
    if !state.namespaces.contains_key(namespace) {
        return Err(ApiError::not_found("namespaces", namespace));
    }
    let key = (namespace.to_owned(), name.clone());
    if state.secrets.contains_key(&key) {
        return Err(ApiError::already_exists("secrets", &name));
    }

    let now = util::now_rfc3339();
    let mut created = StoredSecret::from_input(&name, namespace, input, &now);
    check_valid(&name, secret::validate(&created))?;
    let written = FieldSet::of_secret(&created);
    created.record_write(
        &request.update_manager(),
        "Update",
        &written,
        &written,
        &now,
    );
    commit(state, created, request.is_dry_run(), 201)
}

/// Stores a Secret with a new resourceVersion (unless dry-run) and returns it with `code`.
fn commit(
    state: &mut ClusterState,
    mut secret: StoredSecret,
    dry_run: bool,
    code: u16,
) -> ApiResult {
    if !dry_run {
        secret.resource_version = state.next_resource_version();
        state.secrets.insert(
            (secret.namespace.clone(), secret.name.clone()),
            secret.clone(),
        );
    }
    ok(code, secret.to_json(true))
}

fn check_resource_version(
    precondition: Option<&str>,
    current: &StoredSecret,
) -> Result<(), ApiError> {
    match precondition {
        Some(rv) if !rv.is_empty() && rv != current.resource_version.to_string() => {
            Err(ApiError::stale_resource_version("secrets", &current.name))
        }
        _ => Ok(()),
    }
}

fn replace_secret(
    state: &mut ClusterState,
    namespace: &str,
    name: &str,
    request: &ApiRequest,
) -> ApiResult {
    require_json(request)?;
    let input = secret::decode_input(&parse_json_body(request.body)?)?;
    update_secret(state, namespace, name, input, request)
}

/// Replaces a Secret with the whole of `input`, as PUT does. A merge patch arrives here after
/// merging. Secrets cannot be created by an update, so a missing one is a 404.
fn update_secret(
    state: &mut ClusterState,
    namespace: &str,
    name: &str,
    input: secret::SecretInput,
    request: &ApiRequest,
) -> ApiResult {
    check_type_meta(&input)?;
    check_namespace(input.namespace.as_deref(), namespace)?;
    check_name(input.name.as_deref(), name)?;
    let current = state
        .secrets
        .get(&(namespace.to_owned(), name.to_owned()))
        .ok_or_else(|| ApiError::not_found("secrets", name))?;
    check_resource_version(input.resource_version.as_deref(), current)?;

    let mut updated = current.clone();
    updated.labels = input.labels.unwrap_or_default();
    updated.annotations = input.annotations.unwrap_or_default();
    updated.secret_type = input
        .secret_type
        .filter(|t| !t.is_empty())
        .unwrap_or_else(secret::default_type);
    updated.data = input.data.unwrap_or_default();
    updated.immutable = input.immutable;

    let mut causes = secret::validate(&updated);
    causes.extend(secret::validate_update(current, &updated));
    check_valid(name, causes)?;
    if updated.content_eq(current) {
        return ok(200, current.to_json(true));
    }
    // The writer takes the fields it changed, and removed keys leave every manager.
    let changed = FieldSet::changed_between(current, &updated);
    let written = changed.intersect(&FieldSet::of_secret(&updated));
    updated.record_write(
        &request.update_manager(),
        "Update",
        &written,
        &changed,
        &util::now_rfc3339(),
    );
    commit(state, updated, request.is_dry_run(), 200)
}

fn patch_secret(
    state: &mut ClusterState,
    namespace: &str,
    name: &str,
    request: &ApiRequest,
) -> ApiResult {
    const ACCEPTED: &str =
        "application/apply-patch+yaml, application/merge-patch+json, application/strategic-merge-patch+json";
    match request.media_type().as_deref() {
        Some("application/apply-patch+yaml") => apply_secret(state, namespace, name, request),
        // A Secret has no lists with merge keys, so a strategic merge patch of one is a JSON merge patch.
        Some("application/merge-patch+json" | "application/strategic-merge-patch+json") => {
            merge_patch_secret(state, namespace, name, request)
        }
        // NOTE: application/json-patch+json (RFC 6902) is valid for the real API but not implemented here.
        other => Err(ApiError::unsupported_media_type(
            other.unwrap_or(""),
            ACCEPTED,
        )),
    }
}

fn merge_patch_secret(
    state: &mut ClusterState,
    namespace: &str,
    name: &str,
    request: &ApiRequest,
) -> ApiResult {
    let patch = parse_json_body(request.body)?;
    let current = state
        .secrets
        .get(&(namespace.to_owned(), name.to_owned()))
        .ok_or_else(|| ApiError::not_found("secrets", name))?;
    let mut merged = current.to_json(true);
    json_merge_patch(&mut merged, &patch);
    let input = secret::decode_input(&merged)?;
    update_secret(state, namespace, name, input, request)
}

/// Applies an RFC 7386 JSON merge patch in place: objects merge recursively, `null` deletes.
pub(crate) fn json_merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target_map) = target {
        for (key, value) in patch_map {
            if value.is_null() {
                target_map.remove(key);
            } else {
                json_merge_patch(target_map.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// Server-side apply of a Secret: creates it when absent (201), otherwise merges the applied
/// fields into it (200).
///
/// Field ownership is tracked per key of `data`, `metadata.labels` and `metadata.annotations`, and
/// for `type` and `immutable`, as `metadata.managedFields` of the real API records it. An apply
/// sets every field in the body, removes the fields this manager applied before and no longer
/// sends unless another manager owns them, and, without `force=true`, fails with 409 when it would
/// change a value that another manager owns.
// NOTE: simplifications against the real API: `stringData` keys are owned as `data` keys (the API
// server records `f:stringData`), only the fields listed above are tracked, and the body must be
// JSON because the fake has no YAML parser.
fn apply_secret(
    state: &mut ClusterState,
    namespace: &str,
    name: &str,
    request: &ApiRequest,
) -> ApiResult {
    let manager = apply_field_manager(request)?;
    let force = request.query_value("force") == Some("true");

    let body = parse_apply_body(request)?;
    check_apply_type_meta(&body, "v1", "Secret", "secrets")?;
    let input = secret::decode_input(&body)?;
    check_namespace(input.namespace.as_deref(), namespace)?;
    check_name(input.name.as_deref(), name)?;
    if !state.namespaces.contains_key(namespace) {
        return Err(ApiError::not_found("namespaces", namespace));
    }

    let applied = FieldSet::of_input(&input);
    let now = util::now_rfc3339();
    let Some(current) = state.secrets.get(&(namespace.to_owned(), name.to_owned())) else {
        let mut created = StoredSecret::from_input(name, namespace, input, &now);
        check_valid(name, secret::validate(&created))?;
        created.record_write(&manager, "Apply", &applied, &FieldSet::default(), &now);
        return commit(state, created, request.is_dry_run(), 201);
    };
    check_resource_version(input.resource_version.as_deref(), current)?;

    let previously_applied = current
        .managed_fields
        .iter()
        .find(|e| e.manager == manager && e.operation == "Apply")
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let mut owned_by_others = FieldSet::default();
    for entry in current
        .managed_fields
        .iter()
        .filter(|e| !(e.manager == manager && e.operation == "Apply"))
    {
        owned_by_others.union(&entry.fields);
    }
    // The apply removes the fields this manager applied before, omits now and no other manager owns.
    let mut released = previously_applied.clone();
    released.subtract(&applied);
    released.subtract(&owned_by_others);

    let updated = merge_applied(current, &input, &released);
    let changed_by_apply = FieldSet::changed_between(current, &updated).intersect(&applied);

    if !force {
        let conflicts: Vec<(String, String)> = current
            .managed_fields
            .iter()
            .filter(|e| !(e.manager == manager && e.operation == "Apply"))
            .flat_map(|e| {
                e.fields
                    .intersection_paths(&changed_by_apply)
                    .into_iter()
                    .map(|path| (path, e.manager.clone()))
            })
            .collect();
        if !conflicts.is_empty() {
            return Err(ApiError::apply_conflict(&conflicts));
        }
    }

    let mut causes = secret::validate(&updated);
    causes.extend(secret::validate_update(current, &updated));
    check_valid(name, causes)?;

    let mut updated = updated;
    updated
        .managed_fields
        .retain(|e| !(e.manager == manager && e.operation == "Apply"));
    updated.record_write(&manager, "Apply", &applied, &changed_by_apply, &now);
    if updated.content_eq(current) && same_ownership(&updated, current) {
        // A no-op write keeps the resourceVersion, as kube-apiserver skips writing an unchanged object.
        return ok(200, current.to_json(true));
    }
    commit(state, updated, request.is_dry_run(), 200)
}

/// Returns the `fieldManager` parameter, which server-side apply requires, or the 422 that
/// kube-apiserver returns without it.
pub(crate) fn apply_field_manager(request: &ApiRequest) -> Result<String, ApiError> {
    match request
        .query_value("fieldManager")
        .filter(|m| !m.is_empty())
    {
        Some(manager) => Ok(manager.to_owned()),
        None => Err(ApiError::invalid(
            "PatchOptions.meta.k8s.io",
            "",
            &[FieldCause::required("fieldManager").with_detail("is required for apply patch")],
        )),
    }
}

/// Parses an `application/apply-patch+yaml` body, which must be JSON because the fake has no YAML
/// parser. JSON is valid YAML, so real clients that send JSON work unchanged.
pub(crate) fn parse_apply_body(request: &ApiRequest) -> Result<Value, ApiError> {
    serde_json::from_slice(request.body).map_err(|e| {
        ApiError::bad_request(format!(
            "error decoding YAML: fake-kube parses application/apply-patch+yaml bodies as JSON only, and this body is not valid JSON: {e}"
        ))
    })
}

/// Checks `apiVersion` and `kind` of an apply body, which must state both and match the URL:
/// `api_version` such as `v1` or `networking.istio.io/v1`, `kind` such as `Secret`, and the
/// plural `resource` of the URL for the message.
pub(crate) fn check_apply_type_meta(
    body: &Value,
    api_version: &str,
    kind: &str,
    resource: &str,
) -> Result<(), ApiError> {
    let body_api_version = body.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let body_kind = body.get("kind").and_then(Value::as_str).unwrap_or("");
    if body_api_version.is_empty() || body_kind.is_empty() {
        return Err(ApiError::bad_request(
            "invalid object type: an apply patch must set apiVersion and kind",
        ));
    }
    if body_api_version != api_version {
        return Err(ApiError::bad_request(format!(
            "Incorrect version specified in apply patch. Specified patch version: {body_api_version}, expected: {api_version}"
        )));
    }
    if body_kind != kind {
        return Err(ApiError::bad_request(format!(
            "invalid object kind in apply patch: {body_kind:?} sent to a {resource} URL, expected {kind:?}"
        )));
    }
    Ok(())
}

/// Builds the applied Secret: `current` without the `released` fields, with every field of `input` set.
fn merge_applied(
    current: &StoredSecret,
    input: &secret::SecretInput,
    released: &FieldSet,
) -> StoredSecret {
    let mut updated = current.clone();
    updated.data.retain(|k, _| !released.data.contains(k));
    updated.labels.retain(|k, _| !released.labels.contains(k));
    updated
        .annotations
        .retain(|k, _| !released.annotations.contains(k));
    if released.secret_type {
        // Removing `type` resets it to its default, which validate_update rejects unless it was Opaque.
        updated.secret_type = secret::default_type();
    }
    if released.immutable {
        updated.immutable = None;
    }

    for (key, value) in input.data.iter().flatten() {
        updated.data.insert(key.clone(), value.clone());
    }
    for (key, value) in input.labels.iter().flatten() {
        updated.labels.insert(key.clone(), value.clone());
    }
    for (key, value) in input.annotations.iter().flatten() {
        updated.annotations.insert(key.clone(), value.clone());
    }
    if let Some(secret_type) = input.secret_type.as_ref().filter(|t| !t.is_empty()) {
        updated.secret_type = secret_type.clone();
    }
    if let Some(immutable) = input.immutable {
        updated.immutable = Some(immutable);
    }
    updated
}

fn same_ownership(a: &StoredSecret, b: &StoredSecret) -> bool {
    let owners = |s: &StoredSecret| -> Vec<(String, String, FieldSet)> {
        s.managed_fields
            .iter()
            .map(|e| (e.manager.clone(), e.operation.clone(), e.fields.clone()))
            .collect()
    };
    owners(a) == owners(b)
}

/// Deletes a Secret and returns a `Status` with `status: Success`. A `DeleteOptions` body may set
/// `preconditions.resourceVersion` and `preconditions.uid`, and a mismatch is a 409.
fn delete_secret(
    state: &mut ClusterState,
    namespace: &str,
    name: &str,
    request: &ApiRequest,
) -> ApiResult {
    let key = (namespace.to_owned(), name.to_owned());
    let current = state
        .secrets
        .get(&key)
        .ok_or_else(|| ApiError::not_found("secrets", name))?;

    check_delete_preconditions(
        request,
        ("", "secrets", name),
        current.resource_version,
        &current.uid,
    )?;

    let uid = current.uid.clone();
    if !request.is_dry_run() {
        state.secrets.remove(&key);
        state.next_resource_version();
    }
    ok(200, status::success_status("", "secrets", name, &uid))
}

/// Checks the `preconditions.resourceVersion` and `preconditions.uid` of a DELETE request's
/// `DeleteOptions` body, if it has one, against the current object. A mismatch is a 409.
/// `object` is the (group, plural resource, name) of the object, for the message.
pub(crate) fn check_delete_preconditions(
    request: &ApiRequest,
    object: (&str, &str, &str),
    resource_version: u64,
    uid: &str,
) -> Result<(), ApiError> {
    if request.body.is_empty() {
        return Ok(());
    }
    let (group, resource, name) = object;
    let options = parse_json_body(request.body)?;
    let preconditions = options.get("preconditions");
    let expected_rv = preconditions
        .and_then(|p| p.get("resourceVersion"))
        .and_then(Value::as_str);
    if let Some(rv) = expected_rv.filter(|rv| *rv != resource_version.to_string()) {
        return Err(ApiError::precondition_failed(
            group,
            resource,
            name,
            &format!("ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {resource_version}"),
        ));
    }
    let expected_uid = preconditions
        .and_then(|p| p.get("uid"))
        .and_then(Value::as_str);
    if let Some(expected) = expected_uid.filter(|expected| *expected != uid) {
        return Err(ApiError::precondition_failed(
            group,
            resource,
            name,
            &format!("UID in precondition: {expected}, UID in object meta: {uid}"),
        ));
    }
    Ok(())
}
