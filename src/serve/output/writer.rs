//! The output's writer thread: it takes what the loops queued and writes it
//! with plain blocking writes, so that no loop ever waits for the output
//! (why a thread: see [`queue`](super::queue)).
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

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::MutexGuard;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::queue::{BUFFERS_PER_WRITE, Closed, SHRINK_ABOVE, Shared, State};
use crate::failpoint::failpoint;
use crate::net::os_reason;

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
pub(super) fn write_forever(shared: &Shared, mut sink: Sink, report: bool) {
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
pub(super) fn finish_closed(shared: &Shared, why: Closed, failure: Option<String>) {
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
