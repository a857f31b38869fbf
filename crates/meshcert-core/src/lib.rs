//! The plain library of meshcert: certificates, upload validation, stored records, Kubernetes
//! Secret manifests, sync planning, expiry rules and the HTTP API's types.
//!
//! It has no dependency on Spin. The components under `components/` read a request, call this crate,
//! and do the I/O it asks for (key-value reads and writes, outbound HTTP). Every function that
//! depends on the time takes `now` as a parameter, so tests never read the wall clock.
//!
//! Non-goals: no network I/O, no storage, no clock, no logging.
//!
//! Secrets: private keys and cluster tokens are held in [`secret::SecretString`], whose `Debug`
//! and `Display` print a placeholder, and leave this crate only as ciphertext
//! ([`crypto::Cipher::seal`]) or inside a Kubernetes Secret body ([`kube`]). No error message of
//! this crate contains key material.

#![deny(missing_docs)]

pub mod alerts;
pub mod api;
pub mod audit;
pub mod certificate;
pub mod chain;
pub mod crypto;
pub mod expiry;
pub mod expiry_index;
pub mod gateway;
pub mod import;
pub mod key;
pub mod kube;
pub mod metrics;
pub mod names;
pub mod outbound;
pub mod pem_blocks;
pub mod records;
pub mod secret;
pub mod selector;
pub mod signing;
pub mod validate;
