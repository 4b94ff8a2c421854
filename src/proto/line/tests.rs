//! Framing, tested against every way the same bytes can be cut into reads.

use super::*;
use proptest::prelude::*;

/// Frames `chunks` in order; returns the texts, whether each line came in
/// one piece, and the error if one occurred.
fn frame(max: usize, chunks: &[&[u8]]) -> (Vec<Vec<u8>>, Option<LineTooLong>) {
    let mut buffer = LineBuffer::new(max);
    let mut lines = Vec::new();
    for chunk in chunks {
        let result = buffer.feed(chunk, |line| {
            if let Some(span) = &line.span {
                assert_eq!(&chunk[span.clone()], line.raw);
            }
            lines.push(line.text.to_vec());
            ControlFlow::Continue(())
        });
        if let Err(err) = result {
            return (lines, Some(err));
        }
    }
    let result = buffer.finish(|line| {
        lines.push(line.text.to_vec());
        ControlFlow::Continue(())
    });
    (lines, result.err())
}

// ---- empty buffer ----

#[test]
fn empty_chunk_yields_nothing() {
    assert_eq!(frame(10, &[b""]), (vec![], None));
}

#[test]
fn lf_and_crlf_end_lines() {
    let (lines, err) = frame(10, &[b"a\nb\r\nc"]);
    assert_eq!(lines, [&b"a"[..], b"b", b"c"]);
    assert_eq!(err, None);
}

#[test]
fn lone_cr_in_the_middle_is_kept() {
    assert_eq!(frame(10, &[b"a\rb\n"]).0, [&b"a\rb"[..]]);
}

#[test]
fn empty_lines_are_lines() {
    assert_eq!(frame(10, &[b"\n\r\n"]).0, [&b""[..], b""]);
}

// ---- partial line held ----

#[test]
fn split_line_byte_by_byte() {
    let bytes = b"stop\r\n";
    let chunks: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(frame(10, &chunks).0, [&b"stop"[..]]);
}

#[test]
fn partial_then_many_lines() {
    let (lines, _) = frame(10, &[b"he", b"y\nb\nc\n"]);
    assert_eq!(lines, [&b"hey"[..], b"b", b"c"]);
}

#[test]
fn no_allocation_until_a_line_is_split() {
    let mut buffer = LineBuffer::new(10);
    let _ = buffer.feed(b"a\nb\n", |_| ControlFlow::Continue(()));
    assert_eq!(buffer.partial.capacity(), 0);
    let _ = buffer.feed(b"c", |_| ControlFlow::Continue(()));
    assert_eq!(buffer.pending(), 1);
}

#[test]
fn break_drops_the_rest_of_the_chunk() {
    let mut buffer = LineBuffer::new(10);
    let mut seen = 0;
    let flow = buffer.feed(b"a\nb\nc", |_| {
        seen += 1;
        ControlFlow::Break(())
    });
    assert_eq!(flow, Ok(ControlFlow::Break(())));
    assert_eq!(seen, 1);
}

// ---- limits ----

#[test]
fn line_at_the_limit_passes_with_either_terminator() {
    assert_eq!(frame(3, &[b"abc\n"]).1, None);
    assert_eq!(frame(3, &[b"ab", b"c\r", b"\n"]).1, None);
}

#[test]
fn line_over_the_limit_fails_in_one_chunk() {
    assert_eq!(frame(3, &[b"abcd\n"]).1, Some(LineTooLong { max_line: 3 }));
}

#[test]
fn unterminated_flood_fails_before_the_newline() {
    let mut buffer = LineBuffer::new(3);
    let result = buffer.feed(b"abcdefgh", |_| ControlFlow::Continue(()));
    assert!(result.is_err());
    assert_eq!(buffer.pending(), 0);
}

#[test]
fn huge_partial_gives_its_memory_back() {
    let mut buffer = LineBuffer::new(1 << 20);
    let _ = buffer.feed(&vec![b'x'; 100_000], |_| ControlFlow::Continue(()));
    let _ = buffer.feed(b"\n", |_| ControlFlow::Continue(()));
    assert_eq!(buffer.partial.capacity(), 0);
}

