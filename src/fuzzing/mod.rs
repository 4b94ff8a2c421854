//! The invariants a fuzzer checks, as one function any harness can call.
//!
//! Framing, command parsing and escaping take bytes a stranger chose, so they
//! must hold for *every* input and *every* way TCP cuts it into reads, not
//! just for the cases a unit test thought of. [`check_framing`] turns one
//! arbitrary byte string into a split of a stream and a line limit, runs the
//! whole path a client's bytes take (frame, parse, escape, format), and
//! asserts what must hold; a panic is a finding.
//!
//! It lives in the library (hidden from the docs) rather than in `fuzz/` so
//! that the cargo-fuzz target stays one line and an ordinary test on the
//! stable toolchain replays the saved corpus through the very same checks
//! (`tests/fuzz_corpus.rs`). Nothing here is used by the server.

// This module's job is to panic when an invariant breaks: that panic is
// the fuzzer's finding. The library-wide ban on panics does not apply here.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::ops::ControlFlow;

use crate::proto::command::{Command, strip};
use crate::proto::line::{LineBuffer, LineTooLong};
use crate::proto::write_escaped;
use crate::serve::CloseReason;
use crate::serve::output::{Format, MemorySink, Output, OutputFull, SEPARATOR};

/// At most this many reads are cut from one input.
const MAX_SPLITS: usize = 16;

/// One line as framed, owned, so that two framings can be compared.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Framed {
    raw: Vec<u8>,
    text: Vec<u8>,
}

/// Runs every check on one input; panics on the first broken invariant.
///
/// The input is read as: byte 0, the line limit (`1..=64`, or 64 KiB when
/// its top bit is set, so that long lines also pass); byte 1, the number of
/// cuts (`0..16`); then one byte per cut giving the length of each read
/// (empty reads included); the rest is the stream, and what the cuts leave
/// is the last read.
///
/// Checked:
///
/// - framing never panics; the lines, and the [`LineTooLong`] outcome, are
///   the same as when the whole stream arrives in one read;
/// - every line's text is at most the limit, holds no `\n`, and is its raw
///   bytes less a `\n`, `\r\n` (or, for the unterminated last line, nothing
///   or a `\r`); a line's `span` indexes its read and equals its raw bytes;
/// - the partial line held between reads is never more than limit + 1;
/// - without an error, the raw bytes of all lines, joined, are the stream;
///   with one, they are a prefix of it;
/// - [`Command::parse`] is `Some` only for the exact command word after
///   [`strip`], which itself trims exactly the notes' whitespace;
/// - [`write_escaped`] (plain and JSON) yields UTF-8 with no control or
///   bidi character, keeps printable UTF-8 as it is, and in JSON mode yields
///   a valid JSON string body that decodes to the plain escaping;
/// - [`Output`] in every format prints exactly one line per event, and each
///   JSON-format line is one object.
pub fn check_framing(data: &[u8]) {
    let (max_line, cuts, stream) = decode(data);
    let chunks = cut(stream, &cuts);

    let (whole, whole_err) = frame(max_line, &[stream]);
    let (split, split_err) = frame(max_line, &chunks);
    assert_eq!(whole_err, split_err, "the split changed the outcome");
    assert_eq!(whole, split, "the split changed the lines");

    let joined: Vec<u8> = split.iter().flat_map(|l| l.raw.iter().copied()).collect();
    if split_err.is_none() {
        assert_eq!(joined, stream, "lines do not reassemble the stream");
    } else {
        assert!(stream.starts_with(&joined), "lines are not a prefix");
    }

    for line in &split {
        check_command(&line.text);
        check_escaping(&line.text);
    }
    check_output(&split, split_err.is_some());
}

/// Splits the input into (limit, read lengths, stream).
fn decode(data: &[u8]) -> (usize, Vec<usize>, &[u8]) {
    let (&limit, rest) = data.split_first().unwrap_or((&0, &[]));
    let max_line = if limit & 0x80 != 0 {
        64 * 1024
    } else {
        usize::from(limit & 0x3f) + 1
    };
    let (&count, rest) = rest.split_first().unwrap_or((&0, &[]));
    let count = (usize::from(count) % MAX_SPLITS).min(rest.len());
    let (cuts, stream) = rest.split_at(count);
    (
        max_line,
        cuts.iter().map(|&c| usize::from(c)).collect(),
        stream,
    )
}

