//! The per-instance store data: WASI and wasi-http contexts, and the host side of
//! `fermyon:spin/key-value@2.0.0` and `fermyon:spin/variables@2.0.0`. `wasi:keyvalue` is in
//! `wasi_keyvalue.rs`.

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker, Resource, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::app::ComponentRuntime;
use crate::kv::{Database, KeyValueStores};
use crate::kv_faults::{KeyValueFaults, WriteOperation};
use crate::outbound_http::OutboundHooks;
use crate::template::check_lower_snake_id;

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/spin",
        world: "fermyon:spin/spin-imports",
        imports: { default: async | trappable },
        with: { "fermyon:spin/key-value.store": super::OpenStore },
    });
}

use bindings::fermyon::spin::{key_value, variables};

/// The host value behind a guest's `key-value.store` or `wasi:keyvalue` `bucket` handle.
pub struct OpenStore {
    pub(crate) label: String,
    pub(crate) database: Database,
}

/// The data of one `Store`: one component instance handling one request or cron event.
pub(crate) struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) table: ResourceTable,
    pub(crate) hooks: OutboundHooks,
    pub(crate) component: Arc<ComponentRuntime>,
    pub(crate) key_value: KeyValueStores,
    pub(crate) key_value_faults: KeyValueFaults,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hooks }
    }
}

/// Adds WASI 0.2, wasi:http and the Spin interfaces to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
    bindings::SpinImports::add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)?;
    crate::wasi_keyvalue::add_to_linker(linker)?;
    Ok(())
}

/// Why a component may not open a store label.
pub(crate) enum OpenError {
    AccessDenied,
    NoSuchStore,
}

impl HostState {
    /// Opens the store `label` for the component, checking access before existence, as Spin does:
    /// a label missing from the component's `key_value_stores` is access-denied even when no
    /// store has that label.
    pub(crate) fn open_store(&self, label: String) -> Result<OpenStore, OpenError> {
        if !self.component.key_value_stores.contains(&label) {
            tracing::warn!(
                component = %self.component.id,
                label = %label,
                "key-value store access denied: add the label to the component's key_value_stores"
            );
            return Err(OpenError::AccessDenied);
        }
        // App::load checks that every listed label has a store, so this is a safety net.
        let Some(database) = self.key_value.database(&label) else {
            return Err(OpenError::NoSuchStore);
        };
        Ok(OpenStore { label, database })
    }
}

impl key_value::Host for HostState {}

impl key_value::HostStore for HostState {
    async fn open(&mut self, label: String) -> wasmtime::Result<Result<Resource<OpenStore>, key_value::Error>> {
        let store = match self.open_store(label) {
            Ok(store) => store,
            Err(OpenError::AccessDenied) => return Ok(Err(key_value::Error::AccessDenied)),
            Err(OpenError::NoSuchStore) => return Ok(Err(key_value::Error::NoSuchStore)),
        };
        let handle = self.table.push(store)?;
        Ok(Ok(handle))
    }

    async fn get(&mut self, store: Resource<OpenStore>, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, key_value::Error>> {
        let store = self.table.get(&store)?;
        Ok(store.database.get(&store.label, key).await.map_err(key_value::Error::Other))
    }

    async fn set(&mut self, store: Resource<OpenStore>, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), key_value::Error>> {
        let store = self.table.get(&store)?;
        if let Err(message) = self.key_value_faults.check_write(&self.component.id, &store.label, WriteOperation::Set, &key) {
            return Ok(Err(key_value::Error::Other(message)));
        }
        Ok(store.database.set(&store.label, key, value).await.map_err(key_value::Error::Other))
    }

    async fn delete(&mut self, store: Resource<OpenStore>, key: String) -> wasmtime::Result<Result<(), key_value::Error>> {
        let store = self.table.get(&store)?;
        if let Err(message) = self.key_value_faults.check_write(&self.component.id, &store.label, WriteOperation::Delete, &key) {
            return Ok(Err(key_value::Error::Other(message)));
        }
        Ok(store.database.delete(&store.label, key).await.map_err(key_value::Error::Other))
    }

    async fn exists(&mut self, store: Resource<OpenStore>, key: String) -> wasmtime::Result<Result<bool, key_value::Error>> {
        let store = self.table.get(&store)?;
        Ok(store.database.exists(&store.label, key).await.map_err(key_value::Error::Other))
    }

    async fn get_keys(&mut self, store: Resource<OpenStore>) -> wasmtime::Result<Result<Vec<String>, key_value::Error>> {
        let store = self.table.get(&store)?;
        Ok(store.database.get_keys(&store.label).await.map_err(key_value::Error::Other))
    }

    async fn drop(&mut self, store: Resource<OpenStore>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        Ok(())
    }
}

impl variables::Host for HostState {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, variables::Error>> {
        if let Err(reason) = check_lower_snake_id(&name) {
            return Ok(Err(variables::Error::InvalidName(format!("{name:?}: {reason}"))));
        }
        match self.component.variables.get(&name) {
            Some(value) => Ok(Ok(value.clone())),
            None => Ok(Err(variables::Error::Undefined(format!(
                "component {:?} declares no variable {name:?} in [component.{}.variables]",
                self.component.id, self.component.id
            )))),
        }
    }
}
