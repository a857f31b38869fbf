//! A Spin-compatible host for meshcert's WebAssembly components, built on wasmtime.
//!
//! It loads a `spin.toml` (manifest version 2) and runs the same `.wasm` files `spin up` would.
//! It provides WASI 0.2, `wasi:http/incoming-handler` on a loopback listener with Spin's routing and route
//! headers, `fermyon:spin/key-value@2.0.0` and `wasi:keyvalue@0.2.0-draft2` (store, atomics,
//! batch) over SQLite in Spin's table layout or over Redis,
//! `fermyon:spin/variables@2.0.0`, outbound HTTP limited by `allowed_outbound_hosts` with
//! service chaining and the runtime config's `[[client_tls]]` settings, and the cron trigger's
//! `handle-cron-event`. Tests can set the wall clock, read each component's output, and make a
//! chosen key-value write fail.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use meshcert_host::{App, AppConfig};
//!
//! let app = App::load(AppConfig::new("spin.toml").variable("api_token", "t"))?;
//! let server = app.serve("127.0.0.1:0".parse()?).await?;
//! println!("serving on {}", server.url());
//! app.clock().advance(std::time::Duration::from_secs(2 * 86_400));
//! app.run_cron("expiry-cron").await?;
//! println!("{}", app.output("expiry-cron"));
//! # Ok(()) }
//! ```

mod app;
mod client_tls;
mod clock;
mod cron;
mod host;
mod kv;
mod kv_faults;
mod kv_redis;
mod manifest;
mod outbound;
mod outbound_http;
mod output;
mod routes;
mod runtime_config;
mod server;
mod template;
#[cfg(test)]
mod test_redis;
mod variables;
mod wasi_keyvalue;

pub use app::{App, AppConfig, DEFAULT_KEY_VALUE_FILE};
pub use clock::Clock;
pub use kv_faults::{InjectedFault, KeyValueFaults, WriteOperation};
pub use server::{CronScheduler, Server};
pub use variables::ENV_PREFIX as VARIABLE_ENV_PREFIX;
