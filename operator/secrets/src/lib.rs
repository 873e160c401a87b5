//! Secrets encrypted in Git, opened only in the control plane. [`sops`] reads and
//! writes SOPS's value format — `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]`, AES-256-GCM
//! under the file's data key with the value's path as associated data — and its MAC;
//! [`metadata`] reads a file's `sops:` block; [`keys`] holds the age identities and
//! (un)wraps data keys; [`document`] opens a `Secret` document; [`repo`] opens every
//! secret of a revision into [`Values`], which the control plane keeps in a [`Vault`]
//! for the engines; [`edit`] writes encrypted files for `drover secret`. Nothing here
//! logs or formats a plaintext: errors name paths and causes, never values.

pub mod document;
pub mod edit;
mod emit;
pub mod keys;
pub mod metadata;
pub mod repo;
pub mod sops;
pub mod values;

pub use keys::Keys;
pub use values::{Plain, ValueId, Values, Vault};
