//! Key-value stores: SQLite in the table layout of Spin's default store
//! (`spin_key_value(store, key, value)`, where `store` is the label), or Redis.
//!
//! Both backends offer the operations of `fermyon:spin/key-value@2.0.0` and
//! `wasi:keyvalue@0.2.0-draft2`, including an atomic compare-and-swap and increment.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context as _, Result};
use rusqlite::{params, Connection, OptionalExtension};

use crate::kv_redis::RedisDatabase;
use crate::runtime_config::KeyValueStoreConfig;

/// How long a write waits for another connection's lock on the same file before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The key-value stores of an app, by label. Labels that share a database file share one
/// connection.
#[derive(Clone, Default)]
pub struct KeyValueStores {
    stores: HashMap<String, Database>,
}

/// The backend of one store label.
#[derive(Clone)]
pub(crate) enum Database {
    Sqlite(SqliteDatabase),
    Redis(RedisDatabase),
}

/// One SQLite connection. Calls are serialised by the mutex; SQLite's own locking (WAL mode,
/// busy timeout) protects the file against other processes.
#[derive(Clone)]
pub(crate) struct SqliteDatabase {
    connection: Arc<Mutex<Connection>>,
}

impl KeyValueStores {
    /// Opens (and creates when missing) the database of every label.
    pub fn open(configs: &HashMap<String, KeyValueStoreConfig>) -> Result<Self> {
        let mut by_path: HashMap<std::path::PathBuf, Database> = HashMap::new();
        let mut stores = HashMap::new();
        for (label, config) in configs {
            let database = match config {
                KeyValueStoreConfig::Sqlite(path) => match by_path.get(path) {
                    Some(database) => database.clone(),
                    None => {
                        let database = Database::Sqlite(SqliteDatabase::open_file(path).with_context(|| {
                            format!("failed to open key-value store {label:?} at {}", path.display())
                        })?);
                        by_path.insert(path.clone(), database.clone());
                        database
                    }
                },
                KeyValueStoreConfig::InMemory => {
                    Database::Sqlite(SqliteDatabase::from_connection(Connection::open_in_memory()?)?)
                }
                // Connects at the first operation, as Spin does, so a server that is down fails
                // requests but not the start.
                KeyValueStoreConfig::Redis(url) => Database::Redis(
                    RedisDatabase::new(url).with_context(|| format!("invalid Redis URL of key-value store {label:?}"))?,
                ),
            };
            stores.insert(label.clone(), database);
        }
        Ok(Self { stores })
    }

    pub(crate) fn database(&self, label: &str) -> Option<Database> {
        self.stores.get(label).cloned()
    }
}

impl Database {
    pub(crate) async fn get(&self, store: &str, key: String) -> std::result::Result<Option<Vec<u8>>, String> {
        match self {
            Self::Sqlite(database) => database.get(store, key).await,
            Self::Redis(database) => database.get(key).await,
        }
    }

    pub(crate) async fn set(&self, store: &str, key: String, value: Vec<u8>) -> std::result::Result<(), String> {
        match self {
            Self::Sqlite(database) => database.set(store, key, value).await,
            Self::Redis(database) => database.set(key, value).await,
        }
    }

    pub(crate) async fn delete(&self, store: &str, key: String) -> std::result::Result<(), String> {
        match self {
            Self::Sqlite(database) => database.delete(store, key).await,
            Self::Redis(database) => database.delete(key).await,
        }
    }

    pub(crate) async fn exists(&self, store: &str, key: String) -> std::result::Result<bool, String> {
        match self {
            Self::Sqlite(database) => database.exists(store, key).await,
            Self::Redis(database) => database.exists(key).await,
        }
    }

    pub(crate) async fn get_keys(&self, store: &str) -> std::result::Result<Vec<String>, String> {
        match self {
            Self::Sqlite(database) => database.get_keys(store).await,
            Self::Redis(database) => database.get_keys().await,
        }
    }

