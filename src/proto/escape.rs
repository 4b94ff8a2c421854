//! Escaping: what a client sends may not act on the operator's terminal.
//!
//! The notes print whatever arrives, so a client can move the cursor, change
//! colours or reorder text on the operator's screen with escape sequences and
//! bidi controls. Every byte a client chose goes through [`write_escaped`]
//! before it is printed: control characters (C0, DEL, C1), Unicode bidi
//! overrides and line separators become visible `\u{1b}`-style escapes and
//! invalid UTF-8 becomes `\xff`, while printable UTF-8 is kept as written
//! (the notes are Turkish: `çalışıyor` prints as `çalışıyor`). A backslash is
//! printable and stays as it is.

use std::io::{self, Write};

/// Writes `bytes` so that no byte a client chose can act on a terminal or
/// break a JSON string; see the module docs for the rules.
///
/// With `json`, the result is also valid inside a JSON string (`"` and `\`
/// are escaped for JSON; a visible escape such as `\u{1b}` reads back as
/// that text).
///
/// ```
/// let mut out = Vec::new();
/// selectd::proto::write_escaped(&mut out, "çalışıyor \x1b[31m\u{202e}".as_bytes(), false)?;
/// selectd::proto::write_escaped(&mut out, b" \xff", false)?;
/// assert_eq!(String::from_utf8(out).unwrap(), r"çalışıyor \u{1b}[31m\u{202e} \xff");
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn write_escaped<W: Write + ?Sized>(w: &mut W, bytes: &[u8], json: bool) -> io::Result<()> {
    let mut out = Vec::with_capacity(bytes.len());
    escape_into(&mut out, bytes, json);
    w.write_all(&out)
}

/// Appends `bytes`, escaped as [`write_escaped`] does, to `out`: the form
/// the server's printers use, since appending to a buffer cannot fail.
///
/// It checks and copies in one pass: eight bytes at a time while they are
/// printable ASCII (almost every line), each word stored as soon as it is
/// checked; from the first word that is not, character by character. The
/// tail of a line is checked and stored as one last, overlapping word.
///
/// ```
/// let mut out = b"[peer] ".to_vec();
/// selectd::proto::escape_into(&mut out, b"say \"hi\" \x07", true);
/// assert_eq!(out, br#"[peer] say \"hi\" \\u{7}"#);
/// ```
#[inline(always)]
pub fn escape_into(out: &mut Vec<u8>, bytes: &[u8], json: bool) {
    let copied = if json {
        copy_plain::<true>(out, bytes)
    } else {
        copy_plain::<false>(out, bytes)
    };
    if let Some(rest) = bytes.get(copied..).filter(|rest| !rest.is_empty()) {
        escape_slowly(out, rest, json);
    }
}