/// `data` cut at the positions `cuts` that fall inside it.
fn cut_at(data: &[u8], cuts: Vec<usize>) -> Vec<&[u8]> {
    let mut cuts: Vec<usize> = cuts.into_iter().filter(|&c| c <= data.len()).collect();
    cuts.sort_unstable();
    let mut chunks = Vec::new();
    let mut last = 0;
    for cut in cuts {
        chunks.push(&data[last..cut]);
        last = cut;
    }
    chunks.push(&data[last..]);
    chunks
}

// ---- no limit: pieces ----

/// Frames `chunks` with no limit and pieces of `piece_len`; returns
/// every line or piece handed out (raw, whole?) and the most ever held.
fn frame_unlimited(piece_len: usize, chunks: &[&[u8]]) -> (Vec<(Vec<u8>, bool)>, usize) {
    let mut buffer = LineBuffer::new(usize::MAX);
    buffer.piece_len = piece_len;
    let mut out = Vec::new();
    let mut most = 0;
    for chunk in chunks {
        let result = buffer.feed(chunk, |line| {
            if line.piece {
                assert_eq!(line.text, line.raw);
            }
            out.push((line.raw.to_vec(), line.is_whole()));
            ControlFlow::Continue(())
        });
        assert!(result.is_ok());
        most = most.max(buffer.pending());
    }
    let _ = buffer.finish(|line| {
        out.push((line.raw.to_vec(), line.is_whole()));
        ControlFlow::Continue(())
    });
    (out, most)
}

#[test]
fn no_limit_hands_out_a_long_line_in_pieces_never_whole() {
    let (out, most) = frame_unlimited(4, &[b"ab", b"cdef", b"gh", b"stop\nok\n"]);
    let joined: Vec<u8> = out.iter().flat_map(|(raw, _)| raw.clone()).collect();
    assert_eq!(joined, b"abcdefghstop\nok\n");
    assert!(most <= 4);
    // Every part of the long line, its `stop` tail included, is not whole.
    let parts: Vec<bool> = out.iter().map(|(_, whole)| *whole).collect();
    assert_eq!(parts.last(), Some(&true), "`ok` is a line of its own");
    assert!(
        parts[..parts.len() - 1].iter().all(|whole| !whole),
        "{out:?}"
    );
}

#[test]
fn no_limit_keeps_short_lines_whole() {
    let (out, _) = frame_unlimited(8, &[b"stop\nab", b"c\n"]);
    assert_eq!(out, [(b"stop\n".to_vec(), true), (b"abc\n".to_vec(), true)]);
}

type OwnedLine = (Vec<u8>, Vec<u8>, Option<Range<usize>>, bool, bool);

fn owned(line: &Line<'_>) -> OwnedLine {
    let Line {
        raw,
        text,
        span,
        piece,
        continues,
    } = line;
    (
        raw.to_vec(),
        text.to_vec(),
        span.clone(),
        *piece,
        *continues,
    )
}

/// The fast path's newline search finds a `\n` at every position of every
/// length around its blocks (16 bytes, the last one overlapping) and its
/// hand-over to memchr (past 256), and none where there is none.
#[test]
fn a_newline_is_found_at_every_position() {
    for len in 0..300 {
        let mut bytes = vec![b'\n' ^ 0x80; len];
        assert!(!has_newline(&bytes), "none in {len}");
        for at in 0..len {
            bytes[at] = b'\n';
            assert!(has_newline(&bytes), "at {at} of {len}");
            bytes[at] = b'\n' ^ 0x80;
        }
    }
}

