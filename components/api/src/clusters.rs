//! `/api/v1/clusters`: the registry of clusters that receive the Secrets.

use meshcert_core::api::{ClusterView, CreateClusterRequest, SyncScope};
use meshcert_core::names;
use meshcert_core::pem_blocks;
use meshcert_core::records::{self, ClusterRecord};
use meshcert_core::secret::SecretString;
use meshcert_core::selector::{check_label_key, check_label_value};
use meshcert_core::validate::Field;
use meshcert_spin::{cipher, error_response, json_response, now, Store};
use spin_sdk::http::{Request, Response};

use crate::internal_error;
use crate::json::parse_body;

/// `POST /api/v1/clusters`: validates and stores a cluster with its token encrypted, then syncs
/// every certificate to it.
pub async fn create(request: &Request) -> Response {
    let body: CreateClusterRequest = match parse_body(request) {
        Ok(body) => body,
        Err(response) => return response,
    };
    if let Err(response) = check(&body) {
        return response;
    }

    let key = records::cluster_key(&body.id);
    let stored = (|| -> anyhow::Result<Option<ClusterRecord>> {
        let store = Store::open()?;
        // TODO: Two registrations of one id at the same moment can both pass this check; remove
        // when the record is written with wasi:keyvalue/atomics compare-and-swap.
        if store.exists(&key)? {
            return Ok(None);
        }
        let record = ClusterRecord {
            id: body.id.clone(),
            display_name: body.display_name.clone(),
            api_server: body.api_server.trim_end_matches('/').to_string(),
            token: cipher()?.seal(&SecretString::new(body.token.expose().trim()), &key)?,
            ca_bundle: body.ca_bundle.clone(),
            labels: body.labels.clone(),
            created_at: now(),
        };
        store.set(&key, &record)?;
        Ok(Some(record))
    })();
    let record = match stored {
        Ok(Some(record)) => record,
        Ok(None) => {
            return error_response(
                409,
                "cluster_exists",
                &format!("cluster {:?} is already registered; choose another id", body.id),
                Some("id"),
            );
        }
        Err(error) => return internal_error(error),
    };
    tracing::info!(cluster = %record.id, api_server = %record.api_server, "cluster registered");

    // Every stored certificate goes to the new cluster now.
    let sync = match crate::hooks::sync(SyncScope::Cluster(record.id.clone())).await {
        Ok(report) => serde_json::to_value(report).unwrap_or_default(),
        Err(error) => {
            tracing::error!(cluster = %record.id, error = format!("{error:#}"), "sync after cluster registration failed");
            serde_json::json!({ "error": format!("{error:#}") })
        }
    };
    let mut body = serde_json::to_value(view(&record)).unwrap_or_default();
    body["sync"] = sync;
    json_response(201, &body)
}

/// `GET /api/v1/clusters`.
pub fn list() -> Response {
    let result = (|| -> anyhow::Result<Vec<ClusterView>> {
        let store = Store::open()?;
        let mut clusters = Vec::new();
        for key in store.keys("cluster/")? {
            if let Some(record) = store.get::<ClusterRecord>(&key)? {
                clusters.push(view(&record));
            }
        }
        Ok(clusters)
    })();
    match result {
        Ok(clusters) => json_response(200, &serde_json::json!({ "clusters": clusters })),
        Err(error) => internal_error(error),
    }
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

fn check(body: &CreateClusterRequest) -> Result<(), Response> {
    if let Err(rule) = names::check_dns1123_label(&body.id) {
        let id = names::describe_for_message(&body.id);
        return Err(error_response(422, "invalid_cluster_id", &format!("cluster id {id} is not a DNS-1123 label: it {rule}"), Some("id")));
    }

    // A value that is not a URL may be the token pasted into the wrong field, so it is not quoted.
    let url = url::Url::parse(&body.api_server).map_err(|error| {
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
            &format!("api_server {:?} must be an https:// (or, for local clusters, http://) base URL with a host and no query, such as https://10.0.0.1:6443", body.api_server),
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

    for (key, value) in &body.labels {
        if let Err(rule) = check_label_key(key) {
            return Err(error_response(422, "invalid_label", &format!("label key {key:?} {rule}"), Some("labels")));
        }
        if let Err(rule) = check_label_value(value) {
            return Err(error_response(422, "invalid_label", &format!("label {key:?} has value {value:?}, which {rule}"), Some("labels")));
        }
    }

    if body.token.expose().trim().is_empty() {
        return Err(error_response(422, "missing_token", "token is empty: paste the bearer token of meshcert's ServiceAccount in this cluster", Some("token")));
    }
    // The token travels in an Authorization header, which cannot carry control characters such as
    // a line break left over from copying it.
    if let Some(position) = body.token.expose().trim().chars().position(|c| c.is_control() || !c.is_ascii()) {
        return Err(error_response(
            422,
            "invalid_token",
            &format!("token has a character at position {} that an HTTP header cannot carry (a line break or other control or non-ASCII character): paste the token as one line", position + 1),
            Some("token"),
        ));
    }

    if let Some(bundle) = &body.ca_bundle {
        let blocks = pem_blocks::parse(Field::CaCertificate, bundle.as_bytes())
            .map_err(|error| error_response(422, error.code(), &error.to_string().replacen("ca_certificate", "ca_bundle", 1), Some("ca_bundle")))?;
        if !blocks.iter().all(|block| block.is_certificate()) {
            return Err(error_response(422, "invalid_ca_bundle", "ca_bundle may contain only CERTIFICATE blocks: paste the API server's CA certificates", Some("ca_bundle")));
        }
    }
    Ok(())
}
