//! `/api/v1/clusters`: the registry of clusters that receive the Secrets, and the Spin runtime
//! configuration that trusts their private CAs.

use std::collections::BTreeMap;

use meshcert_core::api::{ClientTlsStatus, ClusterDetails, ClusterView, CreateClusterRequest, ProbeReport, SyncScope, UpdateClusterRequest};
use meshcert_core::kube;
use meshcert_core::names;
use meshcert_core::outbound;
use meshcert_core::pem_blocks;
use meshcert_core::records::{self, CertificateHead, CertificateState, ClusterRecord, StoreKey, SyncRecord};
use meshcert_core::secret::SecretString;
use meshcert_core::selector::{check_label_key, check_label_value, LabelSelector};
use meshcert_core::validate::Field;
use meshcert_spin::{cipher, error_response, json_response, now, variable, Change, Store};
use spin_sdk::http::{Request, Response};

use crate::internal_error;
use crate::json::{parse_body, query_parameter, reject_unknown_parameters};

/// The directory, relative to the runtime configuration file, where the entries printed by
/// [`client_tls`] expect each cluster's CA bundle.
const CA_FILES_DIR: &str = "client-tls";

/// `POST /api/v1/clusters`: validates and stores a cluster with its token encrypted, then syncs
/// every certificate to it.
pub async fn create(request: &Request) -> Response {
    let body: CreateClusterRequest = match parse_body(request) {
        Ok(body) => body,
        Err(response) => return response,
    };
    if let Err(response) = check_id(&body.id) {
        return response;
    }
    let fields = Fields {
        display_name: body.display_name.as_deref(),
        api_server: Some(&body.api_server),
        token: Some(&body.token),
        ca_bundle: body.ca_bundle.as_deref(),
        labels: Some(&body.labels),
    };
    if let Err(response) = fields.check() {
        return response;
    }

    let key = records::cluster_key(&body.id);
    let stored = (|| -> anyhow::Result<Option<ClusterRecord>> {
        let store = Store::open()?;
        let record = ClusterRecord {
            id: body.id.clone(),
            display_name: body.display_name.clone(),
            api_server: normalized_api_server(&body.api_server),
            token: cipher()?.seal(&SecretString::new(body.token.expose().trim()), &key)?,
            ca_bundle: body.ca_bundle.clone(),
            labels: body.labels.clone(),
            created_at: now(),
        };
        // Created only where the id is free, so of two registrations at once one gets 409.
        if !store.insert_new(&key, &record)? {
            return Ok(None);
        }
        // Readers find clusters through the list of ids, so a cluster missing from it would not
        // be listed: the registration is undone instead.
        if let Err(error) = meshcert_spin::clusters::add(&store, &record.id) {
            if let Err(undo) = store.delete(&key) {
                tracing::error!(cluster = %record.id, error = format!("{undo:#}"), "registration not undone; the next expiry scan lists the cluster");
            }
            return Err(error.context(format!("cluster {:?} was not registered; retry the request", record.id)));
        }
        Ok(Some(record))
    })();
    let record = match stored {
        Ok(Some(record)) => record,
        Ok(None) => {
            return error_response(409, "cluster_exists", &format!("cluster {:?} is already registered; choose another id", body.id), Some("id"));
        }
        Err(error) => return internal_error(error),
    };
    tracing::info!(cluster = %record.id, api_server = %record.api_server, "cluster registered");

    // Every stored certificate goes to the new cluster now.
    respond_with_sync(201, &record).await
}

/// `GET /api/v1/clusters`.
pub fn list() -> Response {
    match Store::open().and_then(|store| load_all(&store)) {
        Ok(clusters) => json_response(200, &serde_json::json!({ "clusters": clusters.iter().map(view).collect::<Vec<_>>() })),
        Err(error) => internal_error(error),
    }
}

