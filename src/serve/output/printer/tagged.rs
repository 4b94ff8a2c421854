//! `tagged`, the default: every line with its peer, and the connection
//! events marked with `*`.
//!
//! ```text
//! * [127.0.0.1:50312] open
//! [127.0.0.1:50312] hello
//! * [127.0.0.1:50312] close: eof
//! ```

use super::{PeerLabel, Printer, Prints};
use crate::proto::escape_into;
use crate::serve::close::CloseReason;

pub(crate) struct Tagged;

impl Printer for Tagged {
    fn prints(&self) -> Prints {
        Prints {
            opens: true,
            lines: true,
            closes: true,
        }
    }

    fn open(&self, out: &mut Vec<u8>, peer: &PeerLabel) {
        out.extend_from_slice(b"* [");
        peer.append_to(out);
        out.extend_from_slice(b"] open\n");
    }

    fn line(&self, out: &mut Vec<u8>, peer: &PeerLabel, text: &[u8]) {
        out.push(b'[');
        peer.append_to(out);
        out.extend_from_slice(b"] ");
        escape_into(out, text, false);
        out.push(b'\n');
    }

    fn close(&self, out: &mut Vec<u8>, peer: &PeerLabel, reason: CloseReason) {
        out.extend_from_slice(b"* [");
        peer.append_to(out);
        out.extend_from_slice(b"] close: ");
        out.extend_from_slice(reason.as_str().as_bytes());
        out.push(b'\n');
    }
}
