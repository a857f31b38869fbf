//! Istio Gateways and migration, end to end: which Gateways use a certificate and whether its
//! SANs cover their hosts, binding a certificate to a Gateway server, the Gateway manifest,
//! dangling references, and adopting existing Secrets of any Istio format.

mod support;

use base64::Engine as _;
use meshcert_fake_kube::{FakeCluster, StatusFault};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use serde_json::{json, Value};
use support::{fake_cluster, fake_cluster_with, pem_body_lines, secret_entry, TestApp};

/// A CA that signs leaf certificates with the SANs and validity a test needs.
struct Authority {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

/// A leaf certificate and its key, as PEM.
struct Leaf {
    certificate: String,
    key: String,
}

impl Authority {
    fn new() -> Authority {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, "meshcert gateway test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(400);
        params.not_after = now + time::Duration::days(400);
        let key = KeyPair::generate().unwrap();
        let pem = params.clone().self_signed(&key).unwrap().pem();
        Authority { issuer: Issuer::new(params, key), pem }
    }

    /// Issues a leaf for `sans`, valid from `from_days` to `to_days` around now.
    fn leaf(&self, sans: &[&str], from_days: i64, to_days: i64) -> Leaf {
        let mut params = CertificateParams::new(sans.iter().map(|san| san.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, sans[0]);
        params.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::days(from_days);
        params.not_after = now + time::Duration::days(to_days);
        let key = KeyPair::generate().unwrap();
        Leaf { certificate: params.signed_by(&key, &self.issuer).unwrap().pem(), key: key.serialize_pem() }
    }
}

fn encode(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn upload(name: &str, leaf: &Leaf) -> Value {
    json!({ "name": name, "certificate": leaf.certificate, "private_key": leaf.key })
}

/// Builds a Gateway with `servers`, selecting Istio's default ingress pods.
fn gateway(namespace: &str, name: &str, servers: Value) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": { "namespace": namespace, "name": name },
        "spec": { "selector": { "istio": "ingressgateway" }, "servers": servers },
    })
}

fn https_server(port: u32, port_name: &str, hosts: &[&str], credential_name: &str) -> Value {
    json!({ "port": { "number": port, "name": port_name, "protocol": "HTTPS" }, "hosts": hosts, "tls": { "mode": "SIMPLE", "credentialName": credential_name } })
}

/// Builds a Secret that someone other than meshcert created, with `data` as text.
fn foreign_secret(namespace: &str, name: &str, secret_type: &str, data: &[(&str, &str)]) -> Value {
    let data: serde_json::Map<String, Value> = data.iter().map(|(key, value)| (key.to_string(), json!(encode(value)))).collect();
    json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "namespace": namespace, "name": name }, "type": secret_type, "data": data })
}

