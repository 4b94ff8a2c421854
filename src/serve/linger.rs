//! Closing so that the last words arrive: a bounded lingering close.
//!
//! When the server ends a conversation on purpose, it has just told the
//! client why: `error: server full`, `error: line too long`, or the replies
//! owed before a `disconnect`. But closing a socket while bytes the client
//! sent are still unread makes the kernel answer with a reset (RFC 1122,
//! 4.2.2.13), and a reset can overtake those last words: the client's next
//! read fails instead of reading them, depending on timing.
//!
//! So, as nginx's `lingering_close` does, such a socket is not closed at
//! once. Its writing side is shut down (the client reads our last bytes,
//! then EOF), and what the client still sends is read and thrown away until
//! it closes too, or a bound is hit: [`LINGER_TIME`] in all, [`LINGER_BYTES`]
//! read, [`MAX_LINGERING`] sockets at once. Only then is it closed. Nothing
//! here blocks: the sockets are registered with the loop's `Poll` under
//! tokens of their own, and their deadlines are kept like idle ones.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use mio::{Interest, Registry};
use slab::Slab;

use crate::net::stream::Stream;
use crate::serve::deadline_list::DeadlineList;
use crate::serve::tokens;

/// The longest a socket lingers before it is closed anyway.
pub(crate) const LINGER_TIME: Duration = Duration::from_secs(2);

/// The most read (and thrown away) from one lingering socket.
pub(crate) const LINGER_BYTES: usize = 1024 * 1024;

/// The most sockets lingering at once in one loop; beyond, a socket is
/// closed at once (each holds a file descriptor).
const MAX_LINGERING: usize = 256;

/// One socket on its way out.
#[derive(Debug)]
struct Entry {
    stream: Stream,
    /// Bytes read from it since it began to linger.
    drained: usize,
}

/// The sockets of one loop that are lingering.
#[derive(Debug)]
pub(crate) struct Lingering {
    sockets: Slab<Entry>,
    deadlines: DeadlineList,
}

impl Default for Lingering {
    fn default() -> Self {
        Lingering {
            sockets: Slab::new(),
            deadlines: DeadlineList::new(LINGER_TIME),
        }
    }
}

impl Lingering {
    /// Shuts down `stream`'s writing side and lets it linger (or closes it
    /// at once if too many already do, or it cannot be registered).
    pub fn start(&mut self, mut stream: Stream, registry: &Registry, now: Instant) {
        if let Err(err) = stream.shutdown_write() {
            log::debug!("lingering close: shutdown failed: {err}");
            return; // Gone already: nothing to linger for.
        }
        if self.sockets.len() >= MAX_LINGERING {
            return; // Dropped: closed at once.
        }
        let entry = self.sockets.vacant_entry();
        let key = entry.key();
        if let Err(err) = registry.register(
            &mut stream,
            tokens::lingering_token(key),
            Interest::READABLE,
        ) {
            log::debug!("lingering close: cannot register: {err}");
            return;
        }
        entry.insert(Entry { stream, drained: 0 });
        self.deadlines.touch(key, now);
    }

    /// The lingering socket `key` is readable: read and discard until the
    /// client closes (then close it), the kernel has nothing more, or the
    /// byte bound is hit (then close it anyway).
    pub fn on_readable(&mut self, key: usize, scratch: &mut [u8], registry: &Registry) {
        let Some(entry) = self.sockets.get_mut(key) else {
            return; // Closed earlier in this batch.
        };
        let done = loop {
            if entry.drained >= LINGER_BYTES {
                break true;
            }
            match entry.stream.read(scratch) {
                Ok(0) => break true,
                Ok(n) => entry.drained += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break false,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break true, // Reset: nothing to wait for.
            }
        };
        if done {
            self.close(key, registry);
        }
    }

    /// Closes the sockets that lingered for `LINGER_TIME`.
    pub fn expire(&mut self, now: Instant, registry: &Registry) {
        while let Some(key) = self.deadlines.pop_expired(now) {
            self.close(key, registry);
        }
    }

    /// When the next lingering socket is due to be closed.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.next_deadline()
    }

    fn close(&mut self, key: usize, registry: &Registry) {
        self.deadlines.remove(key);
        if let Some(mut entry) = self.sockets.try_remove(key) {
            let _ = registry.deregister(&mut entry.stream);
            // Dropping the stream closes it.
        }
    }
}
