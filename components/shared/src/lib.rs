//! The parts meshcert's three Spin components share: the key-value store with JSON records, Spin
//! variables, structured logs, JSON responses and signed calls to the `/hooks` endpoints.
//!
//! Everything here is a thin layer over spin-sdk; decisions live in `meshcert-core`.

pub mod clusters;
pub mod index;
pub mod scan;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use meshcert_core::crypto::Cipher;
use meshcert_core::secret::SecretString;
use meshcert_core::signing;
use serde::de::DeserializeOwned;
use serde::Serialize;
use spin_sdk::http::{Request, Response};
use spin_sdk::key_value;
use spin_sdk::wit::wasi::keyvalue::{atomics, store as wasi_store};

/// The key-value store `default`, with JSON records.
///
/// Records that several writers change (two replicas, or an api write and a scan) are written
/// with [`Store::update`] and [`Store::insert_new`], over `wasi:keyvalue/atomics` compare-and-swap:
/// a write applies only when the record is still what the writer read. Plain [`Store::set`] is for
/// records with one writer, or whose writers all write the same value.
pub struct Store {
    store: key_value::Store,
    /// The same store through `wasi:keyvalue`, opened at the first compare-and-swap.
    bucket: std::cell::OnceCell<wasi_store::Bucket>,
}

/// What [`Store::update`]'s closure decides for the record it was given.
pub enum Change<T, R> {
    /// Leave the record as it is, and return `R`.
    Keep(R),
    /// Write `T` in place of the record the closure saw, and return `R` once written.
    Write(T, R),
}

/// How often [`Store::update`] reads a record again after another writer changed it first. Each
/// round costs a read and a write. Writers of one record are a few requests at a time, so 32
/// rounds are reached only when one record is written in a tight loop.
const UPDATE_ATTEMPTS: usize = 32;

impl Store {
    /// Opens the store `default`, which every component lists in `key_value_stores`.
    ///
    /// # Errors
    ///
    /// When the host does not grant the store.
    pub fn open() -> anyhow::Result<Self> {
        let store = key_value::Store::open_default().map_err(store_error).context("failed to open the key-value store \"default\"")?;
        Ok(Self { store, bucket: std::cell::OnceCell::new() })
    }

