//! The notes' server, serving every client at once with `select(2)` itself.
//!
//! The notes wait for one client with `select([cnn], [], [], TIMEOUT)`.
//! Put *every* socket in that list, the listener included, and one thread
//! serves everyone: this is the loop the notes' call was made for, written
//! with the C API (`fd_set` and its `FD_*` macros, through `libc`), each step
//! commented against the notes' Python. `select` is the first rung of the
//! ladder in `docs/select-to-mio.md` (chapter 6); `poll_server.rs` is the
//! second and `selectd serve` (epoll, through mio) the third.
//!
//! What it shows, in the order a turn meets it:
//!
//! - **Every call passes every socket.** The read and write sets are built
//!   again before each call (the kernel overwrites them with its answer),
//!   the kernel checks each descriptor in them, and the loop then tests
//!   each client's bit. The work of one turn grows with the clients
//!   *connected*, not with those that have something to say.
//! - **The `FD_SETSIZE` wall.** An `fd_set` is a bitmap of 1024 bits, so
//!   `select` can watch descriptors 0 to 1023 and no others. A client whose
//!   descriptor is 1024 or more is refused here (`error: server full`, and
//!   one line on stderr naming the descriptor), and everyone else goes on
//!   being served. In C, `FD_SET(1024, &set)` writes past the bitmap: memory
//!   corruption, or an abort under `_FORTIFY_SOURCE`.
//! - **The idle time-out is select's time-out**, as in the notes: until the
//!   nearest client's deadline.
//!
//! Its protocol is `selectd serve`'s (see `clients/mod.rs`): `[PEER] line`,
//! `disconnect`, `stop` from a loopback peer, `--echo`, idle time-out.
//!
//! ```text
//! cargo run --example select_server -- [--listen ADDR] [--idle-timeout DUR|off]
//!     [--echo] [--format tagged|none] [--hold-fds N]
//! ```
//!
//! `ADDR` defaults to `127.0.0.1:10001` (port 0 picks one), the time-out to
//! the notes' `5s`. `--hold-fds 1020` opens 1020 descriptors before serving,
//! so the second client meets the wall. Once listening it prints
//! `listening on tcp://ADDR` on stderr.

mod clients;

use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, RawFd};
use std::process::ExitCode;
use std::ptr;
use std::time::{Duration, Instant};

use clients::{Client, Options, Outcome, Printer};

fn main() -> ExitCode {
    // The notes' `except: pass`, replaced by one line naming what failed.
    clients::run("select_server", serve)
}

/// A set of descriptors for `select`: libc's `fd_set`, a bitmap of
/// `FD_SETSIZE` bits, with the bounds check that C's macros lack.
struct FdSet(libc::fd_set);

impl FdSet {
    fn new() -> FdSet {
        // SAFETY: `fd_set` is plain bits; FD_ZERO clears them all.
        unsafe {
            let mut set = std::mem::MaybeUninit::<libc::fd_set>::uninit();
            libc::FD_ZERO(set.as_mut_ptr());
            FdSet(set.assume_init())
        }
    }

    /// Whether `select` can watch `fd` at all: the bitmap's size.
    fn fits(fd: RawFd) -> bool {
        usize::try_from(fd).is_ok_and(|fd| fd < libc::FD_SETSIZE)
    }

    /// `FD_SET`. Descriptors past the bitmap are never inserted: `accept`
    /// refuses them first.
    fn insert(&mut self, fd: RawFd) {
        if FdSet::fits(fd) {
            // SAFETY: `fd` is within the bitmap (checked above).
            unsafe { libc::FD_SET(fd, &mut self.0) };
        }
    }

    /// `FD_ISSET`: did the kernel leave this descriptor's bit set?
    fn contains(&self, fd: RawFd) -> bool {
        // SAFETY: `fd` is within the bitmap (checked first).
        FdSet::fits(fd) && unsafe { libc::FD_ISSET(fd, &self.0) }
    }
}

/// `select(nfds, read, write, NULL, timeout)`: the notes' `select.select`,
/// with an empty exception list as theirs. Returns how many descriptors
/// are ready; the sets then hold only those.
fn select(
    nfds: RawFd,
    read: &mut FdSet,
    write: &mut FdSet,
    timeout: Option<Duration>,
) -> io::Result<usize> {
    let mut tv = timeout.map(|t| libc::timeval {
        tv_sec: t.as_secs().try_into().unwrap_or(libc::time_t::MAX),
        tv_usec: t.subsec_micros().into(),
    });
    let tvp = tv
        .as_mut()
        .map_or(ptr::null_mut(), |tv| tv as *mut libc::timeval);
    // SAFETY: both sets are valid `fd_set`s, the exception set is NULL (not
    // asked for), and `tvp` is NULL (wait forever) or a valid `timeval`.
    let ready = unsafe { libc::select(nfds, &mut read.0, &mut write.0, ptr::null_mut(), tvp) };
    if ready < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ready as usize)
}

