//! Loading an app (manifest, runtime config, variables, compiled components) and running its
//! components for HTTP requests and cron events.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use wasmtime::component::{Component, InstancePre, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::{WasiBody, WasiHttpCtx, WasiHttpView as _};

use crate::client_tls::ClientTlsConfigs;
use crate::clock::{Clock, WasiWallClock};
use crate::cron::bindings::SpinCronPre;
use crate::cron::{CronError, Metadata};
use crate::host::{self, HostState};
use crate::kv::KeyValueStores;
use crate::kv_faults::KeyValueFaults;
use crate::manifest::{ComponentDecl, Manifest, VariableDecl};
use crate::outbound::{AllowedHost, AllowedHosts};
use crate::outbound_http::OutboundHooks;
use crate::output::OutputBuffers;
use crate::routes::{RouteMatch, Router};
use crate::runtime_config::{KeyValueStoreConfig, RuntimeConfig};
use crate::template::Template;
use crate::variables::{resolve_component_variables, AppVariables};

/// The file name of the default key-value store inside the state directory, as in Spin.
pub const DEFAULT_KEY_VALUE_FILE: &str = "sqlite_key_value.db";

/// What to load and how.
#[derive(Clone, Debug)]
pub struct AppConfig {
    /// The `spin.toml` to load.
    pub manifest: PathBuf,
    /// The state directory; `None` means `.spin` next to the manifest, as in Spin.
    pub state_dir: Option<PathBuf>,
    /// The runtime config file (`--runtime-config-file`), if any.
    pub runtime_config: Option<PathBuf>,
    /// Variable values that take precedence over every provider, by variable name.
    pub variables: HashMap<String, String>,
    /// Whether `SPIN_VARIABLE_<NAME>` process environment variables set variables. Tests that
    /// pass everything in `variables` can turn this off to ignore the caller's environment.
    pub read_env: bool,
}

impl AppConfig {
    /// Creates a config for `manifest` with Spin's defaults: state in `.spin` beside the manifest, no
    /// runtime config, variables from `SPIN_VARIABLE_*` and the manifest defaults.
    pub fn new(manifest: impl Into<PathBuf>) -> Self {
        Self {
            manifest: manifest.into(),
            state_dir: None,
            runtime_config: None,
            variables: HashMap::new(),
            read_env: true,
        }
    }

    /// Sets the state directory.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// Sets the runtime config file.
    pub fn runtime_config(mut self, path: impl Into<PathBuf>) -> Self {
        self.runtime_config = Some(path.into());
        self
    }

    /// Sets one variable, overriding the environment and the manifest default.
    pub fn variable(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.variables.insert(name.into(), value.into());
        self
    }

    /// Sets whether `SPIN_VARIABLE_*` environment variables are read.
    pub fn read_env(mut self, read_env: bool) -> Self {
        self.read_env = read_env;
        self
    }
}

/// Which trigger started an instance. Service chaining is rejected from cron instances.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TriggerKind {
    Http,
    Cron,
}

/// One compiled component with its resolved configuration.
pub(crate) struct ComponentRuntime {
    pub(crate) id: String,
    pub(crate) key_value_stores: HashSet<String>,
    pub(crate) variables: HashMap<String, String>,
    pub(crate) allowed_hosts: AllowedHosts,
    environment: Vec<(String, String)>,
    proxy: Option<ProxyPre<HostState>>,
    cron: Option<SpinCronPre<HostState>>,
}

/// One `[[trigger.cron]]` entry with its parsed schedule.
pub(crate) struct CronEntry {
    pub(crate) component_id: String,
    pub(crate) expression: String,
    pub(crate) schedule: cron::Schedule,
}

pub(crate) struct AppInner {
    pub(crate) name: String,
    state_dir: PathBuf,
    components: HashMap<String, Arc<ComponentRuntime>>,
    pub(crate) router: Router,
    pub(crate) cron_entries: Vec<CronEntry>,
    /// The `[[client_tls]]` settings of outbound HTTPS requests.
    pub(crate) client_tls: ClientTlsConfigs,
    key_value: KeyValueStores,
    key_value_faults: KeyValueFaults,
    pub(crate) clock: Clock,
    outputs: OutputBuffers,
}

/// A loaded app. Cloning is cheap; clones share components, stores, clock and output.
#[derive(Clone)]
pub struct App {
    pub(crate) inner: Arc<AppInner>,
}

