//! Reading and binding Istio Gateways, and reading Secrets to adopt, in the registered clusters.
//!
//! The api component has no outbound access to clusters, so it requests these through signed
//! hooks. Every request goes through the sync's [`Client`], with its limit, time limits and
//! retries. A cluster's failure is reported for that cluster and does not stop the others.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context as _;
use meshcert_core::gateway::{
    self, BindingChange, BindingReport, BindingRequest, BindingResult, ClusterError, DanglingReference, DanglingReport, Gateway, GatewayRef, GatewayUsage,
    UnbindRequest,
};
use meshcert_core::import::{self, CandidateCopy, CandidatesReport, ReadSecretReport, ReadSecretRequest};
use meshcert_core::kube::{self, LiveSecret};
use meshcert_core::records::{self, CertificateHead, CertificateState, SyncError};
use meshcert_core::selector::LabelSelector;
use meshcert_spin::{cipher, Store};
use serde_json::Value;
use spin_sdk::http::Response;

use crate::apply::{concurrency, load_clusters, Cluster};
use crate::client::{Client, Sent};

/// Writes of a Gateway repeated after a 409, when another client changed it in between.
const MAX_WRITE_ATTEMPTS: u32 = 4;

/// The namespace of Istio's control plane and default gateways, where candidates are looked for.
const ISTIO_NAMESPACE: &str = "istio-system";

/// One cluster's reads, with the Gateway version it serves once known.
struct Reader<'a> {
    client: &'a Client,
    cluster: &'a Cluster,
    /// Whether each request is sent once, without retries.
    single_attempt: bool,
}

impl<'a> Reader<'a> {
    fn new(client: &'a Client, cluster: &'a Cluster) -> Self {
        Self { client, cluster, single_attempt: false }
    }

    async fn send(&self, request: Result<http::Request<Vec<u8>>, kube::RequestError>) -> Result<Response, SyncError> {
        let request = request.map_err(kube::RequestError::into_sync_error)?;
        if self.single_attempt {
            return self.client.send_once(&request).await;
        }
        let Sent { result, .. } = self.client.send(&request).await;
        result
    }

    /// Lists every Gateway at the newest version the cluster serves. A cluster that serves
    /// neither version has no Istio Gateways: an empty list.
    async fn gateways(&self) -> Result<Vec<Gateway>, SyncError> {
        for version in gateway::VERSIONS {
            let response = self.send(gateway::list_gateways_request(&self.cluster.api_server, &self.cluster.token, version)).await?;
            let status = *response.status();
            if gateway::is_version_not_served(status, response.body()) {
                continue;
            }
            if status != 200 {
                return Err(kube::status_error(status, response.body()));
            }
            return Gateway::parse_list(response.body()).ok_or_else(|| unexpected("a GatewayList", status));
        }
        Ok(Vec::new())
    }

    /// Lists the namespaces of the running pods that `selector` picks, across the cluster.
    async fn pod_namespaces(&self, selector: &BTreeMap<String, String>) -> Result<BTreeSet<String>, SyncError> {
        let response = self.send(gateway::list_pods_request(&self.cluster.api_server, &self.cluster.token, selector)).await?;
        let status = *response.status();
        if status != 200 {
            return Err(kube::status_error(status, response.body()));
        }
        gateway::pod_namespaces(response.body()).ok_or_else(|| unexpected("a PodList", status))
    }

    /// Lists the workload namespaces of each distinct selector of `gateways`, one LIST per selector.
    /// A selector whose pods cannot be listed is missing from the map.
    async fn workloads(&self, gateways: &[&Gateway], warnings: &mut Vec<String>) -> BTreeMap<BTreeMap<String, String>, BTreeSet<String>> {
        let mut found = BTreeMap::new();
        let selectors: BTreeSet<&BTreeMap<String, String>> = gateways.iter().map(|gateway| &gateway.selector).filter(|selector| !selector.is_empty()).collect();
        for selector in selectors {
            match self.pod_namespaces(selector).await {
                Ok(namespaces) => {
                    found.insert(selector.clone(), namespaces);
                }
                Err(error) => warnings.push(format!(
                    "the pods of selector {} in cluster {} could not be listed, so the workload namespace is not checked: {}",
                    gateway::selector_text(selector),
                    self.cluster.id,
                    error.message
                )),
            }
        }
        found
    }

