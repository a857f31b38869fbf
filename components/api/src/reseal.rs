//! Encryption key rotation: records sealed with `encryption_key_previous` stay readable, and are
//! sealed again with `encryption_key` when their certificate is next written, or all at once by
//! `POST /api/v1/encryption/reseal`. After a reseal reports no record left on the previous key,
//! the operator can remove `encryption_key_previous`.

use meshcert_core::crypto::Cipher;
use meshcert_core::records::{self, CertificateHead, CertificateVersion, ClusterRecord, StoreKey};
use meshcert_spin::{cipher, json_response, Store};
use spin_sdk::http::Response;

use crate::internal_error;

/// Seals again, with the current key, the private key of each kept version of `head` that an
/// older key sealed.
///
/// # Errors
///
/// A store failure, or a version that neither key opens.
pub fn reseal_versions(store: &Store, cipher: &Cipher, head: &CertificateHead) -> anyhow::Result<usize> {
    let mut resealed = 0;
    for entry in &head.versions {
        let key = records::version_key(&head.namespace, &head.name, entry.version);
        let Some(mut version) = store.get::<CertificateVersion>(&key)? else {
            continue;
        };
        if !cipher.needs_reseal(&version.private_key) {
            continue;
        }
        let private_key = cipher.open(&version.private_key, &key)?;
        version.private_key = cipher.seal(&private_key, &key)?;
        store.set(&key, &version)?;
        resealed += 1;
    }
    Ok(resealed)
}

/// `POST /api/v1/encryption/reseal`: seals every stored private key and cluster token that an
/// older key sealed with `encryption_key`, and reports the counts.
pub fn reseal_all() -> Response {
    let result = (|| -> anyhow::Result<serde_json::Value> {
        let store = Store::open()?;
        let cipher = cipher()?;
        let (mut resealed, mut current) = (0usize, 0usize);

        for key in store.keys("cert/")? {
            let Some(StoreKey::CertificateVersion { .. }) = StoreKey::parse(&key) else {
                continue;
            };
            let Some(mut version) = store.get::<CertificateVersion>(&key)? else {
                continue;
            };
            if !cipher.needs_reseal(&version.private_key) {
                current += 1;
                continue;
            }
            let private_key = cipher.open(&version.private_key, &key)?;
            version.private_key = cipher.seal(&private_key, &key)?;
            store.set(&key, &version)?;
            resealed += 1;
        }

        for key in store.keys("cluster/")? {
            let Some(mut cluster) = store.get::<ClusterRecord>(&key)? else {
                continue;
            };
            if !cipher.needs_reseal(&cluster.token) {
                current += 1;
                continue;
            }
            let token = cipher.open(&cluster.token, &key)?;
            cluster.token = cipher.seal(&token, &key)?;
            store.set(&key, &cluster)?;
            resealed += 1;
        }

        tracing::info!(resealed, current, "stored secrets sealed with the current encryption key");
        Ok(serde_json::json!({
            "resealed": resealed,
            "already_current": current,
            "message": "every stored private key and token is now sealed with encryption_key; encryption_key_previous may be removed",
        }))
    })();

    match result {
        Ok(body) => json_response(200, &body),
        Err(error) => internal_error(error),
    }
}