/// `GET /api/v1/clusters/{id}`: the cluster, a `GET /version` probe with its stored token, and
/// the states of the certificates meant for it.
pub async fn details(id: &str) -> Response {
    let loaded = (|| -> anyhow::Result<Option<(ClusterRecord, BTreeMap<String, usize>)>> {
        let store = Store::open()?;
        let Some(record) = store.get::<ClusterRecord>(&records::cluster_key(id))? else {
            return Ok(None);
        };
        let counts = secret_counts(&store, &record)?;
        Ok(Some((record, counts)))
    })();
    let (record, secrets) = match loaded {
        Ok(Some(found)) => found,
        Ok(None) => return not_found(id),
        Err(error) => return internal_error(error),
    };

    let reachability = match crate::hooks::probe(id).await {
        Ok(report) => report,
        Err(error) => return internal_error(error),
    };
    let client_tls = client_tls_status(&record, &reachability);
    json_response(200, &ClusterDetails { cluster: view(&record), reachability, secrets, client_tls })
}

/// `PATCH /api/v1/clusters/{id}`: rotates the token, or changes the labels, API server, CA
/// bundle or display name. Then it syncs every certificate to the cluster, because its labels may
/// select other certificates now and a new token may heal failures.
pub async fn update(request: &Request, id: &str) -> Response {
    // null would read as absent for these fields, and a silent no-op hides a mistake.
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(request.body()) {
        let Some(object) = value.as_object() else {
            return error_response(400, "invalid_json", "the body must be a JSON object of the fields to change, such as {\"labels\": {\"env\": \"prod\"}}", None);
        };
        for field in ["api_server", "token", "labels"] {
            if object.get(field).is_some_and(serde_json::Value::is_null) {
                let fix = if field == "labels" { "send {} to remove every label" } else { "leave it out to keep it" };
                return error_response(400, "invalid_json", &format!("{field} cannot be null: {fix}"), Some(field));
            }
        }
    }
    let body: UpdateClusterRequest = match parse_body(request) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let fields = Fields {
        display_name: body.display_name.as_ref().and_then(Option::as_deref),
        api_server: body.api_server.as_deref(),
        token: body.token.as_ref(),
        ca_bundle: body.ca_bundle.as_ref().and_then(Option::as_deref),
        labels: body.labels.as_ref(),
    };
    if let Err(response) = fields.check() {
        return response;
    }

    let key = records::cluster_key(id);
    let updated = (|| -> anyhow::Result<Option<ClusterRecord>> {
        let store = Store::open()?;
        let cipher = cipher()?;
        // Over the record that was read, so two changes of different fields at once both land.
        store.update(&key, |record: Option<ClusterRecord>| {
            let Some(mut record) = record else {
                return Ok(Change::Keep(None));
            };
            if let Some(display_name) = &body.display_name {
                record.display_name = display_name.clone();
            }
            if let Some(api_server) = &body.api_server {
                record.api_server = normalized_api_server(api_server);
            }
            if let Some(token) = &body.token {
                record.token = cipher.seal(&SecretString::new(token.expose().trim()), &key)?;
            }
            if let Some(ca_bundle) = &body.ca_bundle {
                record.ca_bundle = ca_bundle.clone();
            }
            if let Some(labels) = &body.labels {
                record.labels = labels.clone();
            }
            Ok(Change::Write(record.clone(), Some(record)))
        })
    })();
    let record = match updated {
        Ok(Some(record)) => record,
        Ok(None) => return not_found(id),
        Err(error) => return internal_error(error),
    };
    tracing::info!(cluster = %id, token_rotated = body.token.is_some(), labels_changed = body.labels.is_some(), "cluster updated");

    respond_with_sync(200, &record).await
}