    /// Reads a Secret as JSON; `None` when it does not exist.
    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Value>, SyncError> {
        let response = self.send(kube::get_secret_request(&self.cluster.api_server, &self.cluster.token, namespace, name)).await?;
        match *response.status() {
            200 => serde_json::from_slice(response.body()).map(Some).map_err(|_| unexpected("a Secret", 200)),
            404 => Ok(None),
            status => Err(kube::status_error(status, response.body())),
        }
    }

    /// Lists every Secret of `namespace`; a namespace that does not exist lists empty.
    async fn all_secrets(&self, namespace: &str) -> Result<Vec<Value>, SyncError> {
        let response = self.send(kube::list_all_secrets_request(&self.cluster.api_server, &self.cluster.token, namespace)).await?;
        let status = *response.status();
        if status != 200 {
            return Err(kube::status_error(status, response.body()));
        }
        let list: Value = serde_json::from_slice(response.body()).map_err(|_| unexpected("a SecretList", status))?;
        Ok(list["items"].as_array().cloned().unwrap_or_default())
    }

    /// Reads one Gateway at the newest version the cluster serves: the version, and the Gateway
    /// or `None` when it does not exist.
    async fn gateway(&self, target: &GatewayRef) -> Result<(&'static str, Option<Gateway>), SyncError> {
        let mut last = None;
        for version in gateway::VERSIONS {
            let response = self.send(gateway::get_gateway_request(&self.cluster.api_server, &self.cluster.token, version, target)).await?;
            let status = *response.status();
            match status {
                200 => return Gateway::parse(response.body()).map(|found| (version, Some(found))).ok_or_else(|| unexpected("a Gateway", status)),
                404 if gateway::is_version_not_served(status, response.body()) => last = Some(kube::status_error(status, response.body())),
                404 => return Ok((version, None)),
                _ => return Err(kube::status_error(status, response.body())),
            }
        }
        let mut error = last.unwrap_or_else(|| unexpected("a Gateway", 404));
        error.kind = "gateways_not_served".into();
        error.message = format!("cluster {} serves no networking.istio.io Gateway (v1 or v1beta1): install Istio there, or bind in another cluster", self.cluster.id);
        Err(error)
    }
}

/// Returns the namespaces Istio reads the Secrets of `gateway` from: those of its running pods, or
/// the Gateway's own when no pod was found or the pods could not be listed.
fn secret_namespaces(gateway: &Gateway, workloads: &BTreeMap<BTreeMap<String, String>, BTreeSet<String>>) -> BTreeSet<String> {
    workloads
        .get(&gateway.selector)
        .filter(|namespaces| !namespaces.is_empty())
        .cloned()
        .unwrap_or_else(|| BTreeSet::from([gateway.namespace.clone()]))
}

fn unexpected(what: &str, status: u16) -> SyncError {
    SyncError { kind: "unexpected_response".into(), message: format!("the API server responded with a body that is not {what}"), status: Some(status) }
}

/// Reads the head of `namespace/name`; an error when it does not exist.
fn head(store: &Store, certificate: &str) -> anyhow::Result<CertificateHead> {
    let (namespace, name) = certificate.split_once('/').with_context(|| format!("certificate {certificate:?} is not namespace/name"))?;
    store.get(&records::certificate_key(namespace, name))?.with_context(|| format!("certificate {certificate} does not exist"))
}

/// `POST /hooks/gateways`: every Gateway in every registered cluster (or in `only`) with a server
/// that uses the certificate, with the hosts its SANs do not cover and workloads in another namespace.
pub async fn usage(certificate: &str, only: Option<&[String]>, single_attempt: bool) -> anyhow::Result<GatewayUsage> {
    let store = Store::open()?;
    let head = head(&store, certificate)?;
    let clusters: Vec<Cluster> = load_clusters(&store, None)?.into_iter().filter(|cluster| only.is_none_or(|only| only.contains(&cluster.id))).collect();
    let client = Client::new(concurrency());

    let reads = clusters.iter().map(|cluster| cluster_usage(Reader { client: &client, cluster, single_attempt }, &head));
    let mut report = GatewayUsage::default();
    for result in futures::future::join_all(reads).await {
        match result {
            Ok((gateways, warnings)) => {
                report.gateways.extend(gateways);
                report.warnings.extend(warnings);
            }
            Err(error) => report.errors.push(error),
        }
    }
    tracing::info!(certificate = %certificate, gateways = report.gateways.len(), warnings = report.warnings.len(), failed_clusters = report.errors.len(), "gateways of certificate read");
    Ok(report)
}

