//! Istio Gateways (`networking.istio.io`): which servers use a certificate, whether its SANs
//! cover their hosts, binding a certificate to a server, and a ready Gateway manifest.
//!
//! A Gateway server references a certificate by `tls.credentialName` (or, since Istio 1.24,
//! `tls.credentialNames`), and Istio reads that Secret from the namespace of the gateway
//! *workload*, the pods that the Gateway's `selector` picks, not from the Gateway's namespace.
//!
//! `spec.servers` is a list without merge keys in the CRD's schema, so a merge patch or a
//! server-side apply of one server would replace the whole list. A binding therefore reads the
//! Gateway, changes the one server in [`bind`], and writes the full list back with the
//! `resourceVersion` it read ([`servers_patch_request`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::kube::{base_url, request, RequestError, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::records::SyncError;
use crate::secret::SecretString;

/// The API group of Istio's Gateway.
pub const GROUP: &str = "networking.istio.io";

/// The versions meshcert reads, newest first: `v1` since Istio 1.22, `v1beta1` before.
pub const VERSIONS: [&str; 2] = ["v1", "v1beta1"];

/// The TLS modes a binding may set: a server that terminates TLS with the certificate, without
/// or with client certificates.
pub const BINDING_MODES: [&str; 2] = ["SIMPLE", "MUTUAL"];

/// The selector of Istio's default ingress gateway, used when a request names none.
pub const DEFAULT_SELECTOR: (&str, &str) = ("istio", "ingressgateway");

/// A Gateway as meshcert reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gateway {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `apiVersion`, such as `networking.istio.io/v1`.
    pub api_version: String,
    /// `metadata.resourceVersion`, the precondition of a write.
    pub resource_version: Option<String>,
    /// Whether it carries meshcert's managed-by label: meshcert created it for a binding.
    pub managed: bool,
    /// `spec.selector`: the labels of the workload pods.
    pub selector: BTreeMap<String, String>,
    /// `spec.servers`, parsed.
    pub servers: Vec<Server>,
    /// `spec.servers` as read, so that a write keeps every field meshcert does not know.
    pub raw_servers: Vec<Value>,
}

/// One server of a Gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    /// `port.number`.
    pub port: u32,
    /// `port.name`.
    pub port_name: Option<String>,
    /// `port.protocol`, such as `HTTPS` or `TLS`.
    pub protocol: String,
    /// `hosts`, as written: `[namespace/]dnsName`.
    pub hosts: Vec<String>,
    /// `tls.mode`.
    pub mode: Option<String>,
    /// `tls.credentialName`, then the entries of `tls.credentialNames`.
    pub credential_names: Vec<String>,
}

impl Gateway {
    /// Reads a Gateway object; `None` when it is not one.
    pub fn from_object(object: &Value) -> Option<Self> {
        let metadata = object.get("metadata")?;
        let spec = object.get("spec").cloned().unwrap_or_default();
        let raw_servers = spec["servers"].as_array().cloned().unwrap_or_default();
        let selector = spec["selector"]
            .as_object()
            .map(|labels| labels.iter().filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_string()))).collect())
            .unwrap_or_default();
        Some(Self {
            namespace: metadata["namespace"].as_str()?.to_string(),
            name: metadata["name"].as_str()?.to_string(),
            api_version: object["apiVersion"].as_str().unwrap_or_default().to_string(),
            resource_version: metadata["resourceVersion"].as_str().map(str::to_string),
            managed: metadata["labels"][MANAGED_BY_LABEL].as_str() == Some(MANAGED_BY_VALUE),
            selector,
            servers: raw_servers.iter().map(Server::from_object).collect(),
            raw_servers,
        })
    }

    /// Reads a GET response body.
    pub fn parse(body: &[u8]) -> Option<Self> {
        Self::from_object(&serde_json::from_slice(body).ok()?)
    }

    /// Reads the items of a `GatewayList` response body; items that are not Gateways are skipped.
    pub fn parse_list(body: &[u8]) -> Option<Vec<Self>> {
        let list: Value = serde_json::from_slice(body).ok()?;
        Some(list.get("items")?.as_array()?.iter().filter_map(Self::from_object).collect())
    }

    /// Returns the servers that reference the Secret `credential_name`.
    pub fn servers_using<'a>(&'a self, credential_name: &'a str) -> impl Iterator<Item = &'a Server> + 'a {
        self.servers.iter().filter(move |server| server.credential_names.iter().any(|name| name == credential_name))
    }

    /// `namespace/name`, as messages name it.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

impl Server {
    fn from_object(server: &Value) -> Self {
        let tls = &server["tls"];
        let mut credential_names: Vec<String> = tls["credentialName"].as_str().filter(|name| !name.is_empty()).map(str::to_string).into_iter().collect();
        if let Some(names) = tls["credentialNames"].as_array() {
            credential_names.extend(names.iter().filter_map(Value::as_str).map(str::to_string));
        }
        Self {
            port: server["port"]["number"].as_u64().and_then(|port| u32::try_from(port).ok()).unwrap_or_default(),
            port_name: server["port"]["name"].as_str().map(str::to_string),
            protocol: server["port"]["protocol"].as_str().unwrap_or_default().to_string(),
            hosts: server["hosts"].as_array().map(|hosts| hosts.iter().filter_map(Value::as_str).map(str::to_string).collect()).unwrap_or_default(),
            mode: tls["mode"].as_str().map(str::to_string),
            credential_names,
        }
    }
}

