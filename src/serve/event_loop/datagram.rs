//! UDP: the notes' `SOCK_DGRAM` and `recvfrom`, in the same reactor.
//!
//! A datagram arrives whole, with its sender's address (`recvfrom` returns
//! `(data, address)`), so there is no connection, no partial line carried
//! between reads and no idle time-out: each datagram's lines are printed
//! with the sender, and forgotten. With `--echo` the datagram goes back with
//! `send_to`; if the socket's send buffer is full the reply is dropped and
//! counted (UDP promises nothing, and blocking the loop for one peer would
//! stall every other).
//!
//! `stop` and `disconnect` are ignored over UDP: a source address can be
//! forged, so a datagram cannot prove it comes from a local client, and
//! there is no connection to disconnect.

use std::io;
use std::net::SocketAddr;
use std::ops::ControlFlow;

use super::EventLoop;
use crate::proto::command::Command;
use crate::proto::line::LineBuffer;
use crate::serve::context::Context;
use crate::serve::{tokens, trace};

/// Datagrams read from one socket per loop turn before the others get a turn.
const DATAGRAM_BUDGET: usize = 256;

/// What the server remembers about UDP between datagrams: only whether it
/// has already warned that commands are ignored.
#[derive(Debug, Default)]
pub struct DatagramState {
    warned_commands: bool,
}

impl EventLoop {
    /// A UDP socket is readable: datagrams, each read whole.
    pub(super) fn on_datagrams(&mut self, index: usize) {
        if !self.may_read() {
            return; // Served again when reading resumes.
        }
        let Some(socket) = self.datagrams.get(index) else {
            return;
        };
        let before = self.ctx.config.trace_loop.then_some(self.ctx.counters);
        let more = on_readable(
            socket,
            &mut self.scratch,
            &mut self.ctx,
            &mut self.datagram_state,
        );
        if let Some(before) = before {
            let work = trace::work(&before, &self.ctx.counters);
            let count = self.ctx.counters.datagrams - before.datagrams;
            let addr = socket
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            trace::emit(format_args!("  udp://{addr}: {count} datagrams, {work}"));
        }
        self.ready.served(tokens::datagram_token(index), more);
    }
}

/// Reads datagrams until `WouldBlock`, the budget, or the output's bound;
/// returns `true` if the budget or the bound came first (more may be
/// waiting: serve again next turn).
pub(crate) fn on_readable(
    socket: &mio::net::UdpSocket,
    scratch: &mut [u8],
    ctx: &mut Context,
    state: &mut DatagramState,
) -> bool {
    for _ in 0..DATAGRAM_BUDGET {
        // The output's bound holds per datagram, as per read for a stream:
        // once it is over, the rest wait in the socket (served again, by
        // the loop's `may_read`, which pauses reading until there is room).
        if ctx.output.is_full() {
            return true;
        }
        // The scratch buffer (64 KiB) holds the largest UDP payload
        // (65,507 bytes over IPv4, 65,527 over IPv6): nothing is truncated.
        let (n, from) = match socket.recv_from(scratch) {
            Ok(received) => received,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return false,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => {
                // E.g. an ICMP error queued by an earlier send: it concerns
                // one peer, not the socket. Log and read on.
                log::debug!("udp recv_from failed: {err}");
                continue;
            }
        };
        ctx.counters.datagrams += 1;
        ctx.counters.bytes_in += n as u64;
        let datagram = &scratch[..n];
        print_lines(datagram, from, ctx, state);
        if ctx.config.echo {
            match socket.send_to(datagram, from) {
                Ok(sent) => ctx.counters.bytes_out += sent as u64,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    ctx.counters.datagram_replies_dropped += 1;
                    log::debug!("udp reply to {from} dropped: send buffer full");
                }
                Err(err) => log::debug!("udp reply to {from} failed: {err}"),
            }
        }
    }
    true
}

/// Prints each line of one datagram; an unterminated last line is a line.
fn print_lines(datagram: &[u8], from: SocketAddr, ctx: &mut Context, state: &mut DatagramState) {
    let label = ctx.output.label(&from);
    let max_line = ctx.config.max_line;
    let mut act = |text: &[u8]| {
        ctx.counters.lines += 1;
        if Command::parse(text).is_some() {
            if !state.warned_commands {
                log::warn!("{label}: commands are ignored over UDP (a sender can be forged)");
                state.warned_commands = true;
            }
        } else {
            ctx.output.line(&label, text);
        }
        ControlFlow::Continue(())
    };
    let mut lines = LineBuffer::new(max_line);
    let framed = lines
        .feed(datagram, |line| act(line.text))
        .and_then(|_| lines.finish(|line| act(line.text)));
    if let Err(too_long) = framed {
        log::info!("{label}: datagram dropped from that line on: {too_long}");
    }
}
