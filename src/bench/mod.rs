//! `selectd bench`: a load generator that is itself a mio reactor.
//!
//! The notes' client sends one request and reads the answer with `recv` in
//! a loop. A benchmark needs thousands of such clients at once, and a load
//! generator that is slower than the server it measures would only measure
//! itself. So each `--threads` thread runs the same pattern as the server: one
//! `Poll`, every connection non-blocking, `WouldBlock` as control flow.
//!
//! Four modes:
//!
//! - `echo` (default): each connection keeps up to `--pipeline` lines in
//!   flight, checks that every byte comes back in order, and records each
//!   round trip in an HDR histogram (µs). A wrong byte, extra bytes or an
//!   early close end the run with an error: a fast server that echoes wrong
//!   is not fast.
//! - `ingest`: lines are written as fast as the server takes them; anything
//!   the server sends back is read and dropped. Counts lines written. A
//!   server that takes no byte for the stall time (see `plan`) fails the
//!   run, as a server that never answers fails an echo run.
//! - `idle`: connections are opened and held; counts how many were
//!   established and how many are still open at the end.
//! - `churn`: each connection connects, sends one line, reads its echo and
//!   closes, again and again: the notes' own workload.
//!
//! By default the loop is closed: a new line goes out when one comes back.
//! With `--rate` it is open: lines go out on a fixed schedule whatever the
//! server does, and each latency counts from when its line *should* have
//! gone out, so a server that stalls cannot also stall the measurement
//! (coordinated omission; see docs/bench.md).
//!
//! The run is `--warmup` followed by `--duration`; only messages whose reply
//! (or, in `ingest`, whose last byte was written) falls inside the
//! `--duration` window are counted.
//!
//! # Layout
//!
//! | module | its job |
//! |---|---|
//! | `config` | the run as asked for (built from the flags in `cli/bench.rs`), checked, then resolved |
//! | `plan`, `timer` | phases, the open-loop schedule, source addresses; a precise wake-up |
//! | `worker` | one thread's reactor: connect, poll, dispatch |
//! | `conn`, `modes`, `churn` | one connection, and its turn in each mode |
//! | `record`, `shared` | histograms and error counts, per thread and merged |
//! | `report`, `hgrm`, `plot`, `progress` | what the user sees |

mod churn;
mod config;
mod conn;
mod error;
mod hgrm;
mod modes;
mod plan;
mod plot;
mod progress;
mod record;
mod report;
mod shared;
mod timer;
mod worker;

use std::io::{self, Write};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

#[cfg(feature = "tls")]
pub use config::BenchTls;
pub use config::{BenchConfig, MAX_RATE, MIN_RATE, Mode};
pub use error::BenchError;
pub use hgrm::hgrm;
pub use plot::{Mark, draw_log_log};
pub use record::ErrorCounts;
pub use report::Report;

use config::Target;
use plan::{Plan, SourcePlan};
use shared::Shared;
use worker::{Outcome, run_worker};

/// Runs `selectd bench` with a config (the command line builds it in
/// `cli/bench.rs`): checks it, resolves ADDR and checks the run against
/// the machine, loads the server, prints the table (or the JSON object) on
/// stdout, writes `--hgrm` and `--plot`, and returns the report. Progress
/// goes to stderr (see `progress`).
///
/// A run that completed nothing is an error, and its report is not printed
/// (it would hold no sample), except in churn and idle modes, whose report
/// says what failed; the error follows it.
pub fn run(config: BenchConfig) -> Result<Report, BenchError> {
    // Fields are public, so a caller may have built one without the flags.
    config.check()?;
    let (config, target) = config.into_run()?;
    // Earlier runs' curves are read now: a missing file is a mistake in
    // the flags, to hear of before the run, not after it.
    let earlier = earlier_curves(&config)?;
    config.check_descriptors()?;
    let (report, replied) = measure(&config, target)?;
    let nothing = config.mode != Mode::Idle && report.msgs == 0;
    if nothing && config.mode.echoes() && !replied && report.errors == 0 {
        return Err(BenchError::NoReply {
            waited: config.warmup + config.duration,
        });
    }
    if !nothing || config.mode == Mode::Churn {
        print(&config, &report)?;
    }
    if nothing {
        return Err(BenchError::NothingCompleted {
            mode: config.mode.as_str(),
            errors: report.errors_by_kind.summary(),
        });
    }
    if report.saturated {
        // A warning lost to a full or closed stderr is no reason to fail
        // the run (as `eprintln!` would, by panicking).
        let _ = writeln!(
            io::stderr(),
            "warning: saturated: achieved {:.0}/s of the {:.0}/s asked (below 95%); the latencies include the backlog",
            report.achieved_rate,
            report.rate.unwrap_or_default()
        );
    }
    write_files(&config, &report, earlier)?;
    if config.mode == Mode::Idle && report.held < config.conns {
        return Err(BenchError::Idle {
            wanted: config.conns,
            established: report.established,
            held: report.held,
            first_failure: report.first_failure.clone(),
        });
    }
    Ok(report)
}

