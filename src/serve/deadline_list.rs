//! Idle deadlines.
//!
//! The notes time out one client with `select([conn], [], [], TIMEOUT)`. We
//! serve many, so each carries its own deadline and the reactor sleeps until
//! the nearest one: an idle server makes no system calls at all.
//!
//! Every connection shares the same time-out, so ordering connections by
//! their last activity also orders them by deadline. A doubly linked list
//! threaded through a `Vec` indexed by connection key keeps that order:
//! activity moves a connection to the back, expiry pops from the front, and
//! both are O(1). A wake-up looks only at the front, never at every
//! connection, and there is no timer wheel to tick.
//!
//! # Lazy touches
//!
//! A busy client is touched on every read, thousands of times a second, and
//! moving it to the back each time is most of what this list would cost.
//! But `poll` itself sleeps in whole milliseconds (mio rounds a time-out
//! up), so a deadline finer than that buys nothing. Deadlines are kept in
//! whole milliseconds, rounded *up*: a touch within the same millisecond
//! as the entry's deadline already says changes nothing, and leaves the
//! entry where it is. A busy client then moves at most once a millisecond
//! (at 100,000 reads a second, one touch in a hundred), the list stays in
//! order (every move goes to the back, with the latest deadline), no entry
//! grows, and nothing expires early: at most a millisecond late, which the
//! rounding of `poll` would cost anyway. (nginx gets the same saving with
//! `timer_resolution`; the Linux timer wheel by coarser slots far out.)
//!
//! Even working out that millisecond's deadline (time since the epoch, two
//! roundings) would cost more than the rest of a touch, so it is worked out
//! once a millisecond: the list remembers until when the last deadline it
//! computed holds, and a touch before then only compares two instants and
//! the entry's deadline with the remembered one.
//!
//! `now` is always passed in, never read here, so tests move time without
//! sleeping.

use std::time::{Duration, Instant};

/// No key: the end of the list.
const NIL: u32 = u32::MAX;

/// A node's deadline while it is not in the list.
const UNLINKED: u64 = u64::MAX;

/// Deadlines are rounded up to a multiple of this (see "Lazy touches").
const RESOLUTION_NANOS: u64 = 1_000_000;

/// `nanos` rounded up to a whole multiple of `RESOLUTION_NANOS`.
fn round_up(nanos: u64) -> u64 {
    nanos
        .div_ceil(RESOLUTION_NANOS)
        .saturating_mul(RESOLUTION_NANOS)
}

/// One key's place in the list: 16 bytes, since every connection has one.
/// Links are `u32` (a slab key never comes near 2^32) and the deadline is
/// nanoseconds since the list's epoch (584 years fit).
#[derive(Debug, Clone, Copy)]
struct Node {
    prev: u32,
    next: u32,
    /// Nanoseconds after `epoch`; `UNLINKED` while not in the list.
    deadline: u64,
}

impl Default for Node {
    fn default() -> Self {
        Node {
            prev: NIL,
            next: NIL,
            deadline: UNLINKED,
        }
    }
}

/// Keys (connection slots) ordered by deadline, all with one time-out.
#[derive(Debug)]
pub struct DeadlineList {
    /// The time-out, in nanoseconds (saturating: 584 years and more are
    /// "never").
    timeout_nanos: u64,
    nodes: Vec<Node>,
    head: u32,
    tail: u32,
    len: usize,
    /// Deadlines count from here: the first touch's time.
    epoch: Option<Instant>,
    /// The deadline every touch up to an instant gives: the end of the
    /// millisecond of the last computed touch, and that touch's deadline
    /// (see "Lazy touches"). Computed once a millisecond, not per touch.
    current: Option<(Instant, u64)>,
}

