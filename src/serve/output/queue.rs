//! The bounded queue between the event loop and whatever reads the output,
//! and the thread that writes it.
//!
//! # Why a writer thread
//!
//! In the notes' terms stdout belongs in `select()`'s *write* list, like any
//! socket: the loop must never wait for it. Two ways get there:
//!
//! - Register the output descriptor in the loop's `Poll` for `WRITABLE`.
//!   That needs a non-blocking descriptor, and stdout's file description is
//!   shared with the shell or terminal that started us: setting `O_NONBLOCK`
//!   on it breaks them (after we exit, `cat` gets `EAGAIN`). Reopening
//!   `/proc/self/fd/1` gives a private description for pipes and terminals,
//!   but not for sockets (stdout under systemd), and a regular file cannot be
//!   polled at all (it is always "ready", and a slow disk still blocks).
//! - A thread that does plain blocking writes, fed through a bounded queue.
//!   It works for every kind of descriptor the same way (pipes, terminals,
//!   files, sockets, `/dev/null`, `/dev/full`), and several event loops can
//!   feed one queue, which one loop per core will need.
//!
//! selectd takes the second. The loop formats into a buffer of its own and
//! hands the whole buffer over by move (one lock, no copy) once it is large,
//! and otherwise at most once a millisecond (at once after a quiet moment:
//! see `Output::end_turn`); it takes back an empty buffer the writer
//! finished with, so the buffers circulate and the steady state allocates
//! nothing. The writer takes everything queued at once and writes it with
//! one `write_vectored` (`writev(2)`), accounting once per call; it is woken
//! only when it sleeps and there is enough to write, or the loop is about to
//! sleep itself.
//!
//! # The bound
//!
//! What waits (queued plus being written) is bounded by `--output-buffer`,
//! checked before each read from a client: a read's lines (up to
//! `READ_BUDGET`, 64 KiB) are printed whole, so each loop may pass the bound
//! by what one read prints, never more. Above it the loops stop reading
//! from clients (TCP flow control then slows
//! the senders) or, with `--output-full drop`, drop whole lines; once the
//! writer brings it down to half, it wakes the loops through their `Waker`s.
//!
//! # Who may end the writer
//!
//! Each loop holds a handle (a producer); the writer ends when the last is
//! dropped. Producers are counted explicitly, under the queue's lock, so two
//! loops dropping theirs at the same moment cannot both believe the other
//! remains.
//!
//! The writer thread itself, and what it does when writing fails or the file
//! is rotated, is in [`writer`](super::writer).

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use mio::Waker;

use super::writer::{Sink, finish_closed, write_forever};
use crate::failpoint::failpoint;
use crate::net::os_reason;

/// The buffers that circulate (each loop's staging buffer, those queued,
/// those being written) start this large.
pub(crate) const BUFFER_CAPACITY: usize = 64 * 1024;

/// A buffer that grew past this (a huge line) is given back once empty
/// rather than kept for reuse.
pub(super) const SHRINK_ABOVE: usize = 4 * BUFFER_CAPACITY;

/// A push smaller than this is copied onto the last queued buffer when that
/// has room; any other push is queued by moving the buffer. So no queued
/// buffer but the last holds less than this, and the buffers' capacity
/// stays within a small multiple of `--output-buffer`.
const MOVE_AT: usize = BUFFER_CAPACITY / 4;

/// Empty buffers kept for reuse: at least this many, and up to half the
/// bound's worth, which is what a reader that keeps falling behind makes
/// the queue swing by (reading stops when it is full and resumes at half),
/// so that such a swing reuses buffers instead of freeing and faulting in
/// megabytes each time. All of them exist from the start (reserved, not
/// touched: a buffer costs resident memory only once written), so that a
/// writer that falls behind by up to half a megabyte (a busy machine
/// descheduling it) makes the loop allocate nothing.
const SPARE_BUFFERS: usize = 8;
const SPARE_AT_START: usize = SPARE_BUFFERS;

/// Buffers written by one `writev(2)` at most (well under `IOV_MAX`).
pub(super) const BUFFERS_PER_WRITE: usize = 64;

/// A push that is not urgent wakes a sleeping writer only once this much
/// waits: until then the loop is busy and will push again.
const WAKE_AT: usize = 2 * BUFFER_CAPACITY;

/// Why the output can no longer be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closed {
    /// The reader went away (`EPIPE`).
    BrokenPipe,
    /// The writer thread died (or could not start).
    WriterFailed,
}