/// The stream cut into reads of the given lengths, then the remainder.
fn cut<'a>(stream: &'a [u8], lengths: &[usize]) -> Vec<&'a [u8]> {
    let mut chunks = Vec::with_capacity(lengths.len() + 1);
    let mut rest = stream;
    for &length in lengths {
        let (chunk, after) = rest.split_at(length.min(rest.len()));
        chunks.push(chunk);
        rest = after;
    }
    chunks.push(rest);
    chunks
}

/// Frames `chunks` as one connection would, then finishes; checks every
/// per-line invariant on the way.
fn frame(max_line: usize, chunks: &[&[u8]]) -> (Vec<Framed>, Option<LineTooLong>) {
    let mut buffer = LineBuffer::new(max_line);
    let mut lines = Vec::new();
    for chunk in chunks {
        let result = buffer.feed(chunk, |line| {
            check_line(line.raw, line.text, max_line, false);
            if let Some(span) = &line.span {
                assert!(
                    span.start <= span.end && span.end <= chunk.len(),
                    "span out of the read"
                );
                assert_eq!(&chunk[span.clone()], line.raw, "span is not the raw bytes");
            }
            lines.push(Framed {
                raw: line.raw.to_vec(),
                text: line.text.to_vec(),
            });
            ControlFlow::Continue(())
        });
        match result {
            Ok(flow) => assert!(flow.is_continue(), "break without a break"),
            Err(err) => {
                assert_eq!(err.max_line, max_line);
                assert_eq!(buffer.pending(), 0, "a refused line is kept");
                return (lines, Some(err));
            }
        }
        assert!(
            buffer.pending() <= max_line + 1,
            "partial line over the limit"
        );
    }
    let result = buffer.finish(|line| {
        check_line(line.raw, line.text, max_line, true);
        assert_eq!(line.span, None, "the last line has no span");
        lines.push(Framed {
            raw: line.raw.to_vec(),
            text: line.text.to_vec(),
        });
        ControlFlow::Continue(())
    });
    assert_eq!(buffer.pending(), 0, "finish left bytes behind");
    (lines, result.err())
}

fn check_line(raw: &[u8], text: &[u8], max_line: usize, last: bool) {
    assert!(text.len() <= max_line, "line text over the limit");
    assert!(!text.contains(&b'\n'), "line text holds a newline");
    assert!(raw.starts_with(text), "text is not a prefix of raw");
    let terminator = &raw[text.len()..];
    if last {
        assert!(!raw.is_empty(), "an empty last line");
        assert!(matches!(terminator, b"" | b"\r"), "bad last terminator");
    } else {
        assert!(matches!(terminator, b"\n" | b"\r\n"), "bad terminator");
    }
    if terminator.is_empty() || terminator == b"\n" {
        // Had the text ended in `\r`, it would have been taken as the terminator's.
        assert!(
            !text.ends_with(b"\r"),
            "a \\r before the terminator was kept"
        );
    }
}

/// The notes' `strip()` whitespace.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn check_command(text: &[u8]) {
    let stripped = strip(text);
    // `strip` returns a sub-slice with whitespace, and only whitespace, cut
    // from both ends.
    let start = text.iter().take_while(|&&b| is_space(b)).count();
    let end = text.len()
        - text[start..]
            .iter()
            .rev()
            .take_while(|&&b| is_space(b))
            .count();
    assert_eq!(stripped, &text[start..end], "strip differs from str.strip");
    let word = |command| match command {
        Command::Disconnect => &b"disconnect"[..],
        Command::Stop => b"stop",
        Command::Stats => b"stats",
    };
    match Command::parse(text) {
        Some(command) => assert_eq!(stripped, word(command), "a command from the wrong word"),
        None => assert!(
            !matches!(stripped, b"disconnect" | b"stop" | b"stats"),
            "a command word was not recognised"
        ),
    }
}

