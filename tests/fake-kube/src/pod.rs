//! Read-only core/v1 Pods: enough to find which namespaces run the pods that a Gateway's
//! `spec.selector` picks. Tests add pods with `FakeCluster::put_pod`, and the API serves GET and
//! LIST with label and field selectors.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::api::{self, ok, ApiRequest, ApiResult, ClusterState};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;

/// The fields that a `fieldSelector` on Pods may name here. kube-apiserver supports more, such as
/// `spec.nodeName`, which the fake's pods do not have.
const POD_FIELDS: [&str; 3] = ["metadata.name", "metadata.namespace", "status.phase"];

/// A Pod as the fake cluster stores it. Every pod is in phase `Running`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredPod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub resource_version: u64,
    pub creation_timestamp: String,
    pub labels: BTreeMap<String, String>,
}

impl StoredPod {
    const PHASE: &'static str = "Running";

    /// Renders the Pod as the API returns it. `with_type_meta` is false for items of a list,
    /// which kube-apiserver sends without `apiVersion` and `kind`.
    pub fn to_json(&self, with_type_meta: bool) -> Value {
        let mut metadata = Map::new();
        metadata.insert("name".into(), json!(self.name));
        metadata.insert("namespace".into(), json!(self.namespace));
        metadata.insert("uid".into(), json!(self.uid));
        metadata.insert(
            "resourceVersion".into(),
            json!(self.resource_version.to_string()),
        );
        metadata.insert("creationTimestamp".into(), json!(self.creation_timestamp));
        if !self.labels.is_empty() {
            metadata.insert("labels".into(), json!(self.labels));
        }

        let mut object = Map::new();
        if with_type_meta {
            object.insert("kind".into(), json!("Pod"));
            object.insert("apiVersion".into(), json!("v1"));
        }
        object.insert("metadata".into(), Value::Object(metadata));
        object.insert("status".into(), json!({ "phase": Self::PHASE }));
        Value::Object(object)
    }
}

/// Lists the Pods of a namespace, or of all namespaces for `None`, that match `labelSelector` and
/// `fieldSelector`.
// NOTE: `limit` and `continue` are ignored, so the whole list comes in one page.
pub(crate) fn list_pods(
    state: &ClusterState,
    namespace: Option<&str>,
    request: &ApiRequest,
) -> ApiResult {
    api::reject_watch(request)?;
    let labels = LabelSelector::parse(request.query_value("labelSelector").unwrap_or(""))?;
    let fields = FieldSelector::parse(
        request.query_value("fieldSelector").unwrap_or(""),
        &POD_FIELDS,
    )?;
    let items: Vec<Value> = api::in_namespace(&state.pods, namespace)
        .filter(|pod| labels.matches(&pod.labels))
        .filter(|pod| {
            fields.matches(|field| match field {
                "metadata.name" => &pod.name,
                "metadata.namespace" => &pod.namespace,
                _ => StoredPod::PHASE,
            })
        })
        .map(|pod| pod.to_json(false))
        .collect();
    ok(
        200,
        json!({
            "kind": "PodList",
            "apiVersion": "v1",
            "metadata": { "resourceVersion": state.resource_version.to_string() },
            "items": items,
        }),
    )
}

pub(crate) fn get_pod(state: &ClusterState, namespace: &str, name: &str) -> ApiResult {
    match state.pods.get(&(namespace.to_owned(), name.to_owned())) {
        Some(pod) => ok(200, pod.to_json(true)),
        None => Err(ApiError::not_found("pods", name)),
    }
}
