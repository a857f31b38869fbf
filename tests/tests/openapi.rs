//! Tests of the OpenAPI document that the api serves, components/api/src/openapi.json. The
//! document must list exactly the routes of the api's route table. A scenario against the release
//! components reaches every documented success status and the main errors, and each response
//! must match the status, headers and JSON Schema that the document gives for it. Build the
//! components first (scripts/test.sh).

mod support;

// The api's route table, compiled natively, which works because it uses no Spin API.
#[allow(dead_code, clippy::type_complexity)]
#[path = "../../components/api/src/routes.rs"]
mod routes;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use support::{fake_cluster, upload, Certificates, TestApp, API_TOKEN};

/// The document, as the api embeds it with `include_str!`.
const DOCUMENT: &str = include_str!("../../components/api/src/openapi.json");

const READ_TOKEN: &str = "read-token-for-tests";

/// The keys of an OpenAPI path item that name operations.
const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

const DAY: Duration = Duration::from_secs(86_400);

fn document() -> Value {
    serde_json::from_str(DOCUMENT).expect("openapi.json is not valid JSON")
}

#[test]
fn document_paths_match_route_table() {
    let document = document();
    let paths = document["paths"].as_object().expect("the document has no paths object");

    for (template, _, methods) in routes::ROUTES {
        let Some(item) = paths.get(*template) else {
            panic!("the route table has {template}, but the document's paths lack it");
        };
        for (method, _) in *methods {
            assert!(item.get(method.to_ascii_lowercase()).is_some(), "the route table accepts {method} {template}, but the document lacks it");
        }
    }
    for (path, item) in paths {
        let Some((_, _, methods)) = routes::ROUTES.iter().find(|(template, ..)| *template == path.as_str()) else {
            panic!("the document lists {path}, but the route table lacks it");
        };
        // The api accepts HEAD wherever it accepts GET, so documenting HEAD is optional.
        for method in METHODS.iter().filter(|method| **method != "head" && item.get(**method).is_some()) {
            assert!(
                methods.iter().any(|(accepted, _)| accepted.eq_ignore_ascii_case(method)),
                "the document lists {} {path}, but the route table lacks it",
                method.to_ascii_uppercase()
            );
        }
    }
}

#[test]
fn schemas_reject_malformed_bodies() {
    let mut contract = Contract::new();
    let list = "/paths/~1api~1v1~1certificates/get/responses/200/content/application~1json/schema";
    let item = json!({
        "namespace": "istio-system", "name": "web", "status": "valid", "days_left": 30, "not_after": "2027-01-01T00:00:00Z",
        "version": 1, "sync": "synced", "cluster_states": { "east": { "state": "synced" } }, "state": "active",
    });
    let with = |field: &str, value: Value| {
        let mut changed = item.clone();
        changed[field] = value;
        json!({ "certificates": [changed], "next_cursor": null })
    };

    assert_eq!(contract.errors(list, &json!({ "certificates": [item.clone()], "next_cursor": "istio-system/web" })), Vec::<String>::new());
    assert_eq!(contract.errors(list, &json!({ "certificates": [], "next_cursor": null, "total": 0 })).len(), 1, "an unknown field passed");
    assert_eq!(contract.errors(list, &json!({ "certificates": [] })).len(), 1, "a missing next_cursor passed");
    assert_eq!(contract.errors(list, &with("status", json!("fine"))).len(), 1, "an unknown status passed");
    assert_eq!(contract.errors(list, &with("not_after", json!("next year"))).len(), 1, "a date-time that is not RFC 3339 passed");
    assert_eq!(contract.errors(list, &with("version", json!(0))).len(), 1, "version 0 passed");
    assert_eq!(contract.errors(list, &with("cluster_states", json!({ "east": { "state": "unknown" } }))).len(), 1, "an unknown cluster state passed");

    // An error response allows only the codes documented for its operation and status.
    let not_found = contract.resolve("/paths/~1api~1v1~1certificates~1{namespace}~1{name}/get/responses/404".into());
    let not_found = format!("{not_found}/content/application~1json/schema");
    assert_eq!(contract.errors(&not_found, &json!({ "error": { "code": "certificate_not_found", "message": "m" } })), Vec::<String>::new());
    assert!(!contract.errors(&not_found, &json!({ "error": { "code": "not_found", "message": "m" } })).is_empty(), "another code passed");
    assert!(!contract.errors(&not_found, &json!({ "error": { "code": "certificate_not_found" } })).is_empty(), "an error without message passed");
}

