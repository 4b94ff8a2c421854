//! Running `selectd bench` from the bench tests: bounded by a kill, its
//! stdout checked to hold one JSON object and its stderr one error line.
#![allow(dead_code)]

use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A bench run that takes longer than this is killed and the test fails.
pub const RUN_LIMIT: Duration = Duration::from_secs(60);

/// Runs `selectd bench ARGS...`, killing it after [`RUN_LIMIT`].
pub fn bench(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_selectd"))
        .arg("bench")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start selectd");
    let started = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            panic!("selectd bench {args:?} still running after {RUN_LIMIT:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("collect output")
}

/// The one JSON object on stdout, checked to be alone there.
pub fn json(output: &Output) -> Value {
    let stdout = String::from_utf8(output.stdout.clone()).expect("utf-8 stdout");
    assert_eq!(
        stdout.trim_end().lines().count(),
        1,
        "one line on stdout: {stdout}"
    );
    serde_json::from_str(stdout.trim()).expect("stdout is one JSON object")
}

/// The only `error...` line of stderr.
pub fn error_line(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "exactly one error line: {stderr}");
    errors[0].to_string()
}

/// A number from the report, which must be there.
pub fn num(report: &Value, key: &str) -> f64 {
    report[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number: {report}"))
}
