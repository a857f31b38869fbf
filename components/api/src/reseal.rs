//! Encryption key rotation: records sealed with `encryption_key_previous` stay readable, and are
//! sealed again with `encryption_key` when their certificate is next written, or all at once by
//! `POST /api/v1/encryption/reseal`. After a reseal reports no record left on the previous key,
//! the operator can remove `encryption_key_previous`.

use meshcert_core::crypto::{Cipher, SealedSecret};
use meshcert_core::records::{self, CertificateHead, CertificateVersion, ClusterRecord, StoreKey};
use meshcert_spin::{cipher, json_response, Change, Store};
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
        if reseal(store, cipher, &key, |version: &mut CertificateVersion| &mut version.private_key)? == Some(true) {
            resealed += 1;
        }
    }
    Ok(resealed)
}

/// Seals again the secret of the record at `key` (`sealed` finds it) when an older key sealed it.
/// Returns `None` when the record is absent, and otherwise whether it was sealed again.
///
/// The record is written with compare-and-swap, so a change made at the same moment, such as a
/// new cluster token or the delete of a version, is not undone.
fn reseal<T>(store: &Store, cipher: &Cipher, key: &str, sealed: impl Fn(&mut T) -> &mut SealedSecret) -> anyhow::Result<Option<bool>>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    store.update(key, |record: Option<T>| {
        let Some(mut record) = record else {
            return Ok(Change::Keep(None));
        };
        let secret = sealed(&mut record);
        if !cipher.needs_reseal(secret) {
            return Ok(Change::Keep(Some(false)));
        }
        let plain = cipher.open(secret, key)?;
        *secret = cipher.seal(&plain, key)?;
        Ok(Change::Write(record, Some(true)))
    })
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
            match reseal(&store, &cipher, &key, |version: &mut CertificateVersion| &mut version.private_key)? {
                Some(true) => resealed += 1,
                Some(false) => current += 1,
                None => {}
            }
        }

        for key in store.keys("cluster/")? {
            match reseal(&store, &cipher, &key, |cluster: &mut ClusterRecord| &mut cluster.token)? {
                Some(true) => resealed += 1,
                Some(false) => current += 1,
                None => {}
            }
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
