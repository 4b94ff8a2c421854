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
//! selectd takes the second. The loop appends a turn's worth of formatted
//! output to the queue once per turn (one lock; the writer is woken only if
//! it sleeps), so a busy turn still costs one `write(2)` or fewer; the
//! buffers are swapped, never freed, so the steady state allocates nothing.
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
//!
//! # Reopening (`SIGHUP`)
//!
//! For log rotation: the loop marks the queue at the byte where the signal
//! was handled; the writer writes everything before the mark to the old file,
//! reopens the path, and writes the rest to the new one.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use mio::Waker;

use crate::net::os_reason;

/// The three buffers that circulate (the loop's staging, the queue, the
/// writer's) start this large, so a steady state reuses them and allocates
/// nothing.
pub(crate) const BUFFER_CAPACITY: usize = 64 * 1024;

/// A buffer that grew past this while the output was stalled is given back
/// once empty, so that memory after a stall is what the steady state needs,
/// not what the stall took.
const SHRINK_ABOVE: usize = 4 * BUFFER_CAPACITY;

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

    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Stream(stream) => stream.write(bytes),
            Sink::File { file, .. } => file.write(bytes),
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

/// Why the output can no longer be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closed {
    /// The reader went away (`EPIPE`).
    BrokenPipe,
}

