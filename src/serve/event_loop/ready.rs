//! Who is served again next turn, and the rule that each is served once.
//!
//! Readiness is edge-triggered: the kernel says "readable" once, when data
//! arrives, and never again for data that was already there. A socket whose
//! turn ended with data still queued (its read budget ran out, a listener's
//! accept budget ran out, a UDP socket's datagram budget ran out, or reading
//! just resumed after backpressure) will get no new event for it, so the
//! loop must remember it. This queue is that memory.
//!
//! Two rules live here and nowhere else:
//!
//! - **Once per entry.** A token is queued at most once, however many times
//!   it reports "more".
//! - **Once per turn.** A token that an event already served this turn is not
//!   served again from the queue in the same turn (that is what lets a
//!   flooding client take one budget per turn, not two): if that serving
//!   left more behind, it waits for the next turn.
//!
//! The queue knows tokens, not sockets; the loop maps each back to a
//! connection, a listener or a UDP socket.

use mio::Token;

use crate::serve::tokens::Slot;

/// What the queue remembers about one token, in 4 bytes (every connection
/// has one): whether it is queued, whether its last serving left more, and
/// the turn of that serving, modulo 2^30. The turn only tells whether a
/// queued token was served by an event this very turn; a token queued
/// a billion turns after its last serving is, at worst, served one turn
/// later.
#[derive(Debug, Clone, Copy, Default)]
struct Mark(u32);

impl Mark {
    const QUEUED: u32 = 1 << 31;
    const MORE: u32 = 1 << 30;
    const TURN: u32 = Self::MORE - 1;

    fn queued(self) -> bool {
        self.0 & Self::QUEUED != 0
    }

    fn more(self) -> bool {
        self.0 & Self::MORE != 0
    }

    fn served_turn(self) -> u32 {
        self.0 & Self::TURN
    }

    fn set_queued(&mut self, queued: bool) {
        self.0 = (self.0 & !Self::QUEUED) | if queued { Self::QUEUED } else { 0 };
    }

    fn set_more(&mut self, more: bool) {
        self.0 = (self.0 & !Self::MORE) | if more { Self::MORE } else { 0 };
    }

    fn set_served_turn(&mut self, turn: u32) {
        self.0 = (self.0 & !Self::TURN) | (turn & Self::TURN);
    }
}

/// Tokens to serve again, in the order they were queued.
#[derive(Debug, Default)]
pub(crate) struct ReadyQueue {
    /// The turn, modulo 2^30 (see `Mark`).
    turn: u32,
    queue: Vec<Token>,
    /// The batch being served, kept to reuse its allocation.
    spare: Vec<Token>,
    /// Marks of connection tokens, by slab key.
    connections: Vec<Mark>,
    /// Marks of listener and UDP tokens (few, fixed), by their slot.
    sources: Vec<(Slot, Mark)>,
}

impl ReadyQueue {
    /// A new turn of the loop begins.
    pub fn begin_turn(&mut self) {
        self.turn = self.turn.wrapping_add(1) & Mark::TURN;
    }

    /// Nothing waits: `poll` may sleep.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// `token` was served this turn; `more` says its serving left something
    /// behind that no event will announce, so it is queued for next turn.
    pub fn served(&mut self, token: Token, more: bool) {
        let turn = self.turn;
        let Some(mark) = self.mark(token) else {
            return;
        };
        mark.set_served_turn(turn);
        mark.set_more(more);
        if more && !mark.queued() {
            mark.set_queued(true);
            self.queue.push(token);
        }
    }

    /// `token` has work that no event will announce (reading resumed after
    /// backpressure), though it was not served this turn: queue it.
    pub fn wake(&mut self, token: Token) {
        let Some(mark) = self.mark(token) else {
            return;
        };
        mark.set_more(true);
        if !mark.queued() {
            mark.set_queued(true);
            self.queue.push(token);
        }
    }

    /// Takes the tokens queued so far; serve each for which
    /// [`claim`](Self::claim) says yes, then hand the batch back with
    /// [`finish`](Self::finish). Tokens queued meanwhile wait for the next
    /// batch.
    pub fn take(&mut self) -> Vec<Token> {
        let mut batch = std::mem::take(&mut self.spare);
        std::mem::swap(&mut batch, &mut self.queue);
        batch
    }

    /// Whether to serve `token` from the batch now. Not if an event already
    /// served it this turn: then it is queued again only if that serving
    /// left more behind.
    pub fn claim(&mut self, token: Token) -> bool {
        let turn = self.turn;
        let Some(mark) = self.mark(token) else {
            return false;
        };
        if !mark.queued() {
            return false; // A duplicate left by a closed and reused slot.
        }
        mark.set_queued(false);
        if mark.served_turn() == turn & Mark::TURN {
            if mark.more() {
                mark.set_queued(true);
                self.queue.push(token);
            }
            return false;
        }
        true
    }

