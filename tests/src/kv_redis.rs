//! The Redis backend of a key-value store label (`type = "redis"` in the runtime config).
//!
//! Keys are stored exactly as the component gives them, with no prefix and no label, and
//! `get-keys` lists the database with `KEYS *`, as Spin's Redis store does (Spin 3.x and 4.0).
//! So every label on one Redis database shares one keyspace, and meshcert's store needs a Redis
//! database number (the `/N` at the end of the URL) that nothing else uses.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands as _;
use tokio::sync::OnceCell;

/// How long one attempt to connect to the Redis server may take.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a command may wait for its reply.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Sets `KEYS[1]` to `ARGV[3]` if its value equals `ARGV[2]`, or, when `ARGV[1]` is `"missing"`,
/// if the key does not exist. Returns 1 when it wrote the value and 0 otherwise. Redis runs a script without
/// running any other command in between, so the comparison and the write are atomic.
const COMPARE_AND_SWAP_SCRIPT: &str = r#"
local current = redis.call('GET', KEYS[1])
if ARGV[1] == 'missing' then
    if current then
        return 0
    end
elseif current ~= ARGV[2] then
    return 0
end
redis.call('SET', KEYS[1], ARGV[3])
return 1
"#;

/// A Redis database, reached through one shared connection that is opened at the first
/// operation and reopened after a failure.
#[derive(Clone)]
pub(crate) struct RedisDatabase {
    client: redis::Client,
    connection: Arc<OnceCell<ConnectionManager>>,
}

impl RedisDatabase {
    /// Checks `url` without connecting.
    pub(crate) fn new(url: &str) -> Result<Self> {
        let client = match redis::Client::open(url) {
            Ok(client) => client,
            // The redis crate's parse errors (1.8) describe the problem without quoting the URL, so
            // the password stays out of the message.
            Err(error) => bail!("{error}"),
        };
        Ok(Self { client, connection: Arc::new(OnceCell::new()) })
    }

    /// Returns the shared connection, connecting first when no attempt has succeeded yet.
    async fn connection(&self) -> std::result::Result<ConnectionManager, String> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECTION_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1);
        let manager = self
            .connection
            .get_or_try_init(|| ConnectionManager::new_with_config(self.client.clone(), config))
            .await
            .map_err(redis_error)?;
        Ok(manager.clone())
    }

    /// Runs an idempotent command, and runs it once more when the shared connection was
    /// dropped, as after a restart of the server. The connection manager notices a dead
    /// connection only when a command fails on it, and then reconnects.
    async fn idempotent<T, F, Fut>(&self, run: F) -> std::result::Result<T, String>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        match run(self.connection().await?).await {
            Err(error) if error.is_connection_dropped() || error.is_io_error() => run(self.connection().await?).await.map_err(redis_error),
            result => result.map_err(redis_error),
        }
    }

    pub(crate) async fn get(&self, key: String) -> std::result::Result<Option<Vec<u8>>, String> {
        self.idempotent(|mut connection| {
            let key = key.clone();
            async move { connection.get(key).await }
        })
        .await
    }

    pub(crate) async fn set(&self, key: String, value: Vec<u8>) -> std::result::Result<(), String> {
        self.idempotent(|mut connection| {
            let (key, value) = (key.clone(), value.clone());
            async move { connection.set(key, value).await }
        })
        .await
    }

    pub(crate) async fn delete(&self, key: String) -> std::result::Result<(), String> {
        self.idempotent(|mut connection| {
            let key = key.clone();
            async move { connection.del(key).await }
        })
        .await
    }

    pub(crate) async fn exists(&self, key: String) -> std::result::Result<bool, String> {
        self.idempotent(|mut connection| {
            let key = key.clone();
            async move { connection.exists(key).await }
        })
        .await
    }

    pub(crate) async fn get_keys(&self) -> std::result::Result<Vec<String>, String> {
        self.idempotent(|mut connection| async move { connection.keys("*").await }).await
    }

    /// Runs [`COMPARE_AND_SWAP_SCRIPT`].
    ///
    /// NOTE: Spin's Redis store (Spin 3.x and 4.0) sends WATCH, GET, then MULTI, SET, EXEC, and
    /// decodes EXEC's reply into `()`, so an EXEC that Redis aborted because the key changed
    /// still reads as success. A script avoids that reply and needs no connection of its own.
    pub(crate) async fn compare_and_swap(
        &self,
        key: String,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> std::result::Result<bool, String> {
        let script = redis::Script::new(COMPARE_AND_SWAP_SCRIPT);
        let mut invocation = script.key(key);
        match expected {
            Some(expected) => invocation.arg("present").arg(expected),
            None => invocation.arg("missing").arg(""),
        };
        invocation.arg(value);
        let written: i64 = invocation.invoke_async(&mut self.connection().await?).await.map_err(redis_error)?;
        Ok(written == 1)
    }

    /// Runs INCRBY, which keeps the counter as decimal text and fails on any other value.
    pub(crate) async fn increment(&self, key: String, delta: i64) -> std::result::Result<i64, String> {
        self.connection().await?.incr(key, delta).await.map_err(redis_error)
    }
}

