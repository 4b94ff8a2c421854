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
//! hands the whole buffer over by move (one lock, no copy) once it is large
//! or the loop is about to sleep; it takes back an empty buffer the writer
//! finished with, so the buffers circulate and the steady state allocates
//! nothing. The writer takes everything queued at once and writes it with
//! one `write_vectored` (`writev(2)`), accounting once per call; it is woken
//! only when it sleeps and there is enough to write, or the loop is about to
//! sleep itself.
//!
//! # The bound
//!
//! What waits (queued plus being written) is bounded by `--output-buffer`.
//! Above it the loops stop reading from clients (TCP flow control then slows
//! the senders) or, with `--output-full drop`, drop whole lines; once the
//! writer brings it down to half, it wakes the loops through their `Waker`s.
//!
//! # When writing fails
//!
//! - `EPIPE` (the reader went away, `selectd serve | head -1`): the output is
//!   closed for good; what waits is discarded and the loops are told, so the
//!   server stops instead of serving clients into a void.
//! - Anything else (`ENOSPC`, `EIO`: `--output /dev/full`): logged once per
//!   episode; the bytes are kept and retried with a growing back-off, so a
//!   full disk that gets space back loses nothing. Backpressure applies
//!   meanwhile.
//! - The writer thread itself dies (a panic): the output is closed as for
//!   `EPIPE`, with the reason, and the loops stop the server.
//!
//! # Reopening (`SIGHUP`)
//!
//! For log rotation: the loop marks the queue at the byte where the signal
//! was handled; the writer writes everything before the mark to the old file,
//! reopens the path, and writes the rest to the new one. If writes to the old
//! file are failing when the signal comes (the disk is full, and the operator
//! deletes the log to free it), the writer does not wait for them to succeed:
//! it reopens at once, and what was waiting goes to the new file.
//!
//! # Who may end the writer
//!
//! Each loop holds a handle (a producer); the writer ends when the last is
//! dropped. Producers are counted explicitly, under the queue's lock, so two
//! loops dropping theirs at the same moment cannot both believe the other
//! remains.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use mio::Waker;

use crate::failpoint::failpoint;
use crate::net::os_reason;

/// The buffers that circulate (each loop's staging buffer, those queued,
/// those being written) start this large.
pub(crate) const BUFFER_CAPACITY: usize = 64 * 1024;

/// A buffer that grew past this (a huge line) is given back once empty
/// rather than kept for reuse.
const SHRINK_ABOVE: usize = 4 * BUFFER_CAPACITY;

/// A push at least this large is queued by moving the buffer; a smaller one
/// is copied (onto the last queued buffer when it has room), so that no
/// queued buffer but the last holds less than this, and the buffers'
/// capacity stays within a small multiple of `--output-buffer`.
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
const BUFFERS_PER_WRITE: usize = 64;

/// A push that is not urgent wakes a sleeping writer only once this much
/// waits: until then the loop is busy and will push again.
const WAKE_AT: usize = 2 * BUFFER_CAPACITY;

/// Back-off between retries after a write error other than `EPIPE`.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(1);

/// Where the writer thread writes.
pub(crate) enum Sink {
    /// A stream opened by someone else: stdout, stderr, a test's sink.
    Stream(Box<dyn Write + Send>),
    /// A file we open, append to, and reopen on request.
    File { path: PathBuf, file: File },
}

impl Sink {
    /// Opens `path` for appending, creating it with mode 0640 if missing.
    pub fn file(path: &Path) -> io::Result<Sink> {
        Ok(Sink::File {
            path: path.to_path_buf(),
            file: open_append(path)?,
        })
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Sink::Stream(stream) => stream.write_vectored(bufs),
            Sink::File { file, .. } => file.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Stream(stream) => stream.flush(),
            Sink::File { .. } => Ok(()),
        }
    }

    /// Reopens a file (after a rename); a stream stays as it is.
    fn reopen(&mut self) -> io::Result<()> {
        if let Sink::File { path, file } = self {
            *file = open_append(path)?;
        }
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
}

/// Faults a test asks for (`--features failpoints`), in the output's
/// writer only (`output`), never in the one that carries the report to
/// stderr: `output-writer` makes it panic, `output-write` makes a write fail
/// with `return(EIO)`, `return(ENOSPC)` or `return(EFBIG)`.
#[cfg(feature = "failpoints")]
fn injected_fault(output: bool) -> Option<io::Error> {
    if !output {
        return None;
    }
    fail::fail_point!("output-writer");
    fail::fail_point!("output-write", |errno: Option<String>| {
        Some(io::Error::from_raw_os_error(match errno.as_deref() {
            Some("ENOSPC") => libc::ENOSPC,
            Some("EFBIG") => libc::EFBIG,
            _ => libc::EIO,
        }))
    });
    None
}

#[cfg(not(feature = "failpoints"))]
fn injected_fault(_: bool) -> Option<io::Error> {
    None
}