impl App {
    /// Loads the manifest, the runtime config and the variables, opens the key-value stores and
    /// compiles every component that a trigger uses, once. Fails with a message that names the
    /// invalid value and the fix.
    pub fn load(config: AppConfig) -> Result<Self> {
        let manifest = Manifest::load(&config.manifest)?;
        let state_dir = config.state_dir.clone().unwrap_or_else(|| manifest.dir.join(".spin"));
        let runtime_config = match &config.runtime_config {
            Some(path) => RuntimeConfig::load(path)?,
            None => RuntimeConfig::default(),
        };

        let env = |name: &str| if config.read_env { std::env::var(name).ok() } else { None };
        let app_variables = AppVariables::resolve(&manifest.variables, &config.variables, env)?;

        let mut store_configs: HashMap<String, KeyValueStoreConfig> =
            runtime_config.key_value_stores.clone().into_iter().collect();
        store_configs
            .entry("default".to_string())
            .or_insert_with(|| KeyValueStoreConfig::Sqlite(state_dir.join(DEFAULT_KEY_VALUE_FILE)));

        let (router, duplicates) = Router::build(
            manifest
                .http_triggers
                .iter()
                .filter_map(|t| t.route.as_deref().map(|route| (t.component.as_str(), route))),
        )?;
        for (route, replaced, effective) in duplicates {
            tracing::warn!(
                route = %route,
                "two [[trigger.http]] entries use the same route; component {effective:?} handles it and {replaced:?} is unreachable by that route"
            );
        }

        let mut cron_entries = Vec::new();
        for trigger in &manifest.cron_triggers {
            cron_entries.push(CronEntry {
                component_id: trigger.component.clone(),
                expression: trigger.cron_expression.clone(),
                schedule: crate::cron::parse_schedule(&trigger.cron_expression)?,
            });
        }

        let engine = Engine::new(&wasmtime::Config::new())
            .map_err(anyhow::Error::from)
            .context("failed to create the wasmtime engine")?;
        let mut linker = Linker::<HostState>::new(&engine);
        host::add_to_linker(&mut linker)
            .map_err(anyhow::Error::from)
            .context("failed to set up the host interfaces")?;

        let http_ids: HashSet<&str> = manifest.http_triggers.iter().map(|t| t.component.as_str()).collect();
        let cron_ids: HashSet<&str> = manifest.cron_triggers.iter().map(|t| t.component.as_str()).collect();
        let mut components = HashMap::new();
        for (id, decl) in &manifest.components {
            let is_http = http_ids.contains(id.as_str());
            let is_cron = cron_ids.contains(id.as_str());
            if !is_http && !is_cron {
                tracing::warn!(component = %id, "no trigger uses this component, so it is not loaded");
                continue;
            }
            for label in &decl.key_value_stores {
                if !store_configs.contains_key(label) {
                    bail!(
                        "[component.{id}] key_value_stores lists {label:?}, but no store has that label: use \"default\" or define [key_value_store.{label}] in a runtime config file"
                    );
                }
            }
            let allowed_hosts = resolve_allowed_hosts(id, decl, &manifest.variables, &app_variables)?;
            let variables = resolve_component_variables(id, &decl.variables, &app_variables)?;
            let pre = compile(&engine, &linker, id, decl, &manifest.dir)?;
            let proxy = if is_http {
                Some(ProxyPre::new(pre.clone()).map_err(anyhow::Error::from).with_context(|| {
                    format!("component {id:?} is used by [[trigger.http]] but does not export wasi:http/incoming-handler; build it as a Spin HTTP component")
                })?)
            } else {
                None
            };
            let cron = if is_cron {
                Some(SpinCronPre::new(pre).map_err(anyhow::Error::from).with_context(|| {
                    format!("component {id:?} is used by [[trigger.cron]] but does not export handle-cron-event of the spin-cron world")
                })?)
            } else {
                None
            };
            let runtime = ComponentRuntime {
                id: id.clone(),
                key_value_stores: decl.key_value_stores.iter().cloned().collect(),
                variables,
                allowed_hosts,
                environment: decl.environment.clone().into_iter().collect(),
                proxy,
                cron,
            };
            components.insert(id.clone(), Arc::new(runtime));
        }

        let client_tls = ClientTlsConfigs::new(&runtime_config.client_tls)?;
        for id in client_tls.component_ids() {
            if !manifest.components.contains_key(id) {
                tracing::warn!(
                    component = %id,
                    "a [[client_tls]] entry lists component {id:?}, which the manifest does not declare, so it applies to no request; check the id"
                );
            }
        }

        // A store that no component lists is accepted, so a typo in a label
        // ([key_value_store.defualt]) would leave the components on the local SQLite file without
        // a word. Warn, and name where each listed store keeps its records.
        let listed: std::collections::BTreeSet<&String> = manifest.components.values().flat_map(|decl| &decl.key_value_stores).collect();
        for label in runtime_config.key_value_stores.keys().filter(|label| !listed.contains(label)) {
            tracing::warn!(label = %label, "[key_value_store.{label}] is in the runtime config, but no component lists it in key_value_stores; check the label (meshcert's components use \"default\")");
        }
        for label in listed {
            if let Some(store) = store_configs.get(label) {
                tracing::info!(label = %label, store = ?store, "key-value store");
            }
        }

        let key_value = KeyValueStores::open(&store_configs)?;
        tracing::info!(app = %manifest.app_name, state_dir = %state_dir.display(), "app loaded");
        Ok(Self {
            inner: Arc::new(AppInner {
                name: manifest.app_name,
                state_dir,
                components,
                router,
                cron_entries,
                client_tls,
                key_value,
                key_value_faults: KeyValueFaults::default(),
                clock: Clock::default(),
                outputs: OutputBuffers::default(),
            }),
        })
    }