async fn cluster_usage(reader: Reader<'_>, head: &CertificateHead) -> Result<(Vec<gateway::GatewayUse>, Vec<String>), ClusterError> {
    let gateways = reader.gateways().await.map_err(|error| ClusterError::new(&reader.cluster.id, error))?;
    let using: Vec<&Gateway> = gateways.iter().filter(|found| found.servers_using(&head.name).next().is_some()).collect();
    let mut warnings = Vec::new();
    let workloads = reader.workloads(&using, &mut warnings).await;

    let mut uses = Vec::new();
    for found in using {
        let namespaces = workloads.get(&found.selector);
        if let Some(used) = gateway::usage(&reader.cluster.id, found, &head.namespace, &head.name, &head.summary.leaf.sans, namespaces, &mut warnings) {
            uses.push(used);
        }
    }
    Ok((uses, warnings))
}

/// `POST /hooks/gateways/dangling`: the `credentialName`s that Gateways reference and for which a
/// cluster holds neither a certificate meshcert sends there nor a Secret.
pub async fn dangling() -> anyhow::Result<DanglingReport> {
    let store = Store::open()?;
    let clusters = load_clusters(&store, None)?;
    let heads = active_heads(&store)?;
    let client = Client::new(concurrency());

    let reads = clusters.iter().map(|cluster| cluster_dangling(Reader::new(&client, cluster), &heads));
    let mut report = DanglingReport::default();
    for result in futures::future::join_all(reads).await {
        match result {
            Ok(found) => report.dangling.extend(found),
            Err(error) => report.errors.push(error),
        }
    }
    tracing::info!(dangling = report.dangling.len(), failed_clusters = report.errors.len(), "dangling gateway references read");
    Ok(report)
}

/// Reads the active certificates by `(namespace, name)`, with the selector of their clusters.
fn active_heads(store: &Store) -> anyhow::Result<BTreeMap<(String, String), LabelSelector>> {
    let mut heads = BTreeMap::new();
    for key in store.keys("cert/")? {
        let Some(records::StoreKey::CertificateHead { namespace, name }) = records::StoreKey::parse(&key) else {
            continue;
        };
        let Some(head) = store.get::<CertificateHead>(&key)? else {
            continue;
        };
        if head.state == CertificateState::Active {
            let selector = LabelSelector::parse(head.clusters.as_deref().unwrap_or_default()).unwrap_or_default();
            heads.insert((namespace, name), selector);
        }
    }
    Ok(heads)
}

async fn cluster_dangling(reader: Reader<'_>, heads: &BTreeMap<(String, String), LabelSelector>) -> Result<Vec<DanglingReference>, ClusterError> {
    let fail = |error| ClusterError::new(&reader.cluster.id, error);
    let gateways = reader.gateways().await.map_err(fail)?;
    let referencing: Vec<&Gateway> = gateways.iter().filter(|found| found.servers.iter().any(|server| !server.credential_names.is_empty())).collect();
    let mut warnings = Vec::new();
    let workloads = reader.workloads(&referencing, &mut warnings).await;
    for warning in warnings {
        tracing::warn!(cluster = %reader.cluster.id, warning = %warning, "workload namespace unknown");
    }

    // Each referenced Secret, where Istio reads it: the workload's namespaces, or the Gateway's
    // own when no pod was found.
    let mut references: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for found in referencing {
        let namespaces = secret_namespaces(found, &workloads);
        for name in found.servers.iter().flat_map(|server| &server.credential_names) {
            for namespace in &namespaces {
                references.entry((namespace.clone(), name.clone())).or_default().insert(found.id());
            }
        }
    }

    let mut dangling = Vec::new();
    for ((namespace, name), gateways) in references {
        let sent_here = heads.get(&(namespace.clone(), name.clone())).is_some_and(|selector| selector.matches(&reader.cluster.labels));
        if sent_here || reader.secret(&namespace, &name).await.map_err(fail)?.is_some() {
            continue;
        }
        dangling.push(DanglingReference { cluster: reader.cluster.id.clone(), namespace, credential_name: name, gateways: gateways.into_iter().collect() });
    }
    Ok(dangling)
}

