//! Istio Gateways and certificates: which Gateways use a certificate, binding a certificate to a
//! Gateway server, a ready Gateway manifest, and `credentialName`s without a Secret.
//!
//! The api cannot reach clusters; sync-webhook reads and writes the Gateways for it through
//! signed hooks (see `hooks`). The manifest is built here, from the stored certificate alone.

use std::collections::BTreeMap;

use meshcert_core::gateway::{self, BindingReport, BindingRequest, GatewayRef, ManifestOptions, UnbindRequest};
use meshcert_core::names;
use meshcert_core::records::{self, CertificateHead, CertificateState, ClusterRecord};
use meshcert_core::selector::LabelSelector;
use meshcert_spin::{error_response, json_response, Store};
use spin_sdk::http::{Request, Response};

use crate::certificates::{deleting, not_found};
use crate::internal_error;
use crate::json::{parse_body, query_parameter, reject_unknown_parameters};

/// `GET /api/v1/certificates/{namespace}/{name}/gateways`.
pub async fn usage(namespace: &str, name: &str) -> Response {
    if let Err(response) = load_head(namespace, name) {
        return response;
    }
    match crate::hooks::gateways(&format!("{namespace}/{name}"), None, false).await {
        Ok(usage) => json_response(200, &usage),
        Err(error) => unavailable(&error),
    }
}

/// `POST /api/v1/certificates/{namespace}/{name}/bindings`: makes one server of a Gateway, in
/// one cluster or every cluster the certificate goes to, terminate TLS with the certificate.
pub async fn bind(request: &Request, namespace: &str, name: &str) -> Response {
    let mut binding: BindingRequest = match parse_body(request) {
        Ok(binding) => binding,
        Err(response) => return response,
    };
    let head = match load_head(namespace, name) {
        Ok(head) => head,
        Err(response) => return response,
    };
    if head.state == CertificateState::Deleting {
        return deleting(namespace, name);
    }
    let has_ca = head.mtls && head.summary.ca.is_some();
    if let Err(error) = binding.normalize(&head.summary.leaf.sans, has_ca) {
        return error_response(422, error.code, &error.message, Some(error.field));
    }
    let mut warnings = match check_cluster(&head, &binding.cluster) {
        Ok(warnings) => warnings,
        Err(response) => return response,
    };

    match crate::hooks::bindings(&format!("{namespace}/{name}"), Some(binding), None).await {
        Ok(mut report) => {
            report.warnings.append(&mut warnings);
            respond(report, "bind")
        }
        Err(error) => unavailable(&error),
    }
}

/// `DELETE /api/v1/certificates/{namespace}/{name}/bindings?cluster=…&gateway=namespace/name&port=…`:
/// removes the servers of a Gateway that use the certificate.
pub async fn unbind(request: &Request, namespace: &str, name: &str) -> Response {
    if let Err(response) = reject_unknown_parameters(request, &["cluster", "gateway", "port"]) {
        return response;
    }
    let unbind = match unbind_request(request) {
        Ok(unbind) => unbind,
        Err(response) => return response,
    };
    let head = match load_head(namespace, name) {
        Ok(head) => head,
        Err(response) => return response,
    };
    if let Err(response) = check_cluster(&head, &unbind.cluster) {
        return response;
    }

    match crate::hooks::bindings(&format!("{namespace}/{name}"), None, Some(unbind)).await {
        Ok(report) => respond(report, "unbind"),
        Err(error) => unavailable(&error),
    }
}

