//! Which `Token` means what.
//!
//! mio reports readiness by `Token`, a plain number we choose when we
//! register a socket. Connections take their slab key as their token, so
//! finding the connection for an event is an index; the few sockets that are
//! not connections (the waker, the signal pipe, the listeners, the UDP
//! sockets, the metrics port and its HTTP clients, sockets closing with a
//! linger) live at the top of the range, far above any key a slab will ever
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

const FIRST_METRICS_LISTENER: usize = FIRST_DATAGRAM + MAX_DATAGRAMS;

/// Room for this many metrics listeners (`--metrics` may resolve to several
/// addresses) before the metrics clients' tokens begin.
const MAX_METRICS_LISTENERS: usize = 1 << 8;

const FIRST_METRICS_CLIENT: usize = FIRST_METRICS_LISTENER + MAX_METRICS_LISTENERS;

/// Room for this many HTTP clients of the metrics port (far more than the
/// metrics server ever admits at once).
const MAX_METRICS_CLIENTS: usize = 1 << 24;

const FIRST_LINGERING: usize = FIRST_METRICS_CLIENT + MAX_METRICS_CLIENTS;

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
    /// The metrics port (`--metrics`): its listener or one of its HTTP
    /// clients, which are not line clients.
    Metrics(MetricsSlot),
    /// A socket closing with a linger (see `linger`) has something to read.
    Lingering(usize),
}

/// Which socket of the metrics server an event is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsSlot {
    /// The metrics listener at this index has connections waiting.
    Listener(usize),
    /// The HTTP client with this key (in the metrics server's own slab).
    Client(usize),
}

impl Slot {
    /// Classifies an event's token.
    pub fn of(token: Token) -> Slot {
        match token.0 {
            key if key < RESERVED => Slot::Connection(key),
            RESERVED => Slot::Waker,
            n if n == RESERVED + 1 => Slot::Signals,
            n if n < FIRST_DATAGRAM => Slot::Listener(n - FIRST_LISTENER),
            n if n < FIRST_METRICS_LISTENER => Slot::Datagram(n - FIRST_DATAGRAM),
            n if n < FIRST_METRICS_CLIENT => {
                Slot::Metrics(MetricsSlot::Listener(n - FIRST_METRICS_LISTENER))
            }
            n if n < FIRST_LINGERING => {
                Slot::Metrics(MetricsSlot::Client(n - FIRST_METRICS_CLIENT))
            }
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

/// The token for the metrics listener at `index`.
pub fn metrics_listener_token(index: usize) -> Token {
    Token(FIRST_METRICS_LISTENER + index)
}

/// The token for the metrics server's HTTP client with this key.
pub fn metrics_client_token(key: usize) -> Token {
    Token(FIRST_METRICS_CLIENT + key)
}

/// Whether a key of the metrics server's slab can be used as a token.
pub fn is_metrics_client_key(key: usize) -> bool {
    key < MAX_METRICS_CLIENTS
}

/// Whether `index` can be a metrics listener's token.
pub fn is_metrics_listener_index(index: usize) -> bool {
    index < MAX_METRICS_LISTENERS
}

/// The token for the lingering socket with this key.
pub fn lingering_token(key: usize) -> Token {
    Token(FIRST_LINGERING + key)
}

/// Whether a slab key can be used as a connection token.
pub fn is_connection_key(key: usize) -> bool {
    // A connection keeps its key in 32 bits (see `Connection`): four
    // billion per loop, far beyond any descriptor limit.
    key < RESERVED && u32::try_from(key).is_ok()
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
        assert_eq!(
            Slot::of(metrics_listener_token(0)),
            Slot::Metrics(MetricsSlot::Listener(0))
        );
        assert_eq!(
            Slot::of(metrics_client_token(0)),
            Slot::Metrics(MetricsSlot::Client(0))
        );
        assert_eq!(
            Slot::of(metrics_client_token(77)),
            Slot::Metrics(MetricsSlot::Client(77))
        );
        assert_eq!(Slot::of(lingering_token(0)), Slot::Lingering(0));
        assert_eq!(Slot::of(lingering_token(9)), Slot::Lingering(9));
    }
}
