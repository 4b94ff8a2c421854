//! A connection from a trusted proxy, before its PROXY header is complete.
//!
//! Behind a load balancer every client seems to come from the balancer. With
//! `--proxy-protocol`, a connection from a trusted address must first send a
//! PROXY header naming the real client; until it has, nothing it sends is
//! framed, and `open` is not printed, so that every line and event names the
//! client, not the proxy. The header itself is parsed in `serve::proxy`.

use super::{Connection, State};
use crate::net::stream::Peer;
use crate::serve::close::CloseReason;
use crate::serve::context::Context;
use crate::serve::proxy::{Carried, HeaderError};

impl Connection {
    /// Whether a trusted proxy's PROXY header is still due.
    pub(crate) fn awaits_proxy_header(&self) -> bool {
        self.proxy_header.is_some()
    }

    /// The PROXY header's time is up.
    pub(crate) fn on_proxy_header_late(&mut self) -> CloseReason {
        self.proxy_header_failed(&HeaderError::Late)
    }

    fn proxy_header_failed(&self, err: &HeaderError) -> CloseReason {
        log::warn!("{} (trusted proxy): {err}", self.label);
        CloseReason::ProxyHeader
    }

    /// While a PROXY header is due, takes it from the front of the stream:
    /// `Ok(None)` while it is incomplete; once complete, the client it names
    /// becomes the peer, `open` is printed, and what follows the header in
    /// this read is the client's (`Ok(Some(rest))`).
    pub(super) fn take_proxy_header<'c>(
        &mut self,
        chunk: Option<&'c [u8]>,
        ctx: &mut Context,
    ) -> Result<Option<&'c [u8]>, CloseReason> {
        let Some(pending) = &mut self.proxy_header else {
            return Ok(chunk);
        };
        let fed = chunk.map_or(Err(HeaderError::Missing), |bytes| pending.feed(bytes));
        match fed {
            Ok(None) => Ok(None),
            Ok(Some((carried, used))) => {
                self.proxy_header = None;
                if self.state == State::AwaitingProxyHeader {
                    // TLS: the handshake follows the header.
                    let next = if self.awaits_handshake() {
                        State::Handshaking
                    } else {
                        State::Reading
                    };
                    self.set_state(next, ctx.config.trace_loop);
                }
                if let Carried::Client(client) = carried {
                    log::debug!("{}: PROXY header for {client}", self.label);
                    let peer = Peer::Ip(client);
                    self.local = peer.is_local();
                    self.label = ctx.output.label(&peer);
                }
                // TLS: `open` waits for the handshake that follows.
                if !self.awaits_handshake() {
                    ctx.output.open(&self.label);
                }
                Ok(chunk.map(|bytes| &bytes[used..]))
            }
            Err(err) => Err(self.proxy_header_failed(&err)),
        }
    }
}
