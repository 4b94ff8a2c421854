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
    // Fast path: plain printable ASCII needs no work at all.
    if is_plain(bytes, json) {
        return w.write_all(bytes);
    }
    let backslash: &[u8] = if json { b"\\\\" } else { b"\\" };
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid();
        let mut safe_from = 0;
        for (at, c) in valid.char_indices() {
            let json_special = json && (c == '"' || c == '\\');
            if !json_special && !needs_escape(c) {
                continue;
            }
            w.write_all(&valid.as_bytes()[safe_from..at])?;
            safe_from = at + c.len_utf8();
            if json_special {
                write!(w, "\\{c}")?;
                continue;
            }
            w.write_all(backslash)?;
            match c {
                '\t' => w.write_all(b"t")?,
                '\r' => w.write_all(b"r")?,
                '\n' => w.write_all(b"n")?,
                '\0' => w.write_all(b"0")?,
                _ => write!(w, "u{{{:x}}}", c as u32)?,
            }
        }
        w.write_all(&valid.as_bytes()[safe_from..])?;
        for byte in chunk.invalid() {
            w.write_all(backslash)?;
            write!(w, "x{byte:02x}")?;
        }
    }
    Ok(())
}

/// Whether every byte is printable ASCII (and, for JSON, neither `"` nor
/// `\\`), so the text can be copied as it is. This runs for every printed
/// line, so it looks at eight bytes at a time: with `ONES` in every byte,
/// `(w - k * ONES) & !w & HIGH` is non-zero exactly when some byte of `w`
/// is below `k` (and under 0x80), the classic "has a zero byte" test.
fn is_plain(bytes: &[u8], json: bool) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // High bit set in each byte below `k` (given the byte is under 0x80).
    let below = |w: u64, k: u64| w.wrapping_sub(k * ONES) & !w;
    let quote = u64::from(b'"') * ONES;
    let backslash = u64::from(b'\\') * ONES;
    let mut words = bytes.chunks_exact(8);
    // No early exit: a line is short, and a loop without branches runs
    // several words per cycle.
    let mut bad = 0u64;
    for chunk in &mut words {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        // A control character, or DEL (0x7f) and above.
        bad |= below(w, 0x20) | w.wrapping_add(ONES) | w;
        if json {
            bad |= below(w ^ quote, 1) | below(w ^ backslash, 1);
        }
    }
    bad & HIGH == 0
        && words
            .remainder()
            .iter()
            .all(|&b| (0x20..0x7f).contains(&b) && !(json && (b == b'"' || b == b'\\')))
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

    #[test]
    fn plain_means_printable_ascii_at_every_position() {
        for len in 0..20 {
            let text = vec![b'a'; len];
            assert!(is_plain(&text, false) && is_plain(&text, true));
            for at in 0..len {
                for bad in [0x00, 0x1f, 0x7f, 0x80, 0xff] {
                    let mut text = text.clone();
                    text[at] = bad;
                    assert!(!is_plain(&text, false), "{bad:#x} at {at} of {len}");
                }
                for json_only in [b'"', b'\\'] {
                    let mut text = text.clone();
                    text[at] = json_only;
                    assert!(is_plain(&text, false) && !is_plain(&text, true));
                }
            }
        }
    }

    proptest! {
        /// The word-at-a-time test agrees with the byte-at-a-time rule.
        #[test]
        fn plain_agrees_with_the_byte_rule(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            for json in [false, true] {
                let expected = bytes
                    .iter()
                    .all(|&b| (0x20..0x7f).contains(&b) && !(json && (b == b'"' || b == b'\\')));
                prop_assert_eq!(is_plain(&bytes, json), expected);
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