/// What the loops and the writer share, under one lock.
pub(super) struct State {
    /// Buffers waiting for the writer, in order.
    pub(super) queued: VecDeque<Vec<u8>>,
    /// Empty buffers for the loops to stage into.
    pub(super) spare: Vec<Vec<u8>>,
    /// Handles that may still queue (the loops); the writer ends after the
    /// last is dropped.
    pub(super) producers: usize,
    /// The writer waits for work (so a producer must notify it).
    pub(super) writer_idle: bool,
    /// Some loop stopped reading because the queue was full; wake them all
    /// once it is down to half.
    pub(super) producers_paused: bool,
    /// Some loop waits for the queue to empty (it is stopping).
    pub(super) drain_waited: bool,
    /// Bytes ever queued and ever taken by the writer, and the count at
    /// which a reopen was asked for (always between two queued buffers).
    pub(super) queued_total: u64,
    pub(super) taken_total: u64,
    pub(super) reopen_at: Option<u64>,
    pub(super) closed: Option<Closed>,
    /// Why the writer failed, for the one report.
    pub(super) failure: Option<String>,
    /// Some loop has reported the closing already (one line per server).
    pub(super) closed_reported: bool,
    /// Stop the writer (the last handle is gone).
    pub(super) shutdown: bool,
    pub(super) wakers: Vec<Arc<Waker>>,
}

pub(super) struct Shared {
    pub(super) state: Mutex<State>,
    /// The writer waits here for work.
    pub(super) work: Condvar,
    /// Queued plus in-flight bytes, readable without the lock.
    pub(super) pending: AtomicUsize,
    /// Bytes ever written (or discarded once the output closed): a
    /// producer's bytes are out once this passes the offset its push
    /// returned, whatever other producers queued since.
    pub(super) written: AtomicU64,
    pub(super) limit: usize,
    /// How many empty buffers to keep (see `SPARE_BUFFERS`).
    pub(super) spares: usize,
    /// The writer thread starts with the first bytes queued, so a server
    /// that prints nothing (`--format none`) runs no thread for it.
    pub(super) started: AtomicBool,
    unstarted: Mutex<Option<Writer>>,
}

/// What the writer thread will need when it starts.
struct Writer {
    sink: Sink,
    name: String,
    report: bool,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A handle on one output queue; clones share it (each is a producer).
pub(crate) struct OutputQueue {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for OutputQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputQueue")
            .field("pending", &self.pending())
            .field("limit", &self.shared.limit)
            .finish_non_exhaustive()
    }
}