/// `DELETE /api/v1/clusters/{id}[?purge=true]`: stops syncing to the cluster. With `purge`, the
/// Secrets meshcert manages there are removed first, and the cluster stays registered when a
/// removal fails or the cluster cannot be read.
pub async fn delete(request: &Request, id: &str) -> Response {
    if let Err(response) = reject_unknown_parameters(request, &["purge"]) {
        return response;
    }
    let purge = match query_parameter(request, "purge").as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return error_response(400, "invalid_parameter", "purge must be true or false", Some("purge")),
    };
    match Store::open().and_then(|store| store.exists(&records::cluster_key(id))) {
        Ok(true) => {}
        Ok(false) => return not_found(id),
        Err(error) => return internal_error(error),
    }

    let mut body = serde_json::json!({ "deleted": id });
    if purge {
        let report = match crate::hooks::purge(id).await {
            Ok(report) => report,
            Err(error) => return internal_error(error),
        };
        if report.failed > 0 {
            let message = format!(
                "{} Secrets could not be removed from cluster {id:?}, so it stays registered: see purge.targets, fix the cause and retry, or delete without purge to leave them",
                report.failed
            );
            return json_response(502, &serde_json::json!({ "error": { "code": "purge_incomplete", "message": message }, "purge": report }));
        }
        body["purge"] = serde_json::to_value(&report).unwrap_or_default();
    }

    if let Err(error) = Store::open().and_then(|store| forget(&store, id)) {
        return internal_error(error);
    }
    tracing::info!(cluster = %id, purge, "cluster unregistered");
    json_response(200, &body)
}

/// `GET /api/v1/clusters/{id}/ca-bundle`: the stored CA bundle as a PEM file, to save where the
/// runtime configuration of [`client_tls`] expects it. Spin trusts one file per host, so the
/// file also contains the bundles of the other clusters on the same host.
pub fn ca_bundle(id: &str) -> Response {
    let clusters = match Store::open().and_then(|store| load_all(&store)) {
        Ok(clusters) => clusters,
        Err(error) => return internal_error(error),
    };
    let Some(cluster) = clusters.iter().find(|cluster| cluster.id == id) else {
        return not_found(id);
    };
    if cluster.ca_bundle.is_none() {
        return error_response(404, "no_ca_bundle", &format!("cluster {id:?} has no CA bundle; store one with PATCH /api/v1/clusters/{id}"), None);
    }

    let host = tls_host(&cluster.api_server);
    let mut bundles: Vec<&str> = Vec::new();
    for other in &clusters {
        let same_host = other.id == cluster.id || (host.is_some() && tls_host(&other.api_server) == host);
        if let Some(bundle) = other.ca_bundle.as_deref().filter(|bundle| same_host && !bundles.contains(bundle)) {
            bundles.push(bundle);
        }
    }
    let text: String = bundles.iter().map(|bundle| format!("{}\n", bundle.trim_end())).collect();
    let mut response = Response::new(200, text);
    response.set_header("content-type", "application/x-pem-file");
    response
}

/// `GET /api/v1/runtime-config/client-tls`: the `[[client_tls]]` entries of Spin's runtime
/// configuration that let sync-webhook trust each cluster's CA bundle. Spin reads them only at
/// start-up, so a cluster registered later needs them added and Spin restarted.
pub fn client_tls() -> Response {
    let clusters = match Store::open().and_then(|store| load_all(&store)) {
        Ok(clusters) => clusters,
        Err(error) => return internal_error(error),
    };

    let mut text = String::from(
        "# Spin runtime configuration written by meshcert: it trusts the CA bundle of each registered\n\
         # cluster that has one. Save each bundle from GET /api/v1/clusters/{id}/ca-bundle as the\n\
         # ca_roots_file named below, relative to this file, add these entries to the file given\n\
         # to spin up --runtime-config-file, and restart Spin.\n",
    );
    // Spin matches an entry by host alone, without the port, and uses the first entry of a host,
    // so clusters on one host share an entry and its file must hold each of their bundles.
    let mut by_host: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for cluster in clusters.iter().filter(|cluster| cluster.ca_bundle.is_some()) {
        if let Some(host) = tls_host(&cluster.api_server) {
            by_host.entry(host).or_default().push(&cluster.id);
        }
    }
    for (host, ids) in &by_host {
        let shared = if ids.len() > 1 {
            format!("# clusters {ids:?} share this host: GET /api/v1/clusters/{}/ca-bundle holds each of their bundles\n", ids[0])
        } else {
            String::new()
        };
        text.push_str(&format!(
            "\n# cluster {:?}\n{shared}[[client_tls]]\ncomponent_ids = [\"sync-webhook\"]\nhosts = [{host:?}]\nca_roots_file = \"{CA_FILES_DIR}/{}.pem\"\n",
            ids[0], ids[0]
        ));
    }
    if by_host.is_empty() {
        text.push_str("\n# No registered cluster has a ca_bundle: Spin's default roots are enough.\n");
    }

    let mut response = Response::new(200, text);
    response.set_header("content-type", "application/toml");
    response
}

