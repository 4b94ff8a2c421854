//! `none`: nothing at all (benchmarks, and servers that only echo).

use super::{PeerLabel, Printer, Prints};
use crate::serve::close::CloseReason;

pub(crate) struct Nothing;

impl Printer for Nothing {
    fn prints(&self) -> Prints {
        Prints {
            opens: false,
            lines: false,
            closes: false,
        }
    }

    fn open(&self, _: &mut Vec<u8>, _: &PeerLabel) {}

    fn line(&self, _: &mut Vec<u8>, _: &PeerLabel, _: &[u8]) {}

    fn close(&self, _: &mut Vec<u8>, _: &PeerLabel, _: CloseReason) {}
}