impl Clone for OutputQueue {
    fn clone(&self) -> Self {
        self.shared.lock().producers += 1;
        OutputQueue {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl OutputQueue {
    /// A queue bounded by `limit` bytes, written to `sink` by a new thread
    /// named `name`.
    /// `report` says whether the writer logs its own write errors (not for
    /// the queue that carries the log itself).
    pub fn spawn(sink: Sink, limit: usize, name: &str, report: bool) -> io::Result<OutputQueue> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queued: VecDeque::with_capacity(BUFFERS_PER_WRITE),
                spare: (0..SPARE_AT_START)
                    .map(|_| Vec::with_capacity(BUFFER_CAPACITY))
                    .collect(),
                producers: 1,
                writer_idle: false,
                producers_paused: false,
                drain_waited: false,
                queued_total: 0,
                taken_total: 0,
                reopen_at: None,
                closed: None,
                failure: None,
                closed_reported: false,
                shutdown: false,
                wakers: Vec::new(),
            }),
            work: Condvar::new(),
            pending: AtomicUsize::new(0),
            written: AtomicU64::new(0),
            limit: limit.max(1),
            spares: (limit / 2 / BUFFER_CAPACITY).max(SPARE_BUFFERS),
            started: AtomicBool::new(false),
            unstarted: Mutex::new(Some(Writer {
                sink,
                name: name.into(),
                report,
            })),
        });
        Ok(OutputQueue { shared })
    }

    /// Starts the writer thread, once.
    fn start_writer(&self) {
        let writer = self
            .shared
            .unstarted
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        let Some(Writer { sink, name, report }) = writer else {
            return;
        };
        let shared = Arc::clone(&self.shared);
        let started = thread::Builder::new().name(name).spawn(move || {
            let wrote = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                write_forever(&shared, sink, report);
            }));
            if let Err(panic) = wrote {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "it panicked".into());
                finish_closed(&shared, Closed::WriterFailed, Some(why));
            }
        });
        match started {
            Ok(_) => self.shared.started.store(true, Ordering::Release),
            Err(err) => {
                let why = format!("cannot start it: {}", os_reason(&err));
                finish_closed(&self.shared, Closed::WriterFailed, Some(why));
            }
        }
    }

    /// The bound, `--output-buffer`.
    pub fn limit(&self) -> usize {
        self.shared.limit
    }

    /// Bytes waiting to be written (queued or being written).
    pub fn pending(&self) -> usize {
        self.shared.pending.load(Ordering::Acquire)
    }

    /// A loop to wake when the queue has room again, empties, or closes.
    pub fn add_waker(&self, waker: Arc<Waker>) {
        self.shared.lock().wakers.push(waker);
    }

    /// Hands `staged` to the writer: the buffer itself is queued (moved, not
    /// copied) and `staged` becomes an empty one the writer finished with;
    /// only a small push (under `MOVE_AT`) onto a last queued buffer with
    /// room for it is copied there, so that no queued buffer is mostly
    /// empty. (When the writer keeps up, the queue is empty at each push,
    /// and every push is a move.) A
    /// sleeping writer is woken if `urgent` (the loop is about to sleep) or
    /// if enough waits. Returns the offset just past these bytes in
    /// everything ever queued, or `None` if nothing was queued.
    pub fn push(&self, staged: &mut Vec<u8>, urgent: bool) -> Option<u64> {
        if staged.is_empty() {
            return None;
        }
        if !self.shared.started.load(Ordering::Acquire) {
            self.start_writer();
        }
        let mut state = self.shared.lock();
        if state.closed.is_some() {
            staged.clear();
            return None;
        }
        let n = staged.len();
        // A reopen mark sits between buffers: nothing is appended across it.
        let marked = state.reopen_at == Some(state.queued_total);
        let room = |last: &Vec<u8>| last.capacity() - last.len() >= n;
        let small = n < MOVE_AT;
        match state.queued.back_mut() {
            // A small push joins the last buffer when it has room.
            Some(last) if small && !marked && room(last) => {
                last.extend_from_slice(staged);
                staged.clear();
            }
            // Otherwise the buffer itself is queued: a large one (the normal
            // case under load), or one that becomes the last (the normal
            // case when the writer keeps up and the queue is empty).
            _ => {
                let empty = state
                    .spare
                    .pop()
                    .unwrap_or_else(|| Vec::with_capacity(BUFFER_CAPACITY));
                state.queued.push_back(std::mem::replace(staged, empty));
            }
        }
        state.queued_total += n as u64;
        let pending = self.shared.pending.fetch_add(n, Ordering::AcqRel) + n;
        if state.writer_idle && (urgent || pending >= WAKE_AT) {
            state.writer_idle = false;
            self.shared.work.notify_one();
        }
        Some(state.queued_total)
    }

    /// The loop is about to sleep: wake the writer if it sleeps with
    /// something queued (pushed earlier without waking it).
    pub fn nudge(&self) {
        if self.pending() == 0 {
            return;
        }
        let mut state = self.shared.lock();
        if state.writer_idle && !state.queued.is_empty() {
            state.writer_idle = false;
            self.shared.work.notify_one();
        }
    }

    /// Whether everything queued up to `end` (an offset `push` returned) is
    /// written, or can never be.
    pub fn written_up_to(&self, end: u64) -> bool {
        self.shared.written.load(Ordering::Acquire) >= end
    }

    /// Bytes queued before `end` and not written yet.
    pub fn unwritten_before(&self, end: u64) -> u64 {
        end.saturating_sub(self.shared.written.load(Ordering::Acquire))
    }

    /// The caller would stop producing until the queue is down to half.
    /// Returns `false` if it already is (then go on: no wake-up would come);
    /// otherwise the caller will be woken once it is.
    pub fn pause_producers(&self) -> bool {
        let mut state = self.shared.lock();
        if self.pending() <= self.shared.limit / 2 {
            return false;
        }
        state.producers_paused = true;
        true
    }

    /// The caller waits for its bytes (up to `end`) to be written. Returns
    /// `true` if they are (or can never be); otherwise the caller will be
    /// woken as writing goes on, to look again.
    pub fn want_drained(&self, end: u64) -> bool {
        let mut state = self.shared.lock();
        if self.written_up_to(end) || state.closed.is_some() {
            return true;
        }
        state.drain_waited = true;
        if state.writer_idle && !state.queued.is_empty() {
            state.writer_idle = false;
            self.shared.work.notify_one();
        }
        false
    }

    /// Everything before this point goes to the current file; the writer
    /// reopens the path before writing what follows.
    pub fn reopen(&self) {
        let mut state = self.shared.lock();
        state.reopen_at = Some(state.queued_total);
        state.writer_idle = false;
        self.shared.work.notify_one();
    }

    /// Whether the output can no longer be written.
    pub fn closed(&self) -> Option<Closed> {
        self.shared.lock().closed
    }

    /// The one line that reports why the output closed, for the first
    /// caller only: every loop stops, the server says so once.
    pub fn closed_report(&self) -> Option<String> {
        let mut state = self.shared.lock();
        let closed = state.closed?;
        if std::mem::replace(&mut state.closed_reported, true) {
            return None;
        }
        Some(match closed {
            Closed::BrokenPipe => "error: output closed (Broken pipe): stopping".into(),
            Closed::WriterFailed => format!(
                "error: the output writer failed ({}): stopping",
                state.failure.as_deref().unwrap_or("it died")
            ),
        })
    }

    /// Waits up to `timeout` for everything queued to be written; `true` if
    /// it was. For the end of a program, not for a loop.
    pub fn wait_drained(&self, timeout: Duration) -> bool {
        self.nudge();
        let deadline = std::time::Instant::now() + timeout;
        while self.pending() > 0 && self.closed().is_none() {
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            thread::sleep((deadline - now).min(Duration::from_millis(5)));
        }
        true
    }
}

impl Drop for OutputQueue {
    fn drop(&mut self) {
        failpoint!("output-queue-drop");
        let mut state = self.shared.lock();
        state.producers -= 1;
        if state.producers == 0 {
            // No one can queue anything more: the writer finishes and ends.
            state.shutdown = true;
            self.shared.work.notify_one();
        }
    }
}
