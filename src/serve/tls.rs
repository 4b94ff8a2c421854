//! Terminating TLS on `tls://` listeners: one configuration shared by every
//! loop, swapped on `SIGHUP`, wrapped around each accepted socket.
//!
//! The session itself (a state machine fed by readiness) is
//! [`TlsStream`](crate::net::tls::TlsStream), shared with `send` and
//! `bench`; a connection drives its handshake before it reads lines (see
//! `connection::tls`). What belongs to the server is here:
//!
//! - **One configuration, replaceable.** Certificate, key and client CA are
//!   read at start (a bad file stops the server with a message naming it)
//!   and again on `SIGHUP`. A new configuration serves connections accepted
//!   from then on; those already open keep the one they started with (each
//!   session holds its own `Arc`). A bad file at reload keeps the old
//!   configuration and logs one error naming the file.
//! - **Wrapping at accept.** A client of a TLS listener becomes a TLS
//!   stream at once, so that the event loop, a hand-off to another loop and
//!   the connection all hold one [`Stream`]. From a trusted proxy
//!   (`--proxy-protocol`) the stream starts in clear: the PROXY header comes
//!   before the handshake, as HAProxy sends it in TCP mode.
//! - **How a peer is named** once the handshake is done: with a client
//!   certificate, its subject's common name follows the address as
//!   `#cn=NAME`, escaped like everything a client controls, and without
//!   spaces or `]`, so a tagged line still splits at its first `] `.

use std::io;
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;

use crate::net::stream::{Peer, Stream};
use crate::net::tls::{ServerFiles, TlsError, TlsStream, server_config};
use crate::serve::proxy::TrustedProxies;

/// What every loop of a server shares to terminate TLS.
#[derive(Debug)]
pub(crate) struct Terminator {
    files: ServerFiles,
    /// The configuration new connections get; replaced on reload.
    current: RwLock<Arc<ServerConfig>>,
    /// Connections from these start in clear (a PROXY header first).
    trusted: TrustedProxies,
}

impl Terminator {
    /// Reads the files; an error names the file that cannot be used.
    pub fn load(files: &ServerFiles, trusted: &TrustedProxies) -> Result<Terminator, TlsError> {
        let config = server_config(files)?;
        Ok(Terminator {
            files: files.clone(),
            current: RwLock::new(config),
            trusted: trusted.clone(),
        })
    }

    /// `SIGHUP`: reads the files again. New connections use the new
    /// configuration; open ones keep theirs. On error the old one stays,
    /// and the error, naming the file, is logged once.
    pub fn reload(&self) {
        match server_config(&self.files) {
            Ok(config) => {
                *self
                    .current
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = config;
                log::info!(
                    "SIGHUP: TLS certificate {} reloaded",
                    self.files.cert.display()
                );
            }
            Err(err) => log::error!("SIGHUP: {err}; keeping the TLS configuration in use"),
        }
    }

    /// A freshly accepted TCP socket of a TLS listener, as a TLS stream.
    pub fn wrap(&self, stream: Stream, peer: &Peer) -> io::Result<Stream> {
        let Stream::Tcp(socket) = stream else {
            return Ok(stream);
        };
        let config = Arc::clone(
            &self
                .current
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        let cleartext_first = matches!(peer, Peer::Ip(addr) if self.trusted.trusts(addr.ip()));
        let session = TlsStream::server(socket, config, cleartext_first)?;
        Ok(Stream::Tls(Box::new(session)))
    }
}

/// The peer's label once the handshake is done: the address, then the
/// client certificate's common name, if any (`127.0.0.1:5555#cn=alice`).
pub(crate) fn label_with_name(label: &str, common_name: Option<&str>) -> Box<str> {
    let Some(name) = common_name else {
        return label.into();
    };
    let mut escaped = Vec::with_capacity(name.len());
    // Writing to a Vec cannot fail.
    let _ = crate::proto::write_escaped(&mut escaped, name.as_bytes(), false);
    let mut text = String::with_capacity(label.len() + 4 + escaped.len());
    text.push_str(label);
    text.push_str("#cn=");
    for c in String::from_utf8_lossy(&escaped).chars() {
        match c {
            // A tagged line splits at its first `] `: neither may appear.
            ' ' => text.push_str("\\u{20}"),
            ']' => text.push_str("\\u{5d}"),
            c => text.push(c),
        }
    }
    text.into_boxed_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_common_name_follows_the_address_escaped() {
        assert_eq!(&*label_with_name("127.0.0.1:5", None), "127.0.0.1:5");
        assert_eq!(
            &*label_with_name("127.0.0.1:5", Some("alice")),
            "127.0.0.1:5#cn=alice"
        );
        assert_eq!(
            &*label_with_name("[::1]:5", Some("a] b\x1b[31m")),
            r"[::1]:5#cn=a\u{5d}\u{20}b\u{1b}[31m"
        );
    }
}