/// Appends the longest start of `bytes` that needs no escaping, checking
/// and storing a word at a time, and returns its length (all of `bytes`
/// for almost every line). Generic over `JSON` so that the check has no
/// branch on the format inside the loop.
#[inline(always)]
fn copy_plain<const JSON: bool>(out: &mut Vec<u8>, bytes: &[u8]) -> usize {
    let len = bytes.len();
    out.reserve(len);
    let start = out.len();
    let src = bytes.as_ptr();
    // SAFETY (all the pointer accesses below): `src` is valid for `len`
    // bytes, and `dst` for `len` bytes of reserved spare capacity; every
    // word read or written lies within `[0, len)` (`at + 8 <= len`, or the
    // last eight bytes when `len >= 8`), unaligned accesses are used, and
    // `set_len` covers exactly the bytes written, in order from `start`.
    let dst = unsafe { out.as_mut_ptr().add(start) };
    // Sixteen bytes at a time where the CPU has it (every x86-64), then
    // eight: a bad block stops the first loop, and the second finds the
    // word in it.
    #[cfg(target_arch = "x86_64")]
    let mut at = unsafe { sse2::copy_plain::<JSON>(src, dst, len) };
    #[cfg(not(target_arch = "x86_64"))]
    let mut at = 0;
    while at + 8 <= len {
        let word = unsafe { src.add(at).cast::<u64>().read_unaligned() };
        if plain_word::<JSON>(word) != 0 {
            unsafe { out.set_len(start + at) };
            return at;
        }
        unsafe { dst.add(at).cast::<u64>().write_unaligned(word) };
        at += 8;
    }
    if at < len {
        if len >= 8 {
            // The tail, as the last (overlapping) word.
            let word = unsafe { src.add(len - 8).cast::<u64>().read_unaligned() };
            if plain_word::<JSON>(word) == 0 {
                unsafe { dst.add(len - 8).cast::<u64>().write_unaligned(word) };
                at = len;
            }
        } else {
            while at < len && is_plain_byte(bytes[at], JSON) {
                unsafe { dst.add(at).write(bytes[at]) };
                at += 1;
            }
        }
    }
    unsafe { out.set_len(start + at) };
    at
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::{
        __m128i, _mm_add_epi8, _mm_cmpeq_epi8, _mm_cmpgt_epi8, _mm_loadu_si128, _mm_movemask_epi8,
        _mm_or_si128, _mm_set1_epi8, _mm_setzero_si128, _mm_storeu_si128,
    };

    /// The bytes of `block` that must be escaped, as 0xff (the others 0).
    ///
    /// Printable ASCII is 0x20..=0x7e. Adding 0x60 (wrapping) moves exactly
    /// that range to 0x80..=0xde, the bottom of the signed bytes (-128 to
    /// -34), and every other byte above it: one add and one signed compare
    /// tell them apart. For `JSON`, `"` and `\` are marked too.
    #[inline]
    #[target_feature(enable = "sse2")]
    fn to_escape<const JSON: bool>(block: __m128i) -> __m128i {
        let shifted = _mm_add_epi8(block, _mm_set1_epi8(0x60));
        let mut bad = _mm_cmpgt_epi8(shifted, _mm_set1_epi8(-34));
        if JSON {
            let quote = _mm_cmpeq_epi8(block, _mm_set1_epi8(b'"' as i8));
            let backslash = _mm_cmpeq_epi8(block, _mm_set1_epi8(b'\\' as i8));
            bad = _mm_or_si128(bad, _mm_or_si128(quote, backslash));
        }
        bad
    }

    /// Copies `src` to `dst` sixteen bytes at a time while every byte is
    /// printable ASCII (for `JSON`, neither `"` nor `\\` either); returns how
    /// many bytes were copied: all of them, or a multiple of 16 (then the
    /// block that follows holds a byte to escape, or the rest is shorter
    /// than a block, or the last block holds one).
    ///
    /// Almost every line is plain, so the blocks are checked together:
    /// each is stored as it is read, whatever it holds, and the verdicts
    /// are gathered into one, tested once at the end. Only when that finds
    /// a byte to escape are the blocks looked at again, for the first bad
    /// one; what was stored past it lies beyond the length the caller sets,
    /// in reserved capacity, and is written over.
    ///
    /// # Safety
    ///
    /// `src` must be valid for reads and `dst` for writes of `len` bytes.
    #[target_feature(enable = "sse2")]
    pub(super) unsafe fn copy_plain<const JSON: bool>(
        src: *const u8,
        dst: *mut u8,
        len: usize,
    ) -> usize {
        if len < 16 {
            return 0;
        }
        // SAFETY (every load and store below): each block lies within
        // `0..len` (`at + 16 <= len`, or the last sixteen bytes), and the
        // caller vouches for `len`.
        let load = |at: usize| unsafe { _mm_loadu_si128(src.add(at).cast::<__m128i>()) };
        let mut bad = _mm_setzero_si128();
        let mut at = 0;
        while at + 16 <= len {
            let block = load(at);
            bad = _mm_or_si128(bad, to_escape::<JSON>(block));
            unsafe { _mm_storeu_si128(dst.add(at).cast::<__m128i>(), block) };
            at += 16;
        }
        if at < len {
            // The tail, as the last (overlapping) block.
            let block = load(len - 16);
            bad = _mm_or_si128(bad, to_escape::<JSON>(block));
            unsafe { _mm_storeu_si128(dst.add(len - 16).cast::<__m128i>(), block) };
        }
        if _mm_movemask_epi8(bad) == 0 {
            return len;
        }
        // Some byte needs escaping: the plain blocks before the first that
        // holds one are what was copied.
        let mut at = 0;
        while at + 16 <= len && _mm_movemask_epi8(to_escape::<JSON>(load(at))) == 0 {
            at += 16;
        }
        at
    }
}