/// Returns the DNS name of a server host: `hosts` entries may carry a namespace prefix
/// (`prod/shop.example.test`, `./shop.example.test`, `*/shop.example.test`) that limits which
/// VirtualServices bind and does not affect TLS.
pub fn host_name(host: &str) -> &str {
    host.rsplit_once('/').map_or(host, |(_, name)| name)
}

/// Whether the certificate's SANs cover a server host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coverage {
    /// A SAN matches the host.
    Covered,
    /// No SAN matches: clients that connect with this name reject the certificate.
    NotCovered,
    /// The host is `*`, any name at all, which no certificate covers as a whole; not reported.
    AnyHost,
}

/// Checks `host` against the certificate's DNS SANs with the wildcard rules of RFC 6125
/// section 6.4.3: a `*` matches exactly one label and only as the whole leftmost label. A
/// wildcard host (`*.example.test`) is covered only by the same wildcard SAN, since a
/// certificate for one name does not serve every name under the domain. Names compare without
/// case and without a trailing dot.
pub fn coverage(sans: &[String], host: &str) -> Coverage {
    let host = normalize(host_name(host));
    if host == "*" {
        return Coverage::AnyHost;
    }
    let covered = sans.iter().map(|san| normalize(san)).any(|san| {
        if san == host {
            return true;
        }
        match (san.strip_prefix("*."), host.split_once('.')) {
            // A wildcard host is served only by the same wildcard, compared above.
            (Some(_), _) if host.starts_with('*') => false,
            (Some(san_parent), Some((first, parent))) => !first.is_empty() && parent == san_parent && san_parent.contains('.'),
            _ => false,
        }
    });
    if covered {
        Coverage::Covered
    } else {
        Coverage::NotCovered
    }
}

fn normalize(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// Returns the hosts that the SANs do not cover.
pub fn uncovered_hosts(sans: &[String], hosts: &[String]) -> Vec<String> {
    hosts.iter().filter(|host| coverage(sans, host) == Coverage::NotCovered).cloned().collect()
}

/// Formats the warning for a host that the certificate does not cover, as responses and logs show it.
pub fn uncovered_warning(host: &str, gateway: &str, cluster: &str) -> String {
    format!("host {} on gateway {gateway} in cluster {cluster} is not covered", host_name(host))
}

/// The response of `GET /api/v1/certificates/{namespace}/{name}/gateways`, assembled by
/// sync-webhook's `POST /hooks/gateways`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct GatewayUsage {
    /// Every Gateway, in every cluster that was read, with a server that uses the certificate.
    pub gateways: Vec<GatewayUse>,
    /// Uncovered hosts and workloads in another namespace, one sentence each.
    pub warnings: Vec<String>,
    /// The clusters that could not be read, so that a missing cluster is not taken for one
    /// without gateways.
    pub errors: Vec<ClusterError>,
}

/// A Gateway that uses a certificate.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GatewayUse {
    /// Cluster id.
    pub cluster: String,
    /// Gateway namespace.
    pub namespace: String,
    /// Gateway name.
    pub name: String,
    /// `apiVersion` served by the cluster.
    pub api_version: String,
    /// `spec.selector`.
    pub selector: BTreeMap<String, String>,
    /// The namespaces of the pods the selector picks: where Istio reads the Secret.
    pub workload_namespaces: Vec<String>,
    /// The servers that reference the certificate.
    pub servers: Vec<ServerUse>,
}

/// A server that references a certificate.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServerUse {
    /// Port number.
    pub port: u32,
    /// Port name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_name: Option<String>,
    /// Protocol, such as `HTTPS`.
    pub protocol: String,
    /// Hosts, as written in the Gateway.
    pub hosts: Vec<String>,
    /// TLS mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The hosts the certificate's SANs do not cover.
    pub uncovered_hosts: Vec<String>,
}

/// A cluster that could not be read.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterError {
    /// Cluster id.
    pub cluster: String,
    /// The failure kind, as sync records have it (`unauthorized`, `forbidden`, `timeout`, ...).
    pub kind: String,
    /// The failure and its fix.
    pub message: String,
}

impl ClusterError {
    /// Names the cluster of a failed request.
    pub fn new(cluster: &str, error: SyncError) -> Self {
        Self { cluster: cluster.into(), kind: error.kind, message: error.message }
    }
}

/// Describes how `gateway` in `cluster` uses the certificate `namespace/credential_name` with
/// DNS SANs `sans`, with a warning per uncovered host and one when the workload runs elsewhere.
/// `workload_namespaces` is `None` when the pods could not be listed.
pub fn usage(
    cluster: &str,
    gateway: &Gateway,
    namespace: &str,
    credential_name: &str,
    sans: &[String],
    workload_namespaces: Option<&BTreeSet<String>>,
    warnings: &mut Vec<String>,
) -> Option<GatewayUse> {
    let servers: Vec<ServerUse> = gateway
        .servers_using(credential_name)
        .map(|server| ServerUse {
            port: server.port,
            port_name: server.port_name.clone(),
            protocol: server.protocol.clone(),
            hosts: server.hosts.clone(),
            mode: server.mode.clone(),
            uncovered_hosts: uncovered_hosts(sans, &server.hosts),
        })
        .collect();
    if servers.is_empty() {
        return None;
    }

    for host in servers.iter().flat_map(|server| &server.uncovered_hosts) {
        warnings.push(uncovered_warning(host, &gateway.id(), cluster));
    }
    match workload_namespaces {
        Some(found) if found.is_empty() => warnings.push(format!(
            "gateway {} in cluster {cluster} selects no running pods ({}): no gateway serves the certificate there",
            gateway.id(),
            selector_text(&gateway.selector)
        )),
        Some(found) if !found.contains(namespace) => warnings.push(format!(
            "gateway {} in cluster {cluster} runs its pods in namespace {}, and Istio reads the Secret {credential_name} from there, but the certificate is in namespace {namespace}: store the certificate in the workload's namespace",
            gateway.id(),
            found.iter().cloned().collect::<Vec<_>>().join(", ")
        )),
        _ => {}
    }
    Some(GatewayUse {
        cluster: cluster.into(),
        namespace: gateway.namespace.clone(),
        name: gateway.name.clone(),
        api_version: gateway.api_version.clone(),
        selector: gateway.selector.clone(),
        workload_namespaces: workload_namespaces.map(|found| found.iter().cloned().collect()).unwrap_or_default(),
        servers,
    })
}

