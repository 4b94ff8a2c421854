//! What the reactor threads share with each other and with the progress line.
//!
//! Counters are atomics read once a second; the histograms sit behind one
//! mutex that each reactor takes every [`FLUSH_EVERY`](super::worker) to add
//! what it measured since, so the hot path never touches shared memory. The
//! first reactor that fails stores its error and raises `stop`, which the
//! others see within one flush and end.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::BenchError;
use super::plan::Plan;
use super::record::Measured;

pub(crate) struct Shared {
    /// Set by the first reactor that fails, so the others stop too.
    stop: AtomicBool,
    /// The first failure, kept for the error message.
    error: Mutex<Option<BenchError>>,
    /// Messages (churn: visits) completed so far, warm-up included: for the progress line.
    pub(crate) progress: AtomicU64,
    /// Failures so far that did not end the run: for the progress line.
    pub(crate) errors: AtomicU64,
    /// Idle mode: connections established so far.
    pub(crate) established: AtomicUsize,
    /// Idle mode: connections open now.
    pub(crate) held: AtomicUsize,
    /// What the window measured, merged from every reactor.
    measured: Mutex<Measured>,
    /// Connections whose connect has neither succeeded nor failed yet.
    unresolved: AtomicUsize,
    /// When `unresolved` reached 0, in ns after `Plan::start` (`u64::MAX`: not yet).
    connected_at_ns: AtomicU64,
    /// Ingest: when the server last took a byte (a write succeeded), in ns
    /// after `Plan::start` (0: not yet).
    taken_at_ns: AtomicU64,
}

impl Shared {
    /// `conns` connects to wait for before the clock starts (0: it starts now).
    pub(crate) fn new(conns: usize) -> Result<Shared, BenchError> {
        Ok(Shared {
            unresolved: AtomicUsize::new(conns),
            connected_at_ns: AtomicU64::new(if conns == 0 { 0 } else { u64::MAX }),
            stop: AtomicBool::new(false),
            error: Mutex::new(None),
            progress: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            established: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            measured: Mutex::new(Measured::new()?),
            taken_at_ns: AtomicU64::new(0),
        })
    }

    /// Counts `count` connects as finished (either way); the call that
    /// finishes the last one starts the clock of the warm-up and the window.
    pub(crate) fn resolve(&self, count: usize, plan: &Plan) {
        let before = self
            .unresolved
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                Some(left.saturating_sub(count))
            })
            .unwrap_or(0);
        if count > 0 && before > 0 && before <= count {
            let ns = plan.start.elapsed().as_nanos() as u64;
            self.connected_at_ns.store(ns, Ordering::Release);
        }
    }

    /// When every connect had finished, if they all have.
    pub(crate) fn connected_at(&self, plan: &Plan) -> Option<Instant> {
        match self.connected_at_ns.load(Ordering::Acquire) {
            u64::MAX => None,
            ns => Some(plan.start + Duration::from_nanos(ns)),
        }
    }

    /// Ingest: a write succeeded at `now` (some reactor's server took a byte).
    pub(crate) fn took(&self, plan: &Plan, now: Instant) {
        let ns = now.saturating_duration_since(plan.start).as_nanos() as u64;
        self.taken_at_ns.fetch_max(ns, Ordering::Relaxed);
    }

    /// Ingest: when any reactor's server last took a byte, if one has.
    pub(crate) fn taken_at(&self, plan: &Plan) -> Option<Instant> {
        match self.taken_at_ns.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(plan.start + Duration::from_nanos(ns)),
        }
    }

    /// Connects still in progress.
    pub(crate) fn unresolved(&self) -> usize {
        self.unresolved.load(Ordering::Relaxed)
    }

    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub(crate) fn fail(&self, error: BenchError) {
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(error);
        self.stop.store(true, Ordering::Relaxed);
    }

    pub(crate) fn take_error(&self) -> Option<BenchError> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// The 99th percentile (corrected) of what has been merged so far, if anything was.
    pub(crate) fn p99_so_far(&self) -> Option<u64> {
        let measured = self.measured.lock().unwrap_or_else(|p| p.into_inner());
        (!measured.corrected.is_empty()).then(|| measured.corrected.value_at_quantile(0.99))
    }

    /// Everything measured, once every reactor has merged.
    pub(crate) fn measured(&self) -> Measured {
        self.measured
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Adds a reactor's measurements and empties them.
    pub(crate) fn merge(&self, local: &mut Measured) {
        if local.is_empty() {
            return;
        }
        self.errors
            .fetch_add(local.errors.total(), Ordering::Relaxed);
        let mut shared = self.measured.lock().unwrap_or_else(|p| p.into_inner());
        shared.take_from(local);
    }
}
