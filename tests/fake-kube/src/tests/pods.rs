//! Pods with every label selector form, and Secrets listed across namespaces.

use serde_json::{json, Value};

use super::{assert_status, b64, get, resource_version, send, start, tls_secret, NS, TOKEN};

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

#[tokio::test]
async fn pod_list_selector_forms() {
    let cluster = start().await;
    cluster
        .put_pod(
            NS,
            "ingress-1",
            &[("istio", "ingressgateway"), ("app", "istio-ingressgateway")],
        )
        .unwrap();
    cluster
        .put_pod("edge", "edge-1", &[("istio", "edge-gateway")])
        .unwrap();
    cluster
        .put_pod("payments", "api-1", &[("app", "payments")])
        .unwrap();

    let cases = [
        (
            "",
            vec!["edge/edge-1", "istio-system/ingress-1", "payments/api-1"],
        ),
        ("istio%3Dingressgateway", vec!["istio-system/ingress-1"]),
        ("istio==edge-gateway", vec!["edge/edge-1"]),
        (
            "istio!=ingressgateway",
            vec!["edge/edge-1", "payments/api-1"],
        ),
        ("istio", vec!["edge/edge-1", "istio-system/ingress-1"]),
        ("!istio", vec!["payments/api-1"]),
        (
            "istio%20in%20(ingressgateway,edge-gateway)",
            vec!["edge/edge-1", "istio-system/ingress-1"],
        ),
        (
            "istio%20notin%20(ingressgateway)",
            vec!["edge/edge-1", "payments/api-1"],
        ),
        ("istio,app", vec!["istio-system/ingress-1"]),
        ("istio=ingressgateway,app=payments", vec![]),
    ];
    for (selector, expected) in cases {
        let reply = get(&cluster, &format!("/api/v1/pods?labelSelector={selector}")).await;
        assert_eq!(reply.status, 200, "selector {selector}");
        let body = reply.json();
        assert_eq!(body["kind"], "PodList");
        assert_eq!(body["apiVersion"], "v1");
        assert_eq!(resource_version(&body), cluster.resource_version());
        assert_eq!(item_keys(&body), expected, "selector {selector}");
    }

    let body = get(
        &cluster,
        "/api/v1/namespaces/istio-system/pods?labelSelector=istio",
    )
    .await
    .json();
    assert_eq!(item_keys(&body), ["istio-system/ingress-1"]);
    let item = &body["items"][0];
    assert!(item.get("kind").is_none(), "list items carry no kind");
    assert_eq!(item["status"]["phase"], "Running");
    assert_eq!(item["metadata"]["labels"]["istio"], "ingressgateway");
    assert_eq!(item["metadata"]["uid"].as_str().unwrap().len(), 36);

    let body = get(
        &cluster,
        "/api/v1/pods?fieldSelector=status.phase%3DRunning,metadata.namespace!%3Dedge",
    )
    .await
    .json();
    assert_eq!(
        item_keys(&body),
        ["istio-system/ingress-1", "payments/api-1"]
    );

    let reply = get(&cluster, "/api/v1/namespaces/edge/pods/edge-1").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["kind"], "Pod");
    assert_status(
        &get(&cluster, "/api/v1/namespaces/edge/pods/missing").await,
        404,
        "NotFound",
    );
    assert_status(
        &get(&cluster, "/api/v1/pods?labelSelector=istio%20in%20ingress").await,
        400,
        "BadRequest",
    );
    assert_status(
        &get(
            &cluster,
            "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-1",
        )
        .await,
        400,
        "BadRequest",
    );
    assert_eq!(
        get(&cluster, "/api/v1/namespaces/default/pods")
            .await
            .json()["items"],
        json!([])
    );
    let reply = send(
        cluster.addr(),
        "DELETE",
        "/api/v1/namespaces/edge/pods/edge-1",
        Some(TOKEN),
        None,
        b"",
    )
    .await
    .unwrap();
    assert_status(&reply, 405, "MethodNotAllowed");
}