/// One request and its response, as the client saw them.
struct Exchange {
    method: String,
    /// Path and query.
    target: String,
    request_body: Option<Vec<u8>>,
    status: u16,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

impl Exchange {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }
}

impl fmt::Display for Exchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} returned {}: {}", self.method, self.target, self.status, String::from_utf8_lossy(&self.body).trim())
    }
}

/// The document's promises, checked against responses.
struct Contract {
    document: Value,
    /// Validators by the JSON pointer of their schema in the document.
    validators: HashMap<String, jsonschema::Validator>,
    /// `(template, method, status)` of every documented response seen.
    seen: BTreeSet<(String, String, String)>,
    /// Every disagreement between a response and the document.
    failures: Vec<String>,
}

impl Contract {
    fn new() -> Contract {
        Contract { document: document(), validators: HashMap::new(), seen: BTreeSet::new(), failures: Vec::new() }
    }

    /// Returns the validation errors of `instance` against the schema at `pointer` in the
    /// document. The schema is the whole document with a top-level `$ref` to `pointer`, so
    /// `#/components/...` references resolve inside it.
    fn errors(&mut self, pointer: &str, instance: &Value) -> Vec<String> {
        if !self.validators.contains_key(pointer) {
            let mut schema = self.document.clone();
            schema["$ref"] = json!(format!("#{}", percent_encode(pointer)));
            let validator = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft202012)
                .should_validate_formats(true)
                .build(&schema)
                .unwrap_or_else(|error| panic!("the schema at {pointer} does not compile: {error}"));
            self.validators.insert(pointer.to_string(), validator);
        }
        let validator = &self.validators[pointer];
        validator.iter_errors(instance).map(|error| format!("at {:?}: {error}", error.instance_path().as_str())).collect()
    }

    /// Follows the `$ref` of an OpenAPI object (a response, a header) to the pointer of its target.
    fn resolve(&self, mut pointer: String) -> String {
        while let Some(reference) = self.document.pointer(&pointer).and_then(|object| object["$ref"].as_str()) {
            pointer = reference.strip_prefix('#').unwrap_or_else(|| panic!("{pointer} refers outside the document: {reference}")).to_string();
        }
        pointer
    }

    /// Checks one exchange and records every disagreement with the document.
    fn check(&mut self, exchange: &Exchange) {
        let mut problems = Vec::new();
        let method = if exchange.method == "HEAD" { "get".to_string() } else { exchange.method.to_ascii_lowercase() };
        let status = exchange.status.to_string();

        // A documented operation has its own response objects. A path or method that the
        // document does not list gets the shared response of the status.
        let matched = routes::find(exchange.path());
        let operation = matched.as_ref().map(|matched| format!("/paths/{}/{method}", escape(matched.template)));
        let documented = operation.as_ref().is_some_and(|operation| self.document.pointer(operation).is_some());
        let response = if documented {
            let operation = operation.as_deref().unwrap_or_default();
            let template = matched.as_ref().map(|matched| matched.template).unwrap_or_default();
            self.seen.insert((template.to_string(), method.to_ascii_uppercase(), status.clone()));
            let pointer = format!("{operation}/responses/{status}");
            self.document.pointer(&pointer).is_some().then_some(pointer)
        } else {
            let shared = match (exchange.status, matched.is_some()) {
                (401, _) => Some("Unauthorized"),
                (413, _) => Some("BodyTooLarge"),
                (500, _) => Some("InternalError"),
                (404, false) => Some("RouteNotFound"),
                (405, true) => Some("MethodNotAllowed"),
                _ => None,
            };
            shared.map(|name| format!("/components/responses/{name}"))
        };
        let Some(response) = response else {
            self.failures.push(format!("{exchange}\n  status {status} is not documented for this operation"));
            return;
        };
        let response = self.resolve(response);

        // Documented headers.
        let headers: Vec<String> =
            self.document.pointer(&format!("{response}/headers")).and_then(Value::as_object).map(|headers| headers.keys().cloned().collect()).unwrap_or_default();
        for name in headers {
            let header = self.resolve(format!("{response}/headers/{}", escape(&name)));
            let required = self.document.pointer(&format!("{header}/required")) == Some(&Value::Bool(true));
            match exchange.header(&name.to_ascii_lowercase()) {
                Some(value) => {
                    for error in self.errors(&format!("{header}/schema"), &json!(value)) {
                        problems.push(format!("header {name}: {error}"));
                    }
                }
                None if required => problems.push(format!("header {name} is documented as required but missing")),
                None => {}
            }
        }

        // The body, which a HEAD response omits.
        let schema = format!("{response}/content/application~1json/schema");
        if exchange.method != "HEAD" && self.document.pointer(&schema).is_some() {
            if exchange.header("content-type") != Some("application/json") {
                problems.push(format!("content-type is {:?}, not application/json", exchange.header("content-type")));
            }
            match serde_json::from_slice::<Value>(&exchange.body) {
                Ok(body) => problems.extend(self.errors(&schema, &body)),
                Err(error) => problems.push(format!("the body is not JSON: {error}")),
            }
        }

        // A request body that the api accepted must match the documented request schema, and
        // one that it rejected as invalid JSON must not.
        let request_schema = operation.map(|operation| format!("{operation}/requestBody/content/application~1json/schema"));
        let request = exchange.request_body.as_deref().map(serde_json::from_slice::<Value>);
        if let (Some(request_schema), Some(request)) = (request_schema.filter(|pointer| self.document.pointer(pointer).is_some()), request) {
            let accepted = (200..300).contains(&exchange.status);
            let rejected = exchange.status == 400 && exchange.json()["error"]["code"] == "invalid_json";
            let errors = match &request {
                Ok(request) => self.errors(&request_schema, request),
                Err(error) => vec![format!("not JSON: {error}")],
            };
            if accepted && !errors.is_empty() {
                problems.push(format!("the api accepted a request body that the documented request schema rejects: {errors:?}"));
            }
            if rejected && errors.is_empty() {
                problems.push("the api rejected the request body as invalid_json, but the documented request schema accepts it".into());
            }
        }

        if !problems.is_empty() {
            self.failures.push(format!("{exchange}\n  {}", problems.join("\n  ")));
        }
    }

    /// Returns every documented 2xx response that no exchange produced.
    fn unseen_successes(&self) -> Vec<String> {
        let mut unseen = Vec::new();
        for (path, item) in self.document["paths"].as_object().into_iter().flatten() {
            for method in METHODS.iter().filter(|method| item.get(**method).is_some()) {
                for status in item[*method]["responses"].as_object().into_iter().flatten().map(|(status, _)| status) {
                    let key = (path.clone(), method.to_ascii_uppercase(), status.clone());
                    if status.starts_with('2') && !self.seen.contains(&key) {
                        unseen.push(format!("{} {path} {status}", key.1));
                    }
                }
            }
        }
        unseen
    }
}

