//! `send tls://HOST:PORT`: a TLS client session on the connected socket.
//!
//! The session ([`TlsStream`]) is the one `serve` uses, in its client role:
//! the session loop reads and writes plaintext through it and never needs
//! to know. The handshake runs inside those reads and writes (plaintext
//! written before it completes waits in rustls and goes out encrypted right
//! after), and the write side is shut down (`close_notify`, then FIN) only
//! once the handshake is done and everything is sent: see
//! `Session::transmit`.
//!
//! The server is verified against `--tls-ca` or the system's roots, under
//! `--tls-server-name` or the address's host (sent as SNI when it is a DNS
//! name). `--tls-insecure` verifies nothing, and says so on stderr.

use super::config::SendConfig;
use super::error::SendError;
use crate::net::addr::Address;
use crate::net::stream::Stream;
use crate::net::tls::{TlsStream, client_config, server_name};

/// Wraps a `tls://` connection in a client session; other streams are
/// returned as they are.
pub(super) fn start(stream: Stream, config: &SendConfig, name: &str) -> Result<Stream, SendError> {
    let Address::Tls { host, .. } = &config.addr else {
        return Ok(stream);
    };
    let Stream::Tcp(socket) = stream else {
        return Ok(stream);
    };
    let tls = config.tls.clone().unwrap_or_default();
    if tls.files.insecure {
        log::warn!("--tls-insecure: the certificate of {name} is not verified");
    }
    let client = client_config(&tls.files).map_err(|err| SendError::Usage(err.to_string()))?;
    let wanted = tls.server_name.as_deref().unwrap_or(host);
    // `[::1]` is written with brackets in addresses, not in names.
    let wanted = wanted.trim_start_matches('[').trim_end_matches(']');
    let wanted = server_name(wanted).map_err(SendError::Usage)?;
    let session = TlsStream::client(socket, client, wanted).map_err(|source| SendError::Tls {
        addr: name.to_string(),
        source,
    })?;
    Ok(Stream::Tls(Box::new(session)))
}