/// `POST /hooks/bindings`: binds or unbinds the certificate on a Gateway in one cluster or in
/// every cluster the certificate goes to.
pub async fn bindings(certificate: &str, bind: Option<BindingRequest>, unbind: Option<UnbindRequest>) -> anyhow::Result<BindingReport> {
    let store = Store::open()?;
    let head = head(&store, certificate)?;
    let cluster_id = match (&bind, &unbind) {
        (Some(bind), None) => bind.cluster.clone(),
        (None, Some(unbind)) => unbind.cluster.clone(),
        _ => anyhow::bail!("send exactly one of bind and unbind"),
    };
    let selector = LabelSelector::parse(head.clusters.as_deref().unwrap_or_default()).unwrap_or_default();
    let clusters: Vec<Cluster> = load_clusters(&store, (cluster_id != "*").then_some(cluster_id.as_str()))?
        .into_iter()
        .filter(|cluster| cluster_id != "*" || selector.matches(&cluster.labels))
        .collect();
    if cluster_id != "*" && clusters.is_empty() {
        anyhow::bail!("cluster {cluster_id:?} does not exist");
    }
    let client = Client::new(concurrency());

    let runs = clusters.iter().map(|cluster| {
        let reader = Reader::new(&client, cluster);
        let (bind, unbind, head) = (bind.as_ref(), unbind.as_ref(), &head);
        async move {
            let target = bind.map(|bind| &bind.gateway).or(unbind.map(|unbind| &unbind.gateway)).cloned().unwrap_or_else(|| GatewayRef { namespace: String::new(), name: String::new() });
            let outcome = match (bind, unbind) {
                (Some(bind), _) => bind_in(&reader, bind, &head.name).await,
                (_, Some(unbind)) => unbind_in(&reader, unbind, &head.name).await,
                _ => unreachable!("checked above"),
            };
            let (change, api_version, error) = match outcome {
                Ok((change, api_version)) => (Some(change), Some(api_version), None),
                Err(error) => (None, None, Some(error)),
            };
            let change_name = change.and_then(|change| serde_json::to_value(change).ok()).and_then(|change| change.as_str().map(str::to_string));
            tracing::info!(
                certificate = %format!("{}/{}", head.namespace, head.name),
                cluster = %cluster.id,
                gateway = %format!("{}/{}", target.namespace, target.name),
                change = change_name.as_deref().unwrap_or("none"),
                error = error.as_ref().map_or("", |error| error.kind.as_str()),
                "gateway binding"
            );
            BindingResult { cluster: cluster.id.clone(), gateway: format!("{}/{}", target.namespace, target.name), change, api_version, error }
        }
    });
    let mut report = BindingReport { results: futures::future::join_all(runs).await, warnings: Vec::new() };
    if let Some(bind) = &bind {
        for result in report.results.iter().filter(|result| result.error.is_none()) {
            for host in gateway::uncovered_hosts(&head.summary.leaf.sans, &bind.hosts) {
                report.warnings.push(gateway::uncovered_warning(&host, &result.gateway, &result.cluster));
            }
        }
    }
    Ok(report)
}

/// Binds in one cluster: reads the Gateway, changes its one server, and writes the whole list
/// back at the resourceVersion read, again from the read after a 409; creates the Gateway when
/// it does not exist.
async fn bind_in(reader: &Reader<'_>, binding: &BindingRequest, credential_name: &str) -> Result<(BindingChange, String), SyncError> {
    let (api_server, token) = (&reader.cluster.api_server, &reader.cluster.token);
    for _ in 0..MAX_WRITE_ATTEMPTS {
        let (version, found) = reader.gateway(&binding.gateway).await?;
        let api_version = format!("{}/{version}", gateway::GROUP);
        let Some(found) = found else {
            let mut servers = Vec::new();
            gateway::bind(&mut servers, binding, credential_name).map_err(binding_error)?;
            let object = gateway::new_gateway(version, binding, servers);
            let response = reader.send(gateway::create_gateway_request(api_server, token, version, &binding.gateway, &object)).await?;
            match *response.status() {
                200..=299 => return Ok((BindingChange::Created, api_version)),
                409 => continue,
                status => return Err(kube::status_error(status, response.body())),
            }
        };

        let mut servers = found.raw_servers.clone();
        let change = gateway::bind(&mut servers, binding, credential_name).map_err(binding_error)?;
        if change == BindingChange::Unchanged {
            return Ok((change, api_version));
        }
        let resource_version = found.resource_version.as_deref().unwrap_or_default();
        let response = reader.send(gateway::servers_patch_request(api_server, token, version, &binding.gateway, resource_version, &servers)).await?;
        match *response.status() {
            200..=299 => return Ok((change, api_version)),
            409 => continue,
            status => return Err(kube::status_error(status, response.body())),
        }
    }
    Err(changed_too_often(&binding.gateway))
}