/// Returns the host of an https API server URL, as `[[client_tls]]` `hosts` lists it: Spin 3 and 4
/// reject a port there and match the host alone.
fn tls_host(api_server: &str) -> Option<String> {
    let url = url::Url::parse(api_server).ok().filter(|url| url.scheme() == "https")?;
    Some(url.host()?.to_string())
}

/// Registers or updates: the view of the cluster with the report of the sync that followed.
async fn respond_with_sync(status: u16, record: &ClusterRecord) -> Response {
    let sync = match crate::hooks::sync(SyncScope::Cluster(record.id.clone())).await {
        Ok(report) => serde_json::to_value(report).unwrap_or_default(),
        Err(error) => {
            tracing::error!(cluster = %record.id, error = format!("{error:#}"), "sync after a cluster change failed");
            let message = format!("the cluster is stored, but the sync that follows failed ({error:#}); resync it with POST /hooks/sync");
            serde_json::json!({ "error": { "code": "sync_failed", "message": message } })
        }
    };
    let mut body = serde_json::to_value(view(record)).unwrap_or_default();
    body["sync"] = sync;
    json_response(status, &body)
}

fn load_all(store: &Store) -> anyhow::Result<Vec<ClusterRecord>> {
    meshcert_spin::clusters::load(store)
}

/// Counts the certificates meant for `cluster` by their state there.
fn secret_counts(store: &Store, cluster: &ClusterRecord) -> anyhow::Result<BTreeMap<String, usize>> {
    let mut counts = BTreeMap::new();
    for key in store.keys("cert/")? {
        let Some(StoreKey::CertificateHead { namespace, name }) = StoreKey::parse(&key) else {
            continue;
        };
        let Some(head) = store.get::<CertificateHead>(&key)? else {
            continue;
        };
        let record: SyncRecord = store.get(&records::sync_key(&namespace, &name))?.unwrap_or_default();
        // A stored selector was validated on upload, so it parses.
        let selector = LabelSelector::parse(head.clusters.as_deref().unwrap_or_default()).unwrap_or_default();
        let selected = head.state != CertificateState::Deleting && selector.matches(&cluster.labels);
        for state in record.states_for(head.version, head.updated_at, &[(cluster.id.as_str(), selected)]).values() {
            *counts.entry(state.state.as_str().to_string()).or_insert(0) += 1;
        }
    }
    Ok(counts)
}

/// Removes the cluster record, then its entries in the certificates' sync records.
fn forget(store: &Store, id: &str) -> anyhow::Result<()> {
    store.delete(&records::cluster_key(id))?;
    meshcert_spin::clusters::remove(store, id)?;
    for key in store.keys("sync/")? {
        store.update(&key, |record: Option<SyncRecord>| {
            let Some(mut record) = record else {
                return Ok(Change::Keep(()));
            };
            Ok(match record.clusters.remove(id) {
                Some(_) => Change::Write(record, ()),
                None => Change::Keep(()),
            })
        })?;
    }
    Ok(())
}

