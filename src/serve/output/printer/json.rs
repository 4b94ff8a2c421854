//! `json`: one object per record, for programs.
//!
//! ```text
//! {"event":"open","peer":"[::1]:5"}
//! {"event":"line","peer":"[::1]:5","line":"hello"}
//! {"event":"close","peer":"[::1]:5","reason":"eof"}
//! ```

use super::{PeerLabel, Printer, Prints};
use crate::proto::escape_into;
use crate::serve::close::CloseReason;

pub(crate) struct Json;

impl Printer for Json {
    fn prints(&self) -> Prints {
        Prints {
            opens: true,
            lines: true,
            closes: true,
        }
    }

    fn json_peer(&self) -> bool {
        true
    }

    fn open(&self, out: &mut Vec<u8>, peer: &PeerLabel) {
        out.extend_from_slice(b"{\"event\":\"open\",\"peer\":\"");
        peer.append_to(out);
        out.extend_from_slice(b"\"}\n");
    }

    fn line(&self, out: &mut Vec<u8>, peer: &PeerLabel, text: &[u8]) {
        out.extend_from_slice(b"{\"event\":\"line\",\"peer\":\"");
        peer.append_to(out);
        out.extend_from_slice(b"\",\"line\":\"");
        escape_into(out, text, true);
        out.extend_from_slice(b"\"}\n");
    }

    fn close(&self, out: &mut Vec<u8>, peer: &PeerLabel, reason: CloseReason) {
        out.extend_from_slice(b"{\"event\":\"close\",\"peer\":\"");
        peer.append_to(out);
        out.extend_from_slice(b"\",\"reason\":\"");
        out.extend_from_slice(reason.as_str().as_bytes());
        out.extend_from_slice(b"\"}\n");
    }
}