/// Writes a selector as a `labelSelector` query value, such as `istio=ingressgateway`.
pub fn selector_text(selector: &BTreeMap<String, String>) -> String {
    selector.iter().map(|(key, value)| format!("{key}={value}")).collect::<Vec<_>>().join(",")
}

/// A `credentialName` referenced by Gateways for which the cluster holds neither a managed
/// certificate nor a Secret.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DanglingReference {
    /// Cluster id.
    pub cluster: String,
    /// The namespace Istio reads the Secret from: the workload's, or the Gateway's when no pod
    /// was found.
    pub namespace: String,
    /// The Secret name.
    pub credential_name: String,
    /// The Gateways that reference it, as `namespace/name`.
    pub gateways: Vec<String>,
}

/// The response of `GET /api/v1/gateways/dangling`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DanglingReport {
    /// Every reference without a Secret.
    pub dangling: Vec<DanglingReference>,
    /// The clusters that could not be read.
    pub errors: Vec<ClusterError>,
}

/// `POST /api/v1/certificates/{namespace}/{name}/bindings`: the server of a Gateway that should
/// terminate TLS with the certificate.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingRequest {
    /// Cluster id, or `*` for every cluster the certificate goes to.
    pub cluster: String,
    /// The Gateway; created when it does not exist.
    pub gateway: GatewayRef,
    /// Port number; 443 when absent.
    #[serde(default = "default_port")]
    pub port: u32,
    /// The server's hosts; the certificate's DNS SANs when absent or empty.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// `SIMPLE` (the default) or `MUTUAL`, which needs the certificate's CA.
    #[serde(default = "default_mode")]
    pub mode: String,
    /// `HTTPS` (the default), or `TLS` for TLS termination of other protocols by SNI.
    #[serde(default = "default_protocol")]
    pub protocol: String,
    /// The workload selector of a Gateway that meshcert creates; `istio: ingressgateway` when
    /// absent. An existing Gateway keeps its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<BTreeMap<String, String>>,
}

/// `DELETE /api/v1/certificates/{namespace}/{name}/bindings?cluster=…&gateway=…&port=…`: the
/// servers of a Gateway that stop using the certificate.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnbindRequest {
    /// Cluster id, or `*` for every cluster.
    pub cluster: String,
    /// The Gateway.
    pub gateway: GatewayRef,
    /// Only the server on this port; every server that uses the certificate when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
}

/// The body of sync-webhook's `POST /hooks/gateways`: the Gateways that use a certificate.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaysHookRequest {
    /// `namespace/name` of the certificate.
    pub certificate: String,
    /// Only these cluster ids; every registered cluster when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clusters: Option<Vec<String>>,
    /// Send each request once, without retries: the check after a write, which must not make
    /// the write's response wait for a failing cluster.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub single_attempt: bool,
    /// Any unique value, as in [`crate::api::SyncRequest::nonce`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

/// The body of sync-webhook's `POST /hooks/bindings`: one binding to add or remove.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingsHookRequest {
    /// `namespace/name` of the certificate.
    pub certificate: String,
    /// A server to bind, already checked by [`BindingRequest::normalize`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<BindingRequest>,
    /// Servers to unbind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unbind: Option<UnbindRequest>,
    /// Any unique value, as in [`crate::api::SyncRequest::nonce`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

/// The outcome of a binding in one cluster.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BindingResult {
    /// Cluster id.
    pub cluster: String,
    /// The Gateway, as `namespace/name`.
    pub gateway: String,
    /// The change made, when it worked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<BindingChange>,
    /// `apiVersion` the cluster serves, when it was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// The failure, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<SyncError>,
}

/// The response of `POST /hooks/bindings`, and of the bindings routes.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct BindingReport {
    /// One result per cluster.
    pub results: Vec<BindingResult>,
    /// Hosts the certificate does not cover, one sentence each.
    pub warnings: Vec<String>,
}

fn default_port() -> u32 {
    443
}

fn default_mode() -> String {
    BINDING_MODES[0].into()
}

fn default_protocol() -> String {
    "HTTPS".into()
}

/// A Gateway by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// A binding request that cannot be carried out, with its field and fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BindingError {
    /// Stable code.
    pub code: &'static str,
    /// The request field at fault.
    pub field: &'static str,
    /// The problem and the fix.
    pub message: String,
}

