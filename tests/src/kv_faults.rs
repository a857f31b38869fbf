//! Injected key-value write failures, for crash-safety tests.
//!
//! A fault can only be injected from Rust code, through
//! [`App::key_value_faults`](crate::App::key_value_faults). No manifest entry, runtime config,
//! variable or command-line option turns one on, so `meshcert-host up` never fails a write on
//! purpose.

use std::sync::{Arc, Mutex, PoisonError};

/// The write counter and the pending fault of one app's key-value stores. Clones share them.
///
/// A write is a call that changes a store, from any component on any store of the app: `set` and
/// `delete` of `fermyon:spin/key-value`, and `set`, `delete`, `swap`, `increment`, `set-many` and
/// `delete-many` of `wasi:keyvalue`. Writes are numbered from 1 in the order the host receives them, so when components write concurrently
/// the numbering follows their interleaving.
#[derive(Clone, Default)]
pub struct KeyValueFaults {
    state: Arc<Mutex<FaultState>>,
}

#[derive(Default)]
struct FaultState {
    /// Writes received since the app was loaded, including failed ones.
    writes: u64,
    /// The number of the write that fails, counted like `writes`.
    fail_at: Option<u64>,
    injected: Vec<InjectedFault>,
}

/// A write that failed because a test called [`KeyValueFaults::fail_nth_write`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InjectedFault {
    /// The number of the write since the app was loaded, from 1, as in
    /// [`KeyValueFaults::write_count`].
    pub write: u64,
    /// The id of the component that made the write.
    pub component: String,
    /// The store label.
    pub store: String,
    /// The operation that failed.
    pub operation: WriteOperation,
    /// The key of the write.
    pub key: String,
}

/// A key-value operation that changes a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOperation {
    /// `set`, and with `wasi:keyvalue` also `swap`, `increment` and `set-many`.
    Set,
    /// `delete`, and with `wasi:keyvalue` also `delete-many`.
    Delete,
}

impl KeyValueFaults {
    /// Makes the `n`th write from now fail, once: `n = 1` fails the next write. That write stores
    /// nothing, and the component receives `error::other` with a message that contains
    /// "injected fault". Writes before and after it succeed. A second call replaces a pending
    /// fault.
    ///
    /// # Panics
    ///
    /// When `n` is 0.
    pub fn fail_nth_write(&self, n: u64) {
        assert!(n >= 1, "fail_nth_write counts from 1 (the next write), so n = 0 names no write");
        let mut state = self.lock();
        state.fail_at = Some(state.writes + n);
    }

    /// Removes a pending fault. Returns whether one was pending.
    pub fn cancel(&self) -> bool {
        self.lock().fail_at.take().is_some()
    }

    /// Returns the number of writes since the app was loaded, including those that failed.
    pub fn write_count(&self) -> u64 {
        self.lock().writes
    }

    /// Returns the writes that failed by injection, oldest first.
    pub fn injected(&self) -> Vec<InjectedFault> {
        self.lock().injected.clone()
    }

    /// Counts one write and returns the error message to give the component when it is the
    /// write chosen to fail.
    pub(crate) fn check_write(&self, component: &str, store: &str, operation: WriteOperation, key: &str) -> Result<(), String> {
        let mut state = self.lock();
        state.writes += 1;
        let write = state.writes;
        if state.fail_at != Some(write) {
            return Ok(());
        }

        state.fail_at = None;
        state.injected.push(InjectedFault {
            write,
            component: component.to_string(),
            store: store.to_string(),
            operation,
            key: key.to_string(),
        });
        tracing::info!(component, store, key, write, "key-value write failed by an injected fault");
        Err(format!("injected fault: a test made write {write} of this app fail, so nothing was stored"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FaultState> {
        // No update panics halfway, so even a poisoned lock guards a consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(faults: &KeyValueFaults, key: &str) -> Result<(), String> {
        faults.check_write("api", "default", WriteOperation::Set, key)
    }

    #[test]
    fn nth_write_fails_once() {
        let faults = KeyValueFaults::default();
        write(&faults, "before").unwrap();
        faults.fail_nth_write(2);

        assert_eq!(write(&faults, "a"), Ok(()));
        let error = write(&faults, "b").unwrap_err();
        assert!(error.contains("injected fault"), "{error}");
        assert_eq!(write(&faults, "c"), Ok(()));

        assert_eq!(faults.write_count(), 4);
        let injected = faults.injected();
        assert_eq!(injected.len(), 1);
        assert_eq!(injected[0].write, 3);
        assert_eq!(injected[0].key, "b");
        assert_eq!(injected[0].component, "api");
        assert_eq!(injected[0].operation, WriteOperation::Set);
    }

    #[test]
    fn cancel_removes_pending_fault() {
        let faults = KeyValueFaults::default();
        faults.fail_nth_write(1);

        assert!(faults.cancel());
        assert!(!faults.cancel());
        assert_eq!(write(&faults, "a"), Ok(()));
        assert!(faults.injected().is_empty());
    }

    #[test]
    fn clones_share_state() {
        let faults = KeyValueFaults::default();
        let clone = faults.clone();
        clone.fail_nth_write(1);

        assert!(write(&faults, "a").is_err());
        assert_eq!(clone.write_count(), 1);
    }

    #[test]
    #[should_panic(expected = "counts from 1")]
    fn zero_names_no_write() {
        KeyValueFaults::default().fail_nth_write(0);
    }
}