fn gateway_servers(cluster: &FakeCluster, namespace: &str, name: &str) -> Vec<Value> {
    cluster.gateway(namespace, name).unwrap_or_else(|| panic!("gateway {namespace}/{name} in {}", cluster.name()))["spec"]["servers"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_usage_coverage_and_namespace() {
    let authority = Authority::new();
    let test = TestApp::start().await;
    let east = fake_cluster("east").await;
    let west = fake_cluster_with("west", |config| config.gateway_versions(&["v1beta1"])).await;
    let down = fake_cluster("down").await;
    for cluster in [&east, &west, &down] {
        test.register(cluster).await;
    }
    down.set_down(true).await.unwrap();
    east.put_pod("istio-system", "ingress-1", &[("istio", "ingressgateway")]).unwrap();
    east.put_gateway(
        "istio-system",
        gateway("istio-system", "public", json!([
            https_server(443, "https", &["shop.example.test", "prod/api.example.test"], "web"),
            https_server(8443, "other", &["other.example.test"], "other"),
        ])),
    )
    .unwrap();
    // In west the ingress pods run in their own namespace, where Istio looks for the Secret.
    west.put_pod("gateways", "ingress-1", &[("istio", "ingressgateway")]).unwrap();
    west.put_gateway("apps", gateway("apps", "shop", json!([https_server(443, "https", &["*.example.test"], "web")]))).unwrap();

    // The create already reports the host of a Gateway that its SANs leave uncovered.
    let (status, created) = test.call("POST", "/api/v1/certificates", Some(&upload("web", &authority.leaf(&["shop.example.test"], -1, 90)))).await;
    assert_eq!(status, 201, "{created}");
    let codes: Vec<&str> = created["warnings"].as_array().unwrap().iter().filter_map(|warning| warning["code"].as_str()).collect();
    assert_eq!(codes.iter().filter(|code| **code == "host_not_covered").count(), 2, "{created}");
    assert!(created["warnings"].to_string().contains("host api.example.test on gateway istio-system/public in cluster east is not covered"), "{created}");

    let (status, usage) = test.call("GET", "/api/v1/certificates/istio-system/web/gateways", None).await;

    assert_eq!(status, 200, "{usage}");
    let gateways = usage["gateways"].as_array().unwrap();
    assert_eq!(gateways.len(), 2, "{usage}");
    let in_east = gateways.iter().find(|found| found["cluster"] == "east").unwrap();
    assert_eq!(in_east["api_version"], "networking.istio.io/v1");
    assert_eq!(in_east["servers"].as_array().unwrap().len(), 1, "only the server that uses web: {in_east}");
    assert_eq!(in_east["servers"][0]["port"], 443);
    assert_eq!(in_east["servers"][0]["mode"], "SIMPLE");
    assert_eq!(in_east["servers"][0]["uncovered_hosts"], json!(["prod/api.example.test"]));
    assert_eq!(in_east["workload_namespaces"], json!(["istio-system"]));
    let in_west = gateways.iter().find(|found| found["cluster"] == "west").unwrap();
    assert_eq!(in_west["api_version"], "networking.istio.io/v1beta1", "west serves only v1beta1");
    assert_eq!(in_west["servers"][0]["uncovered_hosts"], json!(["*.example.test"]), "an exact SAN does not cover a wildcard host");
    let warnings = usage["warnings"].to_string();
    assert!(warnings.contains("host api.example.test on gateway istio-system/public in cluster east is not covered"), "{warnings}");
    assert!(warnings.contains("gateway apps/shop in cluster west runs its pods in namespace gateways"), "{warnings}");
    assert_eq!(usage["errors"].as_array().unwrap().len(), 1, "{usage}");
    assert_eq!(usage["errors"][0]["cluster"], "down");
    assert_eq!(usage["errors"][0]["kind"], "connection_refused");

    // A rotation to a certificate that covers every host has no such warning.
    let wide = authority.leaf(&["shop.example.test", "api.example.test", "*.example.test"], -1, 90);
    let (status, rotated) = test.call("PUT", "/api/v1/certificates/istio-system/web", Some(&json!({ "certificate": wide.certificate, "private_key": wide.key }))).await;
    assert_eq!(status, 200, "{rotated}");
    assert!(!rotated["warnings"].to_string().contains("host_not_covered"), "{rotated}");
    let (_, usage) = test.call("GET", "/api/v1/certificates/istio-system/web/gateways", None).await;
    assert!(usage["gateways"].as_array().unwrap().iter().all(|found| found["servers"][0]["uncovered_hosts"] == json!([])), "{usage}");

    let (status, missing) = test.call("GET", "/api/v1/certificates/istio-system/absent/gateways", None).await;
    assert_eq!((status, missing["error"]["code"].as_str()), (404, Some("certificate_not_found")), "{missing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bindings_change_one_server() {
    let authority = Authority::new();
    let test = TestApp::start().await;
    let east = fake_cluster("east").await;
    let west = fake_cluster_with("west", |config| config.gateway_versions(&["v1beta1"])).await;
    test.register(&east).await;
    test.register(&west).await;
    let http = json!({ "port": { "number": 80, "name": "http", "protocol": "HTTP" }, "hosts": ["*"], "tls": { "httpsRedirect": true } });
    east.put_gateway("istio-system", gateway("istio-system", "public", json!([http, https_server(443, "https-old", &["old.example.test"], "old")]))).unwrap();
    let (status, body) = test.call("POST", "/api/v1/certificates", Some(&upload("web", &authority.leaf(&["shop.example.test"], -1, 90)))).await;
    assert_eq!(status, 201, "{body}");

    // A write that loses a race (409) reads the Gateway again and writes once more.
    east.set_status_fault(Some(StatusFault::new(409).method("PATCH").path_prefix("/apis/networking.istio.io/v1/namespaces/istio-system/gateways/public").times(1)));
    let binding = json!({ "cluster": "east", "gateway": { "namespace": "istio-system", "name": "public" }, "port": 443, "hosts": ["shop.example.test"] });
    let (status, report) = test.call("POST", "/api/v1/certificates/istio-system/web/bindings", Some(&binding)).await;

    assert_eq!(status, 200, "{report}");
    assert_eq!(report["results"][0]["change"], "added", "{report}");
    let servers = gateway_servers(&east, "istio-system", "public");
    assert_eq!(servers.len(), 3);
    assert_eq!(servers[0], http, "the other servers are kept as they were");
    assert_eq!(servers[1]["tls"]["credentialName"], "old");
    assert_eq!(servers[2]["tls"], json!({ "mode": "SIMPLE", "credentialName": "web" }));
    assert_eq!(servers[2]["hosts"], json!(["shop.example.test"]));
    let patches = east.requests().into_iter().filter(|request| request.method == "PATCH" && request.path.contains("/gateways/public")).count();
    assert_eq!(patches, 2, "one refused write and one retry");
    let (status, again) = test.call("POST", "/api/v1/certificates/istio-system/web/bindings", Some(&binding)).await;
    assert_eq!((status, again["results"][0]["change"].as_str()), (200, Some("unchanged")), "{again}");

    // Rebinding the old server's hosts moves that server to web and keeps its port name.
    let rebind = json!({ "cluster": "east", "gateway": { "namespace": "istio-system", "name": "public" }, "hosts": ["old.example.test"] });
    let (status, report) = test.call("POST", "/api/v1/certificates/istio-system/web/bindings", Some(&rebind)).await;
    assert_eq!((status, report["results"][0]["change"].as_str()), (200, Some("updated")), "{report}");
    assert!(report["warnings"].to_string().contains("host old.example.test on gateway istio-system/public in cluster east is not covered"), "{report}");
    assert_eq!(gateway_servers(&east, "istio-system", "public")[1]["port"]["name"], "https-old");

    // In a cluster without the Gateway, the binding creates it at the version the cluster serves.
    let create = json!({ "cluster": "west", "gateway": { "namespace": "istio-system", "name": "edge" }, "protocol": "TLS" });
    let (status, report) = test.call("POST", "/api/v1/certificates/istio-system/web/bindings", Some(&create)).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["results"][0]["change"], "created");
    assert_eq!(report["results"][0]["api_version"], "networking.istio.io/v1beta1");
    let edge = west.gateway("istio-system", "edge").unwrap();
    assert_eq!(edge["metadata"]["labels"]["app.kubernetes.io/managed-by"], "meshcert");
    assert_eq!(edge["spec"]["selector"], json!({ "istio": "ingressgateway" }));
    assert_eq!(edge["spec"]["servers"][0]["hosts"], json!(["shop.example.test"]), "hosts default to the DNS SANs");
    assert_eq!(edge["spec"]["servers"][0]["port"]["protocol"], "TLS");

    // MUTUAL needs the certificate's CA; a bad field names itself.
    let mutual = json!({ "cluster": "east", "gateway": { "namespace": "istio-system", "name": "public" }, "mode": "MUTUAL" });
    let (status, refused) = test.call("POST", "/api/v1/certificates/istio-system/web/bindings", Some(&mutual)).await;
    assert_eq!((status, refused["error"]["code"].as_str(), refused["error"]["field"].as_str()), (422, Some("mutual_needs_ca"), Some("mode")), "{refused}");
    let unknown = json!({ "cluster": "north", "gateway": { "namespace": "istio-system", "name": "public" } });
    let (status, refused) = test.call("POST", "/api/v1/certificates/istio-system/web/bindings", Some(&unknown)).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (404, Some("cluster_not_found")), "{refused}");

    // Unbinding removes web's servers. Removing the last server of a Gateway that meshcert
    // created deletes the Gateway, and removing the last server of another Gateway is rejected.
    let (status, report) = test.call("DELETE", "/api/v1/certificates/istio-system/web/bindings?cluster=east&gateway=istio-system/public&port=443", None).await;
    assert_eq!((status, report["results"][0]["change"].as_str()), (200, Some("removed")), "{report}");
    let servers = gateway_servers(&east, "istio-system", "public");
    assert_eq!(servers.len(), 1, "{servers:?}");
    assert_eq!(servers[0], http);
    let (status, report) = test.call("DELETE", "/api/v1/certificates/istio-system/web/bindings?cluster=west&gateway=istio-system/edge", None).await;
    assert_eq!((status, report["results"][0]["change"].as_str()), (200, Some("deleted")), "{report}");
    assert!(west.gateway("istio-system", "edge").is_none());
    east.put_gateway("istio-system", gateway("istio-system", "theirs", json!([https_server(443, "https", &["shop.example.test"], "web")]))).unwrap();
    let (status, refused) = test.call("DELETE", "/api/v1/certificates/istio-system/web/bindings?cluster=east&gateway=istio-system/theirs", None).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (409, Some("binding_conflict")), "{refused}");
    assert_eq!(refused["results"][0]["error"]["kind"], "last_server");
    let (status, refused) = test.call("DELETE", "/api/v1/certificates/istio-system/web/bindings?cluster=east&gateway=istio-system/absent", None).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (404, Some("binding_not_found")), "{refused}");
    assert_eq!(refused["results"][0]["error"]["kind"], "gateway_not_found");
    assert!(east.gateway("istio-system", "theirs").is_some());
    let (status, refused) = test.call("DELETE", "/api/v1/certificates/istio-system/web/bindings?cluster=east", None).await;
    assert_eq!((status, refused["error"]["field"].as_str()), (400, Some("gateway")), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_manifest_is_accepted_by_the_api_server() {
    let authority = Authority::new();
    let test = TestApp::start().await;
    let east = fake_cluster("east").await;
    let (status, body) = test.call("POST", "/api/v1/certificates", Some(&upload("web", &authority.leaf(&["shop.example.test", "api.example.test"], -1, 90)))).await;
    assert_eq!(status, 201, "{body}");

    let (status, headers, yaml) = test_get_raw(&test, "/api/v1/certificates/istio-system/web/gateway.yaml?hosts=shop.example.test,*.example.test&port=8443&selector=app=edge").await;

    assert_eq!(status, 200, "{yaml}");
    assert_eq!(headers.get("content-type").unwrap(), "application/yaml");
    let manifest: Value = serde_yaml_ng::from_str(&yaml).unwrap_or_else(|error| panic!("not YAML ({error}):\n{yaml}"));
    assert_eq!(manifest["kind"], "Gateway");
    assert_eq!(manifest["metadata"], json!({ "name": "web-gateway", "namespace": "istio-system" }));
    assert_eq!(manifest["spec"]["selector"], json!({ "app": "edge" }));
    assert_eq!(manifest["spec"]["servers"][0]["port"]["number"], 8443);
    assert_eq!(manifest["spec"]["servers"][0]["hosts"], json!(["shop.example.test", "*.example.test"]));
    assert_eq!(manifest["spec"]["servers"][0]["tls"], json!({ "mode": "SIMPLE", "credentialName": "web" }));
    // What `kubectl apply -f -` sends: the API server validates and stores it.
    east.put_gateway("istio-system", manifest).expect("the API server accepts the manifest");

    // Defaults: the DNS SANs, port 443, SIMPLE; MUTUAL without a CA is refused.
    let (status, _, yaml) = test_get_raw(&test, "/api/v1/certificates/istio-system/web/gateway.yaml").await;
    assert_eq!(status, 200);
    let manifest: Value = serde_yaml_ng::from_str(&yaml).unwrap();
    assert_eq!(manifest["spec"]["servers"][0]["hosts"], json!(["shop.example.test", "api.example.test"]));
    assert_eq!(manifest["spec"]["servers"][0]["port"]["number"], 443);
    let (status, refused) = test.call("GET", "/api/v1/certificates/istio-system/web/gateway.yaml?mode=MUTUAL", None).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (400, Some("mutual_needs_ca")), "{refused}");
    let (status, refused) = test.call("GET", "/api/v1/certificates/istio-system/web/gateway.yaml?hosts=bad%20host", None).await;
    assert_eq!((status, refused["error"]["field"].as_str()), (400, Some("hosts")), "{refused}");
    let (status, refused) = test.call("GET", "/api/v1/certificates/istio-system/web/gateway.yaml?selector=istio!%3Dx", None).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (400, Some("invalid_selector")), "{refused}");
    let (status, refused) = test.call("GET", "/api/v1/certificates/istio-system/web/gateway.yaml?hosts=a.example.test&hosts=b.example.test", None).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (400, Some("repeated_parameter")), "{refused}");
}

