//! What a line means.
//!
//! The notes' server compares whole `recv()` chunks with `'disconnect\r\n'` and
//! `'stop\r\n'`, so `stop\n` from a Unix `nc`, or `stop` with a stray space,
//! is printed instead of obeyed. Here a command is a complete line whose text,
//! with surrounding whitespace trimmed (the notes' `strip()`), is exactly the
//! command word. Everything else is text to print. Who may run a command is
//! not decided here but where the peer is known (`connection.rs`).

/// A line that asks the server to do something rather than print it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `disconnect`: close this client (the notes' `break`).
    Disconnect,
    /// `stop`: stop the whole server gracefully (the notes' `devam = False`).
    Stop,
    /// `stats`: reply with the server's counters, as one line.
    Stats,
}

impl Command {
    /// Classifies a line's text (terminator already removed).
    ///
    /// ```
    /// use selectd::proto::command::Command;
    /// assert_eq!(Command::parse(b" stop \t"), Some(Command::Stop));
    /// assert_eq!(Command::parse(b"stopping"), None);
    /// ```
    pub fn parse(text: &[u8]) -> Option<Command> {
        // `strip` stops at the first non-space byte from each end, so for an
        // ordinary line this costs two comparisons, however long the line.
        match strip(text) {
            b"disconnect" => Some(Command::Disconnect),
            b"stop" => Some(Command::Stop),
            b"stats" => Some(Command::Stats),
            _ => None,
        }
    }
}

/// Whether a line may be a command or a cross-protocol marker, decided from
/// its first byte alone: most lines start with a byte that begins no
/// command word (`d`, `s`), no HTTP marker (`P`, `p`, `H`, `h`) and no
/// space that `strip` would remove, and are then plain text with no more
/// work. A `true` only means "look closer".
///
/// ```
/// use selectd::proto::command::may_matter;
/// assert!(may_matter(b"stop") && may_matter(b" stop") && may_matter(b"POST /"));
/// assert!(!may_matter(b"merhaba") && !may_matter(b"12:00 ok"));
/// ```
#[inline]
pub fn may_matter(text: &[u8]) -> bool {
    matches!(
        text.first(),
        Some(b'd' | b's' | b'P' | b'p' | b'H' | b'h' | b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
    )
}

/// Python's `str.strip()` for bytes: trims space, `\t`, `\n`, `\r`, `\x0b`
/// and `\x0c` from both ends (Rust's `trim_ascii` keeps `\x0b`).
pub fn strip(text: &[u8]) -> &[u8] {
    let is_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
    let start = text.iter().position(|b| !is_space(b)).unwrap_or(text.len());
    let end = text
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |at| at + 1);
    &text[start..end]
}

/// Whether the lines a client has sent but the server has not read yet
/// would, read in order, reach a `stop` before anything that ends the
/// connection first (`disconnect`, a cross-protocol line, a line over
/// `max_line` bytes).
///
/// `held` is the start of an unfinished line already read, which the first
/// line of `ahead` completes (`Some(b"")` when none is held; `None` when
/// that line was already handed out in pieces, so it is no command);
/// `ahead` the bytes still queued, as far as they were looked at: an
/// unterminated tail is no line yet. This lets a server that is not reading
/// (its output is full) still obey a `stop` it has not read, without taking
/// the lines before it out of order.
///
/// ```
/// use selectd::proto::command::stop_ahead;
/// assert!(stop_ahead(Some(b""), b"a\nb\nstop\n", 1024));
/// assert!(stop_ahead(Some(b"st"), b"op\r\n", 1024));
/// assert!(!stop_ahead(Some(b""), b"disconnect\nstop\n", 1024));
/// assert!(!stop_ahead(Some(b""), b"a\nsto", 1024));
/// assert!(!stop_ahead(None, b"stop\n", 1024));
/// ```
pub fn stop_ahead(held: Option<&[u8]>, ahead: &[u8], max_line: usize) -> bool {
    look_for_stop(held, ahead, 0, max_line) == Ahead::Stop
}

/// What [`look_for_stop`] found in the bytes ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ahead {
    /// A `stop`, with nothing before it that ends the connection.
    Stop,
    /// Something that ends the connection first (`disconnect`, a
    /// cross-protocol line, a line over `max_line`): no `stop` behind it
    /// counts, however many more bytes come.
    Never,
    /// No `stop` in the whole lines: they end at `clear`, where a later
    /// look at more of the same bytes may start.
    Clear {
        /// Where the last whole line looked at ends.
        clear: usize,
    },
}

