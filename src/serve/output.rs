//! What the server prints: one formatter per `--format`, one buffered sink.
//!
//! The notes' server does `print data.strip()` for every chunk, which (1) costs a
//! write system call per message, and (2) copies whatever a client sends,
//! escape sequences included, onto the operator's terminal. Here:
//!
//! - Everything goes through one `BufWriter` that the reactor flushes once per
//!   loop turn, just before it sleeps in `poll`: output appears promptly, but
//!   a busy turn that prints a thousand lines makes one `write(2)`.
//! - Every byte a client chose is escaped before it is printed
//!   ([`write_escaped`]): control characters (C0, DEL, C1), Unicode bidi
//!   overrides and line separators become visible `\u{1b}`-style escapes and
//!   invalid UTF-8 becomes `\xff`, while printable UTF-8 is kept as written
//!   (the notes are Turkish: `çalışıyor` prints as `çalışıyor`). A backslash
//!   is printable and stays as it is.
//! - The sink is any `Write`: stdout for the binary, [`MemorySink`] for a
//!   test that wants to read what would have been printed.
//!
//! stdout carries only what the protocol promises (lines and connection
//! events); diagnostics go through `log` to stderr.

use std::fmt;
use std::io::{self, BufWriter, Write};
use std::sync::{Arc, Mutex};

use crate::proto::write_escaped;
use crate::serve::close::CloseReason;

/// How lines and connection events are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `[127.0.0.1:50312] hello`, plus `* [peer] open` and `* [peer] close: eof`.
    #[default]
    Tagged,
    /// What the notes' server prints: each line with surrounding whitespace stripped,
    /// and `----------------` after each client.
    Plain,
    /// One JSON object per line: `{"event":"line","peer":"...","line":"..."}`;
    /// events `open`, `line` and `close` (with a `reason`).
    Json,
    /// Nothing at all (for benchmarks).
    None,
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "tagged" => Ok(Format::Tagged),
            "plain" => Ok(Format::Plain),
            "json" => Ok(Format::Json),
            "none" => Ok(Format::None),
            other => Err(format!(
                "invalid format '{other}' (expected tagged, plain, json or none)"
            )),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Tagged => "tagged",
            Format::Plain => "plain",
            Format::Json => "json",
            Format::None => "none",
        })
    }
}

/// The notes' separator, printed after each client in `plain` format.
pub const SEPARATOR: &str = "----------------";