impl DeadlineList {
    /// An empty list whose entries expire `timeout` after their last touch.
    pub fn new(timeout: Duration) -> Self {
        DeadlineList {
            timeout_nanos: u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX),
            nodes: Vec::new(),
            head: NIL,
            tail: NIL,
            len: 0,
            epoch: None,
            current: None,
        }
    }

    /// How many keys are waiting.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no key is waiting.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `key` is waiting.
    pub fn contains(&self, key: usize) -> bool {
        self.nodes
            .get(key)
            .is_some_and(|node| node.deadline != UNLINKED)
    }

    /// Activity on `key` at `now`: its deadline becomes `now + timeout`
    /// (rounded up to the millisecond), and it moves to the back (inserted
    /// if it was not there), unless its deadline already says as much.
    ///
    /// Returns whether `key` is now the only entry, so its deadline is the
    /// list's earliest where no deadline was before: the one case in which
    /// a touch brings the list's next deadline forward.
    #[inline]
    pub fn touch(&mut self, key: usize, now: Instant) -> bool {
        // The common touch, a busy client's, checked inline: its deadline
        // already says this millisecond, so nothing moves.
        if let Some((until, deadline)) = self.current
            && now <= until
            && self
                .nodes
                .get(key)
                .is_some_and(|node| node.deadline == deadline)
        {
            return false;
        }
        self.move_to_back(key, now)
    }

    /// A touch that may move `key`: to the back, with a new deadline.
    #[inline(never)]
    fn move_to_back(&mut self, key: usize, now: Instant) -> bool {
        let Ok(link) = u32::try_from(key) else {
            return false; // Beyond any slab this server can have: never tracked.
        };
        if link == NIL {
            return false;
        }
        if key >= self.nodes.len() {
            self.nodes.resize(key + 1, Node::default());
        }
        let deadline = match self.current {
            Some((until, deadline)) if now <= until => deadline,
            _ => self.deadline_at(now),
        };
        if self.nodes[key].deadline == deadline {
            return false; // Touched this millisecond already: nothing moves.
        }
        self.unlink(key);
        let tail = self.tail;
        self.nodes[key] = Node {
            prev: tail,
            next: NIL,
            deadline,
        };
        match tail {
            NIL => self.head = link,
            tail => self.nodes[tail as usize].next = link,
        }
        self.tail = link;
        self.len += 1;
        self.len == 1
    }

    /// The deadline of a touch at `now`, and of every touch until the end
    /// of its millisecond (remembered in `current`): that millisecond's end
    /// plus the time-out, rounded up. Never early for any of them, and at
    /// most a millisecond late (with a time-out in whole milliseconds).
    /// Out of line: once a millisecond, it should not weigh on every touch.
    #[cold]
    #[inline(never)]
    fn deadline_at(&mut self, now: Instant) -> u64 {
        // A busy client's touches run on into the next millisecond: both
        // its end and the deadline are one step on (one addition, where
        // working them out again from the epoch costs a hundred and more
        // instructions).
        let step = Duration::from_nanos(RESOLUTION_NANOS);
        if let Some((until, deadline)) = self.current
            && until < now
            && let Some(next) = until.checked_add(step)
            && now <= next
        {
            let deadline = deadline.saturating_add(RESOLUTION_NANOS).min(UNLINKED - 1);
            self.current = Some((next, deadline));
            return deadline;
        }
        let epoch = *self.epoch.get_or_insert(now);
        let since = now.saturating_duration_since(epoch);
        let since_nanos = since
            .as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(since.subsec_nanos()));
        let until_nanos = round_up(since_nanos);
        let deadline = round_up(until_nanos.saturating_add(self.timeout_nanos)).min(UNLINKED - 1);
        self.current = epoch
            .checked_add(Duration::from_nanos(until_nanos))
            .map(|until| (until, deadline));
        deadline
    }

    /// The instant a node's deadline stands for.
    fn instant(&self, node: &Node) -> Option<Instant> {
        let epoch = self.epoch?;
        Some(epoch + Duration::from_nanos(node.deadline))
    }

    /// Stops tracking `key` (it closed, or no longer needs a deadline).
    pub fn remove(&mut self, key: usize) {
        if key < self.nodes.len() {
            self.unlink(key);
        }
    }

    /// The earliest deadline, if any key is waiting.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.head == NIL {
            return None;
        }
        self.instant(&self.nodes[self.head as usize])
    }

    /// Removes and returns a key whose deadline is at or before `now`, oldest
    /// first; `None` once every remaining deadline is in the future.
    pub fn pop_expired(&mut self, now: Instant) -> Option<usize> {
        let head = self.head;
        if head == NIL {
            return None;
        }
        let due = self.instant(&self.nodes[head as usize])?;
        if due > now {
            return None;
        }
        self.unlink(head as usize);
        Some(head as usize)
    }

    fn unlink(&mut self, key: usize) {
        let Node {
            prev,
            next,
            deadline,
        } = self.nodes[key];
        if deadline == UNLINKED {
            return;
        }
        match prev {
            NIL => self.head = next,
            prev => self.nodes[prev as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            next => self.nodes[next as usize].prev = prev,
        }
        self.nodes[key] = Node::default();
        self.len -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    // ---- empty ----

    #[test]
    fn touched_keys_expire_oldest_first() {
        let mut idle = DeadlineList::new(Duration::from_secs(5));
        let start = Instant::now();
        idle.touch(7, start);
        idle.touch(3, start + Duration::from_secs(1));
        assert_eq!(idle.next_deadline(), Some(start + Duration::from_secs(5)));
        assert_eq!(idle.pop_expired(start + Duration::from_secs(5)), Some(7));
        assert_eq!(idle.pop_expired(start + Duration::from_secs(5)), None);
    }

    #[test]
    fn empty_has_no_deadline() {
        let mut list = DeadlineList::new(secs(5));
        assert_eq!(list.next_deadline(), None);
        assert_eq!(list.pop_expired(Instant::now() + secs(100)), None);
        list.remove(42);
        assert!(list.is_empty());
    }

    // ---- waiting ----

    #[test]
    fn waiting_touch_moves_to_the_back() {
        let t0 = Instant::now();
        let mut list = DeadlineList::new(secs(5));
        list.touch(1, t0);
        list.touch(2, t0 + secs(1));
        list.touch(1, t0 + secs(2));
        assert_eq!(list.next_deadline(), Some(t0 + secs(6)));
        assert_eq!(list.pop_expired(t0 + secs(10)), Some(2));
        assert_eq!(list.pop_expired(t0 + secs(10)), Some(1));
        assert_eq!(list.len(), 0);
    }

    #[test]
    fn waiting_nothing_expires_early() {
        let t0 = Instant::now();
        let mut list = DeadlineList::new(secs(5));
        list.touch(0, t0);
        assert_eq!(
            list.pop_expired(t0 + secs(5) - Duration::from_nanos(1)),
            None
        );
        assert_eq!(list.pop_expired(t0 + secs(5)), Some(0));
    }

    #[test]
    fn waiting_touches_within_a_millisecond_move_nothing() {
        let t0 = Instant::now();
        let us = Duration::from_micros;
        let mut list = DeadlineList::new(secs(5));
        assert!(
            list.touch(9, t0),
            "the first entry brings the deadline forward"
        );
        list.remove(9);
        // Deadlines 5000.1 ms and 5000.2 ms after t0: both 5001 ms.
        assert!(list.touch(1, t0 + us(100)));
        assert!(!list.touch(2, t0 + us(200)));
        // Key 1 touched again within that millisecond: it stays in front.
        assert!(!list.touch(1, t0 + us(700)));
        assert_eq!(list.pop_expired(t0 + secs(5) + us(1000)), Some(1));
        list.touch(1, t0 + us(700));
        // A millisecond later, key 1 moves behind key 2.
        list.touch(1, t0 + us(1500));
        assert_eq!(list.pop_expired(t0 + secs(6)), Some(2));
        assert_eq!(list.pop_expired(t0 + secs(6)), Some(1));
    }

    #[test]
    fn waiting_a_deadline_is_never_early_and_at_most_a_millisecond_late() {
        let t0 = Instant::now();
        let mut list = DeadlineList::new(secs(5));
        list.touch(0, t0);
        let touched = t0 + Duration::from_micros(1500);
        list.touch(0, touched);
        let due = list.next_deadline().expect("a deadline");
        assert!(due >= touched + secs(5), "{:?}", due - touched);
        assert!(due <= touched + secs(5) + Duration::from_millis(1));
        assert_eq!(
            list.pop_expired(touched + secs(5) - Duration::from_nanos(1)),
            None
        );
        assert_eq!(list.pop_expired(due), Some(0));
    }

    #[test]
    fn waiting_remove_from_the_middle() {
        let t0 = Instant::now();
        let mut list = DeadlineList::new(secs(1));
        for key in 0..3 {
            list.touch(key, t0);
        }
        list.remove(1);
        assert!(!list.contains(1));
        let order: Vec<_> = std::iter::from_fn(|| list.pop_expired(t0 + secs(9))).collect();
        assert_eq!(order, [0, 2]);
    }

    proptest! {
        /// A touch's deadline is the end of its millisecond plus the
        /// time-out, rounded up, counted from the first touch: the same
        /// whether it was worked out from the epoch or stepped on from the
        /// millisecond before.
        #[test]
        fn a_touch_deadline_is_worked_out_from_the_epoch(
            steps in proptest::collection::vec(0u64..2_500, 1..300),
            timeout_micros in prop_oneof![Just(5_000_000u64), 1u64..10_000],
        ) {
            let t0 = Instant::now();
            let timeout = Duration::from_micros(timeout_micros);
            let mut list = DeadlineList::new(timeout);
            let mut since = 0u64;
            list.touch(0, t0);
            for step in steps {
                since += step * 1_000; // nanoseconds, microsecond steps
                list.touch(0, t0 + Duration::from_nanos(since));
                let timeout_nanos = u64::try_from(timeout.as_nanos()).unwrap();
                let expected = round_up(round_up(since) + timeout_nanos);
                prop_assert_eq!(list.nodes[0].deadline, expected, "at {} ns", since);
            }
        }

        /// Against a naive model: pops come out in deadline order and match
        /// exactly the keys whose deadline has passed.
        #[test]
        fn matches_a_naive_model(ops in proptest::collection::vec((0u8..3, 0usize..20, 0u64..10), 0..200)) {
            let t0 = Instant::now();
            let mut list = DeadlineList::new(secs(3));
            let mut model: Vec<(usize, Instant, u64)> = Vec::new(); // key, deadline, sequence
            let mut clock = 0u64;
            for (seq, (op, key, advance)) in ops.into_iter().enumerate() {
                clock += advance;
                let now = t0 + secs(clock);
                match op {
                    0 => {
                        list.touch(key, now);
                        model.retain(|m| m.0 != key);
                        model.push((key, now + secs(3), seq as u64));
                    }
                    1 => {
                        list.remove(key);
                        model.retain(|m| m.0 != key);
                    }
                    _ => {
                        while let Some(k) = list.pop_expired(now) {
                            // Among equal deadlines, any order will do.
                            let earliest = model.iter().map(|m| m.1).min();
                            let popped = model.iter().find(|m| m.0 == k).copied();
                            prop_assert_eq!(popped.map(|m| m.1), earliest);
                            prop_assert!(popped.unwrap().1 <= now);
                            model.retain(|m| m.0 != k);
                        }
                        prop_assert!(model.iter().all(|m| m.1 > now));
                    }
                }
                prop_assert_eq!(list.len(), model.len());
                prop_assert_eq!(list.next_deadline(), model.iter().map(|m| m.1).min());
            }
        }
    }
}
