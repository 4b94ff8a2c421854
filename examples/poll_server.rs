//! The notes' server, serving every client at once with `poll(2)`.
//!
//! The same loop as `select_server.rs`, with the wait changed: instead of
//! bitmaps rebuilt every turn, an array of `pollfd` (descriptor, the events
//! wanted, the events that happened) that is kept from one call to the
//! next. Compare the two files: only the waiting differs.
//!
//! What changes against `select`:
//!
//! - **No `FD_SETSIZE` wall.** A `pollfd` names its descriptor, so any
//!   number works; the array is as long as there are clients (the process's
//!   descriptor limit is the only bound; this example raises its soft
//!   limit to the hard one at start).
//! - **What stays:** the whole array still crosses into the kernel on every
//!   call, the kernel still asks every socket in it whether it is ready,
//!   and the loop still scans every entry's `revents` for the answer. The
//!   work of a turn still grows with the clients connected, not with the
//!   ready ones; `selectd serve` (epoll) removes that, see
//!   `docs/select-to-mio.md`, chapter 6.
//!
//! Its protocol is `selectd serve`'s (see `clients/mod.rs`).
//!
//! ```text
//! cargo run --example poll_server -- [--listen ADDR] [--idle-timeout DUR|off]
//!     [--echo] [--format tagged|none] [--hold-fds N]
//! ```
//!
//! Once listening it prints `listening on tcp://ADDR` on stderr.

mod clients;

use std::io::{self, ErrorKind};
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clients::{Client, Options, Outcome, Printer};

fn main() -> ExitCode {
    clients::run("poll_server", serve)
}

/// The events to ask `poll` about for `client`.
fn interest(client: &Client) -> libc::c_short {
    let mut events = 0;
    if client.wants_read() {
        events |= libc::POLLIN;
    }
    if client.wants_write() {
        events |= libc::POLLOUT;
    }
    events
}

/// An entry of the array: descriptor, wanted events, and (filled in by the
/// kernel) the events that happened.
fn pollfd(fd: libc::c_int, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// `poll(fds, nfds, timeout_ms)`; `None` waits forever (-1).
fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<usize> {
    let ms = timeout.map_or(-1, |t| {
        libc::c_int::try_from(t.as_millis()).unwrap_or(libc::c_int::MAX)
    });
    // SAFETY: `fds` is a valid, exclusively borrowed array of `fds.len()` entries.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if ready < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ready as usize)
}

fn serve(options: &Options) -> io::Result<()> {
    clients::raise_fd_limit();
    let _held = clients::hold_fds(options.hold_fds)?;
    // sock = socket.socket(...); setsockopt; bind; listen; setblocking(0)
    let listener = clients::bind(options.listen)?;
    eprintln!("listening on tcp://{}", listener.local_addr()?);

    // `fds[0]` is the listener; `fds[i + 1]` belongs to `clients[i]`. The
    // array lives across calls: the kernel writes only `revents`.
    let mut fds = vec![pollfd(listener.as_raw_fd(), libc::POLLIN)];
    let mut clients: Vec<Client> = Vec::new();
    let mut print = Printer::new(options.quiet);
    let mut scratch = vec![0u8; clients::READ_SIZE];

    // devam = True; while devam:
    loop {
        print.flush()?;
        let timeout = clients::nearest_deadline(&clients, options.idle_timeout, Instant::now());

        // (inp, out, exp) = select.select([everyone], ...): poll(2) copies
        // the whole array into the kernel, which asks every socket in it.
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(err) if err.kind() == ErrorKind::Interrupted => continue,
            Err(err) => return Err(io::Error::new(err.kind(), format!("poll: {err}"))),
        }
        let now = Instant::now();

        // The answer is in every entry's `revents`: scan them all.
        let mut i = 0;
        while i < clients.len() {
            let revents = fds[i + 1].revents;
            let client = &mut clients[i];
            let mut outcome = Outcome::Open;
            // POLLHUP and POLLERR come whether asked or not; a read then
            // finds the end of the stream or the error.
            if revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                outcome = client.on_readable(&mut scratch, &mut print, options.echo, now);
            }
            if outcome == Outcome::Open && revents & libc::POLLOUT != 0 {
                outcome = client.on_writable(now);
            }
            // if not inp: break     # this client, silent for TIMEOUT
            if outcome == Outcome::Open && clients::is_idle(client, options.idle_timeout, now) {
                outcome = Outcome::Closed("idle");
            }
            match outcome {
                // Ask again next call for what it wants now.
                Outcome::Open => {
                    fds[i + 1] = pollfd(client.fd(), interest(client));
                    i += 1;
                }
                // cnn.close(); the last entry moves to `i`, in both arrays.
                Outcome::Closed(reason) => {
                    let client = clients.swap_remove(i);
                    fds.swap_remove(i + 1);
                    print.event(client.peer, &format!("close: {reason}"));
                    fds[0].events = libc::POLLIN;
                }
                // if data == 'stop\r\n': devam = False
                Outcome::Stop => {
                    for client in clients.drain(..) {
                        print.event(client.peer, "close: stop");
                    }
                    print.flush()?;
                    return Ok(());
                }
            }
        }

        // (cnn, adres) = sock.accept(), for everyone waiting.
        if fds[0].revents & libc::POLLIN != 0
            && !accept_all(&listener, &mut clients, &mut fds, &mut print, now)
        {
            // Out of descriptors: stop asking about the listener (a
            // level-triggered poll would report it at once, forever) until
            // a client leaves.
            fds[0].events = 0;
        }
        fds[0].revents = 0;
    }
}

/// Accepts every waiting client into both arrays; `false` when out of
/// descriptors. No descriptor is too high for `poll`.
fn accept_all(
    listener: &TcpListener,
    clients: &mut Vec<Client>,
    fds: &mut Vec<libc::pollfd>,
    print: &mut Printer,
    now: Instant,
) -> bool {
    loop {
        match clients::accept(listener) {
            Ok(Some((stream, peer))) => {
                print.event(peer, "open");
                let client = Client::new(stream, peer, now);
                fds.push(pollfd(client.fd(), interest(&client)));
                clients.push(client);
            }
            Ok(None) => return true,
            Err(err) => {
                eprintln!("poll_server: cannot accept: {err}; waiting for a client to leave");
                return false;
            }
        }
    }
}
