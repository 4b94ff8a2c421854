//! Which `Token` means what.
//!
//! mio reports readiness by `Token`, a plain number we choose when we
//! register a socket. Connections take their slab key as their token, so
//! finding the connection for an event is an index; the few sockets that are
//! not connections (the waker, the signal pipe, the listeners, the UDP
//! sockets, sockets closing with a linger) live at the top of the range, far above any key a slab will ever
//! hand out.

use mio::Token;

/// The first token not used for connections.
const RESERVED: usize = usize::MAX / 2;

/// The `mio::Waker` that a [`ServerHandle`](crate::ServerHandle) pokes.
pub const WAKER: Token = Token(RESERVED);

/// SIGINT and SIGTERM, delivered through the same `Poll` as everything else.
pub const SIGNALS: Token = Token(RESERVED + 1);

const FIRST_LISTENER: usize = RESERVED + 2;

/// Room for this many listeners before the UDP sockets' tokens begin.
const MAX_LISTENERS: usize = 1 << 24;

const FIRST_DATAGRAM: usize = FIRST_LISTENER + MAX_LISTENERS;

/// Room for this many UDP sockets before the lingering sockets' tokens begin.
const MAX_DATAGRAMS: usize = 1 << 24;

const FIRST_LINGERING: usize = FIRST_DATAGRAM + MAX_DATAGRAMS;

/// What an event's token refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Another thread asked the server to stop.
    Waker,
    /// A signal arrived.
    Signals,
    /// The stream listener at this index has connections waiting.
    Listener(usize),
    /// The UDP socket at this index has datagrams waiting.
    Datagram(usize),
    /// The connection with this slab key is ready.
    Connection(usize),
    /// A socket closing with a linger (see `linger`) has something to read.
    Lingering(usize),
}

impl Slot {
    /// Classifies an event's token.
    pub fn of(token: Token) -> Slot {
        match token.0 {
            key if key < RESERVED => Slot::Connection(key),
            RESERVED => Slot::Waker,
            n if n == RESERVED + 1 => Slot::Signals,
            n if n < FIRST_DATAGRAM => Slot::Listener(n - FIRST_LISTENER),
            n if n < FIRST_LINGERING => Slot::Datagram(n - FIRST_DATAGRAM),
            n => Slot::Lingering(n - FIRST_LINGERING),
        }
    }
}

/// The token for the listener at `index`.
pub fn listener_token(index: usize) -> Token {
    Token(FIRST_LISTENER + index)
}

/// The token for the UDP socket at `index`.
pub fn datagram_token(index: usize) -> Token {
    Token(FIRST_DATAGRAM + index)
}

/// The token for the lingering socket with this key.
pub fn lingering_token(key: usize) -> Token {
    Token(FIRST_LINGERING + key)
}

/// Whether a slab key can be used as a connection token.
pub fn is_connection_key(key: usize) -> bool {
    key < RESERVED
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        assert_eq!(Slot::of(Token(0)), Slot::Connection(0));
        assert_eq!(Slot::of(Token(12345)), Slot::Connection(12345));
        assert_eq!(Slot::of(WAKER), Slot::Waker);
        assert_eq!(Slot::of(SIGNALS), Slot::Signals);
        assert_eq!(Slot::of(listener_token(0)), Slot::Listener(0));
        assert_eq!(Slot::of(listener_token(3)), Slot::Listener(3));
        assert_eq!(Slot::of(datagram_token(0)), Slot::Datagram(0));
        assert_eq!(Slot::of(datagram_token(2)), Slot::Datagram(2));
        assert_eq!(Slot::of(lingering_token(0)), Slot::Lingering(0));
        assert_eq!(Slot::of(lingering_token(9)), Slot::Lingering(9));
    }
}