    /// Returns the `[application] name`.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Returns the state directory, which contains the default key-value store.
    pub fn state_dir(&self) -> &Path {
        &self.inner.state_dir
    }

    /// Returns a handle to the wall clock that components and cron timestamps use.
    pub fn clock(&self) -> Clock {
        self.inner.clock.clone()
    }

    /// Returns a handle that counts the app's key-value writes and makes a chosen one fail, for
    /// tests of what a failed write leaves behind. Only this method reaches it, so no manifest
    /// or runtime config can turn a fault on.
    pub fn key_value_faults(&self) -> KeyValueFaults {
        self.inner.key_value_faults.clone()
    }

    /// Everything `component_id` wrote to stdout and stderr since the last
    /// [`clear_output`](Self::clear_output).
    pub fn output(&self, component_id: &str) -> String {
        self.inner.outputs.get(component_id)
    }

    /// Empties the captured output of `component_id`.
    pub fn clear_output(&self, component_id: &str) {
        self.inner.outputs.clear(component_id)
    }

    /// Returns the HTTP routes as `(component id, path prefix or exact path, is wildcard)`.
    pub fn routes(&self) -> Vec<(String, String, bool)> {
        self.inner
            .router
            .routes()
            .map(|(id, path, wildcard)| (id.to_string(), path.to_string(), wildcard))
            .collect()
    }

    /// Returns the `[[trigger.cron]]` entries as `(component id, cron expression)`.
    pub fn cron_triggers(&self) -> Vec<(String, String)> {
        self.inner
            .cron_entries
            .iter()
            .map(|e| (e.component_id.clone(), e.expression.clone()))
            .collect()
    }

    /// Routes `request` to its HTTP component in-process, as the server would for a client at
    /// 127.0.0.1, and returns the whole response. The request URI may be a path (`/api/x`) or
    /// an absolute URL. Returns a 404 response when no route matches.
    pub async fn handle(&self, request: http::Request<Bytes>) -> Result<http::Response<Bytes>> {
        let client: SocketAddr = ([127, 0, 0, 1], 0).into();
        let request = request.map(|body| {
            Full::new(body).map_err(|never| -> wasmtime_wasi_http::Error { match never {} })
        });
        let response = self.inner.clone().route_and_handle(request, client).await;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.context("failed to read the component's response body")?;
        Ok(http::Response::from_parts(parts, body.to_bytes()))
    }

    /// Runs `handle-cron-event` of `component_id` once, now, with the current wall-clock time.
    pub async fn run_cron(&self, component_id: &str) -> Result<()> {
        let timestamp = self.inner.clock.unix_seconds();
        self.inner.run_cron(component_id, timestamp).await
    }
}