/// What the loops and the writer share, under one lock.
struct State {
    /// Bytes waiting for the writer, in order.
    queued: Vec<u8>,
    /// Bytes the writer took and has not finished writing.
    in_flight: usize,
    /// The writer waits for work (so a producer must notify it).
    writer_idle: bool,
    /// Some loop stopped reading because the queue was full; wake them all
    /// once it is down to half.
    producers_paused: bool,
    /// Some loop waits for the queue to empty (it is stopping).
    drain_waited: bool,
    /// Bytes ever queued, and the count at which a reopen was asked for.
    queued_total: u64,
    taken_total: u64,
    reopen_at: Option<u64>,
    closed: Option<Closed>,
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
    /// Bytes ever written (or discarded once the reader went away): a
    /// producer's bytes are out once this passes the offset its push
    /// returned, whatever other producers queued since.
    written: AtomicU64,
    limit: usize,
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

/// A handle on one output queue; clones share it.
#[derive(Clone)]
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

impl OutputQueue {
    /// A queue bounded by `limit` bytes, written to `sink` by a new thread
    /// named `name`.
    /// `report` says whether the writer logs its own write errors (not for
    /// the queue that carries the log itself).
    pub fn spawn(sink: Sink, limit: usize, name: &str, report: bool) -> io::Result<OutputQueue> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queued: Vec::with_capacity(BUFFER_CAPACITY),
                in_flight: 0,
                writer_idle: false,
                producers_paused: false,
                drain_waited: false,
                queued_total: 0,
                taken_total: 0,
                reopen_at: None,
                closed: None,
                shutdown: false,
                wakers: Vec::new(),
            }),
            work: Condvar::new(),
            pending: AtomicUsize::new(0),
            written: AtomicU64::new(0),
            limit: limit.max(1),
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
        let started = thread::Builder::new()
            .name(name)
            .spawn(move || write_forever(&shared, sink, report));
        match started {
            Ok(_) => self.shared.started.store(true, Ordering::Release),
            // Nothing will be written: the queue fills, and backpressure or
            // the drop policy takes over, as with a reader that never reads.
            Err(err) => log::error!("cannot start the output writer: {}", os_reason(&err)),
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

    /// Hands `staged` to the writer; `staged` comes back empty (with the
    /// capacity of a buffer the writer has finished with, when one is free).
    /// Returns the offset just past these bytes in everything ever queued,
    /// or `None` if nothing was queued.
    pub fn push(&self, staged: &mut Vec<u8>) -> Option<u64> {
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
        if state.queued.is_empty() {
            std::mem::swap(&mut state.queued, staged);
            if staged.capacity() > SHRINK_ABOVE {
                *staged = Vec::with_capacity(BUFFER_CAPACITY);
            }
        } else {
            state.queued.extend_from_slice(staged);
            staged.clear();
        }
        state.queued_total += n as u64;
        self.shared.pending.fetch_add(n, Ordering::AcqRel);
        if state.writer_idle {
            state.writer_idle = false;
            self.shared.work.notify_one();
        }
        Some(state.queued_total)
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

    /// Waits up to `timeout` for everything queued to be written; `true` if
    /// it was. For the end of a program, not for a loop.
    pub fn wait_drained(&self, timeout: Duration) -> bool {
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
        // A running writer holds one reference; when only it and this handle
        // are left, no one can queue anything more: let it finish and end.
        let writer = usize::from(self.shared.started.load(Ordering::Acquire));
        if Arc::strong_count(&self.shared) <= 1 + writer {
            let mut state = self.shared.lock();
            state.shutdown = true;
            self.shared.work.notify_one();
        }
    }
}

/// The writer thread: take what is queued, write it, repeat.
fn write_forever(shared: &Shared, mut sink: Sink, report: bool) {
    let mut buffer: Vec<u8> = Vec::with_capacity(BUFFER_CAPACITY);
    let mut retry = RETRY_MIN;
    let mut failing = false;
    loop {
        // Take the next batch, or the part of it before a reopen mark.
        let reopen_now = {
            let mut state = shared.lock();
            loop {
                if state.reopen_at == Some(state.taken_total) {
                    break true;
                }
                if !state.queued.is_empty() {
                    break false;
                }
                if state.shutdown {
                    return;
                }
                state.writer_idle = true;
                state = shared
                    .work
                    .wait(state)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
        };
        if reopen_now {
            match sink.flush().and_then(|()| sink.reopen()) {
                Ok(()) => log::info!("output file reopened"),
                Err(err) => log::error!("cannot reopen the output file: {}", os_reason(&err)),
            }
            shared.lock().reopen_at = None;
            continue;
        }
        {
            let mut state = shared.lock();
            let before_mark = state
                .reopen_at
                .map(|mark| (mark - state.taken_total) as usize)
                .filter(|&n| n < state.queued.len());
            match before_mark {
                Some(n) => buffer.extend(state.queued.drain(..n)),
                None => std::mem::swap(&mut state.queued, &mut buffer),
            }
            state.taken_total += buffer.len() as u64;
            state.in_flight = buffer.len();
        }
        let mut written = 0;
        while written < buffer.len() {
            match sink.write(&buffer[written..]) {
                Ok(0) => {
                    // A sink that takes nothing will never take anything.
                    finish_closed(shared, Closed::BrokenPipe, &mut buffer);
                    break;
                }
                Ok(n) => {
                    written += n;
                    account(shared, n, false);
                    if failing {
                        if report {
                            log::warn!("output is being written again");
                        }
                        failing = false;
                        retry = RETRY_MIN;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if err.kind() == io::ErrorKind::BrokenPipe => {
                    finish_closed(shared, Closed::BrokenPipe, &mut buffer);
                    break;
                }
                Err(err) => {
                    if !failing && report {
                        log::error!(
                            "cannot write output: {}; keeping it and retrying",
                            os_reason(&err)
                        );
                    }
                    failing = true;
                    let state = shared.lock();
                    if state.shutdown {
                        return;
                    }
                    let _ = shared.work.wait_timeout(state, retry);
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
        }
        let _ = sink.flush();
        buffer.clear();
        if buffer.capacity() > SHRINK_ABOVE {
            buffer = Vec::with_capacity(BUFFER_CAPACITY);
        }
        account(shared, 0, true);
    }
}

/// `n` more bytes were written; `batch_done`: the batch is finished. Wakes
/// the loops if they wait for room or for the queue to empty.
fn account(shared: &Shared, n: usize, batch_done: bool) {
    let mut state = shared.lock();
    state.in_flight -= n.min(state.in_flight);
    if batch_done {
        state.in_flight = 0;
    }
    let pending = shared.pending.fetch_sub(n, Ordering::AcqRel) - n;
    shared.written.fetch_add(n as u64, Ordering::AcqRel);
    let room = pending <= shared.limit / 2;
    let waited = state.drain_waited && (batch_done || pending == 0);
    if (room && state.producers_paused) || waited {
        state.producers_paused &= !room;
        state.drain_waited &= !waited;
        wake_all(&state);
    }
}

/// The reader is gone: discard everything and tell the loops.
fn finish_closed(shared: &Shared, why: Closed, buffer: &mut Vec<u8>) {
    let mut state = shared.lock();
    state.closed = Some(why);
    state.queued = Vec::new();
    state.in_flight = 0;
    buffer.clear();
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