fn print(config: &BenchConfig, report: &Report) -> Result<(), BenchError> {
    let mut stdout = io::stdout().lock();
    let printed = if config.json {
        writeln!(stdout, "{}", report.to_json())
    } else {
        write!(stdout, "{}", report.to_table())
    };
    match printed.and_then(|()| stdout.flush()) {
        // A closed stdout (`| head`) is the reader's choice, not a failure.
        Err(err) if err.kind() != io::ErrorKind::BrokenPipe => Err(BenchError::Output {
            path: "standard output".into(),
            reason: crate::net::os_reason(&err),
        }),
        _ => Ok(()),
    }
}

/// The curves of `--plot-with NAME=FILE`, each file read and checked.
fn earlier_curves(config: &BenchConfig) -> Result<Vec<plot::Curve>, BenchError> {
    config
        .plot_with
        .iter()
        .map(|(name, file)| {
            plot::read_hgrm(name, file).map_err(|reason| {
                BenchError::flag("--plot-with", format!("{name}={}", file.display()), reason)
            })
        })
        .collect()
}

fn write_files(
    config: &BenchConfig,
    report: &Report,
    earlier: Vec<plot::Curve>,
) -> Result<(), BenchError> {
    if let Some(path) = &config.hgrm {
        std::fs::write(path, report.to_hgrm()).map_err(|e| BenchError::Output {
            path: path.clone(),
            reason: crate::net::os_reason(&e),
        })?;
    }
    if let Some(path) = &config.plot {
        let title = format!("selectd bench: {}", report.settings());
        // Beside earlier runs' curves, say which two are this run's.
        let own = if config.plot_with.is_empty() {
            ""
        } else {
            "this run, "
        };
        let mut curves = vec![
            (
                format!("{own}corrected"),
                plot::spectrum(report.histogram()),
            ),
            (
                format!("{own}uncorrected"),
                plot::spectrum(report.uncorrected_histogram()),
            ),
        ];
        curves.extend(earlier);
        plot::draw(path, &title, &curves).map_err(|reason| BenchError::Output {
            path: path.clone(),
            reason,
        })?;
    }
    Ok(())
}

/// Starts the reactors, shows progress until they finish, merges their
/// results. Also says whether any reply came back at all.
fn measure(config: &BenchConfig, target: Target) -> Result<(Report, bool), BenchError> {
    // Churn has no connecting phase: the clock starts at once.
    let waiting_for = if config.mode == Mode::Churn {
        0
    } else {
        config.conns
    };
    let shared = Arc::new(Shared::new(waiting_for)?);
    let plan = Plan {
        config: config.clone(),
        target,
        start: Instant::now(),
    };
    let sources = SourcePlan::for_run(&plan);
    let mut handles = Vec::with_capacity(config.threads);
    for thread_index in 0..config.threads {
        // Connection i belongs to thread i % threads: an even split.
        let conns: Vec<usize> = (thread_index..config.conns)
            .step_by(config.threads)
            .collect();
        let shared = Arc::clone(&shared);
        let plan = plan.clone();
        let sources = sources.clone();
        let handle = thread::Builder::new()
            .name(format!("bench-{thread_index}"))
            .spawn(move || run_worker(&plan, &sources, &conns, &shared))
            .map_err(BenchError::Reactor)?;
        handles.push(handle);
    }
    let show = progress::wanted(config);
    progress::until_done(&plan, &shared, show, || {
        handles.iter().all(|h| h.is_finished())
    });

    let mut outcomes: Vec<Outcome> = Vec::with_capacity(handles.len());
    let mut panicked = false;
    for handle in handles {
        match handle.join() {
            Ok(outcome) => outcomes.push(outcome),
            Err(_) => panicked = true,
        }
    }
    // The first failing thread set `stop`; the others' results are moot.
    if let Some(e) = shared.take_error() {
        return Err(e);
    }
    if panicked {
        return Err(BenchError::Thread);
    }
    let replied = shared.progress.load(std::sync::atomic::Ordering::Relaxed) > 0;
    Ok((Report::new(&plan, &shared.measured(), &outcomes), replied))
}