    /// Sets `key` to `value` only if its value is still `expected`, where `None` means that the
    /// key must still be missing. Returns whether the value was stored. The comparison and the write
    /// are one atomic step on both backends, also against other processes.
    pub(crate) async fn compare_and_swap(
        &self,
        store: &str,
        key: String,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> std::result::Result<bool, String> {
        match self {
            Self::Sqlite(database) => database.compare_and_swap(store, key, expected, value).await,
            Self::Redis(database) => database.compare_and_swap(key, expected, value).await,
        }
    }

    /// Adds `delta` to the counter at `key` and returns the new value. A missing key counts as 0.
    /// Both backends store the counter as decimal ASCII text, such as `b"42"`, and fail on any
    /// other value or on i64 overflow.
    pub(crate) async fn increment(&self, store: &str, key: String, delta: i64) -> std::result::Result<i64, String> {
        match self {
            Self::Sqlite(database) => database.increment(store, key, delta).await,
            Self::Redis(database) => database.increment(key, delta).await,
        }
    }
}

impl SqliteDatabase {
    fn open_file(path: &Path) -> Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("failed to create the directory {}", parent.display()))?;
        }
        let connection = Connection::open(path)?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        Self::from_connection(connection)
    }

    fn from_connection(connection: Connection) -> Result<Self> {
        connection.busy_timeout(BUSY_TIMEOUT)?;
        connection.execute(
            "CREATE TABLE IF NOT EXISTS spin_key_value (
                store TEXT NOT NULL,
                key   TEXT NOT NULL,
                value BLOB NOT NULL,
                PRIMARY KEY (store, key)
            )",
            [],
        )?;
        Ok(Self { connection: Arc::new(Mutex::new(connection)) })
    }

    /// Runs `f` on the connection in a blocking-capable thread.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> std::result::Result<T, String> {
        let connection = self.connection.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let mut connection = connection.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut connection)
        })
        .await;
        match joined {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(format!("SQLite error: {err}")),
            Err(err) => Err(format!("key-value task failed: {err}")),
        }
    }

    pub(crate) async fn get(&self, store: &str, key: String) -> std::result::Result<Option<Vec<u8>>, String> {
        let store = store.to_string();
        self.run(move |c| {
            c.prepare_cached("SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .query_row(params![store, key], |row| row.get(0))
                .optional()
        })
        .await
    }

    pub(crate) async fn set(&self, store: &str, key: String, value: Vec<u8>) -> std::result::Result<(), String> {
        let store = store.to_string();
        self.run(move |c| {
            c.prepare_cached(
                "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (store, key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![store, key, value])
            .map(|_| ())
        })
        .await
    }

    pub(crate) async fn delete(&self, store: &str, key: String) -> std::result::Result<(), String> {
        let store = store.to_string();
        self.run(move |c| {
            c.prepare_cached("DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .execute(params![store, key])
                .map(|_| ())
        })
        .await
    }

    pub(crate) async fn exists(&self, store: &str, key: String) -> std::result::Result<bool, String> {
        let store = store.to_string();
        self.run(move |c| {
            c.prepare_cached("SELECT 1 FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .query_row(params![store, key], |_| Ok(()))
                .optional()
                .map(|row| row.is_some())
        })
        .await
    }

    pub(crate) async fn get_keys(&self, store: &str) -> std::result::Result<Vec<String>, String> {
        let store = store.to_string();
        self.run(move |c| {
            let mut statement = c.prepare_cached("SELECT key FROM spin_key_value WHERE store = ?1")?;
            let keys = statement.query_map(params![store], |row| row.get(0))?;
            keys.collect()
        })
        .await
    }

    /// Runs one statement for either case, so SQLite makes the comparison and the write atomic,
    /// also against other connections to the file.
    ///
    /// NOTE: Spin's SQLite store (Spin 3.x and 4.0) writes a missing key with an upsert, so its
    /// swap overwrites a key that another writer inserted after the read. Here that swap fails,
    /// because an insert after a read of "missing" is a change like any other.
    async fn compare_and_swap(
        &self,
        store: &str,
        key: String,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> std::result::Result<bool, String> {
        let store = store.to_string();
        self.run(move |c| {
            let changed = match expected {
                Some(expected) => c
                    .prepare_cached("UPDATE spin_key_value SET value = ?4 WHERE store = ?1 AND key = ?2 AND value = ?3")?
                    .execute(params![store, key, expected, value])?,
                None => c
                    .prepare_cached(
                        "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                         ON CONFLICT (store, key) DO NOTHING",
                    )?
                    .execute(params![store, key, value])?,
            };
            Ok(changed == 1)
        })
        .await
    }

    /// Reads, adds and writes in one `BEGIN IMMEDIATE` transaction, which takes the write lock
    /// before the read, so no other connection can change the counter in between.
    ///
    /// NOTE: Spin's SQLite store keeps counters as 8 little-endian bytes and its Redis store as
    /// decimal text. This host uses decimal text on both, so a counter reads the same whichever
    /// backend stores it.
    async fn increment(&self, store: &str, key: String, delta: i64) -> std::result::Result<i64, String> {
        let store = store.to_string();
        let result = self
            .run(move |c| {
                let transaction = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let current: Option<Vec<u8>> = transaction
                    .prepare_cached("SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                    .query_row(params![store, key], |row| row.get(0))
                    .optional()?;
                let sum = match current.as_deref().map(parse_counter) {
                    None => Ok(delta),
                    Some(Ok(current)) => current
                        .checked_add(delta)
                        .ok_or_else(|| format!("incrementing {current} by {delta} overflows a 64-bit signed integer")),
                    Some(Err(message)) => Err(message),
                };
                let Ok(sum) = sum else {
                    return Ok(sum);
                };
                transaction
                    .prepare_cached(
                        "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                         ON CONFLICT (store, key) DO UPDATE SET value = excluded.value",
                    )?
                    .execute(params![store, key, sum.to_string().into_bytes()])?;
                transaction.commit()?;
                Ok(Ok(sum))
            })
            .await?;
        result
    }
}

/// Parses a counter stored by `increment`: an i64 in decimal ASCII text.
fn parse_counter(value: &[u8]) -> std::result::Result<i64, String> {
    std::str::from_utf8(value).ok().and_then(|text| text.parse().ok()).ok_or_else(|| {
        format!(
            "the key holds {} bytes that are not a decimal integer, so increment cannot add to it: delete the key or store a number such as \"0\"",
            value.len()
        )
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Checks every operation of a backend, whose store must start empty. `others` are more
    /// connections to the same store, used to race `database`.
    pub(crate) async fn check_backend(database: Database, others: &[Database]) {
        const STORE: &str = "default";

        // get, set, delete, exists, get-keys.
        assert_eq!(database.get(STORE, "a".into()).await.unwrap(), None);
        database.set(STORE, "a".into(), b"1".to_vec()).await.unwrap();
        database.set(STORE, "a".into(), b"2".to_vec()).await.unwrap();
        database.set(STORE, "b".into(), vec![0, 255]).await.unwrap();
        assert_eq!(database.get(STORE, "a".into()).await.unwrap(), Some(b"2".to_vec()));
        assert_eq!(others[0].get(STORE, "b".into()).await.unwrap(), Some(vec![0, 255]), "another connection reads it");
        assert!(database.exists(STORE, "b".into()).await.unwrap());
        let mut keys = database.get_keys(STORE).await.unwrap();
        keys.sort();
        assert_eq!(keys, ["a", "b"]);
        database.delete(STORE, "b".into()).await.unwrap();
        database.delete(STORE, "never-set".into()).await.unwrap();
        assert!(!database.exists(STORE, "b".into()).await.unwrap());
        assert_eq!(database.get_keys(STORE).await.unwrap(), ["a"]);

        // Compare-and-swap of a present key: succeeds once, then fails because the value changed.
        assert!(database.compare_and_swap(STORE, "a".into(), Some(b"2".to_vec()), b"3".to_vec()).await.unwrap());
        assert_eq!(database.get(STORE, "a".into()).await.unwrap(), Some(b"3".to_vec()));
        assert!(!database.compare_and_swap(STORE, "a".into(), Some(b"2".to_vec()), b"4".to_vec()).await.unwrap());
        assert_eq!(database.get(STORE, "a".into()).await.unwrap(), Some(b"3".to_vec()));

        // A set from another connection between the read and the swap makes the swap fail.
        let read = database.get(STORE, "a".into()).await.unwrap();
        others[0].set(STORE, "a".into(), b"concurrent".to_vec()).await.unwrap();
        assert!(!database.compare_and_swap(STORE, "a".into(), read, b"mine".to_vec()).await.unwrap());
        assert_eq!(database.get(STORE, "a".into()).await.unwrap(), Some(b"concurrent".to_vec()));

        // A swap that expects a missing key inserts it once, and loses to a concurrent insert.
        assert!(database.compare_and_swap(STORE, "new".into(), None, b"first".to_vec()).await.unwrap());
        assert!(!database.compare_and_swap(STORE, "new".into(), None, b"second".to_vec()).await.unwrap());
        assert_eq!(database.get(STORE, "new".into()).await.unwrap(), Some(b"first".to_vec()));
        let read = database.get(STORE, "raced".into()).await.unwrap();
        assert_eq!(read, None);
        others[0].set(STORE, "raced".into(), b"theirs".to_vec()).await.unwrap();
        assert!(!database.compare_and_swap(STORE, "raced".into(), read, b"mine".to_vec()).await.unwrap());
        assert_eq!(database.get(STORE, "raced".into()).await.unwrap(), Some(b"theirs".to_vec()));

        // A swap that expects a value fails on a missing key.
        assert!(!database.compare_and_swap(STORE, "absent".into(), Some(Vec::new()), b"x".to_vec()).await.unwrap());
        assert!(!database.exists(STORE, "absent".into()).await.unwrap());

        // Increment: decimal text, a missing key counts as 0, other values are rejected.
        assert_eq!(database.increment(STORE, "counter".into(), 5).await.unwrap(), 5);
        assert_eq!(others[1].increment(STORE, "counter".into(), -7).await.unwrap(), -2);
        assert_eq!(database.get(STORE, "counter".into()).await.unwrap(), Some(b"-2".to_vec()));
        let error = database.increment(STORE, "new".into(), 1).await.unwrap_err();
        // SQLite: "... not a decimal integer ..."; Redis: "value is not an integer or out of range".
        assert!(error.contains("integer"), "{error}");
        assert_eq!(database.get(STORE, "new".into()).await.unwrap(), Some(b"first".to_vec()), "a failed increment writes nothing");
        database.set(STORE, "max".into(), i64::MAX.to_string().into_bytes()).await.unwrap();
        assert!(database.increment(STORE, "max".into(), 1).await.is_err(), "overflow is an error");

        // Concurrent increments by compare-and-swap from several tasks on every connection, and
        // by increment, end with the exact total.
        const TASKS_PER_CONNECTION: usize = 4;
        const ROUNDS: i64 = 25;
        let mut tasks = Vec::new();
        for connection in std::iter::once(&database).chain(others) {
            for _ in 0..TASKS_PER_CONNECTION {
                let connection = connection.clone();
                tasks.push(tokio::spawn(async move {
                    let mut conflicts = 0;
                    for _ in 0..ROUNDS {
                        loop {
                            let current = connection.get(STORE, "cas-total".into()).await.unwrap();
                            let number: i64 = current.as_deref().map_or(0, |v| std::str::from_utf8(v).unwrap().parse().unwrap());
                            let next = (number + 1).to_string().into_bytes();
                            if connection.compare_and_swap(STORE, "cas-total".into(), current, next).await.unwrap() {
                                break;
                            }
                            conflicts += 1;
                        }
                        connection.increment(STORE, "increment-total".into(), 1).await.unwrap();
                    }
                    conflicts
                }));
            }
        }
        let task_count = tasks.len() as i64;
        let mut conflicts = 0;
        for task in tasks {
            conflicts += task.await.unwrap();
        }
        let expected = (task_count * ROUNDS).to_string().into_bytes();
        assert_eq!(database.get(STORE, "cas-total".into()).await.unwrap(), Some(expected.clone()), "after {conflicts} conflicts");
        assert_eq!(database.get(STORE, "increment-total".into()).await.unwrap(), Some(expected));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_backend_operations() {
        let dir = tempfile::tempdir().unwrap();
        let configs = HashMap::from([("default".to_string(), KeyValueStoreConfig::Sqlite(dir.path().join("kv.db")))]);
        // Each open makes its own connection to the file, as another process would.
        let open = || KeyValueStores::open(&configs).unwrap().database("default").unwrap();
        check_backend(open(), &[open(), open()]).await;
    }

    #[tokio::test]
    async fn sqlite_labels_kept_apart() {
        let configs = HashMap::from([("default".to_string(), KeyValueStoreConfig::InMemory)]);
        let database = KeyValueStores::open(&configs).unwrap().database("default").unwrap();
        assert!(database.compare_and_swap("one", "k".into(), None, b"1".to_vec()).await.unwrap());
        assert!(database.compare_and_swap("two", "k".into(), None, b"2".to_vec()).await.unwrap());
        assert_eq!(database.increment("two", "n".into(), 3).await.unwrap(), 3);
        assert_eq!(database.get_keys("one").await.unwrap(), ["k"]);
        assert_eq!(database.get("one", "k".into()).await.unwrap(), Some(b"1".to_vec()));
    }

    #[tokio::test]
    async fn kv_roundtrip_and_persistence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/sqlite_key_value.db");
        let configs = HashMap::from([("default".to_string(), KeyValueStoreConfig::Sqlite(path.clone()))]);
        {
            let stores = KeyValueStores::open(&configs).unwrap();
            let db = stores.database("default").unwrap();
            db.set("default", "a".into(), b"1".to_vec()).await.unwrap();
            db.set("default", "a".into(), b"2".to_vec()).await.unwrap();
            db.set("default", "b".into(), b"3".to_vec()).await.unwrap();
            db.delete("default", "b".into()).await.unwrap();
            assert!(!db.exists("default", "b".into()).await.unwrap());
        }
        let stores = KeyValueStores::open(&configs).unwrap();
        let db = stores.database("default").unwrap();
        assert_eq!(db.get("default", "a".into()).await.unwrap(), Some(b"2".to_vec()));
        assert_eq!(db.get("default", "zz".into()).await.unwrap(), None);
        assert_eq!(db.get_keys("default").await.unwrap(), ["a"]);
        assert_eq!(db.get_keys("other").await.unwrap(), Vec::<String>::new());
    }
}
