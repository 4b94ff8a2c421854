//! The programs in `examples/`, as the tests run them.
//!
//! `cargo test` builds the examples before it runs the tests, into
//! `target/<profile>/examples/`, next to the `selectd` binary's directory.
//! A run that did not build them (`cargo test --test examples` alone) builds
//! them here, once, with the same cargo and profile.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The example `name`, built by `cargo test` or, if it was not, by
/// [`build_examples`] now.
pub fn example(name: &str) -> PathBuf {
    let path = bin_dir()
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !path.exists() {
        static BUILT: OnceLock<()> = OnceLock::new();
        BUILT.get_or_init(|| build_examples(bin_dir()));
    }
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// The directory of the `selectd` binary under test (`target/<profile>`).
pub fn bin_dir() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_selectd"))
        .parent()
        .expect("the selectd binary has a directory")
}

/// Builds every example with the cargo running these tests, into the same
/// target directory and profile as the `selectd` binary under test.
fn build_examples(bin_dir: &Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let profile = bin_dir.file_name().expect("a profile directory");
    let target_dir = bin_dir.parent().expect("a target directory");
    let mut command = Command::new(cargo);
    command
        .arg("build")
        .arg("--manifest-path")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .arg("--examples")
        .stdin(Stdio::null());
    if profile == "release" {
        command.arg("--release");
    }
    eprintln!("examples not built by this run: {command:?}");
    let status = command.status().expect("run cargo");
    assert!(status.success(), "cargo build of the examples: {status}");
}
