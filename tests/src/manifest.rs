//! Reading a Spin application manifest (`spin.toml`, `spin_manifest_version = 2`), limited to the
//! parts meshcert uses, with clear errors for everything else.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;

use crate::template::{check_kebab_id, check_lower_snake_id};

/// A parsed and checked manifest.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// The directory of the manifest; component sources are relative to it.
    pub dir: PathBuf,
    /// `[application] name`.
    pub app_name: String,
    /// `[variables]`, by name.
    pub variables: BTreeMap<String, VariableDecl>,
    /// `[[trigger.http]]`, in manifest order.
    pub http_triggers: Vec<HttpTrigger>,
    /// `[[trigger.cron]]`, in manifest order.
    pub cron_triggers: Vec<CronTrigger>,
    /// `[component.<id>]`, by id.
    pub components: BTreeMap<String, ComponentDecl>,
}

/// One application variable.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableDecl {
    /// The value used when no provider sets one.
    pub default: Option<String>,
    /// Whether loading fails when no provider sets a value.
    #[serde(default)]
    pub required: bool,
    /// Whether the value must never be logged.
    #[serde(default)]
    pub secret: bool,
}

/// One `[[trigger.http]]` entry.
#[derive(Clone, Debug)]
pub struct HttpTrigger {
    /// The component that handles the route.
    pub component: String,
    /// The route, or `None` for `route = { private = true }` (reachable only by service
    /// chaining).
    pub route: Option<String>,
}

/// One `[[trigger.cron]]` entry.
#[derive(Clone, Debug)]
pub struct CronTrigger {
    /// The component whose `handle-cron-event` runs.
    pub component: String,
    /// Six fields, seconds first, such as `0 0 */6 * * *`.
    pub cron_expression: String,
}

/// One `[component.<id>]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // `description`, `build` and `exclude_files` are accepted and ignored.
pub struct ComponentDecl {
    /// The .wasm path as written, relative to the manifest's directory.
    pub source: String,
    /// Optional text, ignored by the host.
    pub description: Option<String>,
    /// The key-value store labels the component may open.
    #[serde(default)]
    pub key_value_stores: Vec<String>,
    /// The outbound host patterns, possibly with `{{ variable }}` templates.
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    /// Component variables: name to template.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// Environment variables of the component's WASI environment.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// `[component.<id>.build]`, used by `spin build` and ignored here.
    pub build: Option<toml::Table>,
    /// `files`: accepted only when empty, because this host mounts no files.
    #[serde(default)]
    pub files: Vec<toml::Value>,
    /// `exclude_files`: accepted and ignored, because this host mounts no files.
    #[serde(default)]
    pub exclude_files: Vec<String>,
    /// Spin 1's `allowed_http_hosts`, rejected with a pointer to `allowed_outbound_hosts`.
    pub allowed_http_hosts: Option<toml::Value>,
}