impl BindingRequest {
    /// Checks the fields and fills the hosts from the DNS SANs when none are given.
    ///
    /// # Errors
    ///
    /// The first field that is not valid.
    pub fn normalize(&mut self, dns_sans: &[String], has_ca: bool) -> Result<(), BindingError> {
        let error = |code, field, message: String| Err(BindingError { code, field, message });
        if self.cluster != "*" && crate::names::check_dns1123_label(&self.cluster).is_err() {
            return error("invalid_cluster", "cluster", format!("cluster {:?} is not a cluster id: send the id of a registered cluster, or * for every cluster the certificate goes to", self.cluster));
        }
        if let Err(rule) = crate::names::check_dns1123_label(&self.gateway.namespace) {
            return error("invalid_gateway", "gateway", format!("gateway namespace {:?} {rule}", self.gateway.namespace));
        }
        if let Err(rule) = crate::names::check_dns1123_subdomain(&self.gateway.name) {
            return error("invalid_gateway", "gateway", format!("gateway name {:?} {rule}", self.gateway.name));
        }

        if !(1..=65535).contains(&self.port) {
            return error("invalid_port", "port", format!("port {} is not a port number: send 1 to 65535, such as 443", self.port));
        }

        self.mode = self.mode.to_ascii_uppercase();
        if !BINDING_MODES.contains(&self.mode.as_str()) {
            return error("invalid_mode", "mode", format!("mode {:?} is not a TLS mode meshcert binds: send SIMPLE, or MUTUAL for client certificates", self.mode));
        }
        if self.mode == "MUTUAL" && !has_ca {
            return error(
                "mutual_needs_ca",
                "mode",
                "mode MUTUAL needs the certificate's CA to verify clients, and this certificate has none: rotate it with a ca_certificate and mtls true, or bind with SIMPLE".into(),
            );
        }

        self.protocol = self.protocol.to_ascii_uppercase();
        if !matches!(self.protocol.as_str(), "HTTPS" | "TLS") {
            return error("invalid_protocol", "protocol", format!("protocol {:?} cannot terminate TLS: send HTTPS, or TLS for other protocols by SNI", self.protocol));
        }

        if self.hosts.is_empty() {
            self.hosts = dns_sans.iter().filter(|san| san.parse::<std::net::IpAddr>().is_err() && !san.contains(':') && !san.contains('@')).cloned().collect();
        }
        if self.hosts.is_empty() {
            return error("hosts_required", "hosts", "the certificate has no DNS name to serve: send hosts, such as [\"shop.example.test\"]".into());
        }
        for host in &self.hosts {
            if let Err(message) = check_host(host) {
                return error("invalid_host", "hosts", message);
            }
        }

        if let Some(selector) = &self.selector {
            check_selector(selector).map_err(|message| BindingError { code: "invalid_selector", field: "selector", message })?;
        }
        Ok(())
    }

    /// Returns the selector of a Gateway that meshcert creates.
    pub fn selector(&self) -> BTreeMap<String, String> {
        self.selector.clone().unwrap_or_else(|| BTreeMap::from([(DEFAULT_SELECTOR.0.to_string(), DEFAULT_SELECTOR.1.to_string())]))
    }
}

/// Checks a server host as Istio's Gateway validation does: an optional namespace prefix (`*/`,
/// `./` or a namespace), then `*`, a DNS name, or a DNS name under a leftmost `*.`.
fn check_host(host: &str) -> Result<(), String> {
    let invalid = || format!("host {host:?} is not a Gateway host: send names such as shop.example.test, *.example.test or prod/shop.example.test");
    let (namespace, name) = host.rsplit_once('/').map_or((None, host), |(namespace, name)| (Some(namespace), name));
    if let Some(namespace) = namespace {
        if !matches!(namespace, "*" | ".") && crate::names::check_dns1123_label(namespace).is_err() {
            return Err(invalid());
        }
    }
    let labels_valid = name.strip_prefix("*.").unwrap_or(name).split('.').all(|label| crate::names::check_dns1123_label(&label.to_ascii_lowercase()).is_ok());
    if name == "*" || labels_valid {
        Ok(())
    } else {
        Err(invalid())
    }
}

/// Checks a workload selector: at least one label, each a valid Kubernetes label key and value.
///
/// # Errors
///
/// A message naming the label that is not valid.
pub fn check_selector(selector: &BTreeMap<String, String>) -> Result<(), String> {
    if selector.is_empty() {
        return Err("selector is empty, which would pick every pod: send the gateway pods' labels, such as {\"istio\": \"ingressgateway\"}".into());
    }
    for (key, value) in selector {
        crate::selector::check_label_key(key).map_err(|rule| format!("selector label key {} {rule}", crate::names::describe_for_message(key)))?;
        crate::selector::check_label_value(value).map_err(|rule| format!("selector label value of {} {rule}", crate::names::describe_for_message(key)))?;
    }
    Ok(())
}

/// The change a binding made to a Gateway's servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindingChange {
    /// A server was added.
    Added,
    /// An existing server now references the certificate.
    Updated,
    /// The server already referenced the certificate as asked; nothing was written.
    Unchanged,
    /// The Gateway did not exist and was created with the server.
    Created,
    /// The server was removed.
    Removed,
    /// The server was the Gateway's last, and the Gateway, which meshcert had created, was deleted.
    Deleted,
}

