//! What the soak's clients know about the lines they sent, and the check of
//! the server's output against it.
//!
//! A client cannot always know whether a line arrived: a reset may drop
//! what was still in flight. So each line is filed by what the client saw:
//! a line whose echo came back (or that ended a stream the server then
//! closed with EOF) arrived, and is printed exactly once; a line that may
//! have died with a reset is printed at most once; an unfinished last line
//! that died with a reset may be printed as far as it arrived (a non-empty
//! prefix), at most once. Nothing else may be printed: a piece of a line
//! the client finished is a line nobody sent.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::clients::IDLE_TIMEOUT;

/// One connection's lines, in the order sent.
pub struct Script {
    /// Each line's text (without terminator) and its bytes on the wire.
    pub lines: Vec<(String, Vec<u8>)>,
}

impl Script {
    pub fn bytes(&self) -> Vec<u8> {
        self.lines.iter().flat_map(|(_, w)| w.clone()).collect()
    }
}

/// The longest silence of a client: the most time between connecting or
/// sending and sending again. Only a client silent for the idle time-out
/// may be cut short by it; any other early close is the server's fault.
pub struct Pace {
    last: Instant,
    pub longest: Duration,
}

impl Pace {
    pub fn start() -> Pace {
        Pace {
            last: Instant::now(),
            longest: Duration::ZERO,
        }
    }

    /// About to send (bytes or a FIN).
    pub fn send(&mut self) {
        let now = Instant::now();
        self.longest = self.longest.max(now - self.last);
        self.last = now;
    }

    /// Whether the client fell silent long enough for the idle time-out
    /// (its thread stalled on a busy machine). A tenth is allowed for bytes
    /// sent just as the deadline passed, read only after it.
    pub fn stalled(&self) -> bool {
        self.longest >= IDLE_TIMEOUT * 9 / 10
    }
}

/// What one client thread learned about the lines it sent.
#[derive(Default)]
pub struct Ledger {
    /// Lines that certainly reached the server: printed exactly once.
    pub must: Vec<String>,
    /// Lines that may have been lost with a reset: printed at most once.
    pub maybe: Vec<String>,
    /// Unfinished last lines that died with a reset: any non-empty prefix
    /// may be printed, at most once.
    pub fragments: Vec<String>,
    /// Peers whose connection ended early because the client thread
    /// stalled for the idle time-out: the server must say `idle` for them.
    pub interrupted: Vec<String>,
    pub connections: usize,
    pub by_kind: HashMap<&'static str, usize>,
}

impl Ledger {
    pub fn merge(&mut self, part: Ledger) {
        self.must.extend(part.must);
        self.maybe.extend(part.maybe);
        self.fragments.extend(part.fragments);
        self.interrupted.extend(part.interrupted);
        self.connections += part.connections;
        for (kind, n) in part.by_kind {
            *self.by_kind.entry(kind).or_default() += n;
        }
    }

    /// Files each line of `script` by how much of its echo came back: whole
    /// lines inside `echoed` certainly arrived, the rest may not have.
    pub fn settle(&mut self, script: &Script, echoed: &[u8]) {
        let mut at = 0;
        for (text, wire) in &script.lines {
            if echoed.len() >= at + wire.len() && echoed[at..at + wire.len()] == wire[..] {
                self.must.push(text.clone());
            } else {
                self.maybe.push(text.clone());
            }
            at += wire.len();
        }
    }

    /// Checks an echo against what was sent: it must be a prefix (the echo
    /// is in order), and if shorter the connection was cut short.
    pub fn check_echo(&mut self, peer: &str, script: &Script, echoed: &[u8], pace: &Pace) {
        let sent = script.bytes();
        assert!(
            sent.starts_with(echoed),
            "{peer}: echo {:?} is not a prefix of what was sent {:?}",
            String::from_utf8_lossy(echoed),
            String::from_utf8_lossy(&sent)
        );
        if echoed.len() < sent.len() {
            self.cut_short(
                peer,
                pace,
                &format!("after {} of {} bytes of echo", echoed.len(), sent.len()),
            );
        }
        self.settle(script, echoed);
    }