fn unbind_request(request: &Request) -> Result<UnbindRequest, Response> {
    let Some(cluster) = query_parameter(request, "cluster") else {
        return Err(error_response(400, "missing_parameter", "send the cluster id as ?cluster=east, or ?cluster=* for every cluster the certificate goes to", Some("cluster")));
    };
    if cluster != "*" && names::check_dns1123_label(&cluster).is_err() {
        return Err(error_response(400, "invalid_cluster", &format!("cluster {cluster:?} is not a cluster id (a DNS-1123 label, such as east), nor *"), Some("cluster")));
    }
    let gateway = query_parameter(request, "gateway").unwrap_or_default();
    let Some((gateway_namespace, gateway_name)) = gateway.split_once('/').filter(|(namespace, name)| names::check_dns1123_label(namespace).is_ok() && names::check_dns1123_subdomain(name).is_ok()) else {
        return Err(error_response(400, "invalid_gateway", &format!("gateway {gateway:?} is not namespace/name of a Gateway: send ?gateway=istio-system/public"), Some("gateway")));
    };
    let port = match query_parameter(request, "port") {
        None => None,
        Some(text) => match text.parse::<u32>() {
            Ok(port) if (1..=65535).contains(&port) => Some(port),
            _ => return Err(error_response(400, "invalid_port", &format!("port {text:?} is not a port number: send 1 to 65535, or leave it out to unbind every server"), Some("port"))),
        },
    };
    Ok(UnbindRequest { cluster, gateway: GatewayRef { namespace: gateway_namespace.into(), name: gateway_name.into() }, port })
}

/// Checks that cluster `id` is registered (or `*` selects one), and warns when the certificate
/// does not go to it: the Gateway would reference a Secret that meshcert never writes there.
fn check_cluster(head: &CertificateHead, id: &str) -> Result<Vec<String>, Response> {
    let store = Store::open().map_err(internal_error)?;
    let selector = LabelSelector::parse(head.clusters.as_deref().unwrap_or_default()).unwrap_or_default();
    if id == "*" {
        let mut selected = 0;
        for cluster in meshcert_spin::clusters::load(&store).map_err(internal_error)? {
            selected += usize::from(selector.matches(&cluster.labels));
        }
        if selected == 0 {
            return Err(error_response(422, "no_cluster", "cluster * selects the clusters the certificate goes to, and there is none: register a cluster, or change the certificate's clusters selector", Some("cluster")));
        }
        return Ok(Vec::new());
    }
    match store.get::<ClusterRecord>(&records::cluster_key(id)).map_err(internal_error)? {
        None => Err(error_response(404, "cluster_not_found", &format!("cluster {id:?} is not registered: GET /api/v1/clusters lists them"), Some("cluster"))),
        Some(cluster) if !selector.matches(&cluster.labels) => Ok(vec![format!(
            "certificate {}/{} does not go to cluster {id} (its clusters selector is {:?}), so the Gateway there references a Secret that meshcert does not write",
            head.namespace,
            head.name,
            head.clusters.as_deref().unwrap_or_default()
        )]),
        Some(_) => Ok(Vec::new()),
    }
}

/// Responds 200 with the report when every cluster succeeded. Otherwise the status shows whose
/// failure it is: 502 `binding_failed` when a cluster failed, 409 `binding_conflict` when a
/// Gateway's state forbids the change, 404 `binding_not_found` when there was nothing to change.
/// The report beside the error shows which clusters did change.
fn respond(report: BindingReport, what: &str) -> Response {
    let errors: Vec<(&str, &meshcert_core::records::SyncError)> =
        report.results.iter().filter_map(|result| result.error.as_ref().map(|error| (result.cluster.as_str(), error))).collect();
    if errors.is_empty() {
        return json_response(200, &report);
    }
    let is = |kinds: &[&str]| errors.iter().all(|(_, error)| kinds.contains(&error.kind.as_str()));
    let (status, code) = if is(&["gateway_not_found", "not_bound"]) {
        (404, "binding_not_found")
    } else if is(&["gateway_not_found", "not_bound", "last_server", "credential_names_in_use"]) {
        (409, "binding_conflict")
    } else {
        (502, "binding_failed")
    };
    let failures: Vec<String> = errors.iter().map(|(cluster, error)| format!("cluster {cluster}: {} ({})", error.message, error.kind)).collect();
    let message = format!("the {what} failed in {} of {} clusters: {}", failures.len(), report.results.len(), failures.join("; "));
    json_response(status, &serde_json::json!({ "error": { "code": code, "message": message }, "results": report.results, "warnings": report.warnings }))
}