/// Changes `servers` so that the server on `binding.port` with `binding.hosts` terminates TLS
/// with `credential_name`, and leaves every other server as it is.
///
/// The server is found by port and host set (order and case do not matter). When none matches,
/// a new server is added. An existing server keeps its other `tls` fields (minimum TLS version,
/// cipher suites) and its port name.
///
/// # Errors
///
/// A server that uses `credentialNames`, which hold several certificates: meshcert would have to
/// choose which entry to replace.
pub fn bind(servers: &mut Vec<Value>, binding: &BindingRequest, credential_name: &str) -> Result<BindingChange, BindingError> {
    let wanted: BTreeSet<String> = binding.hosts.iter().map(|host| normalize(host)).collect();
    let found = servers.iter_mut().find(|server| {
        let parsed = Server::from_object(server);
        parsed.port == binding.port && parsed.hosts.iter().map(|host| normalize(host)).collect::<BTreeSet<_>>() == wanted
    });

    let Some(server) = found else {
        servers.push(new_server(binding, credential_name, servers));
        return Ok(BindingChange::Added);
    };
    if server["tls"].get("credentialNames").is_some() {
        return Err(BindingError {
            code: "credential_names_in_use",
            field: "port",
            message: format!(
                "the server on port {} of gateway {}/{} lists several certificates in tls.credentialNames: edit that server by hand, or bind another port",
                binding.port, binding.gateway.namespace, binding.gateway.name
            ),
        });
    }
    let parsed = Server::from_object(server);
    if parsed.mode.as_deref() == Some(binding.mode.as_str()) && parsed.credential_names == [credential_name] {
        return Ok(BindingChange::Unchanged);
    }
    if !server["tls"].is_object() {
        server["tls"] = json!({});
    }
    server["tls"]["mode"] = binding.mode.clone().into();
    server["tls"]["credentialName"] = credential_name.into();
    Ok(BindingChange::Updated)
}

/// Removes the servers on `port` (any port when `None`) that reference `credential_name`, and
/// returns how many.
///
/// # Errors
///
/// A server that lists the certificate among several in `credentialNames`: removing it would
/// stop serving the others too.
pub fn unbind(servers: &mut Vec<Value>, port: Option<u32>, credential_name: &str) -> Result<usize, BindingError> {
    let bound = |server: &Value| {
        let parsed = Server::from_object(server);
        parsed.credential_names.iter().any(|name| name == credential_name) && port.is_none_or(|port| parsed.port == port)
    };
    if let Some(shared) = servers.iter().find(|server| bound(server) && server["tls"].get("credentialNames").is_some()) {
        return Err(BindingError {
            code: "credential_names_in_use",
            field: "port",
            message: format!(
                "the server on port {} lists several certificates in tls.credentialNames, {credential_name} among them: edit that server by hand",
                Server::from_object(shared).port
            ),
        });
    }
    let before = servers.len();
    servers.retain(|server| !bound(server));
    Ok(before - servers.len())
}

fn new_server(binding: &BindingRequest, credential_name: &str, servers: &[Value]) -> Value {
    // Port names are unique within a Gateway in Istio's validation.
    let taken: BTreeSet<&str> = servers.iter().filter_map(|server| server["port"]["name"].as_str()).collect();
    let base = format!("{}-{}-{credential_name}", binding.protocol.to_ascii_lowercase(), binding.port);
    let mut port_name = base.clone();
    let mut suffix = 2;
    while taken.contains(port_name.as_str()) {
        port_name = format!("{base}-{suffix}");
        suffix += 1;
    }
    json!({
        "port": { "number": binding.port, "name": port_name, "protocol": binding.protocol },
        "hosts": binding.hosts,
        "tls": { "mode": binding.mode, "credentialName": credential_name },
    })
}

/// Builds a Gateway that meshcert creates for a binding: its servers, `binding`'s selector, and
/// meshcert's label, so that removing its last binding may delete it.
pub fn new_gateway(version: &str, binding: &BindingRequest, servers: Vec<Value>) -> Value {
    json!({
        "apiVersion": format!("{GROUP}/{version}"),
        "kind": "Gateway",
        "metadata": {
            "name": binding.gateway.name,
            "namespace": binding.gateway.namespace,
            "labels": { MANAGED_BY_LABEL: MANAGED_BY_VALUE },
        },
        "spec": { "selector": binding.selector(), "servers": servers },
    })
}

fn gateways_url(api_server: &str, version: &str, namespace: Option<&str>, name: Option<&str>) -> Result<String, RequestError> {
    // Namespaces and names are DNS-1123 names, so they need no percent-encoding.
    let base = base_url(api_server)?;
    Ok(match (namespace, name) {
        (Some(namespace), Some(name)) => format!("{base}/apis/{GROUP}/{version}/namespaces/{namespace}/gateways/{name}"),
        (Some(namespace), None) => format!("{base}/apis/{GROUP}/{version}/namespaces/{namespace}/gateways"),
        _ => format!("{base}/apis/{GROUP}/{version}/gateways"),
    })
}

/// Builds the LIST of every Gateway in every namespace at `version`.
///
/// # Errors
///
/// [`RequestError`] for a bad `api_server` or token.
pub fn list_gateways_request(api_server: &str, token: &SecretString, version: &str) -> Result<http::Request<Vec<u8>>, RequestError> {
    request(http::Method::GET, gateways_url(api_server, version, None, None)?, token, None, Vec::new())
}

/// Builds the GET of one Gateway.
///
/// # Errors
///
/// [`RequestError`] for a bad `api_server` or token.
pub fn get_gateway_request(api_server: &str, token: &SecretString, version: &str, gateway: &GatewayRef) -> Result<http::Request<Vec<u8>>, RequestError> {
    request(http::Method::GET, gateways_url(api_server, version, Some(&gateway.namespace), Some(&gateway.name))?, token, None, Vec::new())
}

/// Builds the POST that creates `object`; 409 `AlreadyExists` when another client created it first.
///
/// # Errors
///
/// [`RequestError`] for a bad `api_server` or token.
pub fn create_gateway_request(api_server: &str, token: &SecretString, version: &str, gateway: &GatewayRef, object: &Value) -> Result<http::Request<Vec<u8>>, RequestError> {
    let url = format!("{}?fieldManager={}", gateways_url(api_server, version, Some(&gateway.namespace), None)?, crate::kube::FIELD_MANAGER);
    request(http::Method::POST, url, token, Some("application/json"), object.to_string().into_bytes())
}