/// Characters that must never reach a terminal raw (mirrors `output.rs`).
fn is_dangerous(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{061c}' | '\u{200e}' | '\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
            | '\u{2028}' | '\u{2029}')
}

fn escaped(text: &[u8], json: bool) -> String {
    let mut out = Vec::new();
    write_escaped(&mut out, text, json).expect("writing to a Vec cannot fail");
    String::from_utf8(out).expect("escaped output is not UTF-8")
}

fn check_escaping(text: &[u8]) {
    let plain = escaped(text, false);
    let json = escaped(text, true);
    for out in [&plain, &json] {
        assert!(
            !out.chars().any(is_dangerous),
            "a dangerous character got through"
        );
    }
    // Printable UTF-8 is kept as written.
    if let Ok(input) = std::str::from_utf8(text)
        && !input.chars().any(is_dangerous)
    {
        assert_eq!(plain, input, "printable text was changed");
    }
    // The JSON form is a valid JSON string body that means the plain form.
    let mut decoded = String::with_capacity(json.len());
    let mut chars = json.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => panic!("an unescaped quote in JSON"),
            '\\' => match chars.next() {
                Some(c @ ('"' | '\\')) => decoded.push(c),
                other => panic!("a bad JSON escape: \\{other:?}"),
            },
            c => decoded.push(c),
        }
    }
    assert_eq!(decoded, plain, "JSON and plain escaping disagree");
}

/// Prints the lines as one connection, in every format, and checks that
/// each event is exactly one output line.
fn check_output(lines: &[Framed], failed: bool) {
    let reason = if failed {
        CloseReason::LineTooLong
    } else {
        CloseReason::Eof
    };
    // A peer label is usually an address, but a Unix socket's is a path.
    let odd_peer = lines
        .first()
        .map(|l| String::from_utf8_lossy(&l.text).into_owned())
        .unwrap_or_default();
    for peer in ["127.0.0.1:5", odd_peer.as_str()] {
        for format in [Format::Tagged, Format::Plain, Format::Json, Format::None] {
            let sink = MemorySink::new();
            let mut output = Output::to_writer(
                format,
                Box::new(sink.clone()),
                usize::MAX,
                OutputFull::Block,
            )
            .expect("start the output writer");
            let label = output.label(&peer);
            output.open(&label);
            for line in lines {
                output.line(&label, &line.text);
            }
            output.close(&label, reason);
            assert!(output.wait_written(std::time::Duration::from_secs(10)));
            let printed = sink.contents();
            let count = printed.lines().count();
            let expected = match format {
                Format::Tagged | Format::Json => lines.len() + 2,
                Format::Plain => lines.len() + 1,
                Format::None => 0,
            };
            assert_eq!(count, expected, "{format}: not one line per event");
            assert!(printed.is_empty() || printed.ends_with('\n'));
            assert!(!printed.chars().any(|c| c != '\n' && is_dangerous(c)));
            match format {
                Format::Json => {
                    for line in printed.lines() {
                        assert!(line.starts_with("{\"event\":\"") && line.ends_with("\"}"));
                    }
                }
                Format::Plain => assert_eq!(printed.lines().last(), Some(SEPARATOR)),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_tiny_inputs_pass() {
        for data in [&b""[..], b"\x00", b"\x00\x00", b"\x05\x01\x02ab\ncd"] {
            check_framing(data);
        }
    }

    #[test]
    fn decode_reads_limit_cuts_and_stream() {
        let (max, cuts, stream) = decode(b"\x03\x02\x01\x05hello\nworld");
        assert_eq!((max, cuts, stream), (4, vec![1, 5], &b"hello\nworld"[..]));
        assert_eq!(decode(b"\x80").0, 64 * 1024);
    }

    #[test]
    fn commands_and_escapes_pass() {
        check_framing(
            b"\x80\x03\x01\x02\x03 stop \r\ndisconnect\n\x1b[2J\xff\"\\\xe2\x80\xaelast\r",
        );
    }
}

#[cfg(test)]
mod replay;
