//! The host side of `wasi:keyvalue@0.2.0-draft2`: the `store`, `atomics` and `batch`
//! interfaces that Spin 3.x and 4.0 link, over the same stores as `fermyon:spin/key-value`.
//!
//! Writes (`set`, `delete`, `swap`, `increment` and each key of `set-many` and `delete-many`)
//! count for fault injection like Spin key-value writes: `delete` and `delete-many` as
//! [`WriteOperation::Delete`], the others as [`WriteOperation::Set`].

use wasmtime::component::{HasSelf, Linker, Resource};

use crate::host::{HostState, OpenError, OpenStore};
use crate::kv_faults::WriteOperation;

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/wasi-keyvalue",
        world: "wasi:keyvalue/imports",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": crate::host::OpenStore,
            "wasi:keyvalue/atomics.cas": super::CasHandle,
        },
    });
}

use bindings::wasi::keyvalue::{atomics, batch, store};

/// The host value behind a guest's `cas` handle: the key and the value it had when the handle was
/// created (`None` for a missing key).
pub struct CasHandle {
    store: OpenStore,
    key: String,
    current: Option<Vec<u8>>,
}

/// Adds `wasi:keyvalue/{store,atomics,batch}@0.2.0-draft2` to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    bindings::Imports::add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)
}

impl HostState {
    /// Counts a write of `key` for fault injection and returns the injected error, if any.
    fn check_wasi_write(&self, store: &str, operation: WriteOperation, key: &str) -> Result<(), store::Error> {
        self.key_value_faults.check_write(&self.component.id, store, operation, key).map_err(store::Error::Other)
    }

    /// Reads `key` and returns a `cas` handle that remembers its value.
    async fn new_cas(&mut self, label: String, database: crate::kv::Database, key: String) -> wasmtime::Result<Result<Resource<CasHandle>, store::Error>> {
        let current = match database.get(&label, key.clone()).await {
            Ok(current) => current,
            Err(message) => return Ok(Err(store::Error::Other(message))),
        };
        let handle = self.table.push(CasHandle { store: OpenStore { label, database }, key, current })?;
        Ok(Ok(handle))
    }
}

impl store::Host for HostState {
    async fn open(&mut self, identifier: String) -> wasmtime::Result<Result<Resource<OpenStore>, store::Error>> {
        let store = match self.open_store(identifier) {
            Ok(store) => store,
            Err(OpenError::AccessDenied) => return Ok(Err(store::Error::AccessDenied)),
            Err(OpenError::NoSuchStore) => return Ok(Err(store::Error::NoSuchStore)),
        };
        Ok(Ok(self.table.push(store)?))
    }
}

impl store::HostBucket for HostState {
    async fn get(&mut self, bucket: Resource<OpenStore>, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        let bucket = self.table.get(&bucket)?;
        Ok(bucket.database.get(&bucket.label, key).await.map_err(store::Error::Other))
    }

    async fn set(&mut self, bucket: Resource<OpenStore>, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), store::Error>> {
        let bucket = self.table.get(&bucket)?;
        if let Err(error) = self.check_wasi_write(&bucket.label, WriteOperation::Set, &key) {
            return Ok(Err(error));
        }
        Ok(bucket.database.set(&bucket.label, key, value).await.map_err(store::Error::Other))
    }

    async fn delete(&mut self, bucket: Resource<OpenStore>, key: String) -> wasmtime::Result<Result<(), store::Error>> {
        let bucket = self.table.get(&bucket)?;
        if let Err(error) = self.check_wasi_write(&bucket.label, WriteOperation::Delete, &key) {
            return Ok(Err(error));
        }
        Ok(bucket.database.delete(&bucket.label, key).await.map_err(store::Error::Other))
    }

    async fn exists(&mut self, bucket: Resource<OpenStore>, key: String) -> wasmtime::Result<Result<bool, store::Error>> {
        let bucket = self.table.get(&bucket)?;
        Ok(bucket.database.exists(&bucket.label, key).await.map_err(store::Error::Other))
    }

    /// Returns every key in one page, as Spin does.
    async fn list_keys(&mut self, bucket: Resource<OpenStore>, cursor: Option<String>) -> wasmtime::Result<Result<store::KeyResponse, store::Error>> {
        if cursor.is_some() {
            return Ok(Err(store::Error::Other(
                "list-keys returns every key in its first page, so there is no next page: call it with no cursor".to_string(),
            )));
        }
        let bucket = self.table.get(&bucket)?;
        let keys = bucket.database.get_keys(&bucket.label).await;
        Ok(keys.map(|keys| store::KeyResponse { keys, cursor: None }).map_err(store::Error::Other))
    }

