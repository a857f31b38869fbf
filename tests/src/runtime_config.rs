//! The runtime configuration file (`--runtime-config-file`), limited to key-value stores of
//! type `spin` (SQLite) or `redis` and `[[client_tls]]` entries.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use crate::template::check_kebab_id;

/// Where one key-value store label keeps its data.
#[derive(Clone, PartialEq, Eq)]
pub enum KeyValueStoreConfig {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A SQLite database in memory, lost when the app stops (Spin's `type = "spin"` without
    /// `path` for any label but `default`).
    InMemory,
    /// A Redis database, by its `redis://` URL, which may contain a password.
    Redis(String),
}

/// Prints a Redis URL without its user name and password.
impl std::fmt::Debug for KeyValueStoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            Self::InMemory => f.write_str("InMemory"),
            Self::Redis(url) => {
                let redacted = match url::Url::parse(url) {
                    Ok(mut parsed) => {
                        let _ = parsed.set_username("");
                        let _ = parsed.set_password(None);
                        parsed.to_string()
                    }
                    Err(_) => "<invalid URL>".to_string(),
                };
                f.debug_tuple("Redis").field(&redacted).finish()
            }
        }
    }
}

/// A parsed runtime configuration file.
#[derive(Clone, Debug, Default)]
pub struct RuntimeConfig {
    /// `[key_value_store.<label>]` tables, by label.
    pub key_value_stores: BTreeMap<String, KeyValueStoreConfig>,
    /// `[[client_tls]]` tables, in file order, checked and with their files read.
    pub client_tls: Vec<ClientTlsEntry>,
}

/// One `[[client_tls]]` entry: the TLS client settings that outbound HTTPS requests from the
/// listed components to the listed hosts use, with Spin 4's field names and defaults.
#[derive(Clone, Debug)]
pub struct ClientTlsEntry {
    /// `component_ids`: the components the entry applies to.
    pub component_ids: Vec<String>,
    /// `hosts`: host names or IP addresses without a port, compared exactly with the host of the
    /// request URL, so the entry applies to every port of a host. An IPv6 address is written in
    /// brackets, as in a URL.
    pub hosts: Vec<String>,
    /// `ca_use_platform_roots`: whether the operating system's trusted roots are trusted.
    pub use_platform_roots: bool,
    /// `ca_use_webpki_roots`: whether the Mozilla roots of the webpki-roots crate are trusted.
    pub use_webpki_roots: bool,
    /// The certificates of `ca_roots_file`, trusted in addition to the roots above.
    pub root_certificates: Vec<CertificateDer<'static>>,
    /// `client_cert_file` and `client_private_key_file`, for servers that authenticate clients
    /// by certificate.
    pub client_certificate: Option<Arc<ClientCertificate>>,
}

/// A client certificate chain and its private key, read from PEM files.
#[derive(Debug)]
pub struct ClientCertificate {
    /// The certificate chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key of the leaf. `PrivateKeyDer`'s `Debug` does not print the key.
    pub key: PrivateKeyDer<'static>,
}