fn serve(options: &Options) -> io::Result<()> {
    clients::raise_fd_limit();
    let _held = clients::hold_fds(options.hold_fds)?;
    // sock = socket.socket(...); sock.setsockopt(..., SO_REUSEADDR, 1);
    // sock.bind(SUNUCU); sock.listen(5), and setblocking(0).
    let listener = clients::bind(options.listen)?;
    eprintln!("listening on tcp://{}", listener.local_addr()?);
    let listen_fd = listener.as_raw_fd();

    let mut clients: Vec<Client> = Vec::new();
    let mut print = Printer::new(options.quiet);
    let mut scratch = vec![0u8; clients::READ_SIZE];
    // False while `accept` is out of descriptors: see `accept_all`.
    let mut accepting = true;

    // devam = True; while devam:
    loop {
        // What the last turn printed goes out before we wait.
        print.flush()?;

        // The lists of the notes' `select.select([cnn,], [], [], TIMEOUT)`,
        // with everyone in them. They are built again on every turn: select
        // writes its answer into the same bitmaps, so what we asked is gone.
        let mut read_set = FdSet::new();
        let mut write_set = FdSet::new();
        let mut max_fd = -1;
        if accepting {
            read_set.insert(listen_fd);
            max_fd = listen_fd;
        }
        for client in &clients {
            if client.wants_read() {
                read_set.insert(client.fd());
            }
            if client.wants_write() {
                write_set.insert(client.fd());
            }
            max_fd = max_fd.max(client.fd());
        }
        // TIMEOUT: until the nearest idle deadline (forever with none).
        let timeout = clients::nearest_deadline(&clients, options.idle_timeout, Instant::now());

        // (inp, out, exp) = select.select(...)
        //
        // The kernel walks every descriptor below `max_fd + 1`, asks each
        // socket whether it is ready, and sleeps only if none is.
        match select(max_fd + 1, &mut read_set, &mut write_set, timeout) {
            Ok(_) => {}
            // A signal arrived while we waited: not a failure, wait again.
            Err(err) if err.kind() == ErrorKind::Interrupted => continue,
            Err(err) => return Err(io::Error::new(err.kind(), format!("select: {err}"))),
        }
        let now = Instant::now();

        // Which sockets are ready? select does not say; every client's bit
        // must be tested, so this scan too is as long as the client list.
        let mut i = 0;
        while i < clients.len() {
            let client = &mut clients[i];
            let fd = client.fd();
            let mut outcome = Outcome::Open;
            if read_set.contains(fd) {
                outcome = client.on_readable(&mut scratch, &mut print, options.echo, now);
            }
            if outcome == Outcome::Open && write_set.contains(fd) {
                outcome = client.on_writable(now);
            }
            // if not inp: break     # this client, silent for TIMEOUT
            if outcome == Outcome::Open && clients::is_idle(client, options.idle_timeout, now) {
                outcome = Outcome::Closed("idle");
            }
            match outcome {
                Outcome::Open => i += 1,
                // cnn.close(): dropping the stream closes the descriptor.
                // `swap_remove` brings the last client to `i`, served next.
                Outcome::Closed(reason) => {
                    let client = clients.swap_remove(i);
                    print.event(client.peer, &format!("close: {reason}"));
                    accepting = true;
                }
                // if data == 'stop\r\n': devam = False
                Outcome::Stop => {
                    for client in clients.drain(..) {
                        print.event(client.peer, "close: stop");
                    }
                    print.flush()?;
                    // finally: sock.close(): the listener is dropped here.
                    return Ok(());
                }
            }
        }

        // (cnn, adres) = sock.accept(), for everyone waiting. Last, so that
        // a new client never reads an answer meant for a descriptor number
        // closed earlier in this turn.
        if read_set.contains(listen_fd) {
            accepting = accept_all(&listener, &mut clients, &mut print, now);
        }
    }
}

/// Accepts every waiting client; `false` when out of descriptors.
fn accept_all(
    listener: &TcpListener,
    clients: &mut Vec<Client>,
    print: &mut Printer,
    now: Instant,
) -> bool {
    loop {
        let (mut stream, peer) = match clients::accept(listener) {
            Ok(Some(accepted)) => accepted,
            Ok(None) => return true,
            // Out of descriptors (EMFILE). The waiting client keeps the
            // listener readable, and a level-triggered select would report it
            // at once, forever: a spin. So stop watching the listener until a
            // client leaves.
            Err(err) => {
                eprintln!("select_server: cannot accept: {err}; waiting for a client to leave");
                return false;
            }
        };
        // The FD_SETSIZE wall. This descriptor cannot be put in an fd_set:
        // refuse this client, keep serving the others.
        let fd = stream.as_raw_fd();
        if !FdSet::fits(fd) {
            eprintln!(
                "select_server: refusing {peer}: its descriptor {fd} is past FD_SETSIZE ({}), the most select() can watch",
                libc::FD_SETSIZE
            );
            let _ = stream.write(selectd::serve::SERVER_FULL);
            // Read what already arrived: closing with unread bytes would
            // reset the connection, and the reset can overtake the message.
            let _ = stream.read(&mut [0u8; 4096]);
            continue;
        }
        print.event(peer, "open");
        clients.push(Client::new(stream, peer, now));
    }
}