fn redis_error(error: redis::RedisError) -> String {
    format!("Redis error: {error}; check that the server is up and the store's url in the runtime config")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::tests::check_backend;
    use crate::kv::{Database, KeyValueStores};
    use crate::runtime_config::KeyValueStoreConfig;
    use crate::test_redis::RedisServer;

    fn redis_database(server: &RedisServer, db: u8) -> Database {
        let configs = std::collections::HashMap::from([(
            "default".to_string(),
            KeyValueStoreConfig::Redis(server.url(db)),
        )]);
        KeyValueStores::open(&configs).unwrap().database("default").unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_backend_operations() {
        let server = RedisServer::start();
        // Three connections to database 1, as three replicas of the app would have.
        let first = redis_database(&server, 1);
        let others = [redis_database(&server, 1), redis_database(&server, 1)];
        check_backend(first, &others).await;
    }

    #[tokio::test]
    async fn redis_keys_unprefixed_per_database() {
        let server = RedisServer::start();
        let database = redis_database(&server, 2);
        database.set("default", "cert/a".into(), b"1".to_vec()).await.unwrap();

        let mut direct = redis::Client::open(server.url(2)).unwrap().get_multiplexed_async_connection().await.unwrap();
        let value: Option<Vec<u8>> = direct.get("cert/a").await.unwrap();
        assert_eq!(value.as_deref(), Some(&b"1"[..]), "the key is stored as given");
        let other = redis_database(&server, 3);
        assert_eq!(other.get_keys("default").await.unwrap(), Vec::<String>::new(), "database 3 is separate");
    }

    #[tokio::test]
    async fn redis_restart_costs_no_request() {
        let mut server = RedisServer::start();
        let configs = std::collections::HashMap::from([("default".to_string(), KeyValueStoreConfig::Redis(server.url(2)))]);
        let stores = KeyValueStores::open(&configs).unwrap();
        let database = stores.database("default").unwrap();
        database.set("default", "a".into(), b"1".to_vec()).await.unwrap();

        server.restart();

        assert_eq!(database.get("default", "a".into()).await, Ok(None), "the first read after a restart reconnects");
        database.set("default", "a".into(), b"2".to_vec()).await.unwrap();
        assert_eq!(database.get("default", "a".into()).await, Ok(Some(b"2".to_vec())));
    }

    #[tokio::test]
    async fn redis_down_fails_operations_not_open() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let configs = std::collections::HashMap::from([(
            "default".to_string(),
            KeyValueStoreConfig::Redis(format!("redis://:secret-password@127.0.0.1:{port}/0")),
        )]);
        let stores = KeyValueStores::open(&configs).expect("opening does not connect");
        let database = stores.database("default").unwrap();

        let error = database.get("default", "a".into()).await.unwrap_err();
        assert!(error.starts_with("Redis error"), "{error}");
        assert!(!error.contains("secret-password"), "{error}");
    }
}
