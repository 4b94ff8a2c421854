//! The progress line: once a second on stderr while the run goes on.
//!
//! Shown when stderr is a terminal (unless `--json`, whose reader is a
//! script), or whenever `--progress` asks; never on stdout, which belongs
//! to the report. On a terminal the line is rewritten in place with `\r`;
//! elsewhere (a log) it is one line per second. One line rewritten needs no
//! progress-bar crate: `indicatif` would add a dependency (and its own
//! terminal handling) for the same output.

use std::io::{self, IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use super::config::{BenchConfig, Mode};
use super::plan::{Plan, Window};
use super::shared::Shared;
use crate::net::units::format_duration;

/// Whether to show progress for this run.
pub(crate) fn wanted(config: &BenchConfig) -> bool {
    config.progress || (!config.json && io::stderr().is_terminal())
}

/// Waits until `done()` (every reactor returned), printing a line a second if `show`.
pub(crate) fn until_done(plan: &Plan, shared: &Shared, show: bool, done: impl Fn() -> bool) {
    let tty = io::stderr().is_terminal();
    let mut next_tick = plan.start + Duration::from_secs(1);
    let (mut last_msgs, mut last_time) = (0u64, Instant::now());
    let mut printed = false;
    while !done() {
        thread::sleep(Duration::from_millis(20));
        let now = Instant::now();
        if !show || now < next_tick {
            continue;
        }
        next_tick += Duration::from_secs(1);
        let msgs = shared.progress.load(Ordering::Relaxed);
        let since = now.saturating_duration_since(last_time).as_secs_f64();
        let rate = if since > 0.0 {
            msgs.saturating_sub(last_msgs) as f64 / since
        } else {
            0.0
        };
        (last_msgs, last_time) = (msgs, now);
        let line = line(plan, shared, now, rate);
        let mut stderr = io::stderr().lock();
        let _ = if tty {
            write!(stderr, "\r{line}\x1b[K")
        } else {
            writeln!(stderr, "{line}")
        };
        printed = true;
    }
    if tty && printed {
        let _ = writeln!(io::stderr());
    }
}

/// `bench: 3.0s/10s measuring, 712345 msgs/s, p99 9023 us, errors 0`.
fn line(plan: &Plan, shared: &Shared, now: Instant, rate: f64) -> String {
    let config = &plan.config;
    let Some(at) = shared.connected_at(plan) else {
        return format!(
            "bench: connecting, {}/{} done after {:.1}s",
            config.conns - shared.unresolved().min(config.conns),
            config.conns,
            (now - plan.start).as_secs_f64()
        );
    };
    let window = Window::after(plan, at);
    let phase = if now < window.measure_start {
        "warm-up"
    } else {
        "measuring"
    };
    let total = config.warmup + config.duration;
    let elapsed = now.saturating_duration_since(at).min(total).as_secs_f64();
    let head = format!("bench: {elapsed:.1}s/{} {phase}", format_duration(total));
    let errors = shared.errors.load(Ordering::Relaxed);
    let p99 = shared
        .p99_so_far()
        .map_or_else(|| "-".to_string(), |p| p.to_string());
    match config.mode {
        Mode::Idle => format!(
            "{head}, established {}/{}, held {}",
            shared.established.load(Ordering::Relaxed),
            config.conns,
            shared.held.load(Ordering::Relaxed),
        ),
        Mode::Ingest => format!("{head}, {rate:.0} msgs/s"),
        Mode::Echo => format!("{head}, {rate:.0} msgs/s, p99 {p99} us, errors {errors}"),
        Mode::Churn => format!("{head}, {rate:.0} conns/s, p99 {p99} us, errors {errors}"),
    }
}