/// Why the output can no longer be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closed {
    /// The reader went away (`EPIPE`).
    BrokenPipe,
    /// The writer thread died (or could not start).
    WriterFailed,
}

/// What the loops and the writer share, under one lock.
struct State {
    /// Buffers waiting for the writer, in order.
    queued: VecDeque<Vec<u8>>,
    /// Empty buffers for the loops to stage into.
    spare: Vec<Vec<u8>>,
    /// Handles that may still queue (the loops); the writer ends after the
    /// last is dropped.
    producers: usize,
    /// The writer waits for work (so a producer must notify it).
    writer_idle: bool,
    /// Some loop stopped reading because the queue was full; wake them all
    /// once it is down to half.
    producers_paused: bool,
    /// Some loop waits for the queue to empty (it is stopping).
    drain_waited: bool,
    /// Bytes ever queued and ever taken by the writer, and the count at
    /// which a reopen was asked for (always between two queued buffers).
    queued_total: u64,
    taken_total: u64,
    reopen_at: Option<u64>,
    closed: Option<Closed>,
    /// Why the writer failed, for the one report.
    failure: Option<String>,
    /// Some loop has reported the closing already (one line per server).
    closed_reported: bool,
    /// Stop the writer (the last handle is gone).
    shutdown: bool,
    wakers: Vec<Arc<Waker>>,
}

struct Shared {
    state: Mutex<State>,
    /// The writer waits here for work.
    work: Condvar,
    /// Queued plus in-flight bytes, readable without the lock.
    pending: AtomicUsize,
    /// Bytes ever written (or discarded once the output closed): a
    /// producer's bytes are out once this passes the offset its push
    /// returned, whatever other producers queued since.
    written: AtomicU64,
    limit: usize,
    /// How many empty buffers to keep (see `SPARE_BUFFERS`).
    spares: usize,
    /// The writer thread starts with the first bytes queued, so a server
    /// that prints nothing (`--format none`) runs no thread for it.
    started: AtomicBool,
    unstarted: Mutex<Option<Writer>>,
}

/// What the writer thread will need when it starts.
struct Writer {
    sink: Sink,
    name: String,
    report: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
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
    /// only a small push (under `MOVE_AT`) is copied, onto the last queued
    /// buffer when it has room, so that no queued buffer is mostly empty. A
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
        if n >= MOVE_AT {
            // The normal case under load: the buffer itself is queued.
            let empty = state
                .spare
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(BUFFER_CAPACITY));
            state.queued.push_back(std::mem::replace(staged, empty));
        } else if let Some(last) = state.queued.back_mut().filter(|last| !marked && room(last)) {
            last.extend_from_slice(staged);
            staged.clear();
        } else {
            let mut buffer = state
                .spare
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(BUFFER_CAPACITY));
            buffer.extend_from_slice(staged);
            staged.clear();
            state.queued.push_back(buffer);
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

/// What the writer does next.
enum Next {
    /// Write the buffers taken.
    Write,
    /// Reopen the file: everything before the mark is written.
    Reopen,
    /// The last handle is gone and everything is written (or failing).
    Exit,
}

