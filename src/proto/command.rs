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
