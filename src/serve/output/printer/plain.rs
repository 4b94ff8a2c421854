//! `plain`: what the notes' server prints, each line stripped of the
//! whitespace around it and a separator after each client; no peers, no
//! `open`.

use super::{PeerLabel, Printer, Prints};
use crate::proto::escape_into;
use crate::serve::close::CloseReason;
use crate::serve::output::SEPARATOR;

pub(crate) struct Plain;

impl Printer for Plain {
    fn prints(&self) -> Prints {
        Prints {
            opens: false,
            lines: true,
            closes: true,
        }
    }

    fn open(&self, _: &mut Vec<u8>, _: &PeerLabel) {}

    fn line(&self, out: &mut Vec<u8>, _: &PeerLabel, text: &[u8]) {
        escape_into(out, crate::proto::command::strip(text), false);
        out.push(b'\n');
    }

    fn close(&self, out: &mut Vec<u8>, _: &PeerLabel, _: CloseReason) {
        out.extend_from_slice(SEPARATOR.as_bytes());
        out.push(b'\n');
    }
}