/// `GET /api/v1/certificates/{namespace}/{name}/gateway.yaml`: a Gateway manifest that serves
/// the certificate, for `kubectl apply -f -`.
pub fn manifest(request: &Request, namespace: &str, name: &str) -> Response {
    const PARAMETERS: [&str; 7] = ["hosts", "mode", "port", "protocol", "gateway", "gateway_namespace", "selector"];
    if let Err(response) = reject_unknown_parameters(request, &PARAMETERS) {
        return response;
    }
    let head = match load_head(namespace, name) {
        Ok(head) => head,
        Err(response) => return response,
    };

    let parameter = |key: &str| query_parameter(request, key).filter(|value| !value.trim().is_empty());
    let port = match parameter("port").map(|text| text.parse::<u32>()) {
        None => 443,
        Some(Ok(port)) => port,
        Some(Err(_)) => return error_response(400, "invalid_port", "port is not a number: send 1 to 65535, such as 443", Some("port")),
    };
    let selector = match parameter("selector").map(|text| parse_selector(&text)) {
        None => None,
        Some(Ok(selector)) => Some(selector),
        Some(Err(response)) => return response,
    };
    let mut options = BindingRequest {
        cluster: "*".into(),
        gateway: GatewayRef {
            namespace: parameter("gateway_namespace").unwrap_or_else(|| namespace.to_string()),
            name: parameter("gateway").unwrap_or_else(|| format!("{name}-gateway")),
        },
        port,
        hosts: parameter("hosts").map(|hosts| hosts.split(',').map(|host| host.trim().to_string()).filter(|host| !host.is_empty()).collect()).unwrap_or_default(),
        mode: parameter("mode").unwrap_or_else(|| "SIMPLE".into()),
        protocol: parameter("protocol").unwrap_or_else(|| "HTTPS".into()),
        selector,
    };
    if let Err(error) = options.normalize(&head.summary.leaf.sans, head.mtls && head.summary.ca.is_some()) {
        let field = if error.field == "gateway" { "gateway" } else { error.field };
        return error_response(400, error.code, &error.message, Some(field));
    }

    let yaml = gateway::manifest_yaml(
        name,
        namespace,
        &ManifestOptions {
            gateway_name: options.gateway.name.clone(),
            gateway_namespace: options.gateway.namespace.clone(),
            selector: options.selector(),
            hosts: options.hosts,
            mode: options.mode,
            port: options.port,
            protocol: options.protocol,
        },
    );
    let mut response = Response::new(200, yaml);
    response.set_header("content-type", "application/yaml");
    response
}

/// Reads `key=value,key=value` into a workload selector.
fn parse_selector(text: &str) -> Result<BTreeMap<String, String>, Response> {
    let mut selector = BTreeMap::new();
    for term in text.split(',').map(str::trim).filter(|term| !term.is_empty()) {
        let Some((key, value)) = term.split_once('=') else {
            return Err(error_response(400, "invalid_selector", &format!("selector term {term:?} is not key=value: send labels such as istio=ingressgateway"), Some("selector")));
        };
        selector.insert(key.trim().to_string(), value.trim().to_string());
    }
    if let Err(message) = gateway::check_selector(&selector) {
        return Err(error_response(400, "invalid_selector", &message, Some("selector")));
    }
    Ok(selector)
}

/// `GET /api/v1/gateways/dangling`.
pub async fn dangling() -> Response {
    match crate::hooks::dangling().await {
        Ok(report) => json_response(200, &report),
        Err(error) => unavailable(&error),
    }
}

fn load_head(namespace: &str, name: &str) -> Result<CertificateHead, Response> {
    let store = Store::open().map_err(internal_error)?;
    match store.get::<CertificateHead>(&records::certificate_key(namespace, name)) {
        Ok(Some(head)) => Ok(head),
        Ok(None) => Err(not_found(namespace, name)),
        Err(error) => Err(internal_error(error)),
    }
}

/// Responds 502 when sync-webhook, which reads the clusters, did not respond.
pub fn unavailable(error: &anyhow::Error) -> Response {
    tracing::error!(error = format!("{error:#}"), "sync-webhook did not respond");
    error_response(502, "clusters_unavailable", &format!("the clusters could not be read through sync-webhook ({error:#}); check that sync-webhook runs and shares webhook_secret"), None)
}
