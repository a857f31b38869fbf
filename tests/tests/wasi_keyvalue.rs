//! A component that imports `wasi:keyvalue/{store,atomics,batch}@0.2.0-draft2` instantiates in
//! meshcert-host and reaches the store through them. The component is written in the component
//! model's text format below, so the test needs no wasm toolchain.

use meshcert_host::{App, AppConfig};

/// A cron component whose handler traps (`unreachable`) unless each step returns what it expects:
/// `open("not-listed")` fails with access-denied (error case 1), `open("default")` succeeds,
/// `increment("counter", 5)` returns 5 on the first run, and a compare-and-swap of `cas-key`
/// stores "v1".
const PROBE: &str = r#"
(component $C
  (import "fermyon:spin-cron/cron-types@2.0.0" (instance $cron-types
    (type $metadata-def (record (field "timestamp" u64)))
    (export "metadata" (type (eq $metadata-def)))
    (type $error-def (variant (case "other" string)))
    (export "error" (type (eq $error-def)))
  ))
  (alias export $cron-types "metadata" (type $metadata))
  (alias export $cron-types "error" (type $cron-error))

  (import "wasi:keyvalue/store@0.2.0-draft2" (instance $store
    (export "bucket" (type $bucket (sub resource)))
    (type $error-def (variant (case "no-such-store") (case "access-denied") (case "other" string)))
    (export "error" (type $error (eq $error-def)))
    (type $own-bucket (own $bucket))
    (type $open-result (result $own-bucket (error $error)))
    (export "open" (func (param "identifier" string) (result $open-result)))
  ))
  (alias export $store "bucket" (type $bucket))
  (alias export $store "error" (type $kv-error))
  (alias export $store "open" (func $open))

  (import "wasi:keyvalue/atomics@0.2.0-draft2" (instance $atomics
    (alias outer $C $bucket (type $bucket-outer))
    (export "bucket" (type $bucket (eq $bucket-outer)))
    (alias outer $C $kv-error (type $error-outer))
    (export "error" (type $error (eq $error-outer)))
    (export "cas" (type $cas (sub resource)))
    (type $own-cas (own $cas))
    (type $cas-error-def (variant (case "store-error" $error) (case "cas-failed" $own-cas)))
    (export "cas-error" (type $cas-error (eq $cas-error-def)))
    (type $borrow-bucket (borrow $bucket))
    (type $new-result (result $own-cas (error $error)))
    (export "[static]cas.new" (func (param "bucket" $borrow-bucket) (param "key" string) (result $new-result)))
    (type $increment-result (result s64 (error $error)))
    (export "increment" (func (param "bucket" $borrow-bucket) (param "key" string) (param "delta" s64) (result $increment-result)))
    (type $value (list u8))
    (type $swap-result (result (error $cas-error)))
    (export "swap" (func (param "cas" $own-cas) (param "value" $value) (result $swap-result)))
  ))
  (alias export $atomics "[static]cas.new" (func $cas-new))
  (alias export $atomics "increment" (func $increment))
  (alias export $atomics "swap" (func $swap))

  (import "wasi:keyvalue/batch@0.2.0-draft2" (instance $batch
    (alias outer $C $bucket (type $bucket-outer))
    (export "bucket" (type $bucket (eq $bucket-outer)))
    (alias outer $C $kv-error (type $error-outer))
    (export "error" (type $error (eq $error-outer)))
    (type $borrow-bucket (borrow $bucket))
    (type $keys (list string))
    (type $delete-result (result (error $error)))
    (export "delete-many" (func (param "bucket" $borrow-bucket) (param "keys" $keys) (result $delete-result)))
  ))

  (core module $Memory
    (memory (export "memory") 1)
    (global $next (mut i32) (i32.const 4096))
    ;; A bump allocator for strings the host returns (error messages).
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $pointer i32)
      (local.set $pointer
        (i32.and
          (i32.add (global.get $next) (i32.sub (local.get 2) (i32.const 1)))
          (i32.sub (i32.const 0) (local.get 2))))
      (global.set $next (i32.add (local.get $pointer) (local.get 3)))
      (local.get $pointer))
    (data (i32.const 0) "default")
    (data (i32.const 16) "counter")
    (data (i32.const 32) "cas-key")
    (data (i32.const 48) "v1")
    (data (i32.const 64) "not-listed")
  )
  (core instance $memory-instance (instantiate $Memory))
  (alias core export $memory-instance "memory" (core memory $memory))
  (alias core export $memory-instance "realloc" (core func $realloc))

  (core func $open-lowered (canon lower (func $open) (memory $memory) (realloc $realloc)))
  (core func $increment-lowered (canon lower (func $increment) (memory $memory) (realloc $realloc)))
  (core func $cas-new-lowered (canon lower (func $cas-new) (memory $memory) (realloc $realloc)))
  (core func $swap-lowered (canon lower (func $swap) (memory $memory) (realloc $realloc)))
  (core instance $kv
    (export "open" (func $open-lowered))
    (export "increment" (func $increment-lowered))
    (export "cas-new" (func $cas-new-lowered))
    (export "swap" (func $swap-lowered)))

  (core module $Main
    (import "memory" "memory" (memory 1))
    (import "kv" "open" (func $open (param i32 i32 i32)))
    (import "kv" "increment" (func $increment (param i32 i32 i32 i64 i32)))
    (import "kv" "cas-new" (func $cas-new (param i32 i32 i32 i32)))
    (import "kv" "swap" (func $swap (param i32 i32 i32 i32)))
    (func (export "handle") (param i64) (result i32)
      (local $bucket i32)
      ;; open("not-listed"): err(access-denied), although no store has that label either.
      (call $open (i32.const 64) (i32.const 10) (i32.const 1024))
      (if (i32.ne (i32.load8_u (i32.const 1024)) (i32.const 1)) (then unreachable))
      (if (i32.ne (i32.load8_u (i32.const 1028)) (i32.const 1)) (then unreachable))
      ;; open("default"): ok(bucket).
      (call $open (i32.const 0) (i32.const 7) (i32.const 1024))
      (if (i32.load8_u (i32.const 1024)) (then unreachable))
      (local.set $bucket (i32.load (i32.const 1028)))
      ;; increment(bucket, "counter", 5): ok(5) on the first run.
      (call $increment (local.get $bucket) (i32.const 16) (i32.const 7) (i64.const 5) (i32.const 1040))
      (if (i32.load8_u (i32.const 1040)) (then unreachable))
      (i64.store (i32.const 2064) (i64.load (i32.const 1048)))
      ;; cas.new(bucket, "cas-key"), then swap(cas, "v1"): ok.
      (call $cas-new (local.get $bucket) (i32.const 32) (i32.const 7) (i32.const 1056))
      (if (i32.load8_u (i32.const 1056)) (then unreachable))
      (call $swap (i32.load (i32.const 1060)) (i32.const 48) (i32.const 2) (i32.const 1072))
      (if (i32.load8_u (i32.const 1072)) (then unreachable))
      ;; ok(()) for the cron trigger: a zero discriminant at 2048.
      (i32.const 2048))
  )
  (core instance $main (instantiate $Main
    (with "memory" (instance $memory-instance))
    (with "kv" (instance $kv))))

  (type $handler-result (result (error $cron-error)))
  (func $handle (param "metadata" $metadata) (result $handler-result)
    (canon lift (core func $main "handle") (memory $memory)))
  (export "handle-cron-event" (func $handle))
)
"#;