/// Unbinds in one cluster: removes the servers that use the certificate and writes the list back,
/// or deletes the Gateway when it was its last server and meshcert created it.
async fn unbind_in(reader: &Reader<'_>, unbind: &UnbindRequest, credential_name: &str) -> Result<(BindingChange, String), SyncError> {
    let (api_server, token) = (&reader.cluster.api_server, &reader.cluster.token);
    let target = &unbind.gateway;
    for _ in 0..MAX_WRITE_ATTEMPTS {
        let (version, found) = reader.gateway(target).await?;
        let api_version = format!("{}/{version}", gateway::GROUP);
        let Some(found) = found else {
            return Err(SyncError {
                kind: "gateway_not_found".into(),
                message: format!("gateway {}/{} does not exist in cluster {}", target.namespace, target.name, reader.cluster.id),
                status: Some(404),
            });
        };

        let mut servers = found.raw_servers.clone();
        if gateway::unbind(&mut servers, unbind.port, credential_name).map_err(binding_error)? == 0 {
            let port = unbind.port.map(|port| format!(" on port {port}")).unwrap_or_default();
            return Err(SyncError {
                kind: "not_bound".into(),
                message: format!("gateway {} in cluster {} has no server{port} that uses {credential_name}", found.id(), reader.cluster.id),
                status: None,
            });
        }
        let resource_version = found.resource_version.as_deref().unwrap_or_default();
        let (request, change) = if !servers.is_empty() {
            (gateway::servers_patch_request(api_server, token, version, target, resource_version, &servers), BindingChange::Removed)
        } else if found.managed {
            (gateway::delete_gateway_request(api_server, token, version, target, resource_version), BindingChange::Deleted)
        } else {
            return Err(SyncError {
                kind: "last_server".into(),
                message: format!(
                    "the servers that use {credential_name} are all the servers of gateway {} in cluster {}, and a Gateway needs at least one; meshcert did not create it, so it is left alone: delete it with kubectl, or bind another certificate first",
                    found.id(),
                    reader.cluster.id
                ),
                status: None,
            });
        };
        let response = reader.send(request).await?;
        match *response.status() {
            200..=299 => return Ok((change, api_version)),
            409 => continue,
            status => return Err(kube::status_error(status, response.body())),
        }
    }
    Err(changed_too_often(target))
}

fn binding_error(error: gateway::BindingError) -> SyncError {
    SyncError { kind: error.code.into(), message: error.message, status: None }
}

fn changed_too_often(target: &GatewayRef) -> SyncError {
    SyncError {
        kind: "conflict".into(),
        message: format!("gateway {}/{} changed during each of {MAX_WRITE_ATTEMPTS} attempts to write it: retry when the other writer is done", target.namespace, target.name),
        status: Some(409),
    }
}

/// `POST /hooks/imports/candidates`: the Secrets that hold a certificate in a format Istio reads,
/// that meshcert does not manage, and that Gateways reference or that sit in `istio-system` or
/// in a namespace with Gateways, with each cluster's copy.
pub async fn candidates() -> anyhow::Result<CandidatesReport> {
    let store = Store::open()?;
    let clusters = load_clusters(&store, None)?;
    let client = Client::new(concurrency());

    let reads = clusters.iter().map(|cluster| cluster_candidates(Reader::new(&client, cluster)));
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for result in futures::future::join_all(reads).await {
        match result {
            Ok(copies) => found.extend(copies),
            Err(error) => errors.push(error),
        }
    }
    let stored = |namespace: &str, name: &str| store.exists(&records::certificate_key(namespace, name)).unwrap_or(false);
    let candidates = import::group_candidates(found, stored);
    tracing::info!(candidates = candidates.len(), failed_clusters = errors.len(), "import candidates read");
    Ok(CandidatesReport { candidates, errors })
}

