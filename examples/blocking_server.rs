//! The notes' sample server, ported line by line to blocking `std::net`.
//!
//! This is the "before" picture: read it next to `docs/select-to-mio.md`
//! and `src/serve/connection.rs` to see what changes when one thread must serve
//! every client at once. Each block quotes the Python line it ports.
//!
//! Kept on purpose, because they are what the notes' server does (and what selectd
//! exists to fix):
//!
//! - **One client at a time.** While one client is connected, everyone else
//!   waits in the `listen(5)` backlog, however long this client takes.
//! - **A chunk is a message.** One `recv(1024)` is treated as one message:
//!   `disconnect\r\n` is obeyed only if it arrives alone in one read, with
//!   exactly that line ending (`disconnect\n` from a Unix `nc` is printed,
//!   not obeyed), and two lines in one read are printed as one.
//! - **Any client may stop the server** with `stop\r\n`.
//! - **Raw output:** what a client sends is printed as it is, escape
//!   sequences included.
//!
//! Fixed, each with a comment where it happens:
//!
//! - **The EOF spin.** A client that closes without saying `disconnect` no
//!   longer makes the server print blank lines forever.
//! - **Silent errors.** `except: pass` becomes one line on stderr.
//!
//! ```text
//! cargo run --example blocking_server -- [--listen ADDR] [--timeout DUR]
//! ```
//!
//! `ADDR` defaults to `127.0.0.1:10001` (port 0 picks a free port), `DUR` to
//! the notes' `5s` (`500ms`, `2s`, ...). Once listening, the server prints
//! `listening on tcp://ADDR` on stderr. Try it with
//! `printf 'merhaba\r\n' | nc -q1 127.0.0.1 10001` or with
//! `cargo run --example blocking_client -- 127.0.0.1:10001`.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use socket2::{Domain, Socket, Type};

/// The notes' `recv(1024)`: "a small power of two", as they advise.
const RECV_SIZE: usize = 1024;

/// What the notes' server prints after each client.
const SEPARATOR: &str = "----------------";

fn main() -> ExitCode {
    let (listen, timeout) = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("blocking_server: {message}");
            eprintln!("usage: blocking_server [--listen ADDR] [--timeout DUR]");
            return ExitCode::from(2);
        }
    };
    // try: ... except: pass
    //
    // The notes' server swallows every error, so a port already in use and a crash
    // both look like silence. Here any error ends the server with one line
    // naming what failed.
    match serve(listen, timeout) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("blocking_server: {err}");
            ExitCode::FAILURE
        }
    }
}

fn serve(listen: SocketAddr, timeout: Duration) -> io::Result<()> {
    let sock = bind(listen)?;
    eprintln!("listening on tcp://{}", sock.local_addr()?);

    // devam = True                 # keep going
    let mut devam = true;
    // while devam:
    while devam {
        // sock.listen(5) is called here in the notes' server, once per client; calling
        // it again on a listening socket only resets the backlog, so the port
        // does it once, in `bind`.

        // (cnn, adres) = sock.accept()
        //
        // Blocks until a client connects. Nothing else happens meanwhile:
        // this thread is the whole server.
        let (cnn, adres) = sock.accept()?;
        eprintln!("blocking_server: client {adres}");
        if serve_one(cnn, timeout)? == Next::Stop {
            devam = false;
        }
        // cnn.close() happened when `serve_one` dropped `cnn`.
        // print '----------------'
        println!("{SEPARATOR}");
    }
    // finally: sock.close()
    //
    // Dropping the listener closes it; Rust does this on every path out of
    // this function, error or not, which is what the notes' `finally` is for.
    Ok(())
}