    /// Reads and decodes a record; `None` when the key is absent.
    ///
    /// # Errors
    ///
    /// A store failure, or a record that is not the expected JSON.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> anyhow::Result<Option<T>> {
        let Some(bytes) = self.store.get(key).map_err(store_error).with_context(|| format!("failed to read {key:?} from the key-value store"))? else {
            return Ok(None);
        };
        let value = serde_json::from_slice(&bytes).with_context(|| format!("record {key:?} is not valid JSON for its type"))?;
        Ok(Some(value))
    }

    /// Encodes and writes a record.
    ///
    /// # Errors
    ///
    /// A store failure.
    pub fn set<T: Serialize>(&self, key: &str, value: &T) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec(value).with_context(|| format!("failed to encode record {key:?}"))?;
        self.store.set(key, &bytes).map_err(store_error).with_context(|| format!("failed to write {key:?} to the key-value store"))
    }

    /// Deletes a record; deleting an absent key succeeds.
    ///
    /// # Errors
    ///
    /// A store failure.
    pub fn delete(&self, key: &str) -> anyhow::Result<()> {
        self.store.delete(key).map_err(store_error).with_context(|| format!("failed to delete {key:?} from the key-value store"))
    }

    /// Returns whether a key exists.
    ///
    /// # Errors
    ///
    /// A store failure.
    pub fn exists(&self, key: &str) -> anyhow::Result<bool> {
        self.store.exists(key).map_err(store_error).with_context(|| format!("failed to look up {key:?} in the key-value store"))
    }

    /// Lists every key that starts with `prefix`, sorted.
    ///
    /// # Errors
    ///
    /// A store failure.
    pub fn keys(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        // NOTE: Spin's key-value interface has no prefix query, so this lists every key.
        let mut keys: Vec<String> = self
            .store
            .get_keys()
            .map_err(store_error)
            .context("failed to list the keys of the key-value store")?
            .into_iter()
            .filter(|key| key.starts_with(prefix))
            .collect();
        keys.sort();
        Ok(keys)
    }

    /// Changes the record at `key` with compare-and-swap. `change` gets the record (`None` when
    /// absent) and decides. A [`Change::Write`] applies only if no other writer changed the record
    /// since it was read, and otherwise `change` runs again on the newer record. So `change` must
    /// compute from what it is given, and may run several times before its result is written.
    ///
    /// # Errors
    ///
    /// A store failure, an error of `change`, a record that is not the expected JSON, or a record
    /// that other writers changed on every one of [`UPDATE_ATTEMPTS`] rounds.
    pub fn update<T, R>(&self, key: &str, mut change: impl FnMut(Option<T>) -> anyhow::Result<Change<T, R>>) -> anyhow::Result<R>
    where
        T: Serialize + DeserializeOwned,
    {
        let read_error = || format!("failed to read {key:?} from the key-value store");
        let mut cas = atomics::Cas::new(self.bucket()?, key).map_err(wasi_error).with_context(read_error)?;
        for _ in 0..UPDATE_ATTEMPTS {
            let current = match cas.current().map_err(wasi_error).with_context(read_error)? {
                Some(bytes) => Some(serde_json::from_slice(&bytes).with_context(|| format!("record {key:?} is not valid JSON for its type"))?),
                None => None,
            };
            let (value, result) = match change(current)? {
                Change::Keep(result) => return Ok(result),
                Change::Write(value, result) => (value, result),
            };

            let bytes = serde_json::to_vec(&value).with_context(|| format!("failed to encode record {key:?}"))?;
            match atomics::swap(cas, &bytes) {
                Ok(()) => return Ok(result),
                // Another writer was first; the host hands back the record as it is now.
                Err(atomics::CasError::CasFailed(newer)) => cas = newer,
                Err(atomics::CasError::StoreError(error)) => return Err(wasi_error(error)).with_context(|| format!("failed to write {key:?} to the key-value store")),
            }
        }
        anyhow::bail!("record {key:?} was changed by other writers {UPDATE_ATTEMPTS} times while this request tried to update it; retry the request")
    }

    /// Writes `value` at `key` only when the key is absent. Returns `false`, writing nothing, when
    /// a record is there, also one that another writer created a moment before.
    ///
    /// # Errors
    ///
    /// A store failure.
    pub fn insert_new<T: Serialize>(&self, key: &str, value: &T) -> anyhow::Result<bool> {
        let bytes = serde_json::to_vec(value).with_context(|| format!("failed to encode record {key:?}"))?;
        let read_error = || format!("failed to read {key:?} from the key-value store");
        let cas = atomics::Cas::new(self.bucket()?, key).map_err(wasi_error).with_context(read_error)?;
        if cas.current().map_err(wasi_error).with_context(read_error)?.is_some() {
            return Ok(false);
        }
        match atomics::swap(cas, &bytes) {
            Ok(()) => Ok(true),
            Err(atomics::CasError::CasFailed(_)) => Ok(false),
            Err(atomics::CasError::StoreError(error)) => Err(wasi_error(error)).with_context(|| format!("failed to write {key:?} to the key-value store")),
        }
    }

    /// Returns the store through `wasi:keyvalue`. Spin's `wasi:keyvalue/store.open` takes the same labels
    /// and the same `key_value_stores` grant as its own key-value interface.
    fn bucket(&self) -> anyhow::Result<&wasi_store::Bucket> {
        if let Some(bucket) = self.bucket.get() {
            return Ok(bucket);
        }
        let bucket = wasi_store::open("default").map_err(wasi_error).context("failed to open the key-value store \"default\" through wasi:keyvalue")?;
        Ok(self.bucket.get_or_init(|| bucket))
    }
}

/// Turns a `wasi:keyvalue` error into its message, as [`store_error`] does.
fn wasi_error(error: wasi_store::Error) -> anyhow::Error {
    match error {
        wasi_store::Error::Other(message) => anyhow::anyhow!(message),
        wasi_store::Error::AccessDenied => anyhow::anyhow!("access denied: add \"default\" to the component's key_value_stores in spin.toml"),
        wasi_store::Error::NoSuchStore => anyhow::anyhow!("the host has no store \"default\": check [key_value_store.default] in the runtime configuration"),
    }
}

/// Turns a key-value error into its message: the host's own text for `other`, which names the
/// backend's failure, and the fix for the others.
fn store_error(error: key_value::Error) -> anyhow::Error {
    match error {
        key_value::Error::Other(message) => anyhow::anyhow!(message),
        key_value::Error::AccessDenied => anyhow::anyhow!("access denied: add \"default\" to the component's key_value_stores in spin.toml"),
        key_value::Error::NoSuchStore => anyhow::anyhow!("the host has no store \"default\": check [key_value_store.default] in the runtime configuration"),
        key_value::Error::StoreTableFull => anyhow::anyhow!("the host's table of open stores is full"),
    }
}

