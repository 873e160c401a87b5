//! Secrets encrypted in Git (issue 15, begun): [`sops`] reads and writes SOPS's value
//! format — `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]`, AES-256-GCM under the file's
//! data key with the value's path as associated data — and computes the file's MAC;
//! [`keys`] unwraps a data key encrypted to age recipients. Nothing here logs or
//! formats a plaintext: errors name paths and causes, never values.

pub mod keys;
pub mod sops;
