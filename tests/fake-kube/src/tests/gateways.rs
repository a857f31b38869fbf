//! Istio Gateways over loopback: both served versions, writes with their preconditions, Istio's
//! validation, API discovery, and the token check and faults on the new paths.

use serde_json::{json, Value};

use super::{assert_status, get, resource_version, send, start, Reply, APPLY, NS, TOKEN};
use crate::{FakeCluster, FakeClusterConfig, StatusFault};

const GATEWAYS_V1: &str = "/apis/networking.istio.io/v1/namespaces/istio-system/gateways";
const EAST_V1: &str = "/apis/networking.istio.io/v1/namespaces/istio-system/gateways/east";
const MERGE: &str = "application/merge-patch+json";
const JSON: &str = "application/json";

/// Builds a v1 Gateway with one HTTPS server that terminates TLS with `credential`.
fn https_gateway(name: &str, credential: &str) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": { "app.kubernetes.io/managed-by": "meshcert" },
        },
        "spec": {
            "selector": { "istio": "ingressgateway" },
            "servers": [{
                "port": { "number": 443, "name": "https", "protocol": "HTTPS" },
                "hosts": ["east.example.com"],
                "tls": { "mode": "SIMPLE", "credentialName": credential },
            }],
        },
    })
}

async fn request(
    cluster: &FakeCluster,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &Value,
) -> Reply {
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    send(
        cluster.addr(),
        method,
        path,
        Some(TOKEN),
        content_type,
        &body,
    )
    .await
    .unwrap()
}

async fn create(cluster: &FakeCluster, path: &str, body: &Value) -> Reply {
    request(cluster, "POST", path, Some(JSON), body).await
}

