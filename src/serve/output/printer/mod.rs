//! One printer per format, as ripgrep's printer crate has one per output
//! kind: each knows only how its records look, and [`Output`](super::Output)
//! knows only where they go (staging, the bound, the drop policy).
//!
//! A printer appends whole records to a buffer and never fails (appending
//! to a `Vec` cannot). It receives the peer already rendered for its format
//! (escaped once per connection, see [`PeerLabel`](super::PeerLabel)), and
//! escapes only what a client sent on the line itself.

mod json;
mod none;
mod plain;
mod tagged;

use super::{Format, PeerLabel};
use crate::serve::close::CloseReason;

/// Which records a format prints at all; the rest cost nothing, not even a
/// call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Prints {
    pub opens: bool,
    pub lines: bool,
    pub closes: bool,
}

/// How one format prints lines and connection events.
pub(crate) trait Printer: Sync {
    /// The records this format prints.
    fn prints(&self) -> Prints;

    /// Whether a peer is escaped for a JSON string (else for a terminal).
    fn json_peer(&self) -> bool {
        false
    }

    /// A client connected.
    fn open(&self, out: &mut Vec<u8>, peer: &PeerLabel);

    /// A client sent a line (`text` is without its terminator).
    fn line(&self, out: &mut Vec<u8>, peer: &PeerLabel, text: &[u8]);

    /// A client's connection closed, for `reason`.
    fn close(&self, out: &mut Vec<u8>, peer: &PeerLabel, reason: CloseReason);
}

/// The printer for `format`.
pub(crate) fn for_format(format: Format) -> &'static dyn Printer {
    match format {
        Format::Tagged => &tagged::Tagged,
        Format::Plain => &plain::Plain,
        Format::Json => &json::Json,
        Format::None => &none::Nothing,
    }
}
