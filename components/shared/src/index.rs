//! Writes to the expiry index (`meshcert_core::expiry_index`).

use meshcert_core::expiry_index::{self, IndexEntry, IndexShard};

use crate::{Change, Store};

/// Changes the entry of `namespace/name` in its shard: `change` gets the entry (`None` when
/// there is none) and leaves what it should become (`None` removes it).
///
/// The shard is written with compare-and-swap, so an api write and a scan changing entries of one
/// shard at once both land. `change` may run more than once.
///
/// # Errors
///
/// A store failure.
pub fn update(
    store: &Store,
    namespace: &str,
    name: &str,
    mut change: impl FnMut(&mut Option<IndexEntry>),
) -> anyhow::Result<()> {
    let key = expiry_index::shard_key(expiry_index::shard_of(namespace, name));
    let id = format!("{namespace}/{name}");

    store.update(&key, |shard: Option<IndexShard>| {
        let mut shard = shard.unwrap_or_default();
        let mut entry = shard.entries.remove(&id);
        change(&mut entry);
        if let Some(entry) = entry {
            shard.entries.insert(id.clone(), entry);
        }
        Ok(Change::Write(shard, ()))
    })
}