    /// Returns a served batch's allocation.
    pub fn finish(&mut self, mut batch: Vec<Token>) {
        batch.clear();
        self.spare = batch;
    }

    /// `token`'s socket closed: whatever was remembered about it is void (its
    /// slot may be reused by a new connection).
    pub fn forget(&mut self, token: Token) {
        if let Some(mark) = self.mark(token) {
            *mark = Mark::default();
        }
    }

    #[inline]
    fn mark(&mut self, token: Token) -> Option<&mut Mark> {
        // Every read of a known client comes here: keep it short.
        if let Slot::Connection(key) = Slot::of(token)
            && key < self.connections.len()
        {
            return self.connections.get_mut(key);
        }
        self.mark_slowly(token)
    }

    /// A client seen for the first time, or another source.
    #[cold]
    fn mark_slowly(&mut self, token: Token) -> Option<&mut Mark> {
        match Slot::of(token) {
            Slot::Connection(key) => {
                if key >= self.connections.len() {
                    self.connections.resize(key + 1, Mark::default());
                }
                self.connections.get_mut(key)
            }
            Slot::Waker | Slot::Signals | Slot::Lingering(_) => None,
            slot => {
                let at = match self.sources.iter().position(|(s, _)| *s == slot) {
                    Some(at) => at,
                    None => {
                        self.sources.push((slot, Mark::default()));
                        self.sources.len() - 1
                    }
                };
                self.sources.get_mut(at).map(|(_, mark)| mark)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::tokens;

    /// Serves one batch, returning the tokens that were claimed.
    fn serve_batch(queue: &mut ReadyQueue) -> Vec<Token> {
        let batch = queue.take();
        let claimed = batch.iter().copied().filter(|&t| queue.claim(t)).collect();
        queue.finish(batch);
        claimed
    }

    #[test]
    fn empty_then_more_queues_once() {
        let mut queue = ReadyQueue::default();
        assert!(queue.is_empty());
        queue.begin_turn();
        queue.served(Token(7), true);
        queue.served(Token(7), true);
        assert!(!queue.is_empty());
        queue.begin_turn();
        assert_eq!(serve_batch(&mut queue), vec![Token(7)]);
        assert!(queue.is_empty());
    }

    #[test]
    fn served_by_an_event_this_turn_waits_for_the_next() {
        let mut queue = ReadyQueue::default();
        queue.begin_turn();
        queue.served(Token(3), true);
        queue.begin_turn();
        // An event reads it again this turn, and leaves more behind.
        queue.served(Token(3), true);
        assert_eq!(serve_batch(&mut queue), vec![]);
        assert!(!queue.is_empty(), "still queued for the next turn");
        queue.begin_turn();
        assert_eq!(serve_batch(&mut queue), vec![Token(3)]);
    }

    #[test]
    fn served_by_an_event_that_drained_it_is_dropped() {
        let mut queue = ReadyQueue::default();
        queue.begin_turn();
        queue.served(Token(3), true);
        queue.begin_turn();
        queue.served(Token(3), false);
        assert_eq!(serve_batch(&mut queue), vec![]);
        assert!(queue.is_empty());
    }

    #[test]
    fn order_is_kept_and_listeners_share_the_rules() {
        let mut queue = ReadyQueue::default();
        let listener = tokens::listener_token(0);
        let udp = tokens::datagram_token(1);
        queue.begin_turn();
        queue.served(Token(9), true);
        queue.served(listener, true);
        queue.served(udp, true);
        queue.served(listener, true);
        queue.begin_turn();
        assert_eq!(serve_batch(&mut queue), vec![Token(9), listener, udp]);
    }

    #[test]
    fn a_woken_token_is_served_in_the_same_turn() {
        let mut queue = ReadyQueue::default();
        queue.begin_turn();
        queue.wake(Token(5));
        queue.wake(Token(5));
        assert_eq!(serve_batch(&mut queue), vec![Token(5)]);
        assert!(queue.is_empty());
    }

    #[test]
    fn a_forgotten_token_is_not_served() {
        let mut queue = ReadyQueue::default();
        queue.begin_turn();
        queue.served(Token(4), true);
        queue.forget(Token(4));
        queue.begin_turn();
        assert_eq!(serve_batch(&mut queue), vec![]);
        assert!(queue.is_empty());
    }

    #[test]
    fn waker_and_signals_are_never_queued() {
        let mut queue = ReadyQueue::default();
        queue.begin_turn();
        queue.served(tokens::WAKER, true);
        queue.served(tokens::SIGNALS, true);
        assert!(queue.is_empty());
    }
}