impl RuntimeConfig {
    /// Reads the file at `path`. Relative store and certificate paths start from its directory.
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
                    for (index, entry) in entries.iter().enumerate() {
                        let entry = parse_client_tls(entry, base_dir)
                            .with_context(|| format!("invalid [[client_tls]] entry {} (counting from 1 in file order)", index + 1))?;
                        config.client_tls.push(entry);
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

/// The fields of a `[[client_tls]]` table in Spin 3 and 4. Spin rejects any other field.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientTlsToml {
    component_ids: Vec<String>,
    hosts: Vec<String>,
    ca_use_platform_roots: Option<bool>,
    ca_use_webpki_roots: Option<bool>,
    ca_roots_file: Option<PathBuf>,
    client_cert_file: Option<PathBuf>,
    client_private_key_file: Option<PathBuf>,
}

/// Field names of Spin 2's `[[client_tls]]`, which Spin 3 renamed, with their new names.
const RENAMED_CLIENT_TLS_FIELDS: [(&str, &str); 3] = [
    ("cert_chain_file", "client_cert_file"),
    ("private_key_file", "client_private_key_file"),
    ("ca_webpki_roots", "ca_use_webpki_roots"),
];

/// Checks one `[[client_tls]]` table and reads its files, with the rules of Spin 4.0's
/// outbound networking runtime config.
fn parse_client_tls(value: &toml::Value, base_dir: &Path) -> Result<ClientTlsEntry> {
    let fields: ClientTlsToml = value.clone().try_into().map_err(|error: toml::de::Error| {
        let message = error.message().trim_end().to_string();
        match RENAMED_CLIENT_TLS_FIELDS.iter().find(|(old, _)| message.contains(&format!("`{old}`"))) {
            Some((old, new)) => anyhow::format_err!("{message}: Spin 3 and later call {old} {new}"),
            None => anyhow::format_err!("{message}"),
        }
    })?;

    if fields.component_ids.is_empty() {
        bail!("component_ids is empty: list the components that use this entry, such as [\"sync-webhook\"]");
    }
    for id in &fields.component_ids {
        check_kebab_id(id).map_err(|reason| {
            anyhow::format_err!("component_ids contains {id:?}, which is not a valid component id: {reason}")
        })?;
    }
    if fields.hosts.is_empty() {
        bail!("hosts is empty: list the host names or IP addresses this entry applies to, such as [\"k8s.example.com\"]");
    }
    for host in &fields.hosts {
        check_client_tls_host(host)?;
    }

    // Spin 4.0's defaults: with neither flag set, the operating system's roots are trusted
    // unless ca_roots_file gives roots, and the webpki roots are not. Setting only one flag turns
    // the other off.
    let (use_platform_roots, use_webpki_roots) = match (fields.ca_use_platform_roots, fields.ca_use_webpki_roots) {
        (Some(platform), Some(webpki)) => (platform, webpki),
        (Some(platform), None) => (platform, false),
        (None, Some(webpki)) => (false, webpki),
        (None, None) => (fields.ca_roots_file.is_none(), false),
    };

    let root_certificates = match &fields.ca_roots_file {
        Some(path) => read_certificates("ca_roots_file", &base_dir.join(path))?,
        None => Vec::new(),
    };
    if !use_platform_roots && !use_webpki_roots && root_certificates.is_empty() {
        bail!("the entry trusts no roots: give ca_roots_file, or set ca_use_platform_roots or ca_use_webpki_roots to true");
    }

    let client_certificate = match (&fields.client_cert_file, &fields.client_private_key_file) {
        (Some(certificate_path), Some(key_path)) => Some(Arc::new(ClientCertificate {
            chain: read_certificates("client_cert_file", &base_dir.join(certificate_path))?,
            key: read_private_key(&base_dir.join(key_path))?,
        })),
        (None, None) => None,
        (Some(_), None) => bail!("client_cert_file is set without client_private_key_file: give the file with the certificate's private key too"),
        (None, Some(_)) => bail!("client_private_key_file is set without client_cert_file: give the file with the client certificate too"),
    };

    Ok(ClientTlsEntry {
        component_ids: fields.component_ids,
        hosts: fields.hosts,
        use_platform_roots,
        use_webpki_roots,
        root_certificates,
        client_certificate,
    })
}

/// Checks a `hosts` value as Spin 4.0 does: a URL authority without a port.
fn check_client_tls_host(host: &str) -> Result<()> {
    let authority: http::uri::Authority = match host.parse() {
        Ok(authority) => authority,
        Err(error) => {
            if host.parse::<std::net::Ipv6Addr>().is_ok() {
                bail!("hosts contains {host:?}, an IPv6 address without brackets: write it as in a URL, \"[{host}]\"");
            }
            bail!("hosts contains {host:?}, which is not a valid host name or IP address: {error}");
        }
    };
    if authority.port().is_some() {
        bail!(
            "hosts contains {host:?} with a port, but Spin matches [[client_tls]] hosts without ports: write {:?}, which covers every port of that host",
            authority.host()
        );
    }
    Ok(())
}

/// Reads the CERTIFICATE blocks of a PEM file given as `field`.
fn read_certificates(field: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| {
        format!("failed to read {field} {}: check the path, which is relative to the runtime config file's directory", path.display())
    })?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{field} {} is not valid PEM: give a file of -----BEGIN CERTIFICATE----- blocks", path.display()))?;
    if certificates.is_empty() {
        bail!("{field} {} contains no CERTIFICATE block: give a PEM file of certificates", path.display());
    }
    Ok(certificates)
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1) of the PEM file `client_private_key_file`.
fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let pem = std::fs::read(path).with_context(|| {
        format!("failed to read client_private_key_file {}: check the path, which is relative to the runtime config file's directory", path.display())
    })?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|error| match error {
        rustls::pki_types::pem::Error::NoItemsFound => anyhow::format_err!(
            "client_private_key_file {} contains no private key: give a PEM file with a PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block",
            path.display()
        ),
        other => anyhow::format_err!("client_private_key_file {} is not valid PEM: {other}", path.display()),
    })
}

