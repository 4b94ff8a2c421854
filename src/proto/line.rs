//! Splitting a byte stream into lines.
//!
//! The notes' server calls `recv(1024)` and treats each chunk as one message, so
//! a command split across two reads, or two commands in one read, is missed.
//! TCP delivers a stream, not messages: framing must work for every way the
//! same bytes can be cut into reads. This module owns that rule and nothing
//! else: no sockets, no clock, so it is tested exhaustively with `proptest`.
//!
//! The invariants it keeps:
//!
//! - A line ends at `\n`; a `\r` just before it is not part of the line's text.
//! - Lines that lie wholly inside one read are handed out as slices of that
//!   read: no copy. Only a partial line at the end of a read is copied into
//!   the connection's own buffer, which is allocated the first time that
//!   happens and is never more than `max_line + 1` bytes (room for a `\r`).
//! - A line whose text is longer than `max_line` is an error as soon as that
//!   is certain, whatever the split: memory stays bounded whatever a peer sends.
//! - With no limit (`max_line` = `usize::MAX`, `--max-line off`, for raw
//!   echo of binary data), memory stays bounded another way: between reads
//!   an unfinished line is never held beyond [`PIECE`] bytes; a longer one
//!   is handed out in pieces, as they come, marked so that no piece is taken
//!   for a command.
//!   Joined, the pieces are the line; where it is cut depends on the reads.

use std::ops::{ControlFlow, Range};

/// With no line limit, the most of an unfinished line held at once.
pub const PIECE: usize = 64 * 1024;

/// One complete line, as handed to the caller of [`LineBuffer::feed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line<'a> {
    /// The bytes as received, with the `\n` (or `\r\n`) that ended them, if any.
    pub raw: &'a [u8],
    /// The line without its terminator: what is printed and parsed.
    pub text: &'a [u8],
    /// Where `raw` lies in the chunk passed to `feed`, when it lies wholly in
    /// it; `None` when the line was completed from the partial-line buffer.
    /// Consecutive lines have touching ranges, so a caller can echo a run of
    /// them with one write.
    pub span: Option<Range<usize>>,
    /// Only with no line limit: more of this line follows (this is a piece
    /// of a line longer than [`PIECE`]; `text` is then `raw`, as it came).
    pub piece: bool,
    /// Only with no line limit: this continues a line handed out in
    /// pieces before; its start is not here.
    pub continues: bool,
}

impl<'a> Line<'a> {
    fn new(raw: &'a [u8], span: Option<Range<usize>>) -> Self {
        let text = raw.strip_suffix(b"\n").unwrap_or(raw);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        Line {
            raw,
            text,
            span,
            piece: false,
            continues: false,
        }
    }

    /// A piece of a longer line, with more to come.
    fn piece(raw: &'a [u8], span: Option<Range<usize>>, continues: bool) -> Self {
        Line {
            raw,
            text: raw,
            span,
            piece: true,
            continues,
        }
    }

    /// Whether this is a whole line (not a piece of a longer one): only a
    /// whole line can be a command.
    pub fn is_whole(&self) -> bool {
        !self.piece && !self.continues
    }
}

/// A line longer than the limit: the connection that sent it must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineTooLong {
    /// The limit that was passed, in bytes of line text.
    pub max_line: usize,
}

impl std::fmt::Display for LineTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line too long (limit {} bytes)", self.max_line)
    }
}

impl std::error::Error for LineTooLong {}

/// The per-connection framing state: at most one partial line.
///
/// ```
/// use std::ops::ControlFlow;
/// use selectd::proto::line::LineBuffer;
///
/// let mut buffer = LineBuffer::new(1024);
/// let mut lines = Vec::new();
/// for chunk in [&b"hel"[..], b"lo\r\nwor", b"ld\n"] {
///     buffer.feed(chunk, |line| {
///         lines.push(String::from_utf8_lossy(line.text).into_owned());
///         ControlFlow::Continue(())
///     })?;
/// }
/// assert_eq!(lines, ["hello", "world"]);
/// # Ok::<(), selectd::proto::line::LineTooLong>(())
/// ```
#[derive(Debug)]
pub struct LineBuffer {
    partial: Vec<u8>,
    max_line: usize,
    completed: u64,
    /// With no line limit: hold at most this much (`PIECE`, smaller in tests).
    piece_len: usize,
    /// The line now held (or next begun) continues pieces handed out before.
    continued: bool,
}

impl LineBuffer {
    /// An empty buffer for lines of at most `max_line` bytes of text.
    /// Nothing is allocated until a line is split across two reads.
    /// `usize::MAX` means no limit: long lines come out in pieces.
    pub fn new(max_line: usize) -> Self {
        LineBuffer {
            partial: Vec::new(),
            max_line,
            completed: 0,
            piece_len: PIECE,
            continued: false,
        }
    }

    fn unlimited(&self) -> bool {
        self.max_line == usize::MAX
    }

    /// Bytes of an unfinished line held from earlier reads.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    /// The unfinished line held from earlier reads, when it is the start of
    /// a whole line (not the rest of one already handed out in pieces).
    pub fn held_line(&self) -> Option<&[u8]> {
        (!self.continued).then_some(&self.partial[..])
    }