/// [`stop_ahead`], starting at `from` and saying how far it got, so that a
/// server that looks again at the same unread bytes (grown by what arrived
/// since) judges only the lines it has not judged yet.
///
/// `from` is 0 or at most a `clear` that an earlier look at a start of the
/// same bytes returned (rounded down, say, to keep it small): the look
/// begins with the first line that starts there or after, since every line
/// that ends before `clear` was judged. Past 0, `held` was already joined
/// to the first line and is not looked at again.
///
/// ```
/// use selectd::proto::command::{look_for_stop, Ahead};
/// assert_eq!(look_for_stop(Some(b""), b"a\nb\nst", 0, 64), Ahead::Clear { clear: 4 });
/// assert_eq!(look_for_stop(Some(b""), b"a\nb\nstop\n", 4, 64), Ahead::Stop);
/// assert_eq!(look_for_stop(Some(b""), b"a\nb\nstop\n", 3, 64), Ahead::Stop);
/// assert_eq!(look_for_stop(Some(b""), b"disconnect\nstop\n", 0, 64), Ahead::Never);
/// ```
pub fn look_for_stop(held: Option<&[u8]>, ahead: &[u8], from: usize, max_line: usize) -> Ahead {
    let mut joined = Vec::new();
    // The first line that starts at `from` or after (the line `from` falls
    // in, if it started before, was judged).
    let base = match from.min(ahead.len()) {
        0 => 0,
        from => match memchr::memchr(b'\n', &ahead[from - 1..]) {
            Some(at) => from + at,
            None => return Ahead::Clear { clear: from },
        },
    };
    // Where the next line starts; the unterminated tail after the last
    // newline is no line yet.
    let mut start = base;
    for newline in memchr::memchr_iter(b'\n', &ahead[base..]) {
        let end = base + newline;
        let text = &ahead[start..end];
        let first = start == 0;
        start = end + 1;
        let text = if !first {
            text
        } else {
            match held {
                None => continue, // The end of a line handed out in pieces.
                Some([]) => text,
                Some(held) => {
                    joined.extend_from_slice(held);
                    joined.extend_from_slice(text);
                    &joined[..]
                }
            }
        };
        let counted = text.strip_suffix(b"\r").unwrap_or(text);
        if counted.len() > max_line {
            return Ahead::Never;
        }
        // Most lines are settled by their first byte.
        if !may_matter(text) {
            continue;
        }
        if is_cross_protocol(text) {
            return Ahead::Never;
        }
        match Command::parse(text) {
            Some(Command::Stop) => return Ahead::Stop,
            Some(Command::Disconnect) => return Ahead::Never,
            Some(Command::Stats) | None => {}
        }
    }
    Ahead::Clear { clear: start }
}

