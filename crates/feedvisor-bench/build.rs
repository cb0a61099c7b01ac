//! Copies the workspace's `Cargo.lock` into `OUT_DIR`, so that a report can
//! name the versions of the crates the bench was built with (`report.rs`)
//! without reaching outside this crate's root at compile time.

use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    let lock = manifest_dir.join("../../Cargo.lock");
    println!("cargo::rerun-if-changed={}", lock.display());
    // Without a lock file (the crate built on its own), the report names no versions.
    let text = std::fs::read_to_string(&lock).unwrap_or_default();
    if let Err(error) = std::fs::write(out_dir.join("Cargo.lock"), text) {
        panic!("cannot write Cargo.lock into OUT_DIR: {error}");
    }
}