/// Builds a JSON merge patch that replaces `spec.servers` whole, with the resourceVersion that was
/// read as a precondition: the API server responds 409 when the Gateway changed in between, and
/// the caller reads it again.
///
/// # Errors
///
/// [`RequestError`] for a bad `api_server` or token.
pub fn servers_patch_request(
    api_server: &str,
    token: &SecretString,
    version: &str,
    gateway: &GatewayRef,
    resource_version: &str,
    servers: &[Value],
) -> Result<http::Request<Vec<u8>>, RequestError> {
    let patch = json!({ "metadata": { "resourceVersion": resource_version }, "spec": { "servers": servers } });
    let url = format!("{}?fieldManager={}", gateways_url(api_server, version, Some(&gateway.namespace), Some(&gateway.name))?, crate::kube::FIELD_MANAGER);
    request(http::Method::PATCH, url, token, Some("application/merge-patch+json"), patch.to_string().into_bytes())
}

/// Builds the DELETE of a Gateway at the resourceVersion that was read.
///
/// # Errors
///
/// [`RequestError`] for a bad `api_server` or token.
pub fn delete_gateway_request(api_server: &str, token: &SecretString, version: &str, gateway: &GatewayRef, resource_version: &str) -> Result<http::Request<Vec<u8>>, RequestError> {
    let options = json!({ "apiVersion": "v1", "kind": "DeleteOptions", "preconditions": { "resourceVersion": resource_version } });
    let url = gateways_url(api_server, version, Some(&gateway.namespace), Some(&gateway.name))?;
    request(http::Method::DELETE, url, token, Some("application/json"), options.to_string().into_bytes())
}

/// Builds the LIST of the pods in every namespace that carry the labels of `selector`.
///
/// # Errors
///
/// [`RequestError`] for a bad `api_server` or token.
pub fn list_pods_request(api_server: &str, token: &SecretString, selector: &BTreeMap<String, String>) -> Result<http::Request<Vec<u8>>, RequestError> {
    let query = url::form_urlencoded::Serializer::new(String::new()).append_pair("labelSelector", &selector_text(selector)).finish();
    request(http::Method::GET, format!("{}/api/v1/pods?{query}", base_url(api_server)?), token, None, Vec::new())
}

/// Reads the namespaces of the running pods in a `PodList` response body.
pub fn pod_namespaces(body: &[u8]) -> Option<BTreeSet<String>> {
    let list: Value = serde_json::from_slice(body).ok()?;
    let items = list.get("items")?.as_array()?;
    Some(
        items
            .iter()
            .filter(|pod| pod["status"]["phase"].as_str().is_none_or(|phase| !matches!(phase, "Succeeded" | "Failed")))
            .filter_map(|pod| pod["metadata"]["namespace"].as_str().map(str::to_string))
            .collect(),
    )
}

/// Returns whether a 404 means that the cluster does not serve the Gateway resource at that
/// version, rather than that one Gateway does not exist: Kubernetes names the object in
/// `details.name` only in the second case.
pub fn is_version_not_served(status: u16, body: &[u8]) -> bool {
    status == 404 && serde_json::from_slice::<Value>(body).map_or(true, |status| status["details"]["name"].as_str().is_none_or(str::is_empty))
}

/// Parameters of `GET /api/v1/certificates/{namespace}/{name}/gateway.yaml`.
#[derive(Clone, Debug)]
pub struct ManifestOptions {
    /// Gateway name.
    pub gateway_name: String,
    /// Gateway namespace.
    pub gateway_namespace: String,
    /// Hosts of the server.
    pub hosts: Vec<String>,
    /// TLS mode.
    pub mode: String,
    /// Port number.
    pub port: u32,
    /// Protocol.
    pub protocol: String,
    /// Workload selector.
    pub selector: BTreeMap<String, String>,
}