/// Escapes `bytes` character by character (the path for text that is not
/// all printable ASCII).
fn escape_slowly(out: &mut Vec<u8>, bytes: &[u8], json: bool) {
    let backslash: &[u8] = if json { b"\\\\" } else { b"\\" };
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid();
        let mut safe_from = 0;
        for (at, c) in valid.char_indices() {
            let json_special = json && (c == '"' || c == '\\');
            if !json_special && !needs_escape(c) {
                continue;
            }
            out.extend_from_slice(&valid.as_bytes()[safe_from..at]);
            safe_from = at + c.len_utf8();
            if json_special {
                out.extend_from_slice(&[b'\\', c as u8]);
                continue;
            }
            out.extend_from_slice(backslash);
            match c {
                '\t' => out.push(b't'),
                '\r' => out.push(b'r'),
                '\n' => out.push(b'n'),
                '\0' => out.push(b'0'),
                // Writing to a `Vec` cannot fail.
                _ => {
                    let _ = write!(out, "u{{{:x}}}", c as u32);
                }
            }
        }
        out.extend_from_slice(&valid.as_bytes()[safe_from..]);
        for &byte in chunk.invalid() {
            out.extend_from_slice(backslash);
            let _ = write!(out, "x{byte:02x}");
        }
    }
}

/// Whether `bytes` needs no escaping at all, so it can be copied as it is
/// (a peer's label, checked once per connection).
pub(crate) fn is_plain(bytes: &[u8], json: bool) -> bool {
    bytes.iter().all(|&b| is_plain_byte(b, json))
}

/// Printable ASCII (and, for JSON, neither `"` nor `\\`).
fn is_plain_byte(b: u8, json: bool) -> bool {
    (0x20..0x7f).contains(&b) && !(json && (b == b'"' || b == b'\\'))
}

/// Non-zero exactly when some byte of `w` must be escaped. With `ONES` in
/// every byte, `(w - k * ONES) & !w & HIGH` has the high bit of each byte
/// below `k` (that is under 0x80) set: the classic "has a zero byte" test.
/// Bytes of 0x7f and above are caught by `w + ONES` and `w` themselves.
fn plain_word<const JSON: bool>(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |w: u64, k: u64| w.wrapping_sub(k * ONES) & !w;
    let mut bad = below(w, 0x20) | w.wrapping_add(ONES) | w;
    if JSON {
        let quote = u64::from(b'"') * ONES;
        let backslash = u64::from(b'\\') * ONES;
        bad |= below(w ^ quote, 1) | below(w ^ backslash, 1);
    }
    bad & HIGH
}