#[tokio::test]
async fn pod_helpers_update_and_remove() {
    let cluster = start().await;
    cluster
        .put_pod("edge", "edge-1", &[("istio", "edge")])
        .unwrap();
    assert!(cluster.namespaces().contains(&"edge".to_owned()));
    let first = get(&cluster, "/api/v1/namespaces/edge/pods/edge-1")
        .await
        .json();

    cluster
        .put_pod("edge", "edge-1", &[("istio", "ingressgateway")])
        .unwrap();
    let second = get(&cluster, "/api/v1/namespaces/edge/pods/edge-1")
        .await
        .json();
    assert_eq!(second["metadata"]["uid"], first["metadata"]["uid"]);
    assert_eq!(second["metadata"]["labels"]["istio"], "ingressgateway");
    assert!(resource_version(&second) > resource_version(&first));

    assert!(cluster.put_pod("edge", "Bad_Name", &[]).is_err());
    assert!(cluster
        .put_pod("edge", "edge-2", &[("bad key", "x")])
        .is_err());
    assert!(cluster.put_pod("Bad_Namespace", "edge-2", &[]).is_err());

    assert!(cluster.remove_pod("edge", "edge-1"));
    assert!(!cluster.remove_pod("edge", "edge-1"));
    assert_eq!(
        get(&cluster, "/api/v1/pods").await.json()["items"],
        json!([])
    );
}

#[tokio::test]
async fn secrets_list_across_namespaces() {
    let cluster = start().await;
    cluster.add_namespace("payments").unwrap();
    cluster.put_secret(NS, tls_secret("east-tls", "a")).unwrap();
    cluster
        .put_secret("payments", tls_secret("pay-tls", "b"))
        .unwrap();
    cluster
        .put_secret("payments", json!({ "metadata": { "name": "plain" } }))
        .unwrap();

    let body = get(&cluster, "/api/v1/secrets").await.json();
    assert_eq!(body["kind"], "SecretList");
    assert_eq!(resource_version(&body), cluster.resource_version());
    assert_eq!(
        item_keys(&body),
        [
            "istio-system/east-tls",
            "payments/pay-tls",
            "payments/plain"
        ]
    );

    let body = get(
        &cluster,
        "/api/v1/secrets?labelSelector=app.kubernetes.io%2Fmanaged-by%3Dmeshcert",
    )
    .await
    .json();
    assert_eq!(
        item_keys(&body),
        ["istio-system/east-tls", "payments/pay-tls"]
    );

    let body = get(
        &cluster,
        "/api/v1/secrets?fieldSelector=metadata.namespace%3Dpayments,type%3Dkubernetes.io%2Ftls",
    )
    .await
    .json();
    assert_eq!(item_keys(&body), ["payments/pay-tls"]);

    assert_status(
        &get(&cluster, "/api/v1/secrets?fieldSelector=data.x%3Dy").await,
        400,
        "BadRequest",
    );
    let reply = send(
        cluster.addr(),
        "POST",
        "/api/v1/secrets",
        Some(TOKEN),
        Some("application/json"),
        tls_secret("x", "y").to_string().as_bytes(),
    )
    .await
    .unwrap();
    assert_status(&reply, 405, "MethodNotAllowed");
}

#[tokio::test]
async fn secret_istio_generic_format_accepted() {
    let cluster = start().await;
    let secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": "east-generic", "namespace": NS },
        "type": "Opaque",
        "data": { "cert": b64("chain"), "key": b64("key"), "cacert": b64("ca") },
    });
    let reply = send(
        cluster.addr(),
        "POST",
        "/api/v1/namespaces/istio-system/secrets",
        Some(TOKEN),
        Some("application/json"),
        secret.to_string().as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 201, "body {}", reply.json());
    assert_eq!(reply.json()["data"], secret["data"]);
    assert_eq!(reply.json()["type"], "Opaque");
    let data = cluster.secret_data(NS, "east-generic").unwrap();
    assert_eq!(data["cacert"], b"ca".to_vec());
    assert_eq!(data.len(), 3);
}