#[tokio::test]
async fn component_uses_wasi_keyvalue() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("probe.wat"), PROBE).unwrap();
    let manifest = dir.path().join("spin.toml");
    std::fs::write(
        &manifest,
        r#"spin_manifest_version = 2

[application]
name = "wasi-keyvalue-probe"

[[trigger.cron]]
component = "probe"
cron_expression = "0 0 0 * * *"

[component.probe]
source = "probe.wat"
key_value_stores = ["default"]
"#,
    )
    .unwrap();
    let state = dir.path().join("state");
    let app = App::load(AppConfig::new(&manifest).state_dir(&state).read_env(false)).unwrap_or_else(|error| panic!("{error:#}"));

    app.run_cron("probe").await.unwrap_or_else(|error| panic!("first run: {error:#}: {}", app.output("probe")));
    app.run_cron("probe").await.unwrap_or_else(|error| panic!("second run: {error:#}: {}", app.output("probe")));

    // An injected fault fails the increment, the first write of the third run, so it traps.
    let faults = app.key_value_faults();
    faults.fail_nth_write(1);
    assert!(app.run_cron("probe").await.is_err(), "the injected fault did not reach the component");
    let injected = faults.injected();
    assert_eq!(injected.len(), 1);
    assert_eq!(injected[0].key, "counter");
    assert_eq!(injected[0].operation, meshcert_host::WriteOperation::Set);
    drop(app);

    let database = rusqlite::Connection::open(state.join(meshcert_host::DEFAULT_KEY_VALUE_FILE)).unwrap();
    let value = |key: &str| -> Vec<u8> {
        database
            .query_row("SELECT value FROM spin_key_value WHERE store = 'default' AND key = ?1", [key], |row| row.get(0))
            .unwrap_or_else(|error| panic!("{key}: {error}"))
    };
    assert_eq!(value("counter"), b"10", "two increments by 5, as decimal text, and none by the failed run");
    assert_eq!(value("cas-key"), b"v1");
}