/// Escapes a JSON pointer token (RFC 6901).
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Percent-encodes what a URI fragment may not contain, such as the braces of `{namespace}`.
fn percent_encode(pointer: &str) -> String {
    let mut encoded = String::new();
    for byte in pointer.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// The scenario's HTTP client, which checks each response against the contract.
struct Client {
    contract: Contract,
}

impl Client {
    async fn send(&mut self, addr: SocketAddr, method: &str, target: &str, token: Option<&str>, headers: &[(&str, &str)], body: Option<Vec<u8>>) -> Exchange {
        let mut all: Vec<(String, String)> = token.map(|token| ("authorization".to_string(), format!("Bearer {token}"))).into_iter().collect();
        all.extend(headers.iter().map(|(name, value)| (name.to_string(), value.to_string())));
        let (status, headers, response) = support::send_full(addr, method, target, &all, body.clone().unwrap_or_default()).await;
        let exchange = Exchange { method: method.into(), target: target.into(), request_body: body, status, headers, body: response };
        self.contract.check(&exchange);
        exchange
    }

    /// Sends a request with `token` and a JSON body, if any.
    async fn call(&mut self, addr: SocketAddr, method: &str, target: &str, token: Option<&str>, body: Option<Value>) -> Exchange {
        let body = body.map(|body| serde_json::to_vec(&body).expect("encode the request body"));
        self.send(addr, method, target, token, &[], body).await
    }

    /// Fails the test, with every disagreement found so far, unless `exchange` has `status`.
    fn expect(&self, exchange: &Exchange, status: u16) {
        assert!(
            exchange.status == status,
            "expected {status}: {exchange}\n\ndisagreements with openapi.json so far:\n{}",
            self.contract.failures.join("\n")
        );
    }

    /// Fails the test, with every disagreement found so far, unless the error code is `code`.
    fn expect_error(&self, exchange: &Exchange, status: u16, code: &str) {
        self.expect(exchange, status);
        assert_eq!(exchange.json()["error"]["code"], code, "{exchange}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_match_document() {
    let certificates = Certificates::new();
    for (host, days) in [("one.example.test", 365), ("two.example.test", 365), ("short.example.test", 1), ("renewed.example.test", 365), ("legacy.example.test", 365)] {
        certificates.server(host, days);
    }
    let east = fake_cluster("east").await;
    let test = TestApp::start_with(&[("api_read_token", READ_TOKEN)]).await;
    let app = test.server.addr();
    let admin = Some(API_TOKEN);
    let mut client = Client { contract: Contract::new() };
    let certificate = |name: &str| format!("/api/v1/certificates/istio-system/{name}");
    let rollback = |name: &str| format!("/api/v1/certificates/istio-system/{name}/rollback");

    // Health and this document need no certificate.
    let response = client.call(app, "GET", "/healthz", None, None).await;
    client.expect(&response, 200);
    let response = client.call(app, "GET", "/livez", None, None).await;
    client.expect(&response, 200);
    let response = client.call(app, "GET", "/api/v1/openapi.json", admin, None).await;
    client.expect(&response, 200);
    assert!(response.json() == document(), "the api serves a document other than components/api/src/openapi.json: rebuild the components");

    // Authentication, routing, methods, body size and roles.
    let response = client.call(app, "GET", "/api/v1/certificates", None, None).await;
    client.expect_error(&response, 401, "unauthorized");
    let response = client.call(app, "GET", "/api/v1/certificates", Some("wrong-token"), None).await;
    client.expect_error(&response, 401, "unauthorized");
    let response = client.call(app, "POST", "/api/v1/certificates", Some("wrong-token"), Some(json!({}))).await;
    client.expect_error(&response, 401, "unauthorized");
    let response = client.call(app, "GET", "/api/v1/nothing", admin, None).await;
    client.expect_error(&response, 404, "not_found");
    let response = client.call(app, "PATCH", "/api/v1/certificates", admin, Some(json!({}))).await;
    client.expect_error(&response, 405, "method_not_allowed");
    assert_eq!(response.header("allow"), Some("GET, POST"), "{exchange}", exchange = response);
    let response = client.call(app, "DELETE", "/healthz", None, None).await;
    client.expect_error(&response, 405, "method_not_allowed");
    let oversized = vec![b' '; 1024 * 1024 + 1];
    let response = client.send(app, "POST", "/api/v1/certificates", admin, &[], Some(oversized)).await;
    client.expect_error(&response, 413, "body_too_large");
    let response = client.call(app, "GET", "/api/v1/certificates", Some(READ_TOKEN), None).await;
    client.expect(&response, 200);
    let response = client.call(app, "POST", "/api/v1/encryption/reseal", Some(READ_TOKEN), None).await;
    client.expect_error(&response, 403, "forbidden");
    let response = client.call(app, "POST", "/api/v1/certificates", Some(READ_TOKEN), Some(upload(&certificates, "one", "one.example.test", "one.example.test"))).await;
    client.expect_error(&response, 403, "forbidden");

    // A certificate before any cluster, then the cluster, which receives it at registration.
    let response = client.call(app, "POST", "/api/v1/certificates", admin, Some(upload(&certificates, "one", "one.example.test", "one.example.test"))).await;
    client.expect(&response, 201);
    assert_eq!(response.header("etag"), Some("\"1\""), "{response}");
    let registration = json!({ "id": "east", "display_name": "East", "api_server": east.url(), "token": east.token(), "labels": { "env": "prod" } });
    let response = client.call(app, "POST", "/api/v1/clusters", admin, Some(registration.clone())).await;
    client.expect(&response, 201);
    assert_eq!(response.json()["sync"]["applied"], 1, "{response}");
    let response = client.call(app, "POST", "/api/v1/clusters", admin, Some(registration.clone())).await;
    client.expect_error(&response, 409, "cluster_exists");
    let response = client.call(app, "POST", "/api/v1/clusters", admin, Some(json!({ "id": "East", "api_server": east.url(), "token": "t" }))).await;
    client.expect_error(&response, 422, "invalid_cluster_id");
    let response = client.call(app, "POST", "/api/v1/clusters", admin, Some(json!({ "id": "west", "api_server": east.url(), "token": "t", "region": "eu" }))).await;
    client.expect_error(&response, 400, "invalid_json");
    let response = client.call(app, "GET", "/api/v1/clusters", Some(READ_TOKEN), None).await;
    client.expect(&response, 200);

    // Creates and their errors.
    let response = client.call(app, "POST", "/api/v1/certificates", admin, Some(upload(&certificates, "two", "two.example.test", "two.example.test"))).await;
    client.expect(&response, 201);
    assert_eq!(response.json()["sync"]["east"]["state"], "synced", "{response}");
    let mut short = upload(&certificates, "short", "short.example.test", "short.example.test");
    short["namespace"] = json!("istio-system");
    short["ca_certificate"] = Value::Null;
    short["clusters"] = json!("env=prod");
    let response = client.call(app, "POST", "/api/v1/certificates", admin, Some(short)).await;
    client.expect(&response, 201);
    let response = client.call(app, "POST", "/api/v1/certificates", admin, Some(upload(&certificates, "one", "one.example.test", "one.example.test"))).await;
    client.expect_error(&response, 409, "certificate_exists");
    let response = client.call(app, "POST", "/api/v1/certificates", admin, Some(upload(&certificates, "bad", "one.example.test", "two.example.test"))).await;
    client.expect_error(&response, 422, "key_mismatch");
    let mut unknown_field = upload(&certificates, "three", "one.example.test", "one.example.test");
    unknown_field["color"] = json!("blue");
    let response = client.call(app, "POST", "/api/v1/certificates", admin, Some(unknown_field)).await;
    client.expect_error(&response, 400, "invalid_json");
    let response = client.send(app, "POST", "/api/v1/certificates", admin, &[], Some(b"not json".to_vec())).await;
    client.expect_error(&response, 400, "invalid_json");

    // The list, one page of two and then the rest.
    let first = client.call(app, "GET", "/api/v1/certificates?limit=2", admin, None).await;
    client.expect(&first, 200);
    let cursor = first.json()["next_cursor"].as_str().map(str::to_string).unwrap_or_else(|| panic!("the first page has no next_cursor: {first}"));
    let second = client.call(app, "GET", &format!("/api/v1/certificates?limit=2&cursor={cursor}"), admin, None).await;
    client.expect(&second, 200);
    assert_eq!(second.json()["next_cursor"], Value::Null, "{second}");
    let names: Vec<Value> = [&first, &second].iter().flat_map(|page| page.json()["certificates"].as_array().cloned().unwrap_or_default()).map(|item| item["name"].clone()).collect();
    assert_eq!(names, [json!("one"), json!("short"), json!("two")]);
    let response = client.call(app, "GET", "/api/v1/certificates?status=soon", admin, None).await;
    client.expect_error(&response, 400, "invalid_filter");
    let response = client.call(app, "GET", "/api/v1/certificates?limit=0", admin, None).await;
    client.expect_error(&response, 400, "invalid_limit");

    // Details.
    let response = client.call(app, "GET", &certificate("one"), Some(READ_TOKEN), None).await;
    client.expect(&response, 200);
    assert_eq!(response.header("etag"), Some("\"1\""), "{response}");
    let response = client.call(app, "HEAD", &certificate("one"), admin, None).await;
    client.expect(&response, 200);
    let response = client.call(app, "GET", &certificate("nothing"), admin, None).await;
    client.expect_error(&response, 404, "certificate_not_found");

    // Rotation, an unchanged PUT and the errors of PUT.
    let rotation = json!({ "certificate": certificates.read("two.example.test.crt"), "private_key": certificates.read("two.example.test.key") });
    let response = client.send(app, "PUT", &certificate("one"), admin, &[("if-match", "\"1\"")], Some(rotation.to_string().into_bytes())).await;
    client.expect(&response, 200);
    assert_eq!(response.header("etag"), Some("\"2\""), "{response}");
    let response = client.call(app, "PUT", &certificate("one"), admin, Some(rotation.clone())).await;
    client.expect(&response, 200);
    assert_eq!(response.json()["version"], 2, "{response}");
    assert!(response.json()["warnings"].as_array().into_iter().flatten().any(|warning| warning["code"] == "unchanged"), "{response}");
    let response = client.send(app, "PUT", &certificate("one"), admin, &[("if-match", "\"1\"")], Some(rotation.to_string().into_bytes())).await;
    client.expect_error(&response, 412, "version_mismatch");
    let response = client.call(app, "PUT", &certificate("nothing"), admin, Some(rotation.clone())).await;
    client.expect_error(&response, 404, "certificate_not_found");
    let mut bad_selector = rotation.clone();
    bad_selector["clusters"] = json!("this is !! not a selector");
    let response = client.call(app, "PUT", &certificate("one"), admin, Some(bad_selector)).await;
    client.expect_error(&response, 422, "invalid_cluster_selector");
    let response = client.call(app, "PUT", &certificate("one"), admin, Some(json!({ "certificate": certificates.read("two.example.test.crt") }))).await;
    client.expect_error(&response, 400, "invalid_json");

    // Rollback and its errors.
    let response = client.call(app, "POST", &rollback("one"), admin, Some(json!({ "version": 1 }))).await;
    client.expect(&response, 200);
    assert_eq!(response.json()["versions"][0]["restored_from"], 1, "{response}");
    assert_eq!(response.header("etag"), Some("\"3\""), "{response}");
    let response = client.call(app, "POST", &rollback("one"), admin, Some(json!({ "version": 3 }))).await;
    client.expect_error(&response, 409, "version_is_current");
    let response = client.call(app, "POST", &rollback("one"), admin, Some(json!({ "version": 99 }))).await;
    client.expect_error(&response, 404, "version_not_found");
    let response = client.call(app, "POST", &rollback("one"), admin, Some(json!({}))).await;
    client.expect_error(&response, 400, "invalid_json");

    // Alerts: the 1-day certificate is expiring.
    let response = client.call(app, "GET", "/api/v1/alerts", Some(READ_TOKEN), None).await;
    client.expect(&response, 200);
    assert_eq!(response.json()["alerts"][0]["kind"], "expiring", "{response}");
    let response = client.call(app, "GET", "/api/v1/alerts?kind=soon", admin, None).await;
    client.expect_error(&response, 400, "invalid_filter");

    // Renew the 1-day certificate, let its first version expire, and roll back to it.
    let renewal = json!({ "certificate": certificates.read("renewed.example.test.crt"), "private_key": certificates.read("renewed.example.test.key"), "mtls": null, "clusters": null });
    let response = client.call(app, "PUT", &certificate("short"), admin, Some(renewal)).await;
    client.expect(&response, 200);
    test.app.clock().advance(2 * DAY);
    let response = client.call(app, "POST", &rollback("short"), admin, Some(json!({ "version": 1 }))).await;
    client.expect_error(&response, 422, "certificate_expired");
    let response = client.call(app, "POST", &rollback("short"), admin, Some(json!({ "version": 1, "allow_expired": true }))).await;
    client.expect(&response, 200);
    let response = client.call(app, "GET", "/api/v1/alerts?kind=expired&namespace=istio-system", admin, None).await;
    client.expect(&response, 200);
    assert_eq!(response.json()["alerts"][0]["name"], "short", "{response}");
    let response = client.call(app, "GET", "/api/v1/alerts?status=resolved", admin, None).await;
    client.expect(&response, 200);
    assert_eq!(response.json()["alerts"][0]["kind"], "expiring", "{response}");

    // Deletes: done at once, refused, and pending while the cluster is down.
    let response = client.call(app, "DELETE", &certificate("two"), admin, None).await;
    client.expect(&response, 200);
    let response = client.send(app, "DELETE", &certificate("short"), admin, &[("if-match", "\"99\"")], None).await;
    client.expect_error(&response, 412, "version_mismatch");
    let response = client.call(app, "DELETE", &certificate("nothing"), admin, None).await;
    client.expect_error(&response, 404, "certificate_not_found");
    east.set_down(true).await.expect("stop the fake cluster");
    let response = client.call(app, "DELETE", &certificate("one"), admin, None).await;
    client.expect(&response, 202);
    assert_eq!(response.json()["sync"]["east"]["state"], "deleting", "{response}");
    let response = client.call(app, "PUT", &certificate("one"), admin, Some(rotation.clone())).await;
    client.expect_error(&response, 409, "certificate_deleting");
    let response = client.call(app, "POST", &rollback("one"), admin, Some(json!({ "version": 1 }))).await;
    client.expect_error(&response, 409, "certificate_deleting");
    east.set_down(false).await.expect("restart the fake cluster");
    let response = client.call(app, "DELETE", &certificate("one"), admin, None).await;
    client.expect(&response, 200);
    assert!(east.secret("istio-system", "one").is_none(), "the Secret outlived its certificate");

    // Gateways: the ones that use a certificate, a binding and its removal, a manifest, and
    // references without a Secret.
    let server = json!({ "port": { "number": 443, "name": "https", "protocol": "HTTPS" }, "hosts": ["short.example.test"], "tls": { "mode": "SIMPLE", "credentialName": "short" } });
    let public = json!({ "apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": { "namespace": "istio-system", "name": "public" }, "spec": { "selector": { "istio": "ingressgateway" }, "servers": [server] } });
    east.put_gateway("istio-system", public).expect("store the Gateway");
    let response = client.call(app, "GET", &format!("{}/gateways", certificate("short")), Some(READ_TOKEN), None).await;
    client.expect(&response, 200);
    assert_eq!(response.json()["gateways"][0]["servers"][0]["uncovered_hosts"], json!(["short.example.test"]), "a certificate without SANs covers no host: {response}");
    let response = client.call(app, "GET", &format!("{}/gateways", certificate("nothing")), admin, None).await;
    client.expect_error(&response, 404, "certificate_not_found");
    let binding = json!({ "cluster": "east", "gateway": { "namespace": "istio-system", "name": "public" }, "port": 8443, "hosts": ["short.example.test"] });
    let response = client.call(app, "POST", &format!("{}/bindings", certificate("short")), admin, Some(binding)).await;
    client.expect(&response, 200);
    let response = client.call(app, "POST", &format!("{}/bindings", certificate("short")), admin, Some(json!({ "cluster": "east", "gateway": { "namespace": "istio-system", "name": "public" } }))).await;
    client.expect_error(&response, 422, "hosts_required");
    let response = client.call(app, "DELETE", &format!("{}/bindings?cluster=east&gateway=istio-system/public&port=8443", certificate("short")), admin, None).await;
    client.expect(&response, 200);
    let response = client.call(app, "DELETE", &format!("{}/bindings?cluster=east&gateway=istio-system/public&port=8443", certificate("short")), admin, None).await;
    client.expect_error(&response, 404, "binding_not_found");
    let response = client.call(app, "GET", &format!("{}/gateway.yaml?hosts=short.example.test", certificate("short")), Some(READ_TOKEN), None).await;
    client.expect(&response, 200);
    assert_eq!(response.header("content-type"), Some("application/yaml"), "{response}");
    let response = client.call(app, "GET", &format!("{}/gateway.yaml", certificate("short")), admin, None).await;
    client.expect_error(&response, 400, "hosts_required");
    let response = client.call(app, "GET", "/api/v1/gateways/dangling", Some(READ_TOKEN), None).await;
    client.expect(&response, 200);

    // Imports: the candidates, one import, the same again, and a list.
    let theirs = |file: &str| base64::engine::general_purpose::STANDARD.encode(certificates.read(file));
    let legacy = json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": { "namespace": "istio-system", "name": "legacy" }, "type": "kubernetes.io/tls",
        "data": { "tls.crt": theirs("legacy.example.test.crt"), "tls.key": theirs("legacy.example.test.key") },
    });
    east.put_secret("istio-system", legacy).expect("store the Secret");
    let response = client.call(app, "GET", "/api/v1/imports/candidates", Some(READ_TOKEN), None).await;
    client.expect(&response, 200);
    assert_eq!(response.json()["candidates"][0]["name"], "legacy", "{response}");
    let import = json!({ "cluster": "east", "namespace": "istio-system", "secret": "legacy" });
    let response = client.call(app, "POST", "/api/v1/imports", admin, Some(import.clone())).await;
    client.expect(&response, 201);
    let response = client.call(app, "POST", "/api/v1/imports", admin, Some(import.clone())).await;
    client.expect(&response, 200);
    let missing = json!({ "cluster": "east", "namespace": "istio-system", "secret": "nothing" });
    let response = client.call(app, "POST", "/api/v1/imports", admin, Some(json!([import, missing.clone()]))).await;
    client.expect(&response, 200);
    let response = client.call(app, "POST", "/api/v1/imports", admin, Some(missing)).await;
    client.expect_error(&response, 404, "secret_not_found");
    let response = client.call(app, "POST", "/api/v1/imports", admin, Some(json!({ "cluster": "east", "namespace": "istio-system" }))).await;
    client.expect_error(&response, 400, "invalid_json");
    let response = client.call(app, "DELETE", &certificate("legacy"), admin, None).await;
    client.expect(&response, 200);

    // A cluster's details, changes, the runtime configuration for its CA, and unregistering it.
    let response = client.call(app, "GET", "/api/v1/clusters/east", Some(READ_TOKEN), None).await;
    client.expect(&response, 200);
    assert_eq!(response.json()["reachability"]["reachable"], true, "{response}");
    assert_eq!(response.json()["secrets"]["synced"], 1, "{response}");
    let response = client.call(app, "GET", "/api/v1/clusters/nothing", admin, None).await;
    client.expect_error(&response, 404, "cluster_not_found");
    let response = client.call(app, "GET", "/api/v1/clusters/east/ca-bundle", admin, None).await;
    client.expect_error(&response, 404, "no_ca_bundle");
    let change = json!({ "ca_bundle": certificates.read("example.test.crt"), "labels": { "env": "prod", "region": "eu" }, "display_name": null });
    let response = client.call(app, "PATCH", "/api/v1/clusters/east", admin, Some(change)).await;
    client.expect(&response, 200);
    assert_eq!(response.json()["sync"]["unchanged"], 1, "{response}");
    let response = client.call(app, "PATCH", "/api/v1/clusters/east", admin, Some(json!({ "api_server": "https://10.0.0.1:8443" }))).await;
    client.expect_error(&response, 422, "api_server_not_allowed");
    let response = client.call(app, "PATCH", "/api/v1/clusters/east", Some(READ_TOKEN), Some(json!({ "labels": {} }))).await;
    client.expect_error(&response, 403, "forbidden");
    let response = client.call(app, "GET", "/api/v1/clusters/east/ca-bundle", admin, None).await;
    client.expect(&response, 200);
    let response = client.call(app, "GET", "/api/v1/runtime-config/client-tls", admin, None).await;
    client.expect(&response, 200);
    // east is plain HTTP, so the configuration has no entry, but it must still load.
    assert!(toml::from_str::<toml::Table>(&String::from_utf8_lossy(&response.body)).is_ok(), "{response}");
    let response = client.call(app, "DELETE", "/api/v1/clusters/east?purge=maybe", admin, None).await;
    client.expect_error(&response, 400, "invalid_parameter");
    east.set_down(true).await.expect("stop the fake cluster");
    let response = client.call(app, "DELETE", "/api/v1/clusters/east?purge=true", admin, None).await;
    client.expect_error(&response, 502, "purge_incomplete");
    east.set_down(false).await.expect("restart the fake cluster");
    let response = client.call(app, "DELETE", "/api/v1/clusters/east?purge=true", admin, None).await;
    client.expect(&response, 200);
    assert!(east.secret("istio-system", "short").is_none(), "the purge left a Secret behind");
    let response = client.call(app, "DELETE", "/api/v1/clusters/east", admin, None).await;
    client.expect_error(&response, 404, "cluster_not_found");

    // The last scan and the metrics.
    let response = client.call(app, "GET", "/api/v1/scans/last", admin, None).await;
    client.expect_error(&response, 404, "no_scan_yet");
    test.app.run_cron("expiry-cron").await.expect("cron handler");
    let response = client.call(app, "GET", "/api/v1/scans/last", Some(READ_TOKEN), None).await;
    client.expect(&response, 200);
    let response = client.call(app, "GET", "/metrics", Some(READ_TOKEN), None).await;
    client.expect(&response, 200);
    assert!(String::from_utf8_lossy(&response.body).contains("meshcert_last_scan_timestamp_seconds"), "{response}");

    // Reseal, then the audit trail of all of the above, two entries at a time.
    let response = client.call(app, "POST", "/api/v1/encryption/reseal", admin, None).await;
    client.expect(&response, 200);
    let first = client.call(app, "GET", "/api/v1/audit?limit=2", Some(READ_TOKEN), None).await;
    client.expect(&first, 200);
    let cursor = first.json()["next_cursor"].as_str().map(str::to_string).unwrap_or_else(|| panic!("the first page has no next_cursor: {first}"));
    let second = client.call(app, "GET", &format!("/api/v1/audit?limit=2&cursor={cursor}"), admin, None).await;
    client.expect(&second, 200);
    assert_ne!(first.json()["entries"][0], second.json()["entries"][0], "the second page repeats the first");
    let response = client.call(app, "GET", "/api/v1/audit?action=certificate.delete&outcome=rejected&target=nothing", admin, None).await;
    client.expect(&response, 200);
    assert_eq!(response.json()["entries"].as_array().map(Vec::len), Some(1), "{response}");
    let response = client.call(app, "GET", "/api/v1/audit?cursor=yesterday", admin, None).await;
    client.expect_error(&response, 400, "invalid_cursor");
    let response = client.call(app, "GET", "/api/v1/audit?outcome=maybe", admin, None).await;
    client.expect_error(&response, 400, "invalid_filter");

    // A configuration that cannot work.
    let broken = TestApp::start_with(&[("encryption_key", "not-a-key")]).await;
    let response = client.call(broken.server.addr(), "GET", "/healthz", None, None).await;
    client.expect(&response, 503);

    let contract = client.contract;
    assert!(contract.failures.is_empty(), "{} responses disagree with openapi.json:\n\n{}", contract.failures.len(), contract.failures.join("\n\n"));
    let unseen = contract.unseen_successes();
    assert!(unseen.is_empty(), "the scenario produced no response for these documented successes: {unseen:?}");
}
