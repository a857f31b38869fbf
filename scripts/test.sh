#!/usr/bin/env bash
# Runs every test of meshcert: the core library's unit tests, the fake Kubernetes API's tests,
# the host's tests, and the end-to-end tests that run the three wasm components in meshcert-host
# against fake clusters on loopback.
#
# The end-to-end tests load the release .wasm files named in spin.toml, so the components are
# built first. Tests run in release because a debug host compiles components about ten times
# slower.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --target wasm32-wasip2 -p api -p sync-webhook -p expiry-cron
cargo test --release
# The benchmarks are not tests, but they call the same APIs: build them, so that a change that
# breaks one fails here.
cargo bench --no-run -p meshcert-host
