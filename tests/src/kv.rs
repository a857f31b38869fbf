//! Key-value stores over SQLite, in the table layout of Spin's default store:
//! `spin_key_value(store, key, value)`, where `store` is the label.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context as _, Result};
use rusqlite::{params, Connection, OptionalExtension};

use crate::runtime_config::KeyValueStoreConfig;

/// How long a write waits for another connection's lock on the same file before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The key-value stores of an app, by label. Labels that share a database file share one
/// connection.
#[derive(Clone, Default)]
pub struct KeyValueStores {
    stores: HashMap<String, Database>,
}

/// One SQLite connection. Calls are serialised by the mutex; SQLite's own locking (WAL mode,
/// busy timeout) protects the file against other processes.
#[derive(Clone)]
pub(crate) struct Database {
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
                        let database = Database::open_file(path).with_context(|| {
                            format!("failed to open key-value store {label:?} at {}", path.display())
                        })?;
                        by_path.insert(path.clone(), database.clone());
                        database
                    }
                },
                KeyValueStoreConfig::InMemory => Database::from_connection(Connection::open_in_memory()?)?,
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
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> std::result::Result<T, String> {
        let connection = self.connection.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let connection = connection.lock().unwrap_or_else(PoisonError::into_inner);
            f(&connection)
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
