//! `--trace-loop`: how the loop names what it serves, in the notes'
//! `select()` terms (the line format itself is in `serve::trace`).

use std::time::Duration;

use mio::Events;

use super::EventLoop;
use crate::serve::tokens::{MetricsSlot, Slot};
use crate::serve::trace;

impl EventLoop {
    /// `conn 7 127.0.0.1:50312`: how `--trace-loop` names a connection.
    pub(super) fn connection_label(&self, key: usize) -> String {
        match self.connections.get(key) {
            Some(connection) => format!("conn {key} {}", connection.label()),
            None => format!("conn {key}"),
        }
    }

    /// `--trace-loop`: one line per turn, in the notes' `select()` terms.
    pub(super) fn trace_turn(&self, timeout: Option<Duration>, events: &Events) {
        let described: Vec<String> = events
            .iter()
            .map(|event| {
                let what = match Slot::of(event.token()) {
                    Slot::Connection(key) => self.connection_label(key),
                    Slot::Listener(index) => match self.accept.listener(index) {
                        Some(listener) => format!("listener {}", listener.bound_addr()),
                        None => format!("listener {index}"),
                    },
                    Slot::Datagram(index) => match self.datagrams.get(index) {
                        Some(socket) => match socket.local_addr() {
                            Ok(addr) => format!("listener udp://{addr}"),
                            Err(_) => format!("udp {index}"),
                        },
                        None => format!("udp {index}"),
                    },
                    Slot::Waker => "waker".into(),
                    Slot::Signals => "signal".into(),
                    Slot::Metrics(MetricsSlot::Listener(index)) => {
                        format!("metrics listener {index}")
                    }
                    Slot::Metrics(MetricsSlot::Client(key)) => format!("metrics client {key}"),
                    Slot::Lingering(key) => format!("lingering close {key}"),
                };
                format!("{what} {}", trace::readiness(event))
            })
            .collect();
        trace::emit(format_args!("{}", trace::turn(timeout, &described)));
    }
}