/// Returns `namespace/name` of each item of a list.
fn item_keys(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            format!(
                "{}/{}",
                item["metadata"]["namespace"].as_str().unwrap(),
                item["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

/// Returns the `field` of each cause of a 422 body.
fn cause_fields(body: &Value) -> Vec<String> {
    body["details"]["causes"]
        .as_array()
        .map(|causes| {
            causes
                .iter()
                .map(|c| c["field"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn gateway_lists_at_both_versions() {
    let cluster = start().await;
    cluster
        .put_gateway(NS, https_gateway("east", "east-tls"))
        .unwrap();
    let mut payments = https_gateway("payments", "payments-tls");
    payments["metadata"]["labels"] = json!({ "team": "payments" });
    cluster.put_gateway("payments", payments).unwrap();

    for version in ["v1", "v1beta1"] {
        let reply = get(
            &cluster,
            &format!("/apis/networking.istio.io/{version}/gateways"),
        )
        .await;
        assert_eq!(reply.status, 200, "{version}");
        let body = reply.json();
        assert_eq!(body["kind"], "GatewayList", "{version}");
        assert_eq!(body["apiVersion"], format!("networking.istio.io/{version}"));
        assert_eq!(resource_version(&body), cluster.resource_version());
        assert_eq!(
            item_keys(&body),
            ["istio-system/east", "payments/payments"],
            "{version}"
        );
        for item in body["items"].as_array().unwrap() {
            assert_eq!(item["apiVersion"], format!("networking.istio.io/{version}"));
            assert_eq!(item["kind"], "Gateway");
        }

        let reply = get(
            &cluster,
            &format!("/apis/networking.istio.io/{version}/namespaces/payments/gateways"),
        )
        .await;
        assert_eq!(item_keys(&reply.json()), ["payments/payments"], "{version}");

        let reply = get(
            &cluster,
            &format!("/apis/networking.istio.io/{version}/namespaces/istio-system/gateways/east"),
        )
        .await;
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.json()["apiVersion"],
            format!("networking.istio.io/{version}")
        );
    }

    let selected = get(
        &cluster,
        "/apis/networking.istio.io/v1/gateways?labelSelector=team%20in%20(payments,edge)",
    )
    .await
    .json();
    assert_eq!(item_keys(&selected), ["payments/payments"]);
    let selected = get(
        &cluster,
        "/apis/networking.istio.io/v1/gateways?labelSelector=!team",
    )
    .await
    .json();
    assert_eq!(item_keys(&selected), ["istio-system/east"]);
    let selected = get(
        &cluster,
        "/apis/networking.istio.io/v1/gateways?fieldSelector=metadata.namespace%3Dpayments",
    )
    .await
    .json();
    assert_eq!(item_keys(&selected), ["payments/payments"]);
    let empty = get(
        &cluster,
        "/apis/networking.istio.io/v1/namespaces/default/gateways",
    )
    .await;
    assert_eq!(empty.status, 200);
    assert_eq!(empty.json()["items"], json!([]));
}

#[tokio::test]
async fn gateway_version_not_served_404() {
    let config = FakeClusterConfig::new("east", TOKEN).gateway_versions(&["v1beta1"]);
    let cluster = FakeCluster::start(config).await.unwrap();
    let old = json!({
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "Gateway",
        "metadata": { "name": "east" },
        "spec": https_gateway("east", "east-tls")["spec"].clone(),
    });

    for path in [
        "/apis/networking.istio.io/v1/gateways",
        "/apis/networking.istio.io/v1/namespaces/istio-system/gateways",
        EAST_V1,
        "/apis/networking.istio.io/v1",
    ] {
        let reply = get(&cluster, path).await;
        assert_status(&reply, 404, "NotFound");
        assert_eq!(
            reply.json()["message"],
            "the server could not find the requested resource",
            "{path}"
        );
    }
    assert_status(&create(&cluster, GATEWAYS_V1, &old).await, 404, "NotFound");

    let created = create(
        &cluster,
        "/apis/networking.istio.io/v1beta1/namespaces/istio-system/gateways",
        &old,
    )
    .await;
    assert_eq!(created.status, 201, "body {}", created.json());
    assert_eq!(created.json()["apiVersion"], "networking.istio.io/v1beta1");
    assert_eq!(
        cluster.gateway(NS, "east").unwrap()["apiVersion"],
        "networking.istio.io/v1beta1"
    );

    let group = get(&cluster, "/apis/networking.istio.io").await.json();
    assert_eq!(group["kind"], "APIGroup");
    assert_eq!(group["preferredVersion"]["version"], "v1beta1");
    assert_eq!(group["versions"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn gateway_discovery_lists_versions() {
    let cluster = start().await;
    let groups = get(&cluster, "/apis").await.json();
    assert_eq!(groups["kind"], "APIGroupList");
    assert_eq!(groups["groups"][0]["name"], "networking.istio.io");
    assert_eq!(
        groups["groups"][0]["preferredVersion"]["groupVersion"],
        "networking.istio.io/v1"
    );
    let versions: Vec<&str> = groups["groups"][0]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["v1", "v1beta1"]);

    let resources = get(&cluster, "/apis/networking.istio.io/v1beta1")
        .await
        .json();
    assert_eq!(resources["kind"], "APIResourceList");
    assert_eq!(resources["groupVersion"], "networking.istio.io/v1beta1");
    assert_eq!(resources["resources"][0]["name"], "gateways");
    assert_eq!(resources["resources"][0]["kind"], "Gateway");

    let without_istio =
        FakeCluster::start(FakeClusterConfig::new("west", TOKEN).gateway_versions(&[]))
            .await
            .unwrap();
    let groups = get(&without_istio, "/apis").await.json();
    assert_eq!(groups["groups"], json!([]));
    assert_status(
        &get(&without_istio, "/apis/networking.istio.io").await,
        404,
        "NotFound",
    );
    assert_status(
        &get(&without_istio, "/apis/networking.istio.io/v1beta1/gateways").await,
        404,
        "NotFound",
    );
}

#[tokio::test]
async fn gateway_config_rejects_bad_version() {
    let config = FakeClusterConfig::new("east", TOKEN).gateway_versions(&["1"]);
    let error = FakeCluster::start(config).await.unwrap_err();
    assert!(
        error.to_string().contains("invalid Gateway version \"1\""),
        "{error}"
    );
}

#[tokio::test]
async fn gateway_create_and_conflicts() {
    let cluster = start().await;
    let before = cluster.resource_version();
    let reply = create(&cluster, GATEWAYS_V1, &https_gateway("east", "east-tls")).await;
    assert_eq!(reply.status, 201, "body {}", reply.json());
    let created = reply.json();
    assert_eq!(created["apiVersion"], "networking.istio.io/v1");
    assert_eq!(created["kind"], "Gateway");
    assert_eq!(created["metadata"]["generation"], 1);
    assert_eq!(created["metadata"]["uid"].as_str().unwrap().len(), 36);
    assert!(created["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    assert_eq!(resource_version(&created), before + 1);
    assert_eq!(
        created["spec"]["servers"][0]["tls"]["credentialName"],
        "east-tls"
    );
    assert_eq!(get(&cluster, EAST_V1).await.json(), created);

    let duplicate = create(&cluster, GATEWAYS_V1, &https_gateway("east", "east-tls")).await;
    assert_status(&duplicate, 409, "AlreadyExists");
    let body = duplicate.json();
    assert_eq!(
        body["message"],
        "gateways.networking.istio.io \"east\" already exists"
    );
    assert_eq!(body["details"]["group"], "networking.istio.io");
    assert_eq!(body["details"]["kind"], "gateways");

    let mut elsewhere = https_gateway("east", "east-tls");
    elsewhere["metadata"]["namespace"] = json!("payments");
    let missing_namespace = create(
        &cluster,
        "/apis/networking.istio.io/v1/namespaces/payments/gateways",
        &elsewhere,
    )
    .await;
    assert_status(&missing_namespace, 404, "NotFound");
    assert_eq!(missing_namespace.json()["details"]["kind"], "namespaces");
    assert_eq!(missing_namespace.json()["details"]["name"], "payments");

    let missing = get(
        &cluster,
        "/apis/networking.istio.io/v1/namespaces/istio-system/gateways/west",
    )
    .await;
    assert_status(&missing, 404, "NotFound");
    assert_eq!(
        missing.json()["message"],
        "gateways.networking.istio.io \"west\" not found"
    );
}

#[tokio::test]
async fn gateway_create_checks_type_meta() {
    let cluster = start().await;
    let cases = [
        ("/kind", Value::Null, "Kind"),
        ("/apiVersion", Value::Null, "apiVersion"),
        (
            "/apiVersion",
            json!("networking.istio.io/v1beta1"),
            "does not match the expected API version (networking.istio.io/v1)",
        ),
        ("/kind", json!("VirtualService"), "VirtualService"),
        ("/metadata/namespace", json!("default"), "namespace"),
    ];
    for (pointer, value, expected) in cases {
        let mut gateway = https_gateway("east", "east-tls");
        *gateway.pointer_mut(pointer).unwrap() = value;
        let reply = create(&cluster, GATEWAYS_V1, &gateway).await;
        assert_status(&reply, 400, "BadRequest");
        let message = reply.json()["message"].as_str().unwrap().to_owned();
        assert!(message.contains(expected), "{pointer}: message {message:?}");
    }
    assert!(cluster.gateways().is_empty());
}

#[tokio::test]
async fn gateway_merge_patch_replaces_servers() {
    let cluster = start().await;
    let mut gateway = https_gateway("east", "east-tls");
    gateway["spec"]["servers"]
        .as_array_mut()
        .unwrap()
        .push(json!({
            "port": { "number": 80, "name": "http", "protocol": "HTTP" },
            "hosts": ["east.example.com"],
            "tls": { "httpsRedirect": true },
        }));
    let created = create(&cluster, GATEWAYS_V1, &gateway).await.json();
    assert_eq!(created["spec"]["servers"].as_array().unwrap().len(), 2);

    let patch = json!({ "spec": { "servers": [{
        "port": { "number": 8443, "name": "https-alt", "protocol": "HTTPS" },
        "hosts": ["*.example.com"],
        "tls": { "mode": "SIMPLE", "credentialName": "wildcard-tls" },
    }] } });
    let reply = request(&cluster, "PATCH", EAST_V1, Some(MERGE), &patch).await;
    assert_eq!(reply.status, 200, "body {}", reply.json());
    let patched = reply.json();
    let servers = patched["spec"]["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 1, "a merge patch replaces lists whole");
    assert_eq!(servers[0]["port"]["number"], 8443);
    assert_eq!(patched["spec"]["selector"]["istio"], "ingressgateway");
    assert_eq!(patched["metadata"]["generation"], 2);
    assert_eq!(patched["metadata"]["uid"], created["metadata"]["uid"]);
    assert!(resource_version(&patched) > resource_version(&created));

    // The resourceVersion of the create is stale now.
    let stale = json!({
        "metadata": { "resourceVersion": created["metadata"]["resourceVersion"] },
        "spec": { "selector": { "istio": "east-gateway" } },
    });
    let reply = request(&cluster, "PATCH", EAST_V1, Some(MERGE), &stale).await;
    assert_status(&reply, 409, "Conflict");
    assert_eq!(
        reply.json()["message"],
        "Operation cannot be fulfilled on gateways.networking.istio.io \"east\": the object has been modified; please apply your changes to the latest version and try again"
    );
    assert_eq!(
        cluster.gateway(NS, "east").unwrap()["spec"]["selector"]["istio"],
        "ingressgateway"
    );

    let current = json!({
        "metadata": {
            "resourceVersion": patched["metadata"]["resourceVersion"],
            "labels": { "tier": "edge" },
        },
    });
    let reply = request(&cluster, "PATCH", EAST_V1, Some(MERGE), &current).await;
    assert_eq!(reply.status, 200, "body {}", reply.json());
    let relabeled = reply.json();
    assert_eq!(relabeled["metadata"]["labels"]["tier"], "edge");
    assert_eq!(
        relabeled["metadata"]["generation"], 2,
        "a metadata change keeps the generation"
    );

    let invalid = json!({ "spec": { "servers": [] } });
    let reply = request(&cluster, "PATCH", EAST_V1, Some(MERGE), &invalid).await;
    assert_status(&reply, 422, "Invalid");

    let strategic = request(
        &cluster,
        "PATCH",
        EAST_V1,
        Some("application/strategic-merge-patch+json"),
        &patch,
    )
    .await;
    assert_status(&strategic, 415, "UnsupportedMediaType");

    let missing = request(
        &cluster,
        "PATCH",
        "/apis/networking.istio.io/v1/namespaces/istio-system/gateways/west",
        Some(MERGE),
        &patch,
    )
    .await;
    assert_status(&missing, 404, "NotFound");
}

#[tokio::test]
async fn gateway_put_checks_resource_version() {
    let cluster = start().await;
    let created = create(&cluster, GATEWAYS_V1, &https_gateway("east", "east-tls"))
        .await
        .json();

    let mut replacement = created.clone();
    replacement["spec"]["servers"][0]["tls"]["credentialName"] = json!("east-tls-v2");
    let reply = request(&cluster, "PUT", EAST_V1, Some(JSON), &replacement).await;
    assert_eq!(reply.status, 200, "body {}", reply.json());
    let replaced = reply.json();
    assert_eq!(
        replaced["spec"]["servers"][0]["tls"]["credentialName"],
        "east-tls-v2"
    );
    assert_eq!(replaced["metadata"]["generation"], 2);

    // The same resourceVersion again is stale now.
    replacement["spec"]["servers"][0]["tls"]["credentialName"] = json!("east-tls-v3");
    let reply = request(&cluster, "PUT", EAST_V1, Some(JSON), &replacement).await;
    assert_status(&reply, 409, "Conflict");
    assert!(reply.json()["message"]
        .as_str()
        .unwrap()
        .contains("the object has been modified; please apply your changes to the latest version and try again"));

    // Custom resources do not allow unconditional updates.
    let mut unconditional = replaced.clone();
    unconditional["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    let reply = request(&cluster, "PUT", EAST_V1, Some(JSON), &unconditional).await;
    assert_status(&reply, 422, "Invalid");
    assert_eq!(cause_fields(&reply.json()), ["metadata.resourceVersion"]);

    // A PUT without changes keeps the resourceVersion.
    let reply = request(&cluster, "PUT", EAST_V1, Some(JSON), &replaced).await;
    assert_eq!(reply.status, 200);
    assert_eq!(resource_version(&reply.json()), resource_version(&replaced));

    let mut other_uid = replaced.clone();
    other_uid["metadata"]["uid"] = json!("00000000-0000-4000-8000-000000000000");
    let reply = request(&cluster, "PUT", EAST_V1, Some(JSON), &other_uid).await;
    assert_status(&reply, 409, "Conflict");
    assert!(reply.json()["message"]
        .as_str()
        .unwrap()
        .contains("Precondition failed: UID in precondition"));

    let mut renamed = replaced.clone();
    renamed["metadata"]["name"] = json!("west");
    let reply = request(
        &cluster,
        "PUT",
        "/apis/networking.istio.io/v1/namespaces/istio-system/gateways/west",
        Some(JSON),
        &renamed,
    )
    .await;
    assert_status(&reply, 404, "NotFound");
}

#[tokio::test]
async fn gateway_apply_creates_and_replaces_spec() {
    let cluster = start().await;
    let path = format!("{EAST_V1}?fieldManager=meshcert&force=true");
    let reply = request(
        &cluster,
        "PATCH",
        &path,
        Some(APPLY),
        &https_gateway("east", "east-tls"),
    )
    .await;
    assert_eq!(reply.status, 201, "body {}", reply.json());
    let created = reply.json();
    assert_eq!(created["metadata"]["generation"], 1);

    let mut applied = https_gateway("east", "east-tls-v2");
    applied["spec"].as_object_mut().unwrap().remove("selector");
    applied["metadata"]["labels"] = json!({ "tier": "edge" });
    let reply = request(&cluster, "PATCH", &path, Some(APPLY), &applied).await;
    assert_eq!(reply.status, 200, "body {}", reply.json());
    let updated = reply.json();
    assert_eq!(
        updated["spec"]["servers"][0]["tls"]["credentialName"],
        "east-tls-v2"
    );
    assert!(
        updated["spec"].get("selector").is_none(),
        "the applied spec replaces the stored one whole: {updated}"
    );
    assert_eq!(
        updated["metadata"]["labels"],
        json!({ "app.kubernetes.io/managed-by": "meshcert", "tier": "edge" }),
        "labels merge by key"
    );
    assert_eq!(updated["metadata"]["generation"], 2);
    assert_eq!(updated["metadata"]["uid"], created["metadata"]["uid"]);

    let again = request(&cluster, "PATCH", &path, Some(APPLY), &applied).await;
    assert_eq!(again.status, 200);
    assert_eq!(resource_version(&again.json()), resource_version(&updated));

    let no_manager = request(
        &cluster,
        "PATCH",
        EAST_V1,
        Some(APPLY),
        &https_gateway("east", "east-tls"),
    )
    .await;
    assert_status(&no_manager, 422, "Invalid");
    assert!(no_manager.json()["message"]
        .as_str()
        .unwrap()
        .contains("fieldManager: Required value"));

    let mut wrong_version = https_gateway("east", "east-tls");
    wrong_version["apiVersion"] = json!("networking.istio.io/v1beta1");
    let reply = request(&cluster, "PATCH", &path, Some(APPLY), &wrong_version).await;
    assert_status(&reply, 400, "BadRequest");
    assert!(reply.json()["message"]
        .as_str()
        .unwrap()
        .contains("expected: networking.istio.io/v1"));

    let mut stale = https_gateway("east", "east-tls");
    stale["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"].clone();
    let reply = request(&cluster, "PATCH", &path, Some(APPLY), &stale).await;
    assert_status(&reply, 409, "Conflict");

    let mut invalid = https_gateway("east", "east-tls");
    invalid["spec"]["servers"][0]["tls"] = json!({ "mode": "SIMPLE" });
    let reply = request(&cluster, "PATCH", &path, Some(APPLY), &invalid).await;
    assert_status(&reply, 422, "Invalid");

    let mut elsewhere = https_gateway("east", "east-tls");
    elsewhere["metadata"]["namespace"] = json!("payments");
    let reply = request(
        &cluster,
        "PATCH",
        "/apis/networking.istio.io/v1/namespaces/payments/gateways/east?fieldManager=meshcert",
        Some(APPLY),
        &elsewhere,
    )
    .await;
    assert_status(&reply, 404, "NotFound");
    assert_eq!(reply.json()["details"]["kind"], "namespaces");
}

#[tokio::test]
async fn gateway_delete_with_preconditions() {
    let cluster = start().await;
    let created = create(&cluster, GATEWAYS_V1, &https_gateway("east", "east-tls"))
        .await
        .json();

    let stale = json!({ "preconditions": { "resourceVersion": "1" } });
    let reply = request(&cluster, "DELETE", EAST_V1, Some(JSON), &stale).await;
    assert_status(&reply, 409, "Conflict");
    assert!(reply.json()["message"]
        .as_str()
        .unwrap()
        .contains("Precondition failed: ResourceVersion in precondition: 1"));
    assert!(cluster.gateway(NS, "east").is_some());

    let current = json!({ "preconditions": {
        "resourceVersion": created["metadata"]["resourceVersion"],
        "uid": created["metadata"]["uid"],
    } });
    let reply = request(&cluster, "DELETE", EAST_V1, Some(JSON), &current).await;
    assert_eq!(reply.status, 200, "body {}", reply.json());
    let body = reply.json();
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["status"], "Success");
    assert_eq!(body["details"]["group"], "networking.istio.io");
    assert_eq!(body["details"]["kind"], "gateways");
    assert_eq!(body["details"]["uid"], created["metadata"]["uid"]);
    assert!(cluster.gateway(NS, "east").is_none());
    assert!(cluster.resource_version() > resource_version(&created));

    let reply = request(&cluster, "DELETE", EAST_V1, None, &Value::Null).await;
    assert_status(&reply, 404, "NotFound");
}

#[tokio::test]
async fn gateway_validation_names_field() {
    let cluster = start().await;
    let cases: Vec<(&str, Value, &str)> = vec![
        ("/spec/servers", json!([]), "spec.servers"),
        (
            "/spec",
            json!({ "selector": { "istio": "ingressgateway" } }),
            "spec.servers",
        ),
        ("/spec/servers", json!({}), "spec.servers"),
        (
            "/spec/servers/0/port/number",
            Value::Null,
            "spec.servers[0].port.number",
        ),
        (
            "/spec/servers/0/port/number",
            json!(70000),
            "spec.servers[0].port.number",
        ),
        (
            "/spec/servers/0/port/number",
            json!(0),
            "spec.servers[0].port.number",
        ),
        (
            "/spec/servers/0/port/number",
            json!("443"),
            "spec.servers[0].port.number",
        ),
        (
            "/spec/servers/0/port/protocol",
            Value::Null,
            "spec.servers[0].port.protocol",
        ),
        (
            "/spec/servers/0/port/protocol",
            json!("FTP"),
            "spec.servers[0].port.protocol",
        ),
        (
            "/spec/servers/0/port/name",
            Value::Null,
            "spec.servers[0].port.name",
        ),
        ("/spec/servers/0/port", Value::Null, "spec.servers[0].port"),
        ("/spec/servers/0/hosts", json!([]), "spec.servers[0].hosts"),
        (
            "/spec/servers/0/hosts",
            Value::Null,
            "spec.servers[0].hosts",
        ),
        (
            "/spec/servers/0/hosts",
            json!([""]),
            "spec.servers[0].hosts[0]",
        ),
        ("/spec/servers/0/tls", Value::Null, "spec.servers[0].tls"),
        (
            "/spec/servers/0/tls/mode",
            Value::Null,
            "spec.servers[0].tls.mode",
        ),
        (
            "/spec/servers/0/tls/mode",
            json!("STRICT"),
            "spec.servers[0].tls.mode",
        ),
        (
            "/spec/servers/0/tls/credentialName",
            Value::Null,
            "spec.servers[0].tls.credentialName",
        ),
        (
            "/spec/servers/0/tls/credentialName",
            json!(""),
            "spec.servers[0].tls.credentialName",
        ),
        (
            "/spec/servers/0/tls/mode",
            json!("MUTUAL"),
            "spec.servers[0].tls.caCertificates",
        ),
        (
            "/spec/selector",
            json!({ "istio": 1 }),
            "spec.selector.istio",
        ),
        ("/metadata/name", json!("east.gw"), "metadata.name"),
        (
            "/metadata/labels",
            json!({ "bad key": "x" }),
            "metadata.labels",
        ),
    ];
    for (pointer, value, field) in cases {
        let mut gateway = https_gateway("east", "east-tls");
        match value.clone() {
            // Null removes the field, as a client that omits it would send.
            Value::Null => {
                let (parent, key) = pointer.rsplit_once('/').unwrap();
                gateway
                    .pointer_mut(parent)
                    .unwrap()
                    .as_object_mut()
                    .unwrap()
                    .remove(key);
            }
            value => *gateway.pointer_mut(pointer).unwrap() = value,
        }
        if field == "spec.servers[0].tls.caCertificates" {
            // MUTUAL with key and certificate files, where the client CA bundle is missing.
            let tls = &mut gateway["spec"]["servers"][0]["tls"];
            tls.as_object_mut().unwrap().remove("credentialName");
            tls["serverCertificate"] = json!("/etc/certs/tls.crt");
            tls["privateKey"] = json!("/etc/certs/tls.key");
        }
        let name = gateway["metadata"]["name"].as_str().unwrap().to_owned();
        let reply = create(&cluster, GATEWAYS_V1, &gateway).await;
        assert_status(&reply, 422, "Invalid");
        let body = reply.json();
        assert_eq!(body["details"]["kind"], "Gateway", "{pointer}");
        assert_eq!(body["details"]["group"], "networking.istio.io", "{pointer}");
        assert_eq!(
            cause_fields(&body),
            [field],
            "{pointer} = {value:?}: body {body}"
        );
        let message = body["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!(
                "Gateway.networking.istio.io \"{name}\" is invalid: {field}: "
            )),
            "{pointer}: message {message:?}"
        );
    }
    assert!(cluster.gateways().is_empty());

    let mut duplicate_ports = https_gateway("east", "east-tls");
    let server = duplicate_ports["spec"]["servers"][0].clone();
    duplicate_ports["spec"]["servers"]
        .as_array_mut()
        .unwrap()
        .push(server);
    let reply = create(&cluster, GATEWAYS_V1, &duplicate_ports).await;
    assert_status(&reply, 422, "Invalid");
    assert_eq!(cause_fields(&reply.json()), ["spec.servers[1].port.name"]);
}

#[tokio::test]
async fn gateway_validation_accepts_variants() {
    let cluster = start().await;
    let variants = [
        json!({ "mode": "SIMPLE", "credentialNames": ["east-rsa", "east-ecdsa"] }),
        json!({ "mode": "SIMPLE", "serverCertificate": "/etc/certs/tls.crt", "privateKey": "/etc/certs/tls.key" }),
        json!({ "mode": "MUTUAL", "credentialName": "east-tls" }),
        json!({ "mode": "OPTIONAL_MUTUAL", "credentialName": "east-tls" }),
        json!({ "mode": "PASSTHROUGH" }),
        json!({ "mode": "AUTO_PASSTHROUGH" }),
        json!({ "mode": "ISTIO_MUTUAL" }),
    ];
    for (i, tls) in variants.into_iter().enumerate() {
        let name = format!("east-{i}");
        let mut gateway = https_gateway(&name, "unused");
        gateway["spec"]["servers"][0]["tls"] = tls.clone();
        let reply = create(&cluster, GATEWAYS_V1, &gateway).await;
        assert_eq!(reply.status, 201, "tls {tls}: body {}", reply.json());
    }

    let mut redirect = https_gateway("redirect", "unused");
    redirect["spec"]["servers"][0] = json!({
        "port": { "number": 80, "name": "http", "protocol": "http" },
        "hosts": ["*"],
        "tls": { "httpsRedirect": true },
    });
    let reply = create(&cluster, GATEWAYS_V1, &redirect).await;
    assert_eq!(reply.status, 201, "body {}", reply.json());
}

#[tokio::test]
async fn gateway_keeps_unknown_fields() {
    let cluster = start().await;
    let mut gateway = https_gateway("east", "east-tls");
    gateway["metadata"]["annotations"] = json!({ "meshcert.io/certificate": "east" });
    gateway["metadata"]["finalizers"] = json!(["meshcert.io/cleanup"]);
    gateway["spec"]["servers"][0]["tls"]["minProtocolVersion"] = json!("TLSV1_3");
    gateway["spec"]["servers"][0]["bind"] = json!("0.0.0.0");
    gateway["spec"]["futureField"] = json!({ "nested": [1, 2] });
    // The server sets these, so the values in the body are ignored.
    gateway["metadata"]["generation"] = json!(7);
    gateway["metadata"]["managedFields"] = json!([]);

    let created = create(&cluster, GATEWAYS_V1, &gateway).await.json();
    assert_eq!(created["spec"], gateway["spec"]);
    assert_eq!(
        created["metadata"]["annotations"],
        gateway["metadata"]["annotations"]
    );
    assert_eq!(
        created["metadata"]["finalizers"],
        gateway["metadata"]["finalizers"]
    );
    assert_eq!(created["metadata"]["generation"], 1);
    assert!(created["metadata"].get("managedFields").is_none());
}

#[tokio::test]
async fn gateway_dry_run_stores_nothing() {
    let cluster = start().await;
    let before = cluster.resource_version();
    let reply = create(
        &cluster,
        &format!("{GATEWAYS_V1}?dryRun=All"),
        &https_gateway("east", "east-tls"),
    )
    .await;
    assert_eq!(reply.status, 201);
    assert!(cluster.gateway(NS, "east").is_none());
    assert_eq!(cluster.resource_version(), before);
}

#[tokio::test]
async fn gateway_helpers_store_directly() {
    let cluster = start().await;
    let before = cluster.resource_version();
    let stored = cluster
        .put_gateway("payments", https_gateway("pay", "pay-tls"))
        .unwrap();
    assert!(cluster.namespaces().contains(&"payments".to_owned()));
    assert_eq!(stored["metadata"]["namespace"], "payments");
    assert_eq!(stored["apiVersion"], "networking.istio.io/v1");
    assert!(resource_version(&stored) > before);
    assert_eq!(cluster.gateway("payments", "pay"), Some(stored.clone()));

    let mut changed = stored.clone();
    changed["spec"]["servers"][0]["tls"]["credentialName"] = json!("pay-tls-v2");
    changed["status"] = json!({ "conditions": [] });
    let replaced = cluster.put_gateway("payments", changed).unwrap();
    assert_eq!(replaced["metadata"]["uid"], stored["metadata"]["uid"]);
    assert_eq!(replaced["metadata"]["generation"], 2);
    assert_eq!(replaced["status"], json!({ "conditions": [] }));
    assert!(resource_version(&replaced) > resource_version(&stored));

    cluster
        .put_gateway(NS, https_gateway("east", "east-tls"))
        .unwrap();
    let keys: Vec<String> = cluster
        .gateways()
        .iter()
        .map(|g| {
            format!(
                "{}/{}",
                g["metadata"]["namespace"].as_str().unwrap(),
                g["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(keys, ["istio-system/east", "payments/pay"]);

    let mut invalid = https_gateway("west", "west-tls");
    invalid["spec"]["servers"] = json!([]);
    let error = cluster.put_gateway("west", invalid).unwrap_err();
    assert!(error.to_string().contains("spec.servers"), "{error}");
    assert!(
        !cluster.namespaces().contains(&"west".to_owned()),
        "a rejected Gateway creates no namespace"
    );
    assert!(cluster
        .put_gateway("Bad_Namespace", https_gateway("x", "y"))
        .is_err());
    assert!(cluster.put_gateway(NS, json!({ "spec": {} })).is_err());

    let before_remove = cluster.resource_version();
    assert!(cluster.remove_gateway("payments", "pay"));
    assert!(!cluster.remove_gateway("payments", "pay"));
    assert!(cluster.gateway("payments", "pay").is_none());
    assert_eq!(cluster.resource_version(), before_remove + 1);

    assert!(cluster.remove_namespace(NS));
    assert!(
        cluster.gateways().is_empty(),
        "removing a namespace removes its Gateways"
    );
}

#[tokio::test]
async fn gateway_paths_require_token() {
    let cluster = start().await;
    for path in [
        "/apis/networking.istio.io/v1/gateways",
        EAST_V1,
        "/apis/networking.istio.io",
        "/apis",
        "/api/v1/pods",
        "/api/v1/namespaces/istio-system/pods",
        "/api/v1/secrets",
    ] {
        let reply = send(cluster.addr(), "GET", path, None, None, b"")
            .await
            .unwrap();
        assert_status(&reply, 401, "Unauthorized");
        let reply = send(cluster.addr(), "GET", path, Some("west-token"), None, b"")
            .await
            .unwrap();
        assert_status(&reply, 401, "Unauthorized");
    }
    let body = https_gateway("east", "east-tls").to_string();
    let reply = send(
        cluster.addr(),
        "POST",
        GATEWAYS_V1,
        None,
        Some(JSON),
        body.as_bytes(),
    )
    .await
    .unwrap();
    assert_status(&reply, 401, "Unauthorized");
    assert!(cluster.gateways().is_empty());
}

#[tokio::test]
async fn gateway_status_fault_by_prefix() {
    let cluster = start().await;
    cluster.set_status_fault(Some(
        StatusFault::new(503)
            .path_prefix("/apis/networking.istio.io/")
            .times(2),
    ));
    assert_eq!(
        get(&cluster, "/api/v1/namespaces/istio-system/secrets")
            .await
            .status,
        200,
        "other paths are not affected"
    );
    for _ in 0..2 {
        let reply = get(&cluster, "/apis/networking.istio.io/v1/gateways").await;
        assert_status(&reply, 503, "ServiceUnavailable");
    }
    assert_eq!(
        get(&cluster, "/apis/networking.istio.io/v1/gateways")
            .await
            .status,
        200
    );

    let log = cluster.requests();
    assert_eq!(log.len(), 4, "faulted requests are logged too");
    assert_eq!(log[1].path, "/apis/networking.istio.io/v1/gateways");
    assert_eq!(cluster.in_flight(), 0);
}