    /// A connection ended early: legitimate only if the client fell silent
    /// for the idle time-out, and then the server must say `close: idle`.
    pub fn cut_short(&mut self, peer: &str, pace: &Pace, what: &str) {
        assert!(
            pace.stalled(),
            "{peer}: cut short {what}, yet never silent for {IDLE_TIMEOUT:?} \
             (longest silence {:?}): the server closed a client that was \
             talking, or left bytes it had received unread",
            pace.longest
        );
        eprintln!(
            "soak: {peer}: cut short {what} after a client stall of {:?}",
            pace.longest
        );
        self.interrupted.push(peer.to_string());
    }

    /// Checks the server's whole output against the ledger (see the module
    /// docs); `ignore` marks lines sent outside the ledger (the warm-up).
    /// With `cut_lines_tolerated`, a line that may have died with a reset
    /// may also be printed cut short: what today's server does when a reply
    /// to a reset client fails before it read the rest of the line (see
    /// `a_failed_reply_does_not_cut_a_finished_line` in tests/echo.rs).
    pub fn check_output(&self, stdout: &str, ignore: &str, cut_lines_tolerated: bool) {
        let mut printed: HashMap<&str, usize> = HashMap::new();
        let mut idle_closes: HashMap<&str, usize> = HashMap::new();
        for line in stdout.lines() {
            if let Some(event) = line.strip_prefix("* [") {
                if let Some((peer, "idle")) = event.split_once("] close: ") {
                    *idle_closes.entry(peer).or_default() += 1;
                }
                continue;
            }
            let Some((_, text)) = line.split_once("] ") else {
                continue;
            };
            if !text.starts_with(ignore) {
                *printed.entry(text).or_default() += 1;
            }
        }
        for text in &self.must {
            let times = printed.remove(text.as_str()).unwrap_or(0);
            assert_eq!(times, 1, "line {text:?} printed {times} times");
        }
        let mut allowed: HashMap<&str, usize> = HashMap::new();
        for text in &self.maybe {
            *allowed.entry(text.as_str()).or_default() += 1;
        }
        for (text, most) in allowed {
            let times = printed.remove(text).unwrap_or(0);
            assert!(times <= most, "line {text:?} printed {times} times");
        }
        // What is left must be what arrived of unfinished lines. The longest
        // first: the fragments a text may come from include those of any
        // longer text it begins, so the longer one takes its pick first.
        let mut unused: Vec<&str> = self.fragments.iter().map(String::as_str).collect();
        if cut_lines_tolerated {
            unused.extend(self.maybe.iter().map(String::as_str));
        }
        let mut nobody_sent = Vec::new();
        let mut left: Vec<(&str, usize)> = printed.into_iter().collect();
        left.sort_by_key(|(text, _)| std::cmp::Reverse(text.len()));
        for (text, times) in left {
            for _ in 0..times {
                let found = (!text.is_empty())
                    .then(|| unused.iter().position(|f| f.starts_with(text)))
                    .flatten();
                match found {
                    Some(at) => {
                        unused.swap_remove(at);
                    }
                    None => nobody_sent.push(text),
                }
            }
        }
        assert!(
            nobody_sent.is_empty(),
            "lines printed that no client sent: {:?}",
            nobody_sent.iter().take(10).collect::<Vec<_>>()
        );
        let mut cut: HashMap<&str, usize> = HashMap::new();
        for peer in &self.interrupted {
            *cut.entry(peer.as_str()).or_default() += 1;
        }
        for (peer, times) in cut {
            let idle = idle_closes.get(peer).copied().unwrap_or(0);
            assert!(
                idle >= times,
                "{peer}: cut short {times} times, closed as idle {idle} times"
            );
        }
    }
}
