//! The runtime configuration file (`--runtime-config-file`), limited to key-value stores of
//! type `spin` (SQLite) and `[[client_tls]]` entries.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

/// Where one key-value store label keeps its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyValueStoreConfig {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A SQLite database in memory, lost when the app stops (Spin's `type = "spin"` without
    /// `path` for any label but `default`).
    InMemory,
}

/// A parsed runtime configuration file.
#[derive(Clone, Debug, Default)]
pub struct RuntimeConfig {
    /// `[key_value_store.<label>]` tables, by label.
    pub key_value_stores: BTreeMap<String, KeyValueStoreConfig>,
    /// `[[client_tls]]` tables, stored as read.
    pub client_tls: Vec<toml::Table>,
}

impl RuntimeConfig {
    /// Reads the file at `path`; relative store paths are resolved against its directory.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!("failed to read the runtime config file {}: check the path given with --runtime-config-file", path.display())
        })?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::parse(&text, &dir)
            .with_context(|| format!("invalid runtime config file {}", path.display()))
    }

    /// Parses runtime config text; `base_dir` is the directory relative `path`s start from.
    pub fn parse(text: &str, base_dir: &Path) -> Result<Self> {
        let table: toml::Table = toml::from_str(text)?;
        let mut config = Self::default();
        for (key, value) in table {
            match key.as_str() {
                "key_value_store" => {
                    let Some(stores) = value.as_table() else {
                        bail!("key_value_store must be a table of [key_value_store.<label>] tables");
                    };
                    for (label, store) in stores {
                        let store = parse_key_value_store(label, store, base_dir)?;
                        config.key_value_stores.insert(label.clone(), store);
                    }
                }
                "client_tls" => {
                    let Some(entries) = value.as_array() else {
                        bail!("client_tls must be an array of [[client_tls]] tables");
                    };
                    for entry in entries {
                        let Some(entry) = entry.as_table() else {
                            bail!("each client_tls entry must be a [[client_tls]] table");
                        };
                        // TODO: client TLS settings are parsed and stored but not applied to
                        // outbound requests yet; those still trust the webpki roots only.
                        config.client_tls.push(entry.clone());
                    }
                }
                other => bail!(
                    "unknown runtime config entry {other:?}: meshcert-host supports only [key_value_store.<label>] and [[client_tls]]"
                ),
            }
        }
        Ok(config)
    }
}

fn parse_key_value_store(label: &str, store: &toml::Value, base_dir: &Path) -> Result<KeyValueStoreConfig> {
    let Some(store) = store.as_table() else {
        bail!("[key_value_store.{label}] must be a table with type = \"spin\"");
    };
    let kind = store.get("type").and_then(|t| t.as_str()).with_context(|| {
        format!("[key_value_store.{label}] has no type: add type = \"spin\"")
    })?;
    if kind != "spin" {
        bail!(
            "[key_value_store.{label}] has type {kind:?}, which meshcert-host does not support yet: use type = \"spin\" (SQLite) for local runs"
        );
    }
    for key in store.keys() {
        if key != "type" && key != "path" {
            bail!("[key_value_store.{label}] has unknown key {key:?}: a store of type \"spin\" takes only path");
        }
    }
    match store.get("path") {
        None => Ok(KeyValueStoreConfig::InMemory),
        Some(toml::Value::String(path)) => Ok(KeyValueStoreConfig::Sqlite(base_dir.join(path))),
        Some(other) => bail!("[key_value_store.{label}] path must be a string, not {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_config_spin_store_path_relative_to_file() {
        let config = RuntimeConfig::parse(
            "[key_value_store.default]\ntype = \"spin\"\npath = \"data/kv.db\"\n",
            Path::new("/etc/app"),
        )
        .unwrap();
        assert_eq!(
            config.key_value_stores["default"],
            KeyValueStoreConfig::Sqlite(PathBuf::from("/etc/app/data/kv.db"))
        );
    }

    #[test]
    fn runtime_config_spin_store_without_path_in_memory() {
        let config =
            RuntimeConfig::parse("[key_value_store.cache]\ntype = \"spin\"\n", Path::new("/")).unwrap();
        assert_eq!(config.key_value_stores["cache"], KeyValueStoreConfig::InMemory);
    }

    #[test]
    fn runtime_config_rejects_redis() {
        let err = format!(
            "{:#}",
            RuntimeConfig::parse("[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://x\"\n", Path::new("/"))
                .unwrap_err()
        );
        assert!(err.contains("\"redis\""), "{err}");
    }

    #[test]
    fn runtime_config_rejects_unknown_table() {
        let err = format!(
            "{:#}",
            RuntimeConfig::parse("[sqlite_database.default]\ntype = \"spin\"\n", Path::new("/")).unwrap_err()
        );
        assert!(err.contains("sqlite_database"), "{err}");
    }

    #[test]
    fn runtime_config_keeps_client_tls() {
        let config = RuntimeConfig::parse(
            "[[client_tls]]\ncomponent_ids = [\"api\"]\nhosts = [\"k8s:6443\"]\n",
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(config.client_tls.len(), 1);
    }
}