    async fn drop(&mut self, bucket: Resource<OpenStore>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for HostState {
    async fn increment(&mut self, bucket: Resource<OpenStore>, key: String, delta: i64) -> wasmtime::Result<Result<i64, store::Error>> {
        let bucket = self.table.get(&bucket)?;
        if let Err(error) = self.check_wasi_write(&bucket.label, WriteOperation::Set, &key) {
            return Ok(Err(error));
        }
        Ok(bucket.database.increment(&bucket.label, key, delta).await.map_err(store::Error::Other))
    }

    /// Stores `value` if the key still contains the value that `cas` read when it was created, in
    /// one atomic step of the backend (see `Database::compare_and_swap`). On a conflict the guest
    /// gets a new handle that has read the key again, as under Spin.
    async fn swap(&mut self, cas: Resource<CasHandle>, value: Vec<u8>) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let CasHandle { store: OpenStore { label, database }, key, current } = self.table.delete(cas)?;
        if let Err(error) = self.check_wasi_write(&label, WriteOperation::Set, &key) {
            return Ok(Err(atomics::CasError::StoreError(error)));
        }
        match database.compare_and_swap(&label, key.clone(), current, value).await {
            Ok(true) => Ok(Ok(())),
            Ok(false) => match self.new_cas(label, database, key).await? {
                Ok(retry) => Ok(Err(atomics::CasError::CasFailed(retry))),
                Err(error) => Ok(Err(atomics::CasError::StoreError(error))),
            },
            Err(message) => Ok(Err(atomics::CasError::StoreError(store::Error::Other(message)))),
        }
    }
}

impl atomics::HostCas for HostState {
    /// Reads the key at once, so `current` and `swap` compare against the value at this time.
    async fn new(&mut self, bucket: Resource<OpenStore>, key: String) -> wasmtime::Result<Result<Resource<CasHandle>, store::Error>> {
        let bucket = self.table.get(&bucket)?;
        let (label, database) = (bucket.label.clone(), bucket.database.clone());
        self.new_cas(label, database, key).await
    }

    async fn current(&mut self, cas: Resource<CasHandle>) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        Ok(Ok(self.table.get(&cas)?.current.clone()))
    }

    async fn drop(&mut self, cas: Resource<CasHandle>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

/// The batch calls run one operation per key, in order, and stop at the first error, so keys
/// before it are already written.
impl batch::Host for HostState {
    async fn get_many(&mut self, bucket: Resource<OpenStore>, keys: Vec<String>) -> wasmtime::Result<Result<Vec<(String, Option<Vec<u8>>)>, store::Error>> {
        let bucket = self.table.get(&bucket)?;
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            match bucket.database.get(&bucket.label, key.clone()).await {
                Ok(value) => values.push((key, value)),
                Err(message) => return Ok(Err(store::Error::Other(message))),
            }
        }
        Ok(Ok(values))
    }

    async fn set_many(&mut self, bucket: Resource<OpenStore>, key_values: Vec<(String, Vec<u8>)>) -> wasmtime::Result<Result<(), store::Error>> {
        let bucket = self.table.get(&bucket)?;
        for (key, value) in key_values {
            if let Err(error) = self.check_wasi_write(&bucket.label, WriteOperation::Set, &key) {
                return Ok(Err(error));
            }
            if let Err(message) = bucket.database.set(&bucket.label, key, value).await {
                return Ok(Err(store::Error::Other(message)));
            }
        }
        Ok(Ok(()))
    }

    async fn delete_many(&mut self, bucket: Resource<OpenStore>, keys: Vec<String>) -> wasmtime::Result<Result<(), store::Error>> {
        let bucket = self.table.get(&bucket)?;
        for key in keys {
            if let Err(error) = self.check_wasi_write(&bucket.label, WriteOperation::Delete, &key) {
                return Ok(Err(error));
            }
            if let Err(message) = bucket.database.delete(&bucket.label, key).await {
                return Ok(Err(store::Error::Other(message)));
            }
        }
        Ok(Ok(()))
    }
}