/// The writer thread: take everything queued, write it, repeat.
fn write_forever(shared: &Shared, mut sink: Sink, report: bool) {
    run_as_batch();
    let mut batch: VecDeque<Vec<u8>> = VecDeque::with_capacity(BUFFERS_PER_WRITE);
    let mut done: Vec<Vec<u8>> = Vec::with_capacity(BUFFERS_PER_WRITE);
    let mut written = 0; // of the batch's first buffer
    let mut retry = RETRY_MIN;
    let mut failing = false;
    let mut wrote = 0; // bytes not yet accounted
    loop {
        if batch.is_empty() {
            let next = {
                let mut state = shared.lock();
                account(shared, &mut state, wrote, &mut done);
                wrote = 0;
                take(shared, state, &mut batch)
            };
            match next {
                Next::Exit => return,
                Next::Reopen => {
                    failpoint!("output-reopen");
                    reopen(&mut sink);
                    shared.lock().reopen_at = None;
                    continue;
                }
                Next::Write => {}
            }
        }
        let mut slices = [IoSlice::new(&[]); BUFFERS_PER_WRITE];
        let mut count = 0;
        for (slot, buffer) in slices.iter_mut().zip(&batch) {
            let from = if count == 0 { written } else { 0 };
            *slot = IoSlice::new(&buffer[from..]);
            count += 1;
        }
        let result = match injected_fault(report) {
            Some(err) => Err(err),
            None => sink.write_vectored(&slices[..count]),
        };
        match result {
            Ok(0) => {
                // A sink that takes nothing will never take anything.
                finish_closed(shared, Closed::BrokenPipe, None);
                batch.clear();
                written = 0;
                wrote = 0;
            }
            Ok(mut n) => {
                wrote += n;
                // Finished buffers go back for reuse, with the accounting.
                while let Some(front) = batch.front() {
                    let left = front.len() - written;
                    if n < left {
                        written += n;
                        break;
                    }
                    n -= left;
                    written = 0;
                    if let Some(buffer) = batch.pop_front() {
                        done.push(buffer);
                    }
                }
                if failing {
                    if report {
                        log::warn!("output is being written again");
                    }
                    failing = false;
                    retry = RETRY_MIN;
                }
                if !batch.is_empty() {
                    // Partly written: account what went, then go on.
                    let mut state = shared.lock();
                    account(shared, &mut state, wrote, &mut done);
                    wrote = 0;
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) if err.kind() == io::ErrorKind::BrokenPipe => {
                finish_closed(shared, Closed::BrokenPipe, None);
                batch.clear();
                written = 0;
                wrote = 0;
            }
            Err(err) => {
                if !failing && report {
                    log::error!(
                        "cannot write output: {}; keeping it and retrying",
                        os_reason(&err)
                    );
                }
                failing = true;
                failpoint!("output-retry");
                let mut state = shared.lock();
                if state.shutdown {
                    return;
                }
                if state.reopen_at.take().is_some() {
                    // Rotated while failing (a full disk whose log was
                    // deleted): what waits goes to the new file, now.
                    drop(state);
                    failpoint!("output-reopen");
                    reopen(&mut sink);
                    continue;
                }
                state = shared
                    .work
                    .wait_timeout(state, retry)
                    .map_or_else(|poisoned| poisoned.into_inner().0, |(state, _)| state);
                drop(state);
                retry = (retry * 2).min(RETRY_MAX);
            }
        }
    }
}

/// Makes the calling thread (the writer) a batch thread (`SCHED_BATCH`):
/// woken by a loop that shares its CPU, it does not preempt the loop, but
/// runs when the loop sleeps or its time slice ends. The writer is a
/// background job whose batches only grow by waiting; the loop is what
/// clients wait for. Where it is refused, nothing changes.
fn run_as_batch() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: sched_setscheduler(2) on the calling thread (0) with a
        // valid parameter; lowering one's own policy needs no privilege.
        unsafe {
            libc::sched_setscheduler(0, libc::SCHED_BATCH, &param);
        }
    }
}

/// Flushes and reopens the sink (`SIGHUP`).
fn reopen(sink: &mut Sink) {
    match sink.flush().and_then(|()| sink.reopen()) {
        Ok(()) => log::info!("output file reopened"),
        Err(err) => log::error!("cannot reopen the output file: {}", os_reason(&err)),
    }
}

/// Takes the next buffers to write (those before a reopen mark, at most a
/// `writev`'s worth), or says to reopen, or to exit; sleeps until one of
/// them is due.
fn take(shared: &Shared, mut state: MutexGuard<'_, State>, batch: &mut VecDeque<Vec<u8>>) -> Next {
    loop {
        if state.reopen_at == Some(state.taken_total) {
            return Next::Reopen;
        }
        if !state.queued.is_empty() {
            let mark = state.reopen_at.unwrap_or(u64::MAX);
            while batch.len() < BUFFERS_PER_WRITE && state.taken_total < mark {
                let Some(buffer) = state.queued.pop_front() else {
                    break;
                };
                state.taken_total += buffer.len() as u64;
                batch.push_back(buffer);
            }
            return Next::Write;
        }
        if state.shutdown {
            return Next::Exit;
        }
        state.writer_idle = true;
        state = shared
            .work
            .wait(state)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
    }
}

/// `n` more bytes were written, and the buffers in `done` are free again:
/// one accounting per `writev`. Wakes the loops if they wait for room or
/// for the queue to empty.
fn account(shared: &Shared, state: &mut State, n: usize, done: &mut Vec<Vec<u8>>) {
    for mut buffer in done.drain(..) {
        if state.spare.len() < shared.spares && buffer.capacity() <= SHRINK_ABOVE {
            buffer.clear();
            state.spare.push(buffer);
        }
    }
    if n == 0 {
        return;
    }
    let pending = shared.pending.fetch_sub(n, Ordering::AcqRel) - n;
    shared.written.fetch_add(n as u64, Ordering::AcqRel);
    let room = pending <= shared.limit / 2;
    let waited = state.drain_waited;
    if (room && state.producers_paused) || waited {
        state.producers_paused &= !room;
        state.drain_waited = false;
        wake_all(state);
    }
}

/// The output can no longer be written (the reader is gone, the writer
/// died): discard everything and tell the loops.
fn finish_closed(shared: &Shared, why: Closed, failure: Option<String>) {
    let mut state = shared.lock();
    if state.closed.is_none() {
        state.closed = Some(why);
        state.failure = failure;
    }
    state.queued.clear();
    shared.pending.store(0, Ordering::Release);
    shared.written.store(u64::MAX, Ordering::Release);
    wake_all(&state);
}

fn wake_all(state: &State) {
    for waker in &state.wakers {
        if let Err(err) = waker.wake() {
            log::debug!("cannot wake a loop: {err}");
        }
    }
}
