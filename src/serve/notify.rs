//! Telling the service manager how the server is doing (`Type=notify`).
//!
//! With `Type=simple`, systemd calls a service started the moment it forks,
//! so units ordered after it may connect before it listens. With
//! `Type=notify` it waits for `READY=1` on the datagram socket named in
//! `NOTIFY_SOCKET`; `STOPPING=1` tells it that the stop it sees is wanted,
//! not a crash. Without `NOTIFY_SOCKET` (not run by a service manager) each
//! call does nothing. The protocol is `sd-notify`'s; a failure to notify is
//! logged and never stops the server.

use sd_notify::NotifyState;

/// Every listener is bound and listening: clients may connect.
pub(crate) fn ready() {
    send(&[NotifyState::Ready], "READY=1");
}

/// A graceful stop has begun.
pub(crate) fn stopping() {
    send(&[NotifyState::Stopping], "STOPPING=1");
}

fn send(states: &[NotifyState<'_>], what: &str) {
    if let Err(err) = sd_notify::notify(states) {
        log::warn!(
            "cannot tell the service manager {what}: {}",
            crate::net::os_reason(&err)
        );
    }
}
