//! The files under deploy/: the signed scan script that a Kubernetes CronJob runs, run here
//! against the app, and the SpinKube manifests, checked against the fields that SpinKube's
//! `SpinApp` (core.spinkube.dev/v1alpha1) and Kubernetes' `CronJob` (batch/v1) document and
//! against spin.toml.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::{TestApp, WEBHOOK_SECRET};

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy").join(file)
}

fn yaml(file: &str) -> Value {
    let text = std::fs::read_to_string(deploy(file)).unwrap();
    serde_yaml_ng::from_str(&text).unwrap_or_else(|error| panic!("deploy/{file} is not YAML: {error}"))
}

fn spin_toml() -> toml::Table {
    toml::from_str(&std::fs::read_to_string(support::manifest()).unwrap()).unwrap()
}

fn run_scan_hook(url: &str, secret: &str) -> std::process::Output {
    Command::new("sh")
        .arg(deploy("scan-hook.sh"))
        .env("MESHCERT_URL", url)
        .env("WEBHOOK_SECRET", secret)
        .output()
        .expect("run sh deploy/scan-hook.sh (it needs openssl and curl)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_hook_script_runs_the_signed_scan() {
    let test = TestApp::start().await;
    let url = format!("http://{}/", test.server.addr());

    let accepted = tokio::task::spawn_blocking({
        let url = url.clone();
        move || run_scan_hook(&url, WEBHOOK_SECRET)
    })
    .await
    .unwrap();

    assert!(accepted.status.success(), "stderr: {}", String::from_utf8_lossy(&accepted.stderr));
    let report: Value = serde_json::from_slice(&accepted.stdout).expect("the script prints the JSON report");
    assert!(report["scan"].is_object(), "{report}");
    assert!(report["sync"].is_object(), "{report}");
    let (status, last) = test.call("GET", "/api/v1/scans/last", None).await;
    assert_eq!(status, 200, "the scan ran and recorded itself: {last}");

    let refused = tokio::task::spawn_blocking(move || run_scan_hook(&url, "not-the-webhook-secret")).await.unwrap();
    assert!(!refused.status.success(), "a wrong secret must fail the job");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("HTTP 401"), "{stderr}");
    assert!(stderr.contains("invalid_signature"), "{stderr}");

    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let unreachable = tokio::task::spawn_blocking(move || run_scan_hook(&format!("http://127.0.0.1:{closed_port}"), WEBHOOK_SECRET)).await.unwrap();
    assert!(!unreachable.status.success(), "an app that is down must fail the job");
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("check MESHCERT_URL"), "{}", String::from_utf8_lossy(&unreachable.stderr));
}

#[test]
fn scan_hook_script_names_missing_settings() {
    let output = Command::new("sh").arg(deploy("scan-hook.sh")).env_remove("MESHCERT_URL").env_remove("WEBHOOK_SECRET").output().unwrap();

    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("set MESHCERT_URL"), "{}", String::from_utf8_lossy(&output.stderr));
}

/// `spec` fields of SpinKube's SpinApp, as spin-operator v0.6.1 defines them in
/// `api/v1alpha1/spinapp_types.go`. The type has a few more (volumes, annotations) that these
/// manifests do not need.
const SPINAPP_SPEC_FIELDS: [&str; 9] = ["image", "executor", "replicas", "enableAutoscaling", "checks", "variables", "runtimeConfig", "resources", "components"];

#[test]
fn spinapp_manifest_runs_replicas_without_the_cron_component() {
    let app = yaml("spinapp.yaml");
    let manifest = spin_toml();

    assert_eq!(app["apiVersion"], "core.spinkube.dev/v1alpha1");
    assert_eq!(app["kind"], "SpinApp");
    let spec = app["spec"].as_object().unwrap();
    for field in spec.keys() {
        assert!(SPINAPP_SPEC_FIELDS.contains(&field.as_str()), "spec.{field} is not a SpinApp field");
    }
    assert!(spec["image"].as_str().is_some_and(|image| !image.is_empty()));
    assert_eq!(spec["executor"], "containerd-shim-spin");
    assert!(spec["replicas"].as_u64().unwrap() >= 2, "several replicas share the store");
    assert!(spec["runtimeConfig"]["loadFromSecret"].as_str().is_some(), "the Redis runtime configuration comes from a Secret");
    // Readiness follows the store; liveness must not, or a Redis outage restarts every replica.
    assert_eq!(spec["checks"]["readiness"]["httpGet"]["path"], "/healthz");
    assert_eq!(spec["checks"]["liveness"]["httpGet"]["path"], "/livez");

    // The shim refuses a cron trigger: the retained components must be exactly those without one.
    let cron_components: BTreeSet<String> =
        manifest["trigger"]["cron"].as_array().unwrap().iter().map(|trigger| trigger["component"].as_str().unwrap().to_string()).collect();
    let all_components: BTreeSet<String> = manifest["component"].as_table().unwrap().keys().cloned().collect();
    let retained: BTreeSet<String> = spec["components"].as_array().unwrap().iter().map(|name| name.as_str().unwrap().to_string()).collect();
    assert_eq!(retained, all_components.difference(&cron_components).cloned().collect());

    // Every required variable is set, each from a value or a Secret key.
    let variables = spec["variables"].as_array().unwrap();
    let names: BTreeSet<&str> = variables.iter().map(|variable| variable["name"].as_str().unwrap()).collect();
    for (name, declaration) in manifest["variables"].as_table().unwrap() {
        if declaration.get("required").and_then(toml::Value::as_bool) == Some(true) {
            assert!(names.contains(name.as_str()), "required variable {name} is not set");
        }
    }
    for variable in variables {
        let name = variable["name"].as_str().unwrap();
        assert!(manifest["variables"].get(name).is_some(), "variable {name} is not declared in spin.toml");
        let from_secret = &variable["valueFrom"]["secretKeyRef"];
        assert!(variable.get("value").is_some() != from_secret.is_object(), "variable {name} needs exactly one of value and valueFrom.secretKeyRef");
        if from_secret.is_object() {
            assert!(from_secret["name"].is_string(), "{variable}");
            assert!(from_secret["key"].is_string(), "{variable}");
        }
    }
}

#[test]
fn scan_cronjob_matches_the_cron_trigger() {
    let job = yaml("scan-cronjob.yaml");
    let manifest = spin_toml();

    assert_eq!(job["apiVersion"], "batch/v1");
    assert_eq!(job["kind"], "CronJob");
    // spin.toml's expression has a seconds field first; the CronJob's has none.
    let cron = manifest["trigger"]["cron"][0]["cron_expression"].as_str().unwrap();
    let (seconds, rest) = cron.split_once(' ').unwrap();
    assert_eq!(seconds, "0");
    assert_eq!(job["spec"]["schedule"], rest);
    let pod = &job["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert!(container["command"].to_string().contains("/scripts/scan-hook.sh"), "{container}");
    let env: BTreeSet<&str> = container["env"].as_array().unwrap().iter().map(|variable| variable["name"].as_str().unwrap()).collect();
    assert_eq!(env, BTreeSet::from(["MESHCERT_URL", "WEBHOOK_SECRET"]));
    assert_eq!(container["volumeMounts"][0]["mountPath"], "/scripts");
    assert_eq!(pod["volumes"][0]["configMap"]["name"], "meshcert-scan-hook");
}
