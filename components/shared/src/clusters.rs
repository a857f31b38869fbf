//! The registered clusters, read through the list of their ids (`records::ClusterIds`). A request
//! that needs every cluster reads that list and each cluster's record. Listing the store's keys
//! instead would read every key of the fleet, since Spin's key-value interface has no prefix query.
//!
//! The list follows the records: a registration writes the record and then adds the id, and a
//! removal deletes the record and then the id, so an id without a record is skipped. A failure
//! between the two steps, or a registration by a meshcert version without the list, leaves the
//! list behind until [`refresh`], which each expiry scan runs.

use std::collections::BTreeSet;

use meshcert_core::records::{self, ClusterIds, ClusterRecord, StoreKey, CLUSTER_IDS_KEY};

use crate::{Change, Store};

/// Reads every registered cluster, sorted by id.
///
/// # Errors
///
/// A store failure.
pub fn load(store: &Store) -> anyhow::Result<Vec<ClusterRecord>> {
    let mut clusters = Vec::new();
    for id in ids(store)? {
        clusters.extend(store.get::<ClusterRecord>(&records::cluster_key(&id))?);
    }
    Ok(clusters)
}

/// Reads the ids of the registered clusters. Where the list is missing, as after an upgrade, it
/// is built from the keys once and stored.
///
/// # Errors
///
/// A store failure.
pub fn ids(store: &Store) -> anyhow::Result<BTreeSet<String>> {
    if let Some(list) = store.get::<ClusterIds>(CLUSTER_IDS_KEY)? {
        return Ok(list.ids);
    }
    let listed = listed_ids(store)?;
    // A list that another writer stored meanwhile is as good: it was built the same way.
    store.insert_new(CLUSTER_IDS_KEY, &ClusterIds { ids: listed.clone() })?;
    Ok(listed)
}

/// Adds `id` to the list, after its record was written.
///
/// # Errors
///
/// A store failure.
pub fn add(store: &Store, id: &str) -> anyhow::Result<()> {
    store.update(CLUSTER_IDS_KEY, |list: Option<ClusterIds>| {
        let mut ids = match list {
            Some(list) if list.ids.contains(id) => return Ok(Change::Keep(())),
            Some(list) => list.ids,
            None => listed_ids(store)?,
        };
        ids.insert(id.to_string());
        Ok(Change::Write(ClusterIds { ids }, ()))
    })
}

/// Removes `id` from the list, after its record was deleted.
///
/// # Errors
///
/// A store failure.
pub fn remove(store: &Store, id: &str) -> anyhow::Result<()> {
    store.update(CLUSTER_IDS_KEY, |list: Option<ClusterIds>| {
        let Some(mut list) = list else {
            return Ok(Change::Keep(()));
        };
        Ok(match list.ids.remove(id) {
            true => Change::Write(list, ()),
            false => Change::Keep(()),
        })
    })
}

/// Builds the list again from the keys, keeping an id added meanwhile whose record exists, and
/// dropping ids without a record. Returns whether the list changed.
///
/// # Errors
///
/// A store failure.
pub fn refresh(store: &Store) -> anyhow::Result<bool> {
    let listed = listed_ids(store)?;
    store.update(CLUSTER_IDS_KEY, |list: Option<ClusterIds>| {
        let mut ids = listed.clone();
        let current = list.map(|list| list.ids);
        // Registered after the keys were listed: its record was written before its id.
        for id in current.iter().flatten().filter(|id| !listed.contains(*id)) {
            if store.exists(&records::cluster_key(id))? {
                ids.insert(id.clone());
            }
        }
        if current.as_ref() == Some(&ids) {
            return Ok(Change::Keep(false));
        }
        Ok(Change::Write(ClusterIds { ids }, true))
    })
}

/// Lists the ids of the cluster records from the store's keys.
fn listed_ids(store: &Store) -> anyhow::Result<BTreeSet<String>> {
    Ok(store
        .keys("cluster/")?
        .into_iter()
        .filter_map(|key| match StoreKey::parse(&key) {
            Some(StoreKey::Cluster { id }) => Some(id),
            _ => None,
        })
        .collect())
}
