//! After the first loop ends, while the others finish: signals still count.
//!
//! Signals reach one loop only, the first (it runs on the caller's thread).
//! With `--reactors 2` or more, that loop can end before the others: its own
//! clients are gone while another loop still drains a slow client, or
//! waits out `--grace` behind a stalled output. Were its signal handler
//! dropped with it, the promise "a second signal stops at once" would hold
//! only until then, and after it every `SIGTERM` would be caught and
//! ignored. So the first loop hands its signals back when it ends, and the
//! caller's thread stands by with them, in a `Poll` of its own, until every
//! other loop has ended:
//!
//! - `SIGINT`, `SIGTERM`: the server is already stopping (a loop ends only
//!   then), so this is the second signal: every loop stops now.
//! - `SIGHUP`: the output file is reopened, as a loop would; a loop still
//!   draining may print more.
//!
//! Each loop's thread counts itself out and wakes the stand-by as it ends
//! (even by a panic), so waiting takes no polling.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use mio::{Events, Interest, Poll, Token, Waker};

use super::event_loop::Signals;
use super::output::Output;
use super::shared::SharedRef;

const SIGNALS: Token = Token(0);
const LOOP_ENDED: Token = Token(1);

/// The caller's thread, standing by for signals until the other loops end.
pub(super) struct Standby {
    poll: Poll,
    ended: Arc<Ended>,
}

/// How many loops have ended, and the waker that says one more has.
struct Ended {
    count: AtomicUsize,
    waker: Waker,
}

/// Held by a loop's thread; dropped as it ends (returning or unwinding).
pub(super) struct LoopEnd(Arc<Ended>);

impl Drop for LoopEnd {
    fn drop(&mut self) {
        self.0.count.fetch_add(1, Ordering::AcqRel);
        if let Err(err) = self.0.waker.wake() {
            log::debug!("cannot wake the first thread: {err}");
        }
    }
}

impl Standby {
    pub fn new() -> io::Result<Standby> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), LOOP_ENDED)?;
        let ended = Arc::new(Ended {
            count: AtomicUsize::new(0),
            waker,
        });
        Ok(Standby { poll, ended })
    }

    /// For a loop's thread to hold until it ends.
    pub fn loop_end(&self) -> LoopEnd {
        LoopEnd(Arc::clone(&self.ended))
    }

    /// Serves `signals` (the first loop's, handed back, with its output
    /// for `SIGHUP`) until `loops` loop threads have ended.
    pub fn wait(
        mut self,
        loops: usize,
        mut signals: Option<Signals>,
        mut output: Output,
        shared: &SharedRef,
    ) {
        if let Some(signals) = &mut signals
            && let Err(err) = self
                .poll
                .registry()
                .register(signals, SIGNALS, Interest::READABLE)
        {
            log::warn!("cannot watch for signals while the other loops finish: {err}");
        }
        let mut events = Events::with_capacity(4);
        // Signals that came between the first loop's end and now are
        // pending already: looked at once before sleeping.
        serve_signals(signals.as_mut(), &mut output, shared);
        while self.ended.count.load(Ordering::Acquire) < loops {
            if let Err(err) = self.poll.poll(&mut events, None) {
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // Without a poll, at least the loops are joined.
                log::warn!("cannot watch for signals while the other loops finish: {err}");
                break;
            }
            if events.iter().any(|event| event.token() == SIGNALS) {
                serve_signals(signals.as_mut(), &mut output, shared);
            }
        }
    }
}

fn serve_signals(signals: Option<&mut Signals>, output: &mut Output, shared: &SharedRef) {
    let Some(signals) = signals else {
        return;
    };
    for signal in signals.pending() {
        if signal == signal_hook::consts::SIGHUP {
            if output.reopen() {
                log::info!("SIGHUP: reopening the output file");
            } else {
                log::info!("SIGHUP ignored: the output is not a file");
            }
            continue;
        }
        log::warn!("signal {signal} again: stopping now");
        shared.request_stop_now();
    }
}
