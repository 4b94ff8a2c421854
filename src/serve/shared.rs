//! What the event loops of one server share: very little, on purpose.
//!
//! With `--reactors N` each loop owns its `Poll`, its connections, its
//! deadlines and its buffers, and a connection lives its whole life on one
//! loop: nothing on the way from a socket to a printed line takes a lock.
//! What makes N loops one server is this short list, touched only on rare
//! paths (accept, close, stop, `stats`):
//!
//! - the stop requests (graceful, then immediate), which any loop, a signal
//!   or the handle may raise, and every loop must see;
//! - the count of open connections, so `--max-conns` bounds the server, not
//!   each loop;
//! - each loop's published counters, summed for `stats` and the handle;
//! - each loop's `Waker`, and an inbox for connections handed to it by the
//!   loop that accepted them (Unix sockets and inherited listeners, which
//!   cannot be bound once per loop).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use mio::Waker;

use crate::net::stream::{Peer, Stream};
use crate::serve::stats::{Counters, SharedCounters};

/// The state every loop of one server sees.
#[derive(Debug)]
pub(crate) struct Shared {
    stop: AtomicBool,
    stop_now: AtomicBool,
    /// Connections open (or accepted and on their way to a loop) right now.
    open: AtomicUsize,
    /// `--max-conns`, for the whole server.
    pub max_conns: usize,
    wakers: Vec<Arc<Waker>>,
    counters: Vec<SharedCounters>,
    inboxes: Vec<Mutex<Inbox>>,
    /// Loops that may still hand clients to others: those with a listener
    /// of their own, until they have closed it at stop. No loop ends while
    /// one remains, or a client on its way would be lost.
    handing: AtomicUsize,
}

impl Shared {
    /// State for loops woken by `wakers` (one per loop, by loop index), of
    /// which `handing` hand clients to the others.
    pub fn new(wakers: Vec<Arc<Waker>>, max_conns: usize, handing: usize) -> Self {
        let loops = wakers.len();
        Shared {
            stop: AtomicBool::new(false),
            stop_now: AtomicBool::new(false),
            open: AtomicUsize::new(0),
            max_conns,
            wakers,
            counters: (0..loops).map(|_| SharedCounters::default()).collect(),
            inboxes: (0..loops).map(|_| Mutex::new(Inbox::default())).collect(),
            handing: AtomicUsize::new(handing),
        }
    }

    /// How many loops there are.
    pub fn loops(&self) -> usize {
        self.wakers.len()
    }

    /// Every loop is to stop gracefully.
    pub fn request_stop(&self) {
        if !self.stop.swap(true, Ordering::SeqCst) {
            self.wake_all();
        }
    }

    /// Every loop is to stop now, without waiting for output.
    pub fn request_stop_now(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if !self.stop_now.swap(true, Ordering::SeqCst) {
            self.wake_all();
        }
    }

    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    pub fn stop_now_requested(&self) -> bool {
        self.stop_now.load(Ordering::SeqCst)
    }

    /// Admits one more connection if fewer than `--max-conns` are open,
    /// counting it from now; `false` if the server is full.
    ///
    /// The check and the count are one atomic step: with several loops
    /// accepting at once, a check followed by a separate increment lets
    /// two loops both see `max - 1` and both admit.
    pub fn try_open(&self) -> bool {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.max_conns).then_some(open + 1)
            })
            .is_ok()
    }

    /// A connection closed (or never made it to a loop). Never below zero:
    /// a miscount must not turn into "server full" for ever.
    pub fn closed(&self) {
        let _ = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                open.checked_sub(1)
            });
    }

    /// Loop `id` publishes its counters (once per turn).
    pub fn publish(&self, id: usize, counters: &Counters) {
        if let Some(slot) = self.counters.get(id) {
            slot.publish(counters);
        }
    }

    /// Every loop's counters as last published, with loop `id`'s own live
    /// counters in place of its published ones, when given: one copy per
    /// loop, read once, so that totals and per-loop figures computed from
    /// it agree.
    pub fn by_loop(&self, live: Option<(usize, &Counters)>) -> Vec<Counters> {
        self.counters
            .iter()
            .enumerate()
            .map(|(index, slot)| match live {
                Some((id, counters)) if id == index => *counters,
                _ => slot.snapshot(),
            })
            .collect()
    }

    /// Every loop's counters (as in [`by_loop`](Self::by_loop)), summed.
    pub fn totals(&self, live: Option<(usize, &Counters)>) -> Counters {
        Counters::sum(&self.by_loop(live))
    }

    /// Hands an accepted connection to loop `to`, and wakes it; gives it
    /// back if that loop takes no more (it ended, or failed).
    pub fn hand_off(&self, to: usize, stream: Stream, peer: Peer) -> Result<(), (Stream, Peer)> {
        let Some(inbox) = self.inboxes.get(to) else {
            return Err((stream, peer));
        };
        {
            let mut inbox = lock(inbox);
            if inbox.closed {
                return Err((stream, peer));
            }
            inbox.clients.push((stream, peer));
        }
        self.wake(to);
        Ok(())
    }

    /// A loop that hands clients to others has closed its listeners (or
    /// failed): it hands no more. The last one wakes every loop, since they
    /// may be waiting for it to end.
    pub fn done_handing(&self) {
        let was = self
            .handing
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        if was == Ok(1) {
            self.wake_all();
        }
    }

    /// Whether a client may still be handed to some loop.
    pub fn handing(&self) -> bool {
        self.handing.load(Ordering::Acquire) > 0
    }

    /// Takes the connections handed to loop `id`, into `into`.
    pub fn take_handed(&self, id: usize, into: &mut Vec<(Stream, Peer)>) {
        if let Some(inbox) = self.inboxes.get(id) {
            into.append(&mut lock(inbox).clients);
        }
    }

    /// Loop `id` takes no more clients (it ends, or it failed): what was
    /// handed to it and not yet taken is returned, for the caller to serve
    /// elsewhere or close.
    pub fn close_inbox(&self, id: usize) -> Vec<(Stream, Peer)> {
        self.inboxes.get(id).map_or_else(Vec::new, |inbox| {
            let mut inbox = lock(inbox);
            inbox.closed = true;
            std::mem::take(&mut inbox.clients)
        })
    }

    fn wake(&self, id: usize) {
        if let Some(waker) = self.wakers.get(id)
            && let Err(err) = waker.wake()
        {
            log::error!("cannot wake event loop {}: {err}", id + 1);
        }
    }

    fn wake_all(&self) {
        for id in 0..self.wakers.len() {
            self.wake(id);
        }
    }
}

/// Clients handed to one loop by another, not yet taken.
#[derive(Debug, Default)]
struct Inbox {
    clients: Vec<(Stream, Peer)>,
    /// The loop takes no more: it ended, or failed.
    closed: bool,
}

/// A lock that a panic elsewhere does not poison for good: the data under
/// it (a list of clients) is whole at every step.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Shared by every loop and the handle.
pub(crate) type SharedRef = Arc<Shared>;