/// The server's printed output: a format and a buffered sink.
pub struct Output {
    format: Format,
    sink: BufWriter<Box<dyn Write + Send>>,
    broken: bool,
    /// Something was written since the last flush: a quiet turn (or
    /// `--format none`) then costs no flush call at all.
    dirty: bool,
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Output")
            .field("format", &self.format)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl Output {
    /// Output in `format` to `sink`, buffered (64 KiB).
    pub fn new(format: Format, sink: Box<dyn Write + Send>) -> Self {
        Output {
            format,
            sink: BufWriter::with_capacity(64 * 1024, sink),
            broken: false,
            dirty: false,
        }
    }

    /// A client connected.
    pub fn open(&mut self, peer: &str) {
        match self.format {
            Format::Tagged => self.emit(|w| {
                w.write_all(b"* [")?;
                write_escaped(w, peer.as_bytes(), false)?;
                w.write_all(b"] open\n")
            }),
            Format::Json => self.emit(|w| {
                w.write_all(b"{\"event\":\"open\",\"peer\":\"")?;
                write_escaped(w, peer.as_bytes(), true)?;
                w.write_all(b"\"}\n")
            }),
            Format::Plain | Format::None => {}
        }
    }

    /// A client sent a line (`text` is without its terminator).
    pub fn line(&mut self, peer: &str, text: &[u8]) {
        match self.format {
            Format::Tagged => self.emit(|w| {
                w.write_all(b"[")?;
                write_escaped(w, peer.as_bytes(), false)?;
                w.write_all(b"] ")?;
                write_escaped(w, text, false)?;
                w.write_all(b"\n")
            }),
            Format::Plain => self.emit(|w| {
                write_escaped(w, crate::proto::command::strip(text), false)?;
                w.write_all(b"\n")
            }),
            Format::Json => self.emit(|w| {
                w.write_all(b"{\"event\":\"line\",\"peer\":\"")?;
                write_escaped(w, peer.as_bytes(), true)?;
                w.write_all(b"\",\"line\":\"")?;
                write_escaped(w, text, true)?;
                w.write_all(b"\"}\n")
            }),
            Format::None => {}
        }
    }

    /// A client's connection closed, for `reason`.
    pub fn close(&mut self, peer: &str, reason: CloseReason) {
        match self.format {
            Format::Tagged => self.emit(|w| {
                w.write_all(b"* [")?;
                write_escaped(w, peer.as_bytes(), false)?;
                writeln!(w, "] close: {reason}")
            }),
            Format::Plain => self.emit(|w| writeln!(w, "{SEPARATOR}")),
            Format::Json => self.emit(|w| {
                w.write_all(b"{\"event\":\"close\",\"peer\":\"")?;
                write_escaped(w, peer.as_bytes(), true)?;
                writeln!(w, "\",\"reason\":\"{reason}\"}}")
            }),
            Format::None => {}
        }
    }

    /// Writes out everything buffered. The reactor calls this once per turn,
    /// before it blocks in `poll`, and once more before it returns.
    pub fn flush(&mut self) {
        if self.dirty {
            self.emit(|w| w.flush());
            self.dirty = false;
        }
    }

    fn emit(
        &mut self,
        write: impl FnOnce(&mut BufWriter<Box<dyn Write + Send>>) -> io::Result<()>,
    ) {
        if self.broken {
            return;
        }
        self.dirty = true;
        if let Err(err) = write(&mut self.sink) {
            // A closed stdout (`selectd serve | head`) must not stop the server
            // from serving its clients: say so once, then print nothing more.
            log::error!("cannot write output: {err}; further output is discarded");
            self.broken = true;
        }
    }
}

/// A sink that keeps everything written to it in memory, shareable across
/// threads: give a clone to [`crate::Server::with_output`] and read it back.
#[derive(Debug, Clone, Default)]
pub struct MemorySink(Arc<Mutex<Vec<u8>>>);

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything written so far, as (lossy) UTF-8 text.
    pub fn contents(&self) -> String {
        String::from_utf8_lossy(&self.lock()).into_owned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        // A panic elsewhere while holding the lock leaves bytes that are
        // still valid bytes; keep them readable.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Write for MemorySink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn printed(format: Format, run: impl FnOnce(&mut Output)) -> String {
        let sink = MemorySink::new();
        let mut output = Output::new(format, Box::new(sink.clone()));
        run(&mut output);
        output.flush();
        sink.contents()
    }

    #[test]
    fn tagged_format() {
        let text = printed(Format::Tagged, |o| {
            o.open("127.0.0.1:5");
            o.line("127.0.0.1:5", b"hello");
            o.close("127.0.0.1:5", CloseReason::Eof);
        });
        assert_eq!(
            text,
            "* [127.0.0.1:5] open\n[127.0.0.1:5] hello\n* [127.0.0.1:5] close: eof\n"
        );
    }

    #[test]
    fn plain_format_is_the_notes() {
        let text = printed(Format::Plain, |o| {
            o.open("p");
            o.line("p", b"  hello \t");
            o.close("p", CloseReason::Disconnect);
        });
        assert_eq!(text, "hello\n----------------\n");
    }

    #[test]
    fn json_format() {
        let text = printed(Format::Json, |o| {
            o.open("[::1]:5");
            o.line("[::1]:5", b"a \"q\"");
            o.close("[::1]:5", CloseReason::Idle);
        });
        assert_eq!(
            text,
            concat!(
                "{\"event\":\"open\",\"peer\":\"[::1]:5\"}\n",
                "{\"event\":\"line\",\"peer\":\"[::1]:5\",\"line\":\"a \\\"q\\\"\"}\n",
                "{\"event\":\"close\",\"peer\":\"[::1]:5\",\"reason\":\"idle\"}\n"
            )
        );
    }

    #[test]
    fn none_prints_nothing() {
        let text = printed(Format::None, |o| {
            o.open("p");
            o.line("p", b"x");
            o.close("p", CloseReason::Eof);
        });
        assert_eq!(text, "");
    }
}