impl ComponentDecl {
    /// Returns the `source` path resolved against the manifest's directory.
    pub fn source_path(&self, manifest_dir: &Path) -> PathBuf {
        manifest_dir.join(&self.source)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    spin_manifest_version: toml::Value,
    application: RawApplication,
    #[serde(default)]
    variables: BTreeMap<String, VariableDecl>,
    #[serde(default)]
    trigger: BTreeMap<String, Vec<toml::Table>>,
    #[serde(default)]
    component: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // The fields are read only to accept and check them.
struct RawApplication {
    name: String,
    version: Option<String>,
    description: Option<String>,
    #[serde(default)]
    authors: Vec<String>,
    trigger: Option<toml::Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpTrigger {
    route: toml::Value,
    component: toml::Value,
    id: Option<String>,
    executor: Option<toml::Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCronTrigger {
    component: toml::Value,
    cron_expression: String,
    id: Option<String>,
}

impl Manifest {
    /// Reads and checks the manifest at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!("failed to read the manifest {}: check the path given with --from", path.display())
        })?;
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        Self::parse(&text, dir).with_context(|| format!("invalid manifest {}", path.display()))
    }

    /// Parses and checks manifest text; `dir` is the directory component sources are relative
    /// to.
    pub fn parse(text: &str, dir: PathBuf) -> Result<Self> {
        let raw: RawManifest = toml::from_str(text)?;
        if raw.spin_manifest_version.as_integer() != Some(2)
            && raw.spin_manifest_version.as_str() != Some("2")
        {
            bail!(
                "spin_manifest_version is {}, but meshcert-host reads only version 2 manifests: set spin_manifest_version = 2",
                raw.spin_manifest_version
            );
        }

        for (name, decl) in &raw.variables {
            check_lower_snake_id(name)
                .map_err(|reason| anyhow::format_err!("invalid variable name {name:?} in [variables]: {reason}"))?;
            match (&decl.default, decl.required) {
                (Some(_), true) => bail!(
                    "variable {name:?} has both a default and required = true: remove one of them"
                ),
                (None, false) => bail!(
                    "variable {name:?} has neither a default nor required = true: add default = \"...\" or required = true"
                ),
                _ => {}
            }
        }

        let mut components = BTreeMap::new();
        for (id, value) in raw.component {
            check_kebab_id(&id)
                .map_err(|reason| anyhow::format_err!("invalid component id {id:?}: {reason}"))?;
            let decl = parse_component(&id, value)?;
            components.insert(id, decl);
        }

        let mut http_triggers = Vec::new();
        let mut cron_triggers = Vec::new();
        for (kind, entries) in raw.trigger {
            for table in entries {
                match kind.as_str() {
                    "http" => http_triggers.push(parse_http_trigger(table)?),
                    "cron" => cron_triggers.push(parse_cron_trigger(table)?),
                    other => bail!(
                        "unknown trigger type [[trigger.{other}]]: meshcert-host runs only [[trigger.http]] and [[trigger.cron]]"
                    ),
                }
            }
        }

        let referenced = http_triggers
            .iter()
            .map(|t| (t.component.as_str(), "[[trigger.http]]"))
            .chain(cron_triggers.iter().map(|t| (t.component.as_str(), "[[trigger.cron]]")));
        for (component, table) in referenced {
            if !components.contains_key(component) {
                bail!(
                    "a {table} entry refers to component {component:?}, but there is no [component.{component}]: add it or fix the name"
                );
            }
        }

        Ok(Self {
            dir,
            app_name: raw.application.name,
            variables: raw.variables,
            http_triggers,
            cron_triggers,
            components,
        })
    }
}

fn parse_component(id: &str, value: toml::Value) -> Result<ComponentDecl> {
    if let Some(source) = value.get("source") {
        if !source.is_str() {
            bail!(
                "[component.{id}] source must be a path to a .wasm file; URL and registry sources are not supported by meshcert-host"
            );
        }
    }
    let decl: ComponentDecl = value
        .try_into()
        .with_context(|| format!("invalid [component.{id}]"))?;
    if decl.allowed_http_hosts.is_some() {
        bail!(
            "[component.{id}] uses allowed_http_hosts, which Spin 2 replaced: list the hosts in allowed_outbound_hosts as \"https://host\" instead"
        );
    }
    if !decl.files.is_empty() {
        bail!(
            "[component.{id}] lists files, but meshcert-host mounts no files into components: remove the files entry"
        );
    }
    for name in decl.variables.keys() {
        check_lower_snake_id(name).map_err(|reason| {
            anyhow::format_err!("invalid variable name {name:?} in [component.{id}.variables]: {reason}")
        })?;
    }
    Ok(decl)
}

fn component_name(value: toml::Value, table: &str) -> Result<String> {
    match value {
        toml::Value::String(name) => Ok(name),
        _ => bail!(
            "{table} component must be the id of a [component.<id>] table; inline components are not supported by meshcert-host"
        ),
    }
}

fn parse_http_trigger(table: toml::Table) -> Result<HttpTrigger> {
    let raw: RawHttpTrigger = toml::Value::Table(table)
        .try_into()
        .context("invalid [[trigger.http]] entry")?;
    let _ = raw.id;
    let component = component_name(raw.component, "[[trigger.http]]")?;
    if let Some(executor) = &raw.executor {
        let kind = executor.get("type").and_then(|t| t.as_str()).unwrap_or("");
        if kind != "spin" && kind != "http" {
            bail!(
                "[[trigger.http]] for component {component:?} has executor type {kind:?}; meshcert-host runs only the default wasi:http executor, so remove the executor entry"
            );
        }
    }
    let route = match raw.route {
        toml::Value::String(route) => Some(route),
        toml::Value::Table(t) if t.get("private").and_then(|p| p.as_bool()) == Some(true) => None,
        other => bail!(
            "[[trigger.http]] for component {component:?} has route {other}, but a route must be a path such as \"/...\" or {{ private = true }}"
        ),
    };
    Ok(HttpTrigger { component, route })
}

fn parse_cron_trigger(table: toml::Table) -> Result<CronTrigger> {
    let raw: RawCronTrigger = toml::Value::Table(table)
        .try_into()
        .context("invalid [[trigger.cron]] entry")?;
    let _ = raw.id;
    let component = component_name(raw.component, "[[trigger.cron]]")?;
    crate::cron::parse_schedule(&raw.cron_expression)
        .with_context(|| format!("invalid [[trigger.cron]] for component {component:?}"))?;
    Ok(CronTrigger { component, cron_expression: raw.cron_expression })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
spin_manifest_version = 2
[application]
name = "t"
[variables]
token = { required = true, secret = true }
days = { default = "30" }
[[trigger.http]]
route = "/..."
component = "api"
[[trigger.cron]]
component = "tick"
cron_expression = "0 0 */6 * * *"
[component.api]
source = "api.wasm"
key_value_stores = ["default"]
[component.api.variables]
token = "{{ token }}"
[component.api.build]
command = "cargo build"
[component.tick]
source = "tick.wasm"
"#;

    fn parse(text: &str) -> Result<Manifest> {
        Manifest::parse(text, PathBuf::from("/app"))
    }

    fn error_of(text: &str) -> String {
        format!("{:#}", parse(text).unwrap_err())
    }

    #[test]
    fn manifest_minimal_parses() {
        let manifest = parse(MINIMAL).unwrap();
        assert_eq!(manifest.http_triggers.len(), 1);
        assert_eq!(manifest.cron_triggers[0].component, "tick");
        assert_eq!(manifest.components["api"].source_path(&manifest.dir), PathBuf::from("/app/api.wasm"));
        assert!(manifest.variables["token"].secret);
    }

    #[test]
    fn manifest_rejects_version_one() {
        let text = MINIMAL.replace("spin_manifest_version = 2", "spin_manifest_version = \"1\"");
        assert!(error_of(&text).contains("only version 2"));
    }

    #[test]
    fn manifest_rejects_unknown_component_field() {
        let text = MINIMAL.replace("source = \"tick.wasm\"", "source = \"tick.wasm\"\nkey_value_store = [\"default\"]");
        let err = error_of(&text);
        assert!(err.contains("key_value_store"), "{err}");
        assert!(err.contains("component.tick"), "{err}");
    }

    #[test]
    fn manifest_rejects_missing_component() {
        let text = MINIMAL.replace("component = \"tick\"", "component = \"tock\"");
        let err = error_of(&text);
        assert!(err.contains("\"tock\""), "{err}");
    }

    #[test]
    fn manifest_rejects_unknown_trigger() {
        let text = format!("{MINIMAL}\n[[trigger.redis]]\ncomponent = \"api\"\n");
        assert!(error_of(&text).contains("trigger.redis"));
    }

    #[test]
    fn manifest_rejects_variable_without_value() {
        let text = MINIMAL.replace("days = { default = \"30\" }", "days = { secret = true }");
        assert!(error_of(&text).contains("neither a default nor required"));
    }

    #[test]
    fn manifest_rejects_required_with_default() {
        let text = MINIMAL.replace("days = { default = \"30\" }", "days = { default = \"1\", required = true }");
        assert!(error_of(&text).contains("both a default and required"));
    }

    #[test]
    fn manifest_rejects_bad_cron_expression() {
        let text = MINIMAL.replace("0 0 */6 * * *", "every six hours");
        let err = error_of(&text);
        assert!(err.contains("every six hours"), "{err}");
    }

    #[test]
    fn manifest_rejects_bad_variable_name() {
        let text = MINIMAL.replace("days = {", "Days = {");
        assert!(error_of(&text).contains("\"Days\""));
    }

    #[test]
    fn manifest_accepts_private_route() {
        let text = MINIMAL.replace("route = \"/...\"", "route = { private = true }");
        assert_eq!(parse(&text).unwrap().http_triggers[0].route, None);
    }

    #[test]
    fn manifest_rejects_allowed_http_hosts() {
        let text = MINIMAL.replace("source = \"tick.wasm\"", "source = \"tick.wasm\"\nallowed_http_hosts = [\"example.com\"]");
        assert!(error_of(&text).contains("allowed_outbound_hosts"));
    }
}