/// Characters that must not reach a terminal raw: controls, and the
/// invisible ones that reorder or break what is displayed around them.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{061c}' | '\u{200e}' | '\u{200f}'   // bidi marks
            | '\u{202a}'..='\u{202e}'              // bidi embeddings and overrides
            | '\u{2066}'..='\u{2069}'              // bidi isolates
            | '\u{2028}' | '\u{2029}'              // line and paragraph separators
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn escaped(bytes: &[u8], json: bool) -> String {
        let mut out = Vec::new();
        write_escaped(&mut out, bytes, json).unwrap();
        String::from_utf8(out).expect("escaped output is UTF-8")
    }

    /// The rules written the simple way, character by character (the
    /// implementation before the one-pass one): the reference it must match.
    fn reference(bytes: &[u8], json: bool) -> Vec<u8> {
        let mut w = Vec::new();
        let backslash: &[u8] = if json { b"\\\\" } else { b"\\" };
        for chunk in bytes.utf8_chunks() {
            for c in chunk.valid().chars() {
                if json && (c == '"' || c == '\\') {
                    write!(w, "\\{c}").unwrap();
                } else if needs_escape(c) {
                    w.extend_from_slice(backslash);
                    match c {
                        '\t' => w.extend_from_slice(b"t"),
                        '\r' => w.extend_from_slice(b"r"),
                        '\n' => w.extend_from_slice(b"n"),
                        '\0' => w.extend_from_slice(b"0"),
                        _ => write!(w, "u{{{:x}}}", c as u32).unwrap(),
                    }
                } else {
                    write!(w, "{c}").unwrap();
                }
            }
            for byte in chunk.invalid() {
                w.extend_from_slice(backslash);
                write!(w, "x{byte:02x}").unwrap();
            }
        }
        w
    }

    #[test]
    fn turkish_stays_as_written() {
        assert_eq!(
            escaped("çalışıyor ĞÜŞİÖÇ".as_bytes(), false),
            "çalışıyor ĞÜŞİÖÇ"
        );
    }

    #[test]
    fn controls_and_bidi_are_visible() {
        assert_eq!(
            escaped(b"a\x1b[2Jb\x07\x00\t", false),
            r"a\u{1b}[2Jb\u{7}\0\t"
        );
        assert_eq!(
            escaped("x\u{202e}y\u{85}".as_bytes(), false),
            r"x\u{202e}y\u{85}"
        );
        assert_eq!(escaped(b"\x7f", false), r"\u{7f}");
    }

    #[test]
    fn invalid_utf8_is_hex() {
        assert_eq!(escaped(b"a\xffb\xc3", false), r"a\xffb\xc3");
    }

    #[test]
    fn json_escapes_quotes_and_backslashes() {
        assert_eq!(escaped(br#"say "hi" \o/"#, false), r#"say "hi" \o/"#);
        assert_eq!(escaped(br#"say "hi" \o/"#, true), r#"say \"hi\" \\o/"#);
        assert_eq!(escaped(b"\x1b\xff", true), r"\\u{1b}\\xff");
    }

    /// A bad byte at every position of every length, around the word
    /// boundaries and the overlapping last word, is found.
    #[test]
    fn a_bad_byte_is_escaped_at_every_position() {
        for len in 0..30 {
            let text = vec![b'a'; len];
            for json in [false, true] {
                let mut out = b"prefix".to_vec();
                escape_into(&mut out, &text, json);
                assert_eq!(&out[6..], &text[..]);
                assert!(is_plain(&text, json));
            }
            for at in 0..len {
                for bad in [0x00, 0x1f, 0x7f, 0x80, 0xff, b'"', b'\\'] {
                    let mut text = text.clone();
                    text[at] = bad;
                    for json in [false, true] {
                        let mut out = Vec::new();
                        escape_into(&mut out, &text, json);
                        assert_eq!(out, reference(&text, json), "{bad:#x} at {at} of {len}");
                    }
                }
            }
        }
    }

    proptest! {
        /// The one-pass escaping agrees with the simple one, for any bytes
        /// (mostly printable, so that long plain runs, and the words after
        /// a bad one, are exercised), appended after anything.
        #[test]
        fn one_pass_agrees_with_the_reference(
            prefix in proptest::collection::vec(any::<u8>(), 0..9),
            bytes in proptest::collection::vec(
                prop_oneof![8 => 0x20u8..0x7f, 1 => any::<u8>()], 0..200),
        ) {
            for json in [false, true] {
                let mut out = prefix.clone();
                escape_into(&mut out, &bytes, json);
                prop_assert_eq!(&out[..prefix.len()], &prefix[..]);
                prop_assert_eq!(&out[prefix.len()..], &reference(&bytes, json)[..]);
                let plain = bytes.iter().all(|&b| is_plain_byte(b, json));
                prop_assert_eq!(is_plain(&bytes, json), plain);
            }
        }

        /// Any UTF-8 text (multi-byte characters included) too.
        #[test]
        fn one_pass_agrees_on_any_text(text in any::<String>()) {
            for json in [false, true] {
                let mut out = Vec::new();
                escape_into(&mut out, text.as_bytes(), json);
                prop_assert_eq!(out, reference(text.as_bytes(), json));
            }
        }

        /// Whatever a client sends, the escaped text has no control
        /// character, and printable UTF-8 input comes out unchanged.
        #[test]
        fn escaped_text_is_inert(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            for json in [false, true] {
                let out = escaped(&bytes, json);
                prop_assert!(!out.chars().any(needs_escape));
            }
        }

        #[test]
        fn printable_text_is_unchanged(text in "[a-zA-Z0-9 çğıöşüÇĞİÖŞÜ.,!?\\\\]{0,50}") {
            prop_assert_eq!(escaped(text.as_bytes(), false), text);
        }
    }
}
