//! A peer as every printed record names it, rendered once per connection.

use std::fmt;

/// A peer as printed: its address, rendered (escaped for this output's
/// format) once, when the connection is made or a PROXY header names
/// another peer, and then copied as it is into every record. It reads as
/// the peer in logs too.
///
/// Every connection keeps one, for as long as it is open, so it is kept
/// inside the connection when it fits (every IPv4 peer, `127.0.0.1:50312`,
/// and short IPv6 ones, `[::1]:50312`): 24 bytes in place, where a boxed
/// string would take 16 and a heap block of 32 besides. Longer ones (most
/// IPv6 peers, Unix socket paths) are boxed.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct PeerLabel(Label);

/// The most a label kept in place holds: with its length and the enum's
/// tag, 24 bytes, as large as the boxed form's 16 rounded to the alignment.
const INLINE_LABEL: usize = 22;

#[derive(Clone, PartialEq, Eq)]
enum Label {
    Inline { len: u8, bytes: [u8; INLINE_LABEL] },
    Boxed(Box<str>),
}

impl PeerLabel {
    pub(super) fn new(text: String) -> PeerLabel {
        match u8::try_from(text.len()) {
            Ok(len) if text.len() <= INLINE_LABEL => {
                let mut bytes = [0; INLINE_LABEL];
                bytes[..text.len()].copy_from_slice(text.as_bytes());
                PeerLabel(Label::Inline { len, bytes })
            }
            _ => PeerLabel(Label::Boxed(text.into_boxed_str())),
        }
    }

    /// Appends the label to `out`, as every printed record does. A label
    /// kept in place is copied whole, all `INLINE_LABEL` bytes at once (a
    /// few moves, where a copy of its length would call `memcpy`), and the
    /// buffer then ends after its own length: the bytes past it are spare
    /// capacity that the next append overwrites.
    #[inline]
    pub fn append_to(&self, out: &mut Vec<u8>) {
        match &self.0 {
            Label::Inline { len, bytes } => {
                out.reserve(INLINE_LABEL);
                let start = out.len();
                // SAFETY: `INLINE_LABEL` bytes of spare capacity were just
                // reserved after `start`, and an unaligned write of the
                // array stays within them; `len <= INLINE_LABEL` (see
                // `new`), so the new length covers only bytes written.
                unsafe {
                    out.as_mut_ptr()
                        .add(start)
                        .cast::<[u8; INLINE_LABEL]>()
                        .write_unaligned(*bytes);
                    out.set_len(start + usize::from(*len));
                }
            }
            Label::Boxed(text) => out.extend_from_slice(text.as_bytes()),
        }
    }

    /// The label's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Label::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Label::Boxed(text) => text.as_bytes(),
        }
    }
}

impl std::ops::Deref for PeerLabel {
    type Target = str;

    fn deref(&self) -> &str {
        // Always whole UTF-8: the bytes of a `String`, all of them.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

impl fmt::Display for PeerLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

impl fmt::Debug for PeerLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