async fn cluster_candidates(reader: Reader<'_>) -> Result<Vec<(String, String, CandidateCopy)>, ClusterError> {
    let fail = |error| ClusterError::new(&reader.cluster.id, error);
    let gateways = reader.gateways().await.map_err(fail)?;
    let all: Vec<&Gateway> = gateways.iter().collect();
    let mut warnings = Vec::new();
    let workloads = reader.workloads(&all, &mut warnings).await;

    // Where Istio reads each Gateway's Secrets, and the namespaces to look in.
    let mut namespaces = BTreeSet::from([ISTIO_NAMESPACE.to_string()]);
    let mut readers_of: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for found in &gateways {
        namespaces.insert(found.namespace.clone());
        let read_from = secret_namespaces(found, &workloads);
        for name in found.servers.iter().flat_map(|server| &server.credential_names) {
            for namespace in &read_from {
                readers_of.entry((namespace.clone(), name.clone())).or_default().insert(found.id());
            }
        }
        namespaces.extend(read_from);
    }

    let mut copies = Vec::new();
    for namespace in namespaces {
        let secrets = reader.all_secrets(&namespace).await.map_err(fail)?;
        let by_name: BTreeMap<&str, &Value> = secrets.iter().filter_map(|secret| Some((secret["metadata"]["name"].as_str()?, secret))).collect();
        for (name, secret) in &by_name {
            if LiveSecret::from_object(secret).is_some_and(|live| live.managed) {
                continue;
            }
            let companion = by_name.get(kube::ca_secret_name(name).as_str()).copied();
            let Ok(found) = import::read_secret(secret, companion) else {
                continue;
            };
            // Entries named like a certificate that hold none are not one Istio could serve.
            let Some(leaf) = import::leaf_facts(&found.chain_pem) else {
                continue;
            };
            let referenced_by = readers_of.get(&(namespace.clone(), name.to_string())).map(|ids| ids.iter().cloned().collect()).unwrap_or_default();
            let copy = CandidateCopy {
                cluster: reader.cluster.id.clone(),
                secret_type: found.format.secret_type,
                keys: found.format.keys,
                has_ca: found.ca_pem.is_some(),
                leaf: Some(leaf),
                referenced_by,
            };
            copies.push((namespace.clone(), name.to_string(), copy));
        }
    }
    Ok(copies)
}

/// `POST /hooks/secret`: reads one Secret (and its `-cacert` companion) for an import. The
/// private key leaves sealed with the store's key; `None` when the Secret does not exist.
///
/// # Errors
///
/// A store failure; a cluster failure or a Secret without a certificate comes back as
/// `Ok(Err(..))`, for the api to respond with its own status.
pub async fn read_secret(request: &ReadSecretRequest) -> anyhow::Result<Result<Option<ReadSecretReport>, SyncError>> {
    let store = Store::open()?;
    let cluster = load_clusters(&store, Some(&request.cluster))?.pop().with_context(|| format!("cluster {:?} does not exist", request.cluster))?;
    let client = Client::new(2);
    let reader = Reader::new(&client, &cluster);

    let secret = match reader.secret(&request.namespace, &request.name).await {
        Ok(Some(secret)) => secret,
        Ok(None) => return Ok(Ok(None)),
        Err(error) => return Ok(Err(error)),
    };
    let companion = match reader.secret(&request.namespace, &kube::ca_secret_name(&request.name)).await {
        Ok(companion) => companion,
        Err(error) => return Ok(Err(error)),
    };
    let found = match import::read_secret(&secret, companion.as_ref()) {
        Ok(found) => found,
        Err(error) => {
            let message = format!("{error} (in cluster {})", request.cluster);
            return Ok(Err(SyncError { kind: "no_certificate".into(), message, status: None }));
        }
    };

    let context = import::sealing_context(&request.cluster, &request.namespace, &request.name);
    let private_key = cipher()?.seal(&found.private_key, &context)?;
    let keys = if found.format.keys == kube::KeyFormat::Generic { "generic" } else { "tls" };
    tracing::info!(cluster = %request.cluster, namespace = %request.namespace, name = %request.name, keys, "Secret read for an import");
    Ok(Ok(Some(ReadSecretReport {
        format: found.format,
        resource_version: found.resource_version,
        managed: found.managed,
        certificate: found.chain_pem,
        ca_certificate: found.ca_pem,
        separate_ca_secret: found.ca_in_companion,
        private_key,
    })))
}