    /// Nothing held and no line in progress: this buffer may be dropped and
    /// a new one made for the next read without losing anything (but the
    /// [`completed`](Self::completed) count).
    pub fn is_idle(&self) -> bool {
        self.partial.is_empty() && !self.continued
    }

    /// Lines completed so far: with [`pending`](Self::pending), tells
    /// whether the unfinished line now held is the same one as before.
    pub fn completed(&self) -> u64 {
        self.completed
    }

    /// Frames `chunk`, calling `on_line` for every complete line in order.
    ///
    /// `on_line` may return `Break` to stop: the rest of the chunk is then
    /// dropped (the connection is going away, as after `disconnect`).
    /// A trailing partial line is kept for the next call.
    pub fn feed<F>(&mut self, chunk: &[u8], mut on_line: F) -> Result<ControlFlow<()>, LineTooLong>
    where
        F: FnMut(Line<'_>) -> ControlFlow<()>,
    {
        let mut start = 0;
        let mut newlines = Newlines::new(chunk);
        if !self.partial.is_empty() {
            // The first newline completes the line begun in an earlier read.
            let Some(end) = newlines.next().map(|nl| nl + 1) else {
                return self.hold_tail(chunk, 0, &mut on_line);
            };
            self.keep_partial(&chunk[..end])?;
            if self.hand_out_partial(&mut on_line)?.is_break() {
                return Ok(ControlFlow::Break(()));
            }
            start = end;
        }
        for nl in newlines {
            let mut line = Line::new(&chunk[start..=nl], Some(start..nl + 1));
            if line.text.len() > self.max_line {
                return Err(self.too_long());
            }
            line.continues = std::mem::take(&mut self.continued);
            self.completed += 1;
            if on_line(line).is_break() {
                return Ok(ControlFlow::Break(()));
            }
            start = nl + 1;
        }
        self.hold_tail(chunk, start, &mut on_line)
    }

    /// The end of `chunk` from `start` holds no newline: keep it for the
    /// next read. With no line limit, a line that would be held beyond
    /// `piece_len` is handed out instead: what was held, then this tail.
    fn hold_tail<F>(
        &mut self,
        chunk: &[u8],
        start: usize,
        on_line: &mut F,
    ) -> Result<ControlFlow<()>, LineTooLong>
    where
        F: FnMut(Line<'_>) -> ControlFlow<()>,
    {
        let tail = &chunk[start..];
        if !self.unlimited() || self.partial.len() + tail.len() <= self.piece_len {
            self.keep_partial(tail)?;
            return Ok(ControlFlow::Continue(()));
        }
        if !self.partial.is_empty() {
            let continues = std::mem::replace(&mut self.continued, true);
            let flow = on_line(Line::piece(&self.partial, None, continues));
            self.clear_partial();
            if flow.is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        if tail.len() <= self.piece_len {
            self.keep_partial(tail)?;
            return Ok(ControlFlow::Continue(()));
        }
        let continues = std::mem::replace(&mut self.continued, true);
        Ok(on_line(Line::piece(
            tail,
            Some(start..chunk.len()),
            continues,
        )))
    }

    /// At end of stream: the unterminated last line, if any, as a line.
    /// The buffer is empty afterwards.
    pub fn finish<F>(&mut self, on_line: F) -> Result<ControlFlow<()>, LineTooLong>
    where
        F: FnOnce(Line<'_>) -> ControlFlow<()>,
    {
        if self.partial.is_empty() {
            return Ok(ControlFlow::Continue(()));
        }
        self.hand_out_partial(on_line)
    }

    /// The held line, now complete (or final), goes to `on_line`; the
    /// buffer is empty afterwards.
    fn hand_out_partial<F>(&mut self, on_line: F) -> Result<ControlFlow<()>, LineTooLong>
    where
        F: FnOnce(Line<'_>) -> ControlFlow<()>,
    {
        let mut line = Line::new(&self.partial, None);
        if line.text.len() > self.max_line {
            return Err(self.too_long());
        }
        line.continues = std::mem::take(&mut self.continued);
        let flow = on_line(line);
        self.completed += 1;
        self.clear_partial();
        Ok(flow)
    }

    /// Appends bytes of an unfinished line, refusing once the line can no
    /// longer fit: its text may reach `max_line`, plus one byte for a `\r`.
    fn keep_partial(&mut self, bytes: &[u8]) -> Result<(), LineTooLong> {
        if bytes.is_empty() {
            return Ok(());
        }
        let unterminated = bytes.last() != Some(&b'\n');
        let text_so_far = self.partial.len() + bytes.len() - usize::from(!unterminated);
        if unterminated && text_so_far > self.max_line.saturating_add(1) {
            return Err(self.too_long());
        }
        self.partial.extend_from_slice(bytes);
        Ok(())
    }

    /// Drops the offending line and reports it.
    fn too_long(&mut self) -> LineTooLong {
        self.clear_partial();
        self.continued = false;
        LineTooLong {
            max_line: self.max_line,
        }
    }

    /// Forgets the partial line. A small buffer keeps its capacity for the
    /// next split line (so steady traffic does not allocate); a large one,
    /// left by one long line, is given back so idle connections stay small.
    fn clear_partial(&mut self) {
        const KEEP_CAPACITY: usize = 4 * 1024;
        if self.partial.capacity() > KEEP_CAPACITY {
            self.partial = Vec::new();
        } else {
            self.partial.clear();
        }
    }
}

/// Framing's fast path: the line in `chunk` if `chunk` is exactly one whole
/// line (its only `\n` is its last byte) of at most `max_line` bytes of
/// text, as [`LineBuffer::feed`] on an empty buffer would hand it out;
/// `None` for anything else, which then goes through a `LineBuffer`.
///
/// That is the common read of an interactive client, which sends a line and
/// waits for the answer: it needs no buffer and no loop over newlines.
///
/// ```
/// use selectd::proto::line::sole_line;
///
/// assert_eq!(sole_line(b"hello\r\n", 1024).map(|line| line.text), Some(&b"hello"[..]));
/// assert!(sole_line(b"two\nlines\n", 1024).is_none());
/// assert!(sole_line(b"unfinished", 1024).is_none());
/// assert!(sole_line(b"too long\n", 4).is_none()); // `feed` says why
/// ```
pub fn sole_line(chunk: &[u8], max_line: usize) -> Option<Line<'_>> {
    let (&last, body) = chunk.split_last()?;
    if last != b'\n' || has_newline(body) {
        return None;
    }
    let line = Line::new(chunk, Some(0..chunk.len()));
    (line.text.len() <= max_line).then_some(line)
}

/// Whether `bytes` holds a `\n`: for a line's worth of bytes, sixteen at a
/// time with SSE2 (every x86-64), the last block overlapping.
///
/// memchr's searchers are built for long haystacks: for a 64-byte read,
/// choosing an implementation, checking lengths and aligning cost more than
/// the search (about 80 instructions under callgrind, where this takes
/// about 30). Longer reads, and other CPUs, go to memchr.
fn has_newline(bytes: &[u8]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if (16..=256).contains(&bytes.len()) {
        // SAFETY: the length is at least one block, as `sse2` requires.
        return unsafe { sse2::has_newline(bytes) };
    }
    memchr::memchr(b'\n', bytes).is_some()
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };

    /// Whether `bytes` (at least 16 of them) holds a `\n`.
    ///
    /// # Safety
    ///
    /// `bytes.len() >= 16`.
    #[target_feature(enable = "sse2")]
    pub(super) unsafe fn has_newline(bytes: &[u8]) -> bool {
        let newline = _mm_set1_epi8(b'\n' as i8);
        let ptr = bytes.as_ptr();
        let len = bytes.len();
        // SAFETY: every block read lies within `bytes`: `at + 16 <= len`
        // in the loop, and the last block is `len - 16 .. len`.
        let block = |at: usize| unsafe { _mm_loadu_si128(ptr.add(at).cast::<__m128i>()) };
        let last = _mm_cmpeq_epi8(block(len - 16), newline);
        let mut found = last;
        let mut at = 0;
        while at + 16 < len {
            found = _mm_or_si128(found, _mm_cmpeq_epi8(block(at), newline));
            at += 16;
        }
        _mm_movemask_epi8(found) != 0
    }
}

/// memchr's AVX2 newline searcher, if this CPU has AVX2 (asked once).
#[cfg(target_arch = "x86_64")]
fn avx2_newlines() -> Option<&'static memchr::arch::x86_64::avx2::memchr::One> {
    use memchr::arch::x86_64::avx2::memchr::One;
    static AVX2: std::sync::OnceLock<Option<One>> = std::sync::OnceLock::new();
    AVX2.get_or_init(|| One::new(b'\n')).as_ref()
}

/// The positions of `\n` in a chunk, in order: `memchr`'s SIMD search.
///
/// `memchr_iter` picks its implementation through a function pointer on
/// every call, that is once per line; for 64-byte lines that dispatch is a
/// sixth of the framing cost. On x86-64 with AVX2 (checked once per process)
/// memchr's AVX2 searcher is used directly instead (+19% framing throughput
/// at 64 B lines in `benches/micro.rs`); elsewhere, `memchr_iter`.
enum Newlines<'h> {
    #[cfg(target_arch = "x86_64")]
    Avx2(memchr::arch::x86_64::avx2::memchr::OneIter<'static, 'h>),
    Portable(memchr::Memchr<'h>),
}

impl<'h> Newlines<'h> {
    fn new(chunk: &'h [u8]) -> Self {
        #[cfg(target_arch = "x86_64")]
        if let Some(finder) = avx2_newlines() {
            return Newlines::Avx2(finder.iter(chunk));
        }
        Newlines::Portable(memchr::memchr_iter(b'\n', chunk))
    }
}

impl Iterator for Newlines<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        match self {
            #[cfg(target_arch = "x86_64")]
            Newlines::Avx2(it) => it.next(),
            Newlines::Portable(it) => it.next(),
        }
    }
}

#[cfg(test)]
mod tests;
