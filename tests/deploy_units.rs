//! The shipped systemd units (`contrib/`) are valid for the real
//! `systemd-analyze` (Debian's `systemd` package), and the service's sandbox
//! keeps its exposure score low.

mod deploy_support;

use std::path::Path;
use std::process::Command;

use deploy_support::program;

/// The units in a temporary directory, `ExecStart=` pointing at the binary
/// just built (`verify` checks that it exists).
fn units() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let contrib = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib");
    let service = std::fs::read_to_string(contrib.join("selectd.service")).unwrap();
    let service = service.replace("/usr/local/bin/selectd", env!("CARGO_BIN_EXE_selectd"));
    std::fs::write(dir.path().join("selectd.service"), service).unwrap();
    std::fs::copy(
        contrib.join("selectd.socket"),
        dir.path().join("selectd.socket"),
    )
    .unwrap();
    dir
}

/// `systemd-analyze verify` finds nothing to say about either unit.
#[test]
fn the_units_verify() {
    let Some(analyze) = program("systemd-analyze", "systemd") else {
        return;
    };
    let dir = units();
    let output = Command::new(analyze)
        .current_dir(dir.path())
        .args(["verify", "./selectd.socket", "./selectd.service"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{said}");
    assert!(said.trim().is_empty(), "{said}");
}

/// `systemd-analyze security` rates the service's exposure at most 2.0 of 10
/// (the hardening in the unit is in force, not just written down).
#[test]
fn the_service_is_sandboxed() {
    let Some(analyze) = program("systemd-analyze", "systemd") else {
        return;
    };
    let dir = units();
    let output = Command::new(analyze)
        .current_dir(dir.path())
        .args([
            "security",
            "--offline=yes",
            "--threshold=20",
            "./selectd.service",
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{said}");
    assert!(
        said.contains("Overall exposure level for selectd.service: 1."),
        "{said}"
    );
}