fn parse_key_value_store(label: &str, store: &toml::Value, base_dir: &Path) -> Result<KeyValueStoreConfig> {
    let Some(store) = store.as_table() else {
        bail!("[key_value_store.{label}] must be a table with type = \"spin\" or type = \"redis\"");
    };
    let kind = store.get("type").and_then(|t| t.as_str()).with_context(|| {
        format!("[key_value_store.{label}] has no type: add type = \"spin\" (SQLite) or type = \"redis\"")
    })?;
    match kind {
        "spin" => {}
        "redis" => return parse_redis_store(label, store),
        _ => bail!(
            "[key_value_store.{label}] has type {kind:?}, which meshcert-host does not support: use type = \"spin\" (SQLite) or type = \"redis\""
        ),
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

/// Checks a `type = "redis"` table, whose only other field is `url`, as in Spin 3.x and 4.0.
/// The URL is parsed but not connected to: Spin connects at the first operation too.
///
/// NOTE: Spin ignores unknown fields here; this host rejects them, so a misspelled `url` is an
/// error rather than a store without a URL. Spin also accepts `rediss://` (TLS); this host
/// supports plain `redis://` only.
fn parse_redis_store(label: &str, store: &toml::Table) -> Result<KeyValueStoreConfig> {
    for key in store.keys() {
        if key != "type" && key != "url" {
            bail!("[key_value_store.{label}] has unknown key {key:?}: a store of type \"redis\" takes only url");
        }
    }
    let url = match store.get("url") {
        Some(toml::Value::String(url)) => url,
        Some(other) => bail!("[key_value_store.{label}] url must be a string such as \"redis://127.0.0.1:6379/0\", not a {}", other.type_str()),
        None => bail!("[key_value_store.{label}] has type = \"redis\" but no url: add url = \"redis://<host>:<port>/<database>\""),
    };

    // The messages quote only the scheme, never the URL, because it may contain a password.
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    match scheme {
        Some("redis") => {}
        Some("rediss") => bail!(
            "[key_value_store.{label}] url uses rediss:// (TLS), which meshcert-host does not support: use a redis:// URL on a trusted network, or run under Spin"
        ),
        Some(other) => bail!(
            "[key_value_store.{label}] url has the scheme {other:?}, but a Redis store needs a URL such as \"redis://127.0.0.1:6379/0\""
        ),
        None => bail!(
            "[key_value_store.{label}] url is not a URL: give one such as \"redis://127.0.0.1:6379/0\""
        ),
    }
    if let Err(error) = redis::Client::open(url.as_str()) {
        bail!("[key_value_store.{label}] url is not a valid Redis URL ({error}): give one such as \"redis://:password@host:6379/0\"");
    }
    Ok(KeyValueStoreConfig::Redis(url.clone()))
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
    fn runtime_config_redis_store() {
        let config = RuntimeConfig::parse(
            "[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://:s3cret@127.0.0.1:6379/3\"\n",
            Path::new("/"),
        )
        .unwrap();
        let store = &config.key_value_stores["default"];
        assert_eq!(*store, KeyValueStoreConfig::Redis("redis://:s3cret@127.0.0.1:6379/3".to_string()));
        assert!(!format!("{config:?}").contains("s3cret"), "Debug prints the password: {config:?}");
    }

    #[test]
    fn runtime_config_rejects_bad_redis_stores() {
        let cases = [
            ("", "[key_value_store.cache] has type = \"redis\" but no url"),
            ("url = 6379", "url must be a string"),
            ("url = \"redis://h\"\npath = \"x.db\"", "unknown key \"path\""),
            ("url = \"http://h:6379\"", "the scheme \"http\""),
            ("url = \"rediss://:pw@h:6379\"", "rediss:// (TLS)"),
            ("url = \"h:6379\"", "url is not a URL"),
            ("url = \"redis://:pw@h:6379/notanumber\"", "not a valid Redis URL"),
        ];
        for (fields, expected) in cases {
            let text = format!("[key_value_store.cache]\ntype = \"redis\"\n{fields}\n");
            let error = format!("{:#}", RuntimeConfig::parse(&text, Path::new("/")).unwrap_err());
            assert!(error.contains(expected), "{fields:?}: {error}");
            assert!(error.contains("[key_value_store.cache]"), "{fields:?}: {error}");
            assert!(!error.contains("pw@"), "{fields:?}: the error shows the password: {error}");
        }
    }

    #[test]
    fn runtime_config_rejects_unknown_store_type() {
        let error = format!(
            "{:#}",
            RuntimeConfig::parse("[key_value_store.default]\ntype = \"azure_cosmos\"\n", Path::new("/")).unwrap_err()
        );
        assert!(error.contains("\"azure_cosmos\", which meshcert-host does not support"), "{error}");
    }

    #[test]
    fn deploy_redis_runtime_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/runtime-config.redis.toml");
        let config = RuntimeConfig::load(&path).unwrap();
        assert!(
            matches!(&config.key_value_stores["default"], KeyValueStoreConfig::Redis(url) if url.starts_with("redis://")),
            "{config:?}"
        );
        assert_eq!(config.key_value_stores.len(), 1);
    }

    #[test]
    fn runtime_config_rejects_unknown_table() {
        let err = format!(
            "{:#}",
            RuntimeConfig::parse("[sqlite_database.default]\ntype = \"spin\"\n", Path::new("/")).unwrap_err()
        );
        assert!(err.contains("sqlite_database"), "{err}");
    }

    /// A directory with `ca.pem`, `client.crt` and `client.key` made by rcgen, plus `junk.pem`.
    fn pem_files() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".to_string()]).unwrap();
        let client = rcgen::generate_simple_self_signed(vec!["client.test".to_string()]).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.cert.pem()).unwrap();
        std::fs::write(dir.path().join("client.crt"), client.cert.pem()).unwrap();
        std::fs::write(dir.path().join("client.key"), client.signing_key.serialize_pem()).unwrap();
        std::fs::write(dir.path().join("junk.pem"), "not PEM at all\n").unwrap();
        std::fs::write(dir.path().join("broken.pem"), "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n").unwrap();
        dir
    }

    fn client_tls(entry: &str, dir: &Path) -> Result<ClientTlsEntry> {
        let text = format!("[[client_tls]]\ncomponent_ids = [\"sync-webhook\"]\n{entry}\n");
        let mut config = RuntimeConfig::parse(&text, dir)?;
        Ok(config.client_tls.remove(0))
    }

    fn client_tls_error(entry: &str, dir: &Path) -> String {
        format!("{:#}", client_tls(entry, dir).unwrap_err())
    }

    #[test]
    fn client_tls_minimal_entry_defaults() {
        let entry = client_tls("hosts = [\"k8s.example.com\", \"[::1]\"]", Path::new("/")).unwrap();
        assert_eq!(entry.component_ids, ["sync-webhook"]);
        assert_eq!(entry.hosts, ["k8s.example.com", "[::1]"]);
        assert!(entry.use_platform_roots, "Spin trusts the system roots by default");
        assert!(!entry.use_webpki_roots);
        assert!(entry.root_certificates.is_empty());
        assert!(entry.client_certificate.is_none());
    }

    #[test]
    fn client_tls_reads_files_relative_to_config() {
        let dir = pem_files();
        let entry = client_tls(
            "hosts = [\"127.0.0.1\"]\nca_roots_file = \"ca.pem\"\nclient_cert_file = \"client.crt\"\nclient_private_key_file = \"client.key\"",
            dir.path(),
        )
        .unwrap();
        assert_eq!(entry.root_certificates.len(), 1);
        let client = entry.client_certificate.as_ref().expect("a client certificate");
        assert_eq!(client.chain.len(), 1);
        assert!(!format!("{entry:?}").contains(&format!("{:?}", client.key.secret_der())), "Debug prints the key");
    }

    #[test]
    fn client_tls_root_flags_follow_spin() {
        let dir = pem_files();
        // (fields, use_platform_roots, use_webpki_roots), as Spin 4.0 resolves them.
        let cases = [
            ("", true, false),
            ("ca_roots_file = \"ca.pem\"", false, false),
            ("ca_use_webpki_roots = true", false, true),
            ("ca_use_webpki_roots = true\nca_roots_file = \"ca.pem\"", false, true),
            ("ca_use_platform_roots = true\nca_roots_file = \"ca.pem\"", true, false),
            ("ca_use_platform_roots = false\nca_roots_file = \"ca.pem\"", false, false),
            ("ca_use_platform_roots = true\nca_use_webpki_roots = true", true, true),
        ];
        for (fields, platform, webpki) in cases {
            let entry = client_tls(&format!("hosts = [\"k8s.test\"]\n{fields}"), dir.path()).unwrap();
            assert_eq!(entry.use_platform_roots, platform, "use_platform_roots for {fields:?}");
            assert_eq!(entry.use_webpki_roots, webpki, "use_webpki_roots for {fields:?}");
        }
    }

    #[test]
    fn client_tls_rejects_no_roots() {
        let error = client_tls_error("hosts = [\"k8s.test\"]\nca_use_platform_roots = false\nca_use_webpki_roots = false", Path::new("/"));
        assert!(error.contains("trusts no roots"), "{error}");
    }

    #[test]
    fn client_tls_rejects_port_in_host() {
        let error = client_tls_error("hosts = [\"127.0.0.1:6443\"]", Path::new("/"));
        assert!(error.contains("\"127.0.0.1:6443\" with a port"), "{error}");
        assert!(error.contains("write \"127.0.0.1\""), "{error}");
        assert!(error.contains("entry 1"), "{error}");
    }

    #[test]
    fn client_tls_rejects_bad_hosts() {
        let error = client_tls_error("hosts = [\"::1\"]", Path::new("/"));
        assert!(error.contains("\"[::1]\""), "{error}");
        let error = client_tls_error("hosts = [\"k8s.test/api\"]", Path::new("/"));
        assert!(error.contains("not a valid host name"), "{error}");
        let error = client_tls_error("hosts = []", Path::new("/"));
        assert!(error.contains("hosts is empty"), "{error}");
    }

    #[test]
    fn client_tls_rejects_bad_component_ids() {
        let error = format!(
            "{:#}",
            RuntimeConfig::parse("[[client_tls]]\ncomponent_ids = []\nhosts = [\"k8s.test\"]\n", Path::new("/")).unwrap_err()
        );
        assert!(error.contains("component_ids is empty"), "{error}");
        let error = format!(
            "{:#}",
            RuntimeConfig::parse("[[client_tls]]\ncomponent_ids = [\"sync_webhook\"]\nhosts = [\"k8s.test\"]\n", Path::new("/")).unwrap_err()
        );
        assert!(error.contains("\"sync_webhook\", which is not a valid component id"), "{error}");
    }

    #[test]
    fn client_tls_rejects_unknown_field() {
        let error = client_tls_error("hosts = [\"k8s.test\"]\nca_file = \"ca.pem\"", Path::new("/"));
        assert!(error.contains("unknown field `ca_file`"), "{error}");
        let error = client_tls_error("hosts = [\"k8s.test\"]\ncert_chain_file = \"client.crt\"", Path::new("/"));
        assert!(error.contains("Spin 3 and later call cert_chain_file client_cert_file"), "{error}");
    }

    #[test]
    fn client_tls_rejects_bad_files() {
        let dir = pem_files();
        let cases = [
            ("ca_roots_file = \"missing.pem\"", "failed to read ca_roots_file"),
            ("ca_roots_file = \"junk.pem\"", "contains no CERTIFICATE block"),
            ("ca_roots_file = \"broken.pem\"", "is not valid PEM"),
            ("client_cert_file = \"junk.pem\"\nclient_private_key_file = \"client.key\"", "client_cert_file"),
            ("client_cert_file = \"client.crt\"\nclient_private_key_file = \"client.crt\"", "contains no private key"),
            ("client_cert_file = \"client.crt\"\nclient_private_key_file = \"missing.key\"", "failed to read client_private_key_file"),
        ];
        for (fields, expected) in cases {
            let error = client_tls_error(&format!("hosts = [\"k8s.test\"]\n{fields}"), dir.path());
            assert!(error.contains(expected), "{fields:?}: {error}");
            assert!(!error.contains("PRIVATE KEY-----"), "{fields:?}: the error shows key text: {error}");
        }
        let missing = client_tls_error("hosts = [\"k8s.test\"]\nca_roots_file = \"missing.pem\"", dir.path());
        assert!(missing.contains(&dir.path().join("missing.pem").display().to_string()), "{missing}");
    }

    #[test]
    fn client_tls_rejects_certificate_without_key() {
        let dir = pem_files();
        let error = client_tls_error("hosts = [\"k8s.test\"]\nclient_cert_file = \"client.crt\"", dir.path());
        assert!(error.contains("client_cert_file is set without client_private_key_file"), "{error}");
        let error = client_tls_error("hosts = [\"k8s.test\"]\nclient_private_key_file = \"client.key\"", dir.path());
        assert!(error.contains("client_private_key_file is set without client_cert_file"), "{error}");
    }

    #[test]
    fn client_tls_error_names_entry() {
        let text = "[[client_tls]]\ncomponent_ids = [\"api\"]\nhosts = [\"a.test\"]\n\n[[client_tls]]\ncomponent_ids = [\"api\"]\nhosts = []\n";
        let error = format!("{:#}", RuntimeConfig::parse(text, Path::new("/")).unwrap_err());
        assert!(error.contains("invalid [[client_tls]] entry 2"), "{error}");
    }
}
