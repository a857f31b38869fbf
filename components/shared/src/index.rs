//! Writes to the expiry index (`meshcert_core::expiry_index`).

use meshcert_core::expiry_index::{self, IndexEntry, IndexShard};

use crate::Store;

/// Changes the entry of `namespace/name` in its shard: `change` gets the entry (`None` when
/// there is none) and leaves what it should become (`None` removes it).
///
/// # Errors
///
/// A store failure.
// TODO: Two writers of one shard at the same moment (an api write and a scan) can each read it,
// and the later write drops the other's change until the next daily rebuild. Remove when the
// shard is written with wasi:keyvalue/atomics compare-and-swap.
pub fn update(store: &Store, namespace: &str, name: &str, change: impl FnOnce(&mut Option<IndexEntry>)) -> anyhow::Result<()> {
    let key = expiry_index::shard_key(expiry_index::shard_of(namespace, name));
    let mut shard: IndexShard = store.get(&key)?.unwrap_or_default();
    let id = format!("{namespace}/{name}");

    let mut entry = shard.entries.remove(&id);
    change(&mut entry);
    if let Some(entry) = entry {
        shard.entries.insert(id, entry);
    }

    store.set(&key, &shard)
}