/// Reads a Spin variable of this component.
///
/// # Errors
///
/// When the variable is not declared for the component or has no value.
pub fn variable(name: &str) -> anyhow::Result<String> {
    spin_sdk::variables::get(name).with_context(|| format!("variable {name:?} is not set: set SPIN_VARIABLE_{}", name.to_uppercase()))
}

/// Reads a secret variable; its value never reaches a log or an error.
///
/// # Errors
///
/// When the variable is not declared for the component or has no value.
pub fn secret_variable(name: &str) -> anyhow::Result<SecretString> {
    variable(name).map(SecretString::new)
}

/// Loads `encryption_key` and `encryption_key_previous`.
///
/// # Errors
///
/// When a key is missing or not 32 bytes of base64.
pub fn cipher() -> anyhow::Result<Cipher> {
    let current = secret_variable("encryption_key")?;
    let previous = secret_variable("encryption_key_previous").ok();
    Ok(Cipher::from_base64(&current, previous.as_ref())?)
}

/// Returns the current time from the host's wall clock.
pub fn now() -> DateTime<Utc> {
    Utc::now()
}

/// Starts structured JSON logs on stderr for this instance. Spin instantiates a component per
/// request, so each handler calls this first; a second call in one instance does nothing.
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_current_span(false)
        .try_init();
}

/// Builds a JSON response.
pub fn json_response<T: Serialize>(status: u16, body: &T) -> Response {
    match serde_json::to_vec_pretty(body) {
        // A final newline keeps shell prompts and consecutive curl outputs apart.
        Ok(mut bytes) => {
            bytes.push(b'\n');
            Response::builder().status(status).header("content-type", "application/json").body(bytes).build()
        }
        Err(error) => error_response(500, "internal_error", &format!("failed to encode the response: {error}"), None),
    }
}

/// Builds the error response of every failure: `{"error": {"code", "message", "field"}}`.
pub fn error_response(status: u16, code: &str, message: &str, field: Option<&str>) -> Response {
    let body = meshcert_core::api::ErrorBody {
        error: meshcert_core::api::ApiError { code: code.into(), message: message.into(), field: field.map(str::to_string) },
    };
    let mut bytes = serde_json::to_vec_pretty(&body).unwrap_or_default();
    bytes.push(b'\n');
    Response::builder().status(status).header("content-type", "application/json").body(bytes).build()
}

/// A request to `url` with `body`, signed with `webhook_secret` at `timestamp` as the hook
/// endpoints require.
pub fn signed_hook_request(url: &str, body: Vec<u8>, secret: &SecretString, timestamp: i64) -> Request {
    let signature = signing::sign(secret.expose().as_bytes(), timestamp, &body);
    Request::builder()
        .method(spin_sdk::http::Method::Post)
        .uri(url)
        .header("content-type", "application/json")
        .header(signing::TIMESTAMP_HEADER, timestamp.to_string())
        .header(signing::SIGNATURE_HEADER, signature)
        .body(body)
        .build()
}

/// Runs `future` for at most `limit` of the host's monotonic clock. Returns `None` when time ran
/// out, after dropping the future, which cancels an outgoing request.
pub async fn with_timeout<F: std::future::Future>(limit: std::time::Duration, future: F) -> Option<F::Output> {
    let deadline = wasi::clocks::monotonic_clock::now().saturating_add(u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX));
    let timer = Deadline { instant: deadline, registration: None };
    futures::pin_mut!(future);
    match futures::future::select(future, timer).await {
        futures::future::Either::Left((output, _)) => Some(output),
        futures::future::Either::Right(((), _)) => None,
    }
}

/// Waits `duration` on the host's monotonic clock without blocking other tasks of the instance.
pub async fn sleep(duration: std::time::Duration) {
    with_timeout(duration, futures::future::pending::<()>()).await;
}

/// A future that completes at a monotonic-clock instant, woken by spin-sdk's executor.
struct Deadline {
    instant: u64,
    registration: Option<spin_executor::CancelOnDropToken>,
}

impl std::future::Future for Deadline {
    type Output = ();

    fn poll(mut self: std::pin::Pin<&mut Self>, context: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if wasi::clocks::monotonic_clock::now() >= self.instant {
            return std::task::Poll::Ready(());
        }
        let pollable = wasi::clocks::monotonic_clock::subscribe_instant(self.instant);
        let token = spin_executor::push_waker_and_get_token(pollable, context.waker().clone());
        self.registration = Some(token.into());
        std::task::Poll::Pending
    }
}
