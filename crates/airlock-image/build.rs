//! Builds `airlock-guest` as a static binary and hands its path to the crate, which embeds it in
//! the `tiny` image. A nested cargo with its own target dir avoids the outer build's lock; giving
//! `--target` keeps `crt-static` off build scripts and proc macros.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest.join("../..");
    for dir in ["crates/airlock-guest", "crates/airlock-proto", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    let target = "x86_64-unknown-linux-gnu";
    let target_dir = root.join("target/guest");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            "airlock-guest",
            "--target",
            target,
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        // An outer `cargo clippy` must not lint (or fail) this inner build: the guest is linted
        // as a workspace member already.
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CLIPPY_ARGS")
        .env_remove("CLIPPY_CONF_DIR")
        .env_remove("RUSTFLAGS")
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            "-Ctarget-feature=+crt-static\u{1f}-Cstrip=symbols",
        )
        .status();
    match status {
        Ok(s) if s.success() => {}
        other => panic!("building the static airlock-guest failed: {other:?}"),
    }
    let bin = target_dir.join(target).join("release/airlock-guest");
    println!("cargo:rustc-env=AIRLOCK_GUEST_BIN={}", bin.display());
}