/// The notes' `socket()`, `setsockopt(SO_REUSEADDR)`, `bind()` and
/// `listen(5)`, step by step with socket2 (std's `TcpListener::bind` does all
/// four in one call, but picks its own backlog).
fn bind(listen: SocketAddr) -> io::Result<TcpListener> {
    // sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    //
    // `Domain::for_address` picks AF_INET or AF_INET6 from the address.
    let sock = Socket::new(Domain::for_address(listen), Type::STREAM, None)?;
    // sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    //
    // Lets a restarted server bind while connections of the last run linger
    // in TIME_WAIT. (std's `TcpListener::bind` sets it too, on Unix.)
    sock.set_reuse_address(true)?;
    // sock.bind(SUNUCU)            # SUNUCU = ('', 10001)
    //
    // The notes' '' means every interface; this port defaults to 127.0.0.1
    // so that trying it does not open a port to the network.
    sock.bind(&listen.into())
        .map_err(|err| io::Error::new(err.kind(), format!("cannot bind {listen}: {err}")))?;
    // sock.listen(5)
    //
    // Up to about five connections wait in the kernel while we serve one.
    sock.listen(5)?;
    Ok(sock.into())
}

/// Why a client's loop ended.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Accept the next client.
    Accept,
    /// The client said `stop`.
    Stop,
}

/// The notes' inner `while True:` loop: one client's whole life.
fn serve_one(mut cnn: TcpStream, timeout: Duration) -> io::Result<Next> {
    // (inp, out, exp) = select.select([cnn,], [], [], TIMEOUT)
    //
    // With a single socket to watch, "wait until `cnn` is readable or
    // TIMEOUT passes, then recv" is the same as a blocking recv with a
    // receive time-out, so SO_RCVTIMEO stands in for select().
    cnn.set_read_timeout(Some(timeout))?;
    let mut buf = [0u8; RECV_SIZE];
    let stdout = io::stdout();
    // while True:
    loop {
        // data = cnn.recv(1024)
        let n = match cnn.read(&mut buf) {
            // The EOF spin, fixed.
            //
            // recv() returning no bytes means the client closed its side. The
            // notes' server does not check for that: at EOF select() reports the
            // socket readable at once, every time, recv() returns '' again,
            // '' is neither command, and `print ''.strip()` prints a blank
            // line, tens of thousands a second, forever, and no other client
            // is ever accepted. Here the end of the stream ends the client.
            Ok(0) => return Ok(Next::Accept),
            Ok(n) => n,
            // if not inp: break        # idle for TIMEOUT seconds
            //
            // The receive time-out expired. On Unix it surfaces as
            // `WouldBlock` (EAGAIN); `TimedOut` is what other systems say.
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                eprintln!("blocking_server: client silent for {timeout:?}, dropping it");
                return Ok(Next::Accept);
            }
            // A signal interrupted the wait: not an error, wait again.
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            // A reset, say. In the notes' server this exception escapes to the outer
            // `except: pass` and the whole server quietly exits. Here it ends
            // this client only, with one line on stderr.
            Err(err) => {
                eprintln!("blocking_server: client lost: {err}");
                return Ok(Next::Accept);
            }
        };
        let data = &buf[..n];
        // if data == 'disconnect\r\n': break
        //
        // Compares the whole chunk: a chunk is taken to be a message.
        if data == b"disconnect\r\n" {
            return Ok(Next::Accept);
        }
        // if data == 'stop\r\n': devam = False; break
        if data == b"stop\r\n" {
            return Ok(Next::Stop);
        }
        // print data.strip()
        //
        // Python's `strip()`, and the bytes printed as they came. Rust's
        // stdout is line-buffered, so each line appears at once, as Python's
        // does on a terminal.
        let mut out = stdout.lock();
        out.write_all(selectd::proto::command::strip(data))?;
        out.write_all(b"\n")?;
    }
    // cnn.close(): `cnn` is dropped here, on every way out of the loop.
}

/// `[--listen ADDR] [--timeout DUR]`, the two things a test needs to change.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<(SocketAddr, Duration), String> {
    // ADRES = ''; PORT = 10001; TIMEOUT = 5
    let mut listen: SocketAddr = ([127, 0, 0, 1], 10001).into();
    let mut timeout = Duration::from_secs(5);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => {
                let text = value()?;
                listen = text.parse().map_err(|_| {
                    format!("--listen: invalid address '{text}' (expected IP:PORT)")
                })?;
            }
            "--timeout" => {
                let text = value()?;
                timeout = selectd::net::units::parse_duration(&text)
                    .map_err(|err| format!("--timeout: {err}"))?;
                if timeout.is_zero() {
                    return Err("--timeout: must be more than zero".into());
                }
            }
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok((listen, timeout))
}