/// Writes a Gateway manifest in YAML that references `credential_name`, for `kubectl apply -f -`.
/// Every string is a double-quoted YAML scalar, written as a JSON string (YAML 1.2 accepts
/// JSON strings), so no host or label value can change the document's structure.
pub fn manifest_yaml(credential_name: &str, certificate_namespace: &str, options: &ManifestOptions) -> String {
    let quote = |text: &str| Value::String(text.to_string()).to_string();
    let mut yaml = String::new();
    yaml.push_str(&format!(
        "# A Gateway that serves the certificate {certificate_namespace}/{credential_name}. Istio reads the Secret from the\n\
         # namespace of the pods the selector picks, which must be {certificate_namespace}.\n"
    ));
    yaml.push_str(&format!("apiVersion: {GROUP}/v1\nkind: Gateway\nmetadata:\n  name: {}\n  namespace: {}\n", quote(&options.gateway_name), quote(&options.gateway_namespace)));
    yaml.push_str("spec:\n  selector:\n");
    for (key, value) in &options.selector {
        yaml.push_str(&format!("    {}: {}\n", quote(key), quote(value)));
    }
    yaml.push_str("  servers:\n  - port:\n");
    yaml.push_str(&format!(
        "      number: {}\n      name: {}\n      protocol: {}\n",
        options.port,
        quote(&format!("{}-{}", options.protocol.to_ascii_lowercase(), options.port)),
        quote(&options.protocol)
    ));
    yaml.push_str("    hosts:\n");
    for host in &options.hosts {
        yaml.push_str(&format!("    - {}\n", quote(host)));
    }
    yaml.push_str(&format!("    tls:\n      mode: {}\n      credentialName: {}\n", quote(&options.mode), quote(credential_name)));
    yaml
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sans(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    fn binding(port: u32, hosts: &[&str]) -> BindingRequest {
        BindingRequest {
            cluster: "east".into(),
            gateway: GatewayRef { namespace: "istio-system".into(), name: "public".into() },
            port,
            hosts: sans(hosts),
            mode: "SIMPLE".into(),
            protocol: "HTTPS".into(),
            selector: None,
        }
    }

    #[test]
    fn wildcard_san_covers_one_label_only() {
        let wildcard = sans(&["*.example.test"]);

        assert_eq!(coverage(&wildcard, "shop.example.test"), Coverage::Covered);
        assert_eq!(coverage(&wildcard, "SHOP.Example.test."), Coverage::Covered);
        assert_eq!(coverage(&wildcard, "a.shop.example.test"), Coverage::NotCovered);
        assert_eq!(coverage(&wildcard, "example.test"), Coverage::NotCovered);
        assert_eq!(coverage(&wildcard, "*.example.test"), Coverage::Covered);
        assert_eq!(coverage(&wildcard, "prod/shop.example.test"), Coverage::Covered);
        assert_eq!(coverage(&wildcard, "*"), Coverage::AnyHost);
    }

    #[test]
    fn exact_san_does_not_cover_a_wildcard_host() {
        let exact = sans(&["shop.example.test"]);

        assert_eq!(coverage(&exact, "shop.example.test"), Coverage::Covered);
        assert_eq!(coverage(&exact, "*.example.test"), Coverage::NotCovered);
        assert_eq!(coverage(&exact, "api.example.test"), Coverage::NotCovered);
    }

    #[test]
    fn wildcard_never_spans_a_public_suffix_alone() {
        // `*.test` would cover `example.test`; RFC 6125 leaves it to policy, and meshcert does
        // not count a wildcard of one label.
        assert_eq!(coverage(&sans(&["*.test"]), "example.test"), Coverage::NotCovered);
    }

    #[test]
    fn usage_lists_servers_and_warns() {
        let gateway = Gateway::from_object(&json!({
            "apiVersion": "networking.istio.io/v1",
            "metadata": { "namespace": "istio-system", "name": "public", "resourceVersion": "7" },
            "spec": {
                "selector": { "istio": "ingressgateway" },
                "servers": [
                    { "port": { "number": 443, "name": "https", "protocol": "HTTPS" }, "hosts": ["shop.example.test", "api.example.test"], "tls": { "mode": "SIMPLE", "credentialName": "web" } },
                    { "port": { "number": 8443, "name": "other", "protocol": "HTTPS" }, "hosts": ["x.example.test"], "tls": { "mode": "SIMPLE", "credentialName": "other" } },
                    { "port": { "number": 9443, "name": "both", "protocol": "HTTPS" }, "hosts": ["api.example.test"], "tls": { "mode": "SIMPLE", "credentialNames": ["rsa", "web"] } }
                ]
            }
        }))
        .unwrap();
        let mut warnings = Vec::new();
        let workloads = BTreeSet::from(["gateways".to_string()]);

        let found = usage("east", &gateway, "istio-system", "web", &sans(&["shop.example.test"]), Some(&workloads), &mut warnings).unwrap();

        assert_eq!(found.servers.iter().map(|server| server.port).collect::<Vec<_>>(), [443, 9443]);
        assert_eq!(found.servers[0].uncovered_hosts, ["api.example.test"]);
        assert_eq!(warnings[0], "host api.example.test on gateway istio-system/public in cluster east is not covered");
        assert!(warnings.iter().any(|warning| warning.contains("runs its pods in namespace gateways")), "{warnings:?}");
        assert!(usage("east", &gateway, "istio-system", "absent", &[], None, &mut warnings).is_none());
    }

    #[test]
    fn bind_updates_only_the_matching_server() {
        let mut servers = vec![
            json!({ "port": { "number": 80, "name": "http", "protocol": "HTTP" }, "hosts": ["*"] }),
            json!({ "port": { "number": 443, "name": "https", "protocol": "HTTPS" }, "hosts": ["Shop.example.test"], "tls": { "mode": "SIMPLE", "credentialName": "old", "minProtocolVersion": "TLSV1_3" } }),
        ];
        let untouched = servers[0].clone();

        let change = bind(&mut servers, &binding(443, &["shop.example.test"]), "web").unwrap();

        assert_eq!(change, BindingChange::Updated);
        assert_eq!(servers[0], untouched);
        assert_eq!(servers[1]["tls"], json!({ "mode": "SIMPLE", "credentialName": "web", "minProtocolVersion": "TLSV1_3" }));
        assert_eq!(bind(&mut servers, &binding(443, &["shop.example.test"]), "web").unwrap(), BindingChange::Unchanged);
    }

    #[test]
    fn bind_adds_server_unique_port_name() {
        let mut servers = vec![json!({ "port": { "number": 443, "name": "https-443-web", "protocol": "HTTPS" }, "hosts": ["a.example.test"], "tls": { "mode": "SIMPLE", "credentialName": "a" } })];

        let change = bind(&mut servers, &binding(443, &["shop.example.test"]), "web").unwrap();

        assert_eq!(change, BindingChange::Added);
        assert_eq!(servers[1]["port"], json!({ "number": 443, "name": "https-443-web-2", "protocol": "HTTPS" }));
        assert_eq!(servers[1]["tls"], json!({ "mode": "SIMPLE", "credentialName": "web" }));
    }

    #[test]
    fn bind_refuses_a_server_with_several_certificates() {
        let mut servers = vec![json!({ "port": { "number": 443, "protocol": "HTTPS" }, "hosts": ["shop.example.test"], "tls": { "mode": "SIMPLE", "credentialNames": ["rsa", "ec"] } })];

        let error = bind(&mut servers, &binding(443, &["shop.example.test"]), "web").unwrap_err();

        assert_eq!(error.code, "credential_names_in_use");
    }

    #[test]
    fn unbind_removes_the_servers_of_the_certificate() {
        let mut servers = vec![
            json!({ "port": { "number": 443, "protocol": "HTTPS" }, "hosts": ["a"], "tls": { "mode": "SIMPLE", "credentialName": "web" } }),
            json!({ "port": { "number": 8443, "protocol": "HTTPS" }, "hosts": ["b"], "tls": { "mode": "SIMPLE", "credentialName": "web" } }),
            json!({ "port": { "number": 443, "protocol": "HTTPS" }, "hosts": ["c"], "tls": { "mode": "SIMPLE", "credentialName": "other" } }),
        ];

        assert_eq!(unbind(&mut servers, Some(443), "web"), Ok(1));
        assert_eq!(servers.len(), 2);
        assert_eq!(unbind(&mut servers, None, "web"), Ok(1));
        assert_eq!(servers[0]["hosts"], json!(["c"]));
    }

    #[test]
    fn unbind_refuses_a_server_with_several_certificates() {
        let shared = json!({ "port": { "number": 443, "protocol": "HTTPS" }, "hosts": ["a"], "tls": { "mode": "SIMPLE", "credentialNames": ["web", "other"] } });
        let mut servers = vec![shared.clone()];

        let error = unbind(&mut servers, Some(443), "web").unwrap_err();

        assert_eq!(error.code, "credential_names_in_use");
        assert_eq!(servers, [shared]);
    }

    #[test]
    fn normalize_checks_fields_and_defaults_hosts() {
        let dns = sans(&["shop.example.test", "10.0.0.1"]);
        let mut request = binding(443, &[]);

        request.normalize(&dns, false).unwrap();
        assert_eq!(request.hosts, ["shop.example.test"]);
        for host in ["prod/shop.example.test", "./shop.example.test", "*/shop.example.test", "*", "*.example.test"] {
            assert!(binding(443, &[host]).normalize(&dns, false).is_ok(), "{host}");
        }

        let mut mutual = BindingRequest { mode: "mutual".into(), ..binding(443, &[]) };
        assert_eq!(mutual.normalize(&dns, false).unwrap_err().code, "mutual_needs_ca");
        assert!(mutual.normalize(&dns, true).is_ok());
        assert_eq!(mutual.mode, "MUTUAL");

        for (mut request, code) in [
            (BindingRequest { port: 0, ..binding(443, &[]) }, "invalid_port"),
            (BindingRequest { protocol: "HTTP".into(), ..binding(443, &[]) }, "invalid_protocol"),
            (BindingRequest { mode: "PASSTHROUGH".into(), ..binding(443, &[]) }, "invalid_mode"),
            (binding(443, &["bad host"]), "invalid_host"),
            (binding(443, &["bad ns\n x/shop.example.test"]), "invalid_host"),
            (binding(443, &["<img src=x>/shop.example.test"]), "invalid_host"),
            (BindingRequest { selector: Some(BTreeMap::from([("istio!".to_string(), "x".to_string())])), ..binding(443, &[]) }, "invalid_selector"),
            (BindingRequest { selector: Some(BTreeMap::from([("app".to_string(), "c\nd".to_string())])), ..binding(443, &[]) }, "invalid_selector"),
            (BindingRequest { cluster: "East_1".into(), ..binding(443, &[]) }, "invalid_cluster"),
        ] {
            assert_eq!(request.normalize(&dns, true).unwrap_err().code, code);
        }
    }

    #[test]
    fn version_not_served_vs_missing_gateway() {
        let missing_resource = json!({ "kind": "Status", "code": 404, "reason": "NotFound", "message": "the server could not find the requested resource", "details": {} });
        let missing_object = json!({ "kind": "Status", "code": 404, "reason": "NotFound", "details": { "name": "public", "group": GROUP, "kind": "gateways" } });

        assert!(is_version_not_served(404, missing_resource.to_string().as_bytes()));
        assert!(is_version_not_served(404, b"404 page not found"));
        assert!(!is_version_not_served(404, missing_object.to_string().as_bytes()));
    }

    #[test]
    fn manifest_quotes_every_value() {
        let options = ManifestOptions {
            gateway_name: "web-gateway".into(),
            gateway_namespace: "istio-system".into(),
            hosts: sans(&["shop.example.test", "*.example.test"]),
            mode: "SIMPLE".into(),
            port: 443,
            protocol: "HTTPS".into(),
            selector: BTreeMap::from([("istio".to_string(), "ingressgateway".to_string())]),
        };

        let yaml = manifest_yaml("web", "istio-system", &options);

        assert!(yaml.contains("kind: Gateway\n"));
        assert!(yaml.contains("    - \"*.example.test\"\n"));
        assert!(yaml.contains("      credentialName: \"web\"\n"));
        assert!(yaml.contains("      number: 443\n"));
    }

    #[test]
    fn pod_namespaces_skip_finished_pods() {
        let list = json!({ "items": [
            { "metadata": { "namespace": "istio-system" }, "status": { "phase": "Running" } },
            { "metadata": { "namespace": "old" }, "status": { "phase": "Succeeded" } },
        ] });

        let found = pod_namespaces(list.to_string().as_bytes()).unwrap();

        assert_eq!(found, BTreeSet::from(["istio-system".to_string()]));
    }
}