/// Whether a line looks like HTTP sent to a line server: a web page can
/// make a browser `POST` to `127.0.0.1:10001` with a body of `stop\n`. As
/// redis does, a line starting with `POST ` or `Host:` (any case) marks the
/// connection as a likely cross-protocol attack.
pub fn is_cross_protocol(text: &[u8]) -> bool {
    let starts = |prefix: &[u8]| {
        text.len() >= prefix.len() && text[..prefix.len()].eq_ignore_ascii_case(prefix)
    };
    starts(b"POST ") || starts(b"Host:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_whole_trimmed_lines() {
        assert_eq!(Command::parse(b"disconnect"), Some(Command::Disconnect));
        assert_eq!(Command::parse(b"  disconnect\r"), Some(Command::Disconnect));
        assert_eq!(Command::parse(b"stop"), Some(Command::Stop));
        assert_eq!(Command::parse(b"\x0bstop\x0c"), Some(Command::Stop));
        assert_eq!(Command::parse(b"stats\r"), Some(Command::Stats));
    }

    #[test]
    fn http_lines_are_cross_protocol() {
        assert!(is_cross_protocol(b"POST / HTTP/1.1"));
        assert!(is_cross_protocol(b"post /x HTTP/1.0"));
        assert!(is_cross_protocol(b"Host: 127.0.0.1:10001"));
        assert!(is_cross_protocol(b"HOST:x"));
        assert!(!is_cross_protocol(b"POSTER"));
        assert!(!is_cross_protocol(b"hostile"));
        assert!(!is_cross_protocol(b"GET / HTTP/1.1"));
    }

    #[test]
    fn a_stop_ahead_is_found_only_if_it_would_be_obeyed() {
        let limit = 64;
        assert!(stop_ahead(Some(b""), b"stop\n", limit));
        assert!(stop_ahead(Some(b""), b"one\r\ntwo\n  stop \r\nmore", limit));
        assert!(stop_ahead(Some(b" s"), b"top\n", limit));
        assert!(stop_ahead(Some(b""), b"stats\nstop\n", limit));
        assert!(!stop_ahead(Some(b""), b"stop", limit), "unterminated");
        assert!(
            !stop_ahead(Some(b"x"), b"stop\n", limit),
            "it ends a held line"
        );
        assert!(!stop_ahead(None, b"stop\n", limit), "the end of a piece");
        assert!(stop_ahead(None, b"stop\nstop\n", limit));
        assert!(!stop_ahead(Some(b""), b"disconnect\nstop\n", limit));
        assert!(!stop_ahead(Some(b""), b"POST / HTTP/1.1\nstop\n", limit));
        let long = [b'a'; 65];
        let mut too_long = long.to_vec();
        too_long.extend_from_slice(b"\nstop\n");
        assert!(!stop_ahead(Some(b""), &too_long, limit));
        assert!(stop_ahead(Some(b""), &too_long, 65));
    }

    proptest::proptest! {
        /// `stop_ahead` agrees with reading the same bytes for real: framed
        /// by a `LineBuffer` (after the held start of a line), the first
        /// line that ends the connection or stops the server is a `stop`.
        #[test]
        fn stop_ahead_agrees_with_reading_in_order(
            held in proptest::collection::vec(
                proptest::prop_oneof![proptest::strategy::Just(b's'), proptest::strategy::Just(b' ')], 0..3),
            words in proptest::collection::vec(proptest::prop_oneof![
                proptest::strategy::Just(&b"stop\n"[..]),
                proptest::strategy::Just(&b"op\n"[..]),
                proptest::strategy::Just(&b"disconnect\n"[..]),
                proptest::strategy::Just(&b"stats\r\n"[..]),
                proptest::strategy::Just(&b"Host: x\n"[..]),
                proptest::strategy::Just(&b"a line\n"[..]),
                proptest::strategy::Just(&b"sto"[..]),
                proptest::strategy::Just(&b"0123456789abcdef"[..]),
            ], 0..8),
        ) {
            use std::ops::ControlFlow;
            let ahead = words.concat();
            let limit = 24;
            let mut buffer = crate::proto::line::LineBuffer::new(limit);
            let mut verdict = None;
            let mut check = |text: &[u8]| {
                if is_cross_protocol(text) {
                    verdict = Some(false);
                    return ControlFlow::Break(());
                }
                match Command::parse(text) {
                    Some(Command::Stop) => verdict = Some(true),
                    Some(Command::Disconnect) => verdict = Some(false),
                    _ => return ControlFlow::Continue(()),
                }
                ControlFlow::Break(())
            };
            let framed = buffer
                .feed(&held, |_| ControlFlow::Continue(()))
                .and_then(|_| buffer.feed(&ahead, |line| check(line.text)));
            let read = framed.is_ok() && verdict == Some(true);
            proptest::prop_assert_eq!(stop_ahead(Some(&held), &ahead, limit), read);
        }

        /// Looking at the unread bytes as they grow, each time from where
        /// the last look left off, finds what one look at all of them finds.
        #[test]
        fn looking_again_from_clear_agrees_with_one_look(
            held in proptest::collection::vec(
                proptest::prop_oneof![proptest::strategy::Just(b's'), proptest::strategy::Just(b' ')], 0..3),
            words in proptest::collection::vec(proptest::prop_oneof![
                proptest::strategy::Just(&b"stop\n"[..]),
                proptest::strategy::Just(&b"disconnect\n"[..]),
                proptest::strategy::Just(&b"POST /\n"[..]),
                proptest::strategy::Just(&b"a line\n"[..]),
                proptest::strategy::Just(&b"sto"[..]),
                proptest::strategy::Just(&b"0123456789abcdef"[..]),
            ], 0..8),
            cuts in proptest::collection::vec(0usize..128, 0..4),
        ) {
            let ahead = words.concat();
            let limit = 24;
            let whole = look_for_stop(Some(&held), &ahead, 0, limit);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|cut| cut.min(ahead.len())).collect();
            cuts.sort_unstable();
            cuts.push(ahead.len());
            let mut from = 0;
            let mut last = Ahead::Clear { clear: 0 };
            for cut in cuts {
                last = look_for_stop(Some(&held), &ahead[..cut], from, limit);
                let Ahead::Clear { clear } = last else {
                    break;
                };
                proptest::prop_assert!(clear >= from && clear <= cut);
                // As the server keeps it: rounded down.
                from = clear - clear % 4;
            }
            match (last, whole) {
                // Rounded down, the looks may end short of the whole look's
                // `clear`, never past it.
                (Ahead::Clear { clear }, Ahead::Clear { clear: whole }) => {
                    proptest::prop_assert!(clear <= whole);
                }
                (last, whole) => proptest::prop_assert_eq!(last, whole),
            }
        }
    }

    proptest::proptest! {
        /// A line the first-byte check passes over is neither a command nor
        /// a cross-protocol marker.
        #[test]
        fn may_matter_never_misses(text in proptest::collection::vec(proptest::num::u8::ANY, 0..16)) {
            if !may_matter(&text) {
                proptest::prop_assert_eq!(Command::parse(&text), None);
                proptest::prop_assert!(!is_cross_protocol(&text));
            }
        }
    }

    #[test]
    fn strip_is_pythons() {
        assert_eq!(strip(b" \t\x0ba b\x0c\r\n"), b"a b");
        assert_eq!(strip(b"   "), b"");
        assert_eq!(strip(b""), b"");
    }

    #[test]
    fn padding_of_any_length_is_trimmed() {
        let mut padded = b"stop".to_vec();
        padded.extend(std::iter::repeat_n(b' ', 1000));
        assert_eq!(Command::parse(&padded), Some(Command::Stop));
    }

    #[test]
    fn near_misses_are_text() {
        for text in [
            &b"STOP"[..],
            b"stop now",
            b"disconnected",
            b"",
            b"s top",
            b"stop\0",
        ] {
            assert_eq!(Command::parse(text), None, "{text:?}");
        }
    }
}