impl AppInner {
    fn component(&self, id: &str) -> Result<&Arc<ComponentRuntime>> {
        self.components
            .get(id)
            .with_context(|| format!("no component {id:?} with a trigger in this app"))
    }

    fn new_store(self: &Arc<Self>, component: &Arc<ComponentRuntime>, trigger: TriggerKind, engine: &Engine) -> Store<HostState> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(self.outputs.stream(&component.id))
            .stderr(self.outputs.stream(&component.id))
            .wall_clock(WasiWallClock(self.clock.clone()))
            .envs(&component.environment);
        let state = HostState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: OutboundHooks { app: self.clone(), component: component.clone(), trigger },
            component: component.clone(),
            key_value: self.key_value.clone(),
            key_value_faults: self.key_value_faults.clone(),
        };
        Store::new(engine, state)
    }

    /// Routes a request from a client by its path and runs the component; no route is a 404,
    /// a failed component a 500.
    pub(crate) async fn route_and_handle<B>(self: Arc<Self>, mut request: http::Request<B>, client: SocketAddr) -> http::Response<WasiBody>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let path = request.uri().path().to_string();
        let Some(route) = self.router.route(&path) else {
            tracing::debug!(path = %path, "no route matches the request");
            return text_response(http::StatusCode::NOT_FOUND, "Not Found\n");
        };
        request.headers_mut().remove(http::header::CONNECTION);
        let component_id = route.component_id.clone();
        match self.handle_http(route, request, "http", client).await {
            Ok(response) => response,
            Err(err) => {
                tracing::error!(component = %component_id, path = %path, "request failed: {err:#}");
                text_response(http::StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error\n")
            }
        }
    }

    /// Runs the HTTP component of `route` for `request`, adding Spin's route headers. Returns
    /// once the component has set the response head; the body streams as the component writes.
    pub(crate) async fn handle_http<B>(
        self: &Arc<Self>,
        route: RouteMatch,
        mut request: http::Request<B>,
        scheme: &str,
        client: SocketAddr,
    ) -> Result<http::Response<WasiBody>>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let component = self.component(&route.component_id)?.clone();
        let Some(proxy) = component.proxy.clone() else {
            bail!("component {:?} has no [[trigger.http]], so it cannot handle HTTP requests", component.id);
        };

        let host = request
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string);
        let path_and_query = request.uri().path_and_query().map(|pq| pq.as_str().to_string()).unwrap_or_else(|| "/".to_string());
        for (name, value) in route.spin_headers(scheme, host.as_deref(), &path_and_query, client) {
            let value = http::HeaderValue::from_str(&value)
                .with_context(|| format!("the {name} header value {value:?} is not valid in an HTTP header"))?;
            request.headers_mut().insert(name, value);
        }
        if host.is_none() {
            // wasi:http needs an authority; Spin reports `localhost` for a request without one.
            request.headers_mut().insert(http::header::HOST, http::HeaderValue::from_static("localhost"));
        }

        let mut store = self.new_store(&component, TriggerKind::Http, proxy.engine());
        let scheme = if scheme == "https" { Scheme::Https } else { Scheme::Http };
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let incoming = store.data_mut().http().new_incoming_request(scheme, request).map_err(anyhow::Error::from)?;
        let outparam = store.data_mut().http().new_response_outparam(sender).map_err(anyhow::Error::from)?;

        let component_id = component.id.clone();
        let task = tokio::spawn(async move {
            let result = async {
                let instance = proxy.instantiate_async(&mut store).await?;
                instance.wasi_http_incoming_handler().call_handle(&mut store, incoming, outparam).await
            }
            .await
            .map_err(anyhow::Error::from);
            if let Err(err) = &result {
                tracing::error!(component = %component_id, "component trapped: {err:?}");
            }
            result
        });

        match receiver.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => bail!("component {:?} returned the error {code:?} instead of a response", component.id),
            Err(_) => match task.await {
                Ok(Ok(())) => bail!("component {:?} returned without setting a response", component.id),
                Ok(Err(err)) => Err(err.context(format!("component {:?} failed", component.id))),
                Err(join) => bail!("component {:?} task failed: {join}", component.id),
            },
        }
    }

    pub(crate) async fn run_cron(self: &Arc<Self>, component_id: &str, timestamp: u64) -> Result<()> {
        let component = self.component(component_id)?.clone();
        let Some(cron) = component.cron.clone() else {
            bail!("component {component_id:?} has no [[trigger.cron]], so it cannot handle cron events");
        };
        let mut store = self.new_store(&component, TriggerKind::Cron, cron.engine());
        let instance = cron.instantiate_async(&mut store).await.map_err(anyhow::Error::from)
            .with_context(|| format!("failed to instantiate cron component {component_id:?}"))?;
        let result = instance
            .call_handle_cron_event(&mut store, Metadata { timestamp })
            .await
            .map_err(anyhow::Error::from)
            .with_context(|| format!("cron component {component_id:?} trapped"))?;
        match result {
            Ok(()) => Ok(()),
            Err(CronError::Other(message)) => bail!("cron component {component_id:?} returned an error: {message}"),
        }
    }
}

