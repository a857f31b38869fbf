//! `meshcert-host up` with the `default` key-value store on Redis, through a runtime config file
//! as `spin up --runtime-config-file` takes it: the components' records must land in Redis.

mod support;

// The host crate's test helper, compiled into this test as well; not every helper is used here.
#[allow(dead_code)]
#[path = "../src/test_redis.rs"]
mod test_redis;

use redis::AsyncCommands as _;
use support::{upload, Certificates};
use test_redis::RedisServer;

fn admin_headers() -> Vec<(String, String)> {
    vec![
        ("authorization".to_string(), format!("Bearer {}", support::API_TOKEN)),
        ("content-type".to_string(), "application/json".to_string()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_stores_certificates_in_redis() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let runtime_config = dir.path().join("runtime-config.toml");
    std::fs::write(&runtime_config, format!("[key_value_store.default]\ntype = \"redis\"\nurl = \"{}\"\n", redis.url(4))).unwrap();
    let runner = support::Runner::start(dir.path(), &support::manifest(), Some(&runtime_config)).await;
    let addr = runner.addr;

    let certificates = Certificates::new();
    certificates.server("web.example.test", 365);
    let body = serde_json::to_vec(&upload(&certificates, "web", "web.example.test", "web.example.test")).unwrap();
    let (status, created) = support::send(addr, "POST", "/api/v1/certificates", &admin_headers(), body).await;
    assert_eq!(status, 201, "{} {}", String::from_utf8_lossy(&created), runner.log());

    let (status, read_back) = support::send(addr, "GET", "/api/v1/certificates/istio-system/web", &admin_headers(), Vec::new()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&read_back));
    let read_back: serde_json::Value = serde_json::from_slice(&read_back).unwrap();
    assert_eq!(read_back["name"], "web", "{read_back}");

    // The records are in Redis database 4, under their keys as the component wrote them.
    let mut connection = redis::Client::open(redis.url(4)).unwrap().get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = connection.keys("*").await.unwrap();
    assert!(keys.iter().any(|key| key == "cert/istio-system/web"), "{keys:?}");
    assert!(!dir.path().join("state").join(meshcert_host::DEFAULT_KEY_VALUE_FILE).exists(), "the SQLite store was created too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_starts_while_redis_down() {
    let dir = tempfile::tempdir().unwrap();
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let runtime_config = dir.path().join("runtime-config.toml");
    std::fs::write(&runtime_config, format!("[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:{closed_port}/0\"\n")).unwrap();
    let runner = support::Runner::start(dir.path(), &support::manifest(), Some(&runtime_config)).await;
    let addr = runner.addr;

    let (status, body) = support::send(addr, "GET", "/api/v1/certificates", &admin_headers(), Vec::new()).await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 500, "{body} {}", runner.log());
    let output = runner.log();
    assert!(output.contains("Redis error"), "the key-value error does not reach the log: {body} {output}");

    // A readiness probe on /healthz must not count this replica as ready.
    let (status, body) = support::send(addr, "GET", "/healthz", &[], Vec::new()).await;
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 503, "{body}");
    let problem = body["problems"][0].as_str().unwrap_or_default();
    assert!(problem.contains("key-value store \"default\" cannot be read"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_warns_of_unused_store_label() {
    let dir = tempfile::tempdir().unwrap();
    let runtime_config = dir.path().join("runtime-config.toml");
    std::fs::write(&runtime_config, "[key_value_store.defualt]\ntype = \"redis\"\nurl = \"redis://:s3cret@127.0.0.1:6390/1\"\n").unwrap();
    let runner = support::Runner::start(dir.path(), &support::manifest(), Some(&runtime_config)).await;

    // The misspelt label leaves the components on the local SQLite file, so start-up logs it.
    let output = runner.log();
    assert!(output.contains("[key_value_store.defualt] is in the runtime config, but no component lists it"), "{output}");
    assert!(output.contains("key-value store"), "{output}");
    assert!(output.contains("Sqlite"), "{output}");
    assert!(!output.contains("s3cret"), "the Redis password reached the log: {output}");
}