/// Reads whether Spin trusts the cluster's CA from how the probe ended.
fn client_tls_status(record: &ClusterRecord, probe: &ProbeReport) -> ClientTlsStatus {
    let https = url::Url::parse(&record.api_server).is_ok_and(|url| url.scheme() == "https");
    let tls_failed = probe.error.as_ref().is_some_and(|error| error.kind == "tls_failed");
    let (state, message) = match (https, tls_failed, probe.status.is_some(), record.ca_bundle.is_some()) {
        (false, ..) => ("not_needed", None),
        (true, true, _, true) => (
            "not_trusted",
            Some("Spin does not trust this cluster's CA yet: add the entry from GET /api/v1/runtime-config/client-tls to the runtime configuration and restart Spin".to_string()),
        ),
        (true, true, _, false) => (
            "not_trusted",
            Some("TLS to the API server failed: store its CA with PATCH /api/v1/clusters/{id} {\"ca_bundle\": ...}, then follow GET /api/v1/runtime-config/client-tls".replace("{id}", &record.id)),
        ),
        (true, false, true, _) => ("trusted", None),
        (true, false, false, _) => ("unknown", Some("the probe did not reach TLS; see reachability.error".to_string())),
    };
    ClientTlsStatus { state: state.into(), message }
}

fn not_found(id: &str) -> Response {
    error_response(404, "cluster_not_found", &format!("cluster {id:?} is not registered; list them with GET /api/v1/clusters"), None)
}

fn view(record: &ClusterRecord) -> ClusterView {
    ClusterView {
        id: record.id.clone(),
        display_name: record.display_name.clone(),
        api_server: record.api_server.clone(),
        has_ca_bundle: record.ca_bundle.is_some(),
        labels: record.labels.clone(),
        created_at: record.created_at,
    }
}

fn check_id(id: &str) -> Result<(), Response> {
    names::check_dns1123_label(id).map_err(|rule| {
        let id = names::describe_for_message(id);
        error_response(422, "invalid_cluster_id", &format!("cluster id {id} is not a DNS-1123 label: it {rule}"), Some("id"))
    })
}

/// The maximum number of labels a cluster may carry.
const MAX_LABELS: usize = 64;

/// The maximum length of a display name, in characters.
const MAX_DISPLAY_NAME: usize = 253;

/// The fields a registration sets and a PATCH may change; `None` is not checked.
struct Fields<'a> {
    display_name: Option<&'a str>,
    api_server: Option<&'a str>,
    token: Option<&'a SecretString>,
    ca_bundle: Option<&'a str>,
    labels: Option<&'a BTreeMap<String, String>>,
}

impl Fields<'_> {
    fn check(&self) -> Result<(), Response> {
        if let Some(display_name) = self.display_name {
            if display_name.chars().count() > MAX_DISPLAY_NAME || display_name.chars().any(char::is_control) {
                return Err(error_response(
                    422,
                    "invalid_display_name",
                    &format!("display_name must be at most {MAX_DISPLAY_NAME} characters without control characters: shorten it"),
                    Some("display_name"),
                ));
            }
        }
        if let Some(api_server) = self.api_server {
            check_api_server(api_server)?;
        }
        if let Some(labels) = self.labels.filter(|labels| labels.len() > MAX_LABELS) {
            return Err(error_response(
                422,
                "invalid_label",
                &format!("{} labels are more than the {MAX_LABELS} a cluster may carry: keep the ones certificates select on", labels.len()),
                Some("labels"),
            ));
        }
        for (key, value) in self.labels.into_iter().flatten() {
            if let Err(rule) = check_label_key(key) {
                return Err(error_response(422, "invalid_label", &format!("label key {key:?} {rule}"), Some("labels")));
            }
            if let Err(rule) = check_label_value(value) {
                return Err(error_response(422, "invalid_label", &format!("label {key:?} has value {value:?}, which {rule}"), Some("labels")));
            }
        }
        if let Some(token) = self.token {
            check_token(token)?;
        }
        if let Some(bundle) = self.ca_bundle {
            let blocks = pem_blocks::parse(Field::CaCertificate, bundle.as_bytes())
                .map_err(|error| error_response(422, error.code(), &error.to_string().replacen("ca_certificate", "ca_bundle", 1), Some("ca_bundle")))?;
            if !blocks.iter().all(|block| block.is_certificate()) {
                return Err(error_response(422, "invalid_ca_bundle", "ca_bundle may contain only CERTIFICATE blocks: paste the API server's CA certificates", Some("ca_bundle")));
            }
        }
        Ok(())
    }
}