async fn test_get_raw(test: &TestApp, path: &str) -> (u16, http::HeaderMap, String) {
    let headers = vec![("authorization".to_string(), format!("Bearer {}", support::API_TOKEN))];
    let (status, headers, body) = support::send_full(test.server.addr(), "GET", path, &headers, Vec::new()).await;
    (status, headers, String::from_utf8(body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dangling_references_lack_both_certificate_and_secret() {
    let authority = Authority::new();
    let test = TestApp::start().await;
    let east = fake_cluster("east").await;
    test.register(&east).await;
    east.put_pod("istio-system", "ingress-1", &[("istio", "ingressgateway")]).unwrap();
    let (status, body) = test.call("POST", "/api/v1/certificates", Some(&upload("web", &authority.leaf(&["shop.example.test"], -1, 90)))).await;
    assert_eq!(status, 201, "{body}");
    east.put_secret("istio-system", foreign_secret("istio-system", "theirs", "kubernetes.io/tls", &[("tls.crt", "x"), ("tls.key", "y")])).unwrap();
    east.put_gateway(
        "istio-system",
        gateway("istio-system", "public", json!([
            https_server(443, "web", &["shop.example.test"], "web"),
            https_server(443, "theirs", &["theirs.example.test"], "theirs"),
            https_server(443, "missing", &["missing.example.test"], "missing"),
        ])),
    )
    .unwrap();

    let (status, report) = test.call("GET", "/api/v1/gateways/dangling", None).await;

    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["dangling"],
        json!([{ "cluster": "east", "namespace": "istio-system", "credential_name": "missing", "gateways": ["istio-system/public"] }]),
        "{report}"
    );
    assert_eq!(report["errors"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_adopts_secret_reports_copies() {
    let authority = Authority::new();
    let test = TestApp::start().await;
    let east = fake_cluster("east").await;
    let west = fake_cluster("west").await;
    test.register(&east).await;
    test.register(&west).await;
    let legacy = authority.leaf(&["legacy.example.test"], -10, 60);
    let other = authority.leaf(&["legacy.example.test"], -5, 80);
    east.put_secret("istio-system", foreign_secret("istio-system", "legacy", "kubernetes.io/tls", &[("tls.crt", &legacy.certificate), ("tls.key", &legacy.key)])).unwrap();
    west.put_secret("istio-system", foreign_secret("istio-system", "legacy", "kubernetes.io/tls", &[("tls.crt", &other.certificate), ("tls.key", &other.key)])).unwrap();
    east.put_secret("istio-system", foreign_secret("istio-system", "db-password", "Opaque", &[("password", "hunter2")])).unwrap();
    east.put_secret("istio-system", foreign_secret("istio-system", "garbage", "Opaque", &[("cert", "not a certificate"), ("key", "not a key")])).unwrap();
    east.put_gateway("istio-system", gateway("istio-system", "public", json!([https_server(443, "https", &["legacy.example.test"], "legacy")]))).unwrap();

    // The candidates: certificates only, with each cluster's copy and who references it.
    let (status, report) = test.call("GET", "/api/v1/imports/candidates", None).await;
    assert_eq!(status, 200, "{report}");
    let candidates = report["candidates"].as_array().unwrap();
    assert_eq!(candidates.len(), 1, "{report}");
    let candidate = &candidates[0];
    assert_eq!((candidate["namespace"].as_str(), candidate["name"].as_str()), (Some("istio-system"), Some("legacy")));
    assert_eq!(candidate["identical"], false, "east and west hold different certificates");
    assert_eq!(candidate["copies"][0]["cluster"], "east");
    assert_eq!(candidate["copies"][0]["referenced_by"], json!(["istio-system/public"]));
    assert_ne!(candidate["copies"][0]["leaf"]["sha256_fingerprint"], candidate["copies"][1]["leaf"]["sha256_fingerprint"]);

    let (status, imported) = test.call("POST", "/api/v1/imports", Some(&json!({ "cluster": "east", "namespace": "istio-system", "secret": "legacy" }))).await;

    assert_eq!(status, 201, "{imported}");
    assert_eq!(imported["imported_from"]["cluster"], "east");
    assert_eq!(imported["secret_format"], json!({ "type": "kubernetes.io/tls", "keys": "tls" }));
    assert_eq!(imported["sync"]["east"]["state"], "synced", "{imported}");
    assert_eq!(imported["sync"]["west"]["state"], "conflict", "{imported}");
    let adopted = east.secret("istio-system", "legacy").unwrap();
    assert_eq!(adopted["metadata"]["labels"]["app.kubernetes.io/managed-by"], "meshcert");
    assert_eq!(adopted["type"], "kubernetes.io/tls");
    assert_eq!(secret_entry(&adopted, "tls.key"), legacy.key);
    let untouched = west.secret("istio-system", "legacy").unwrap();
    assert_eq!(secret_entry(&untouched, "tls.crt"), other.certificate, "west's copy is left alone without replace");
    assert!(untouched["metadata"]["labels"].get("app.kubernetes.io/managed-by").is_none());
    for body_line in pem_body_lines(&legacy.key) {
        assert!(!imported.to_string().contains(&body_line), "the private key leaked into the response");
        assert!(!test.all_output().contains(&body_line), "the private key leaked into a log line");
    }

    // Importing again resumes it (and with replace takes west's copy over too).
    let (status, again) = test.call("POST", "/api/v1/imports", Some(&json!({ "cluster": "east", "namespace": "istio-system", "secret": "legacy", "replace": true }))).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["warnings"][0]["code"], "already_imported");
    assert_eq!(again["sync"]["west"]["state"], "synced", "{again}");
    assert_eq!(secret_entry(&west.secret("istio-system", "legacy").unwrap(), "tls.crt"), secret_entry(&adopted, "tls.crt"));

    // Errors name the value: a missing Secret, one without a certificate, an unknown cluster.
    let (status, refused) = test.call("POST", "/api/v1/imports", Some(&json!({ "cluster": "east", "namespace": "istio-system", "secret": "nothing" }))).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (404, Some("secret_not_found")), "{refused}");
    let (status, refused) = test.call("POST", "/api/v1/imports", Some(&json!({ "cluster": "east", "namespace": "istio-system", "secret": "db-password" }))).await;
    assert_eq!((status, refused["error"]["code"].as_str(), refused["error"]["field"].as_str()), (422, Some("no_certificate"), Some("secret")), "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("data keys: password"), "{refused}");
    assert!(!refused.to_string().contains("hunter2"));
    let (status, refused) = test.call("POST", "/api/v1/imports", Some(&json!({ "cluster": "north", "namespace": "istio-system", "secret": "legacy" }))).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (404, Some("cluster_not_found")), "{refused}");

    // Every import is in the audit log.
    let (_, audit) = test.call("GET", "/api/v1/audit?action=certificate.import", None).await;
    let outcomes: Vec<(String, u64)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| (entry["target"].as_str().unwrap().to_string(), entry["status"].as_u64().unwrap()))
        .collect();
    assert_eq!(outcomes.len(), 5, "{audit}");
    assert!(outcomes.contains(&("certificate istio-system/legacy from cluster east".to_string(), 201)), "{outcomes:?}");
    assert!(outcomes.contains(&("certificate istio-system/nothing from cluster east".to_string(), 404)), "a refused import names its Secret: {outcomes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_generic_secret_keeps_its_format_through_rotation() {
    let authority = Authority::new();
    let test = TestApp::start().await;
    let east = fake_cluster("east").await;
    let west = fake_cluster("west").await;
    test.register(&east).await;
    test.register(&west).await;
    let first = authority.leaf(&["mtls.example.test"], -10, 60);
    east.put_secret(
        "istio-system",
        foreign_secret("istio-system", "mtls", "Opaque", &[("cert", &first.certificate), ("key", &first.key), ("crl", "a revocation list")]),
    )
    .unwrap();
    east.put_secret("istio-system", foreign_secret("istio-system", "mtls-cacert", "Opaque", &[("cacert", &authority.pem)])).unwrap();
    // West has another Secret of that name, of another type.
    west.put_secret("istio-system", foreign_secret("istio-system", "mtls", "kubernetes.io/tls", &[("tls.crt", "theirs"), ("tls.key", "theirs")])).unwrap();
    let expired = authority.leaf(&["old.example.test"], -100, -2);
    east.put_secret("istio-system", foreign_secret("istio-system", "old", "kubernetes.io/tls", &[("tls.crt", &expired.certificate), ("tls.key", &expired.key)])).unwrap();

    let list = json!([
        { "cluster": "east", "namespace": "istio-system", "secret": "mtls", "replace": true },
        { "cluster": "east", "namespace": "istio-system", "secret": "old" },
        { "cluster": "east", "namespace": "istio-system", "secret": "mtls" },
    ]);
    let (status, report) = test.call("POST", "/api/v1/imports", Some(&list)).await;

    assert_eq!(status, 200, "{report}");
    let statuses: Vec<u64> = report["imports"].as_array().unwrap().iter().map(|outcome| outcome["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [201, 201, 200], "{report}");
    let (_, audit) = test.call("GET", "/api/v1/audit?action=certificate.import", None).await;
    let mut audited: Vec<(String, u64)> = audit["entries"].as_array().unwrap().iter().map(|entry| (entry["target"].as_str().unwrap().to_string(), entry["status"].as_u64().unwrap())).collect();
    audited.sort();
    let expected = [("certificate istio-system/mtls from cluster east", 200), ("certificate istio-system/mtls from cluster east", 201), ("certificate istio-system/old from cluster east", 201)];
    assert_eq!(audited, expected.map(|(target, status)| (target.to_string(), status)), "each import of a list is audited");
    let mtls = &report["imports"][0]["certificate"];
    assert_eq!(mtls["secret_format"], json!({ "type": "Opaque", "keys": "generic" }));
    assert_eq!((mtls["mtls"].as_bool(), mtls["separate_ca_secret"].as_bool()), (Some(true), Some(true)), "{mtls}");
    // An expired Secret is adopted with a warning and alerted at once.
    let old = &report["imports"][1]["certificate"];
    assert_eq!(old["status"], "expired");
    assert!(old["warnings"].to_string().contains("expired"), "{old}");
    let (_, alerts) = test.call("GET", "/api/v1/alerts?kind=expired", None).await;
    assert_eq!(alerts["alerts"][0]["name"], "old", "{alerts}");

    // West's Secret of another type was replaced by one in the adopted format.
    let in_west = west.secret("istio-system", "mtls").unwrap();
    assert_eq!(in_west["type"], "Opaque");
    assert_eq!(secret_entry(&in_west, "cert").trim(), first.certificate.trim());
    assert!(in_west["data"].get("tls.crt").is_none(), "{in_west}");
    assert_eq!(secret_entry(&west.secret("istio-system", "mtls-cacert").unwrap(), "cacert").trim(), authority.pem.trim());

    // A rotation writes the generic keys again and keeps the entry Istio does not read as a certificate.
    let second = authority.leaf(&["mtls.example.test"], -1, 90);
    let (status, rotated) = test.call("PUT", "/api/v1/certificates/istio-system/mtls", Some(&json!({ "certificate": second.certificate, "private_key": second.key }))).await;
    assert_eq!(status, 200, "{rotated}");
    let in_east = east.secret("istio-system", "mtls").unwrap();
    assert_eq!(in_east["type"], "Opaque");
    assert_eq!(secret_entry(&in_east, "key"), second.key);
    assert_eq!(secret_entry(&in_east, "crl"), "a revocation list");
    assert!(in_east["data"].get("tls.key").is_none(), "{in_east}");
    assert_eq!(in_east["metadata"]["annotations"]["meshcert.io/version"], "2");
}