proptest! {
    /// The newline search agrees with memchr's on any bytes.
    #[test]
    fn the_newline_search_is_memchr(
        bytes in proptest::collection::vec(prop_oneof![1 => Just(b'\n'), 200 => any::<u8>()], 0..400),
    ) {
        prop_assert_eq!(has_newline(&bytes), memchr::memchr(b'\n', &bytes).is_some());
    }

    /// The fast path takes a read exactly when a fresh buffer would hand
    /// out one line covering all of it, and hands out that same line.
    #[test]
    fn sole_line_is_feed_on_a_fresh_buffer(
        chunk in proptest::collection::vec(
            prop_oneof![1 => Just(b'\n'), 1 => Just(b'\r'), 40 => any::<u8>()], 0..300),
        max_line in prop_oneof![Just(usize::MAX), 0usize..40],
    ) {
        let mut buffer = LineBuffer::new(max_line);
        let mut lines = Vec::new();
        let fed = buffer.feed(&chunk, |line| {
            lines.push(owned(&line));
            ControlFlow::Continue(())
        });
        let whole = fed.is_ok()
            && buffer.is_idle()
            && lines.len() == 1
            && lines[0].2 == Some(0..chunk.len());
        let fast = sole_line(&chunk, max_line);
        prop_assert_eq!(fast.is_some(), whole);
        if let Some(line) = fast {
            prop_assert_eq!(owned(&line), lines[0].clone());
        }
    }

    /// With no limit, any split of the same bytes joins back to them,
    /// nothing longer than a piece is ever held, and a line short enough
    /// to be held whole comes out whole.
    #[test]
    fn no_limit_reassembles_any_split_within_the_piece_bound(
        data in proptest::collection::vec(prop_oneof![Just(b'\n'), any::<u8>()], 0..400),
        cuts in proptest::collection::vec(0usize..400, 0..20),
        piece in 1usize..16,
    ) {
        let chunks = cut_at(&data, cuts);
        let (out, most) = frame_unlimited(piece, &chunks);
        let joined: Vec<u8> = out.iter().flat_map(|(raw, _)| raw.clone()).collect();
        prop_assert_eq!(joined, data.clone());
        prop_assert!(most <= piece);
        // Regroup the output into lines: a line whose text fits in a
        // piece came out whole, in one part; one cut into parts has
        // none of them whole.
        let mut parts: Vec<&(Vec<u8>, bool)> = Vec::new();
        for entry in &out {
            prop_assert!(!entry.0.is_empty());
            parts.push(entry);
            if entry.0.last() == Some(&b'\n') || std::ptr::eq(entry, out.last().unwrap()) {
                let len: usize = parts.iter().map(|(raw, _)| raw.len()).sum();
                let text = len - usize::from(entry.0.last() == Some(&b'\n'));
                if text <= piece {
                    prop_assert!(parts.len() == 1 && parts[0].1, "{:?}", parts);
                } else if parts.len() > 1 {
                    // (A long line that lay in one read came out whole.)
                    prop_assert!(parts.iter().all(|(_, whole)| !whole), "{:?}", parts);
                }
                parts.clear();
            }
        }
    }

    /// Any split of the same bytes yields the same lines (or the same error).
    #[test]
    fn any_split_yields_the_same_lines(
        data in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), any::<u8>()], 0..400),
        cuts in proptest::collection::vec(0usize..400, 0..20),
        max in 1usize..40,
    ) {
        let whole = frame(max, &[&data]);
        let chunks = cut_at(&data, cuts);
        let split = frame(max, &chunks);
        prop_assert_eq!(whole.1.is_some(), split.1.is_some());
        if whole.1.is_none() {
            prop_assert_eq!(whole.0, split.0);
        }
    }

    /// Lines are never longer than the limit, and joined back with their
    /// terminators they give the input.
    #[test]
    fn lines_reassemble_the_input(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut buffer = LineBuffer::new(usize::MAX - 1);
        let mut joined = Vec::new();
        let _ = buffer.feed(&data, |line| { joined.extend_from_slice(line.raw); ControlFlow::Continue(()) });
        let _ = buffer.finish(|line| { joined.extend_from_slice(line.raw); ControlFlow::Continue(()) });
        prop_assert_eq!(joined, data);
    }
}