fn check_api_server(api_server: &str) -> Result<(), Response> {
    // A value that is not a URL may be the token pasted into the wrong field, so it is not quoted.
    let url = url::Url::parse(api_server).map_err(|error| {
        error_response(
            422,
            "invalid_api_server",
            &format!("api_server is not a URL ({error}); use the API server's base URL, such as https://10.0.0.1:6443"),
            Some("api_server"),
        )
    })?;
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() || url.query().is_some() || url.fragment().is_some() {
        return Err(error_response(
            422,
            "invalid_api_server",
            &format!("api_server {api_server:?} must be an https:// (or, for local clusters, http://) base URL with a host and no query, such as https://10.0.0.1:6443"),
            Some("api_server"),
        ));
    }
    // Credentials in the URL would be stored and shown in plain text; the token field is encrypted.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(error_response(
            422,
            "invalid_api_server",
            "api_server must not contain a user name or password: remove them from the URL and put the bearer token in token",
            Some("api_server"),
        ));
    }
    // Spin refuses a request outside sync-webhook's allowed_outbound_hosts, so such a cluster
    // could never be synced.
    let extra = variable("extra_cluster_hosts").unwrap_or_default();
    if !outbound::cluster_url_allowed(&url, &extra) {
        return Err(error_response(
            422,
            "api_server_not_allowed",
            &format!(
                "api_server {api_server:?} is outside sync-webhook's allowed_outbound_hosts (https on ports 443 and 6443, plus extra_cluster_hosts = {extra:?}): set the extra_cluster_hosts variable to a pattern that matches it, such as \"{}://*:{}\", and restart",
                url.scheme(),
                url.port_or_known_default().unwrap_or(443)
            ),
            Some("api_server"),
        ));
    }
    Ok(())
}

/// Returns the API server URL as stored: parsed, so the scheme and host are lower case and surrounding
/// spaces are gone, without a trailing `/`. Checked by [`check_api_server`] first.
fn normalized_api_server(api_server: &str) -> String {
    url::Url::parse(api_server.trim()).map_or_else(|_| api_server.trim().to_string(), |url| url.as_str().trim_end_matches('/').to_string())
}

fn check_token(token: &SecretString) -> Result<(), Response> {
    if token.expose().trim().len() > kube::MAX_TOKEN_BYTES {
        return Err(error_response(
            422,
            "invalid_token",
            &format!("token is {} bytes, over the limit of 16 KiB: paste the ServiceAccount token itself (a JWT of one or two KiB)", token.expose().trim().len()),
            Some("token"),
        ));
    }
    if token.expose().trim().is_empty() {
        return Err(error_response(422, "missing_token", "token is empty: paste the bearer token of meshcert's ServiceAccount in this cluster", Some("token")));
    }
    // The token travels in an Authorization header, which cannot carry control characters such as
    // a line break left over from copying it.
    if let Some(position) = token.expose().trim().chars().position(|c| c.is_control() || !c.is_ascii()) {
        return Err(error_response(
            422,
            "invalid_token",
            &format!("token has a character at position {} that an HTTP header cannot carry (a line break or other control or non-ASCII character): paste the token as one line", position + 1),
            Some("token"),
        ));
    }
    Ok(())
}