fn text_response(status: http::StatusCode, text: &'static str) -> http::Response<WasiBody> {
    let body = Full::new(Bytes::from_static(text.as_bytes())).map_err(|never| match never {}).boxed_unsync();
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    response
}

/// Compiles one component and pre-instantiates it against the linker.
fn compile(engine: &Engine, linker: &Linker<HostState>, id: &str, decl: &ComponentDecl, manifest_dir: &Path) -> Result<InstancePre<HostState>> {
    let path = decl.source_path(manifest_dir);
    if !path.is_file() {
        let package = path
            .file_stem()
            .map(|stem| stem.to_string_lossy().replace('_', "-"))
            .unwrap_or_else(|| id.to_string());
        bail!(
            "the source of component {id:?}, {}, does not exist: build it with `cargo build --release --target wasm32-wasip2 -p {package}`",
            path.display()
        );
    }
    let component = Component::from_file(engine, &path)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("failed to compile component {id:?} from {}: is it a WASI 0.2 component built for wasm32-wasip2?", path.display()))?;
    linker
        .instantiate_pre(&component)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("component {id:?} ({}) imports something this host does not provide", path.display()))
}

/// Resolves the `allowed_outbound_hosts` of one component. A templated entry is checked with
/// the variables' default values first, as Spin 4.0 does, and then resolved with the actual
/// values.
fn resolve_allowed_hosts(
    id: &str,
    decl: &ComponentDecl,
    decls: &std::collections::BTreeMap<String, VariableDecl>,
    values: &AppVariables,
) -> Result<AllowedHosts> {
    if decl.allowed_outbound_hosts.len() == 1 && decl.allowed_outbound_hosts[0] == "insecure:allow-all" {
        bail!("[component.{id}] allowed_outbound_hosts = [\"insecure:allow-all\"] is not allowed: use \"*://*:*\" to allow every destination");
    }
    let mut hosts = Vec::new();
    for entry in &decl.allowed_outbound_hosts {
        let context = || format!("invalid entry {entry:?} in [component.{id}] allowed_outbound_hosts");
        let template = Template::parse(entry).with_context(context)?;
        if template.is_literal() {
            hosts.push(AllowedHost::parse(entry).with_context(context)?);
            continue;
        }

        let defaults = template.render(|name| decls.get(name).and_then(|d| d.default.as_deref()));
        if let Ok(with_defaults) = defaults {
            AllowedHost::parse(&with_defaults).with_context(|| {
                format!(
                    "[component.{id}] allowed_outbound_hosts entry {entry:?} is {with_defaults:?} with the variables' default values, which is not a valid host pattern; Spin rejects this when the app loads, so give the variable a default that is a valid pattern, such as \"https://*:443\""
                )
            })?;
        }

        let resolved = template.render(|name| values.get(name)).map_err(|unknown| {
            anyhow::format_err!("[component.{id}] allowed_outbound_hosts entry {entry:?} refers to {unknown:?}, which [variables] does not declare")
        })?;
        let secret = template.variable_names().any(|name| decls.get(name).is_some_and(|d| d.secret));
        let displayed_value = if secret { "<secret>".to_string() } else { format!("{resolved:?}") };
        hosts.push(AllowedHost::parse(&resolved).with_context(|| {
            format!("[component.{id}] allowed_outbound_hosts entry {entry:?} resolves to {displayed_value}, which is not a valid host pattern: fix the variable's value")
        })?);
    }
    Ok(AllowedHosts::new(hosts))
}
