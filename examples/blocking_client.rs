//! The notes' sample client, ported line by line to blocking `std::net`.
//!
//! It connects with a time-out, sends one HTTP request, half-closes its
//! sending side, then prints everything the server sends until the server
//! closes (EOF). Each block quotes the Python line it ports.
//!
//! ```text
//! cargo run --example blocking_client -- ADDR [PATH]
//! ```
//!
//! `ADDR` is `HOST:PORT` (the notes' `("www.yahoo.com", 80)`), `PATH` the
//! page (default `/`). Point it at a server on your own machine:
//!
//! ```text
//! python3 -m http.server 8000 --bind 127.0.0.1 &
//! cargo run --example blocking_client -- 127.0.0.1:8000 /
//! cargo run -- serve --echo &          # selectd echoes the request back
//! cargo run --example blocking_client -- 127.0.0.1:10001
//! ```
//!
//! Two bugs of the notes' client are fixed, each with a comment where it happens:
//! `HTML/1.0` (should be `HTTP/1.0`, with `\r\n` line ends) and
//! `socket.shutdown(...)` (should be `sock.shutdown(...)`).
//!
//! # The notes' four exceptions, in Rust
//!
//! Python raises a different exception class per kind of failure; Rust
//! returns one `io::Error` and says what kind it is with `io::ErrorKind`.
//!
//! | Python             | raised by                         | Rust                                                        |
//! |--------------------|-----------------------------------|-------------------------------------------------------------|
//! | `socket.gaierror`  | `getaddrinfo`: a name that does not resolve | `ToSocketAddrs::to_socket_addrs` fails; std gives no stable kind for resolver errors, so it is told apart by *where* it failed |
//! | `socket.herror`    | the older `gethostby*` calls      | std has no such call (it always uses `getaddrinfo`): also a resolve failure here |
//! | `socket.timeout`   | any call once `settimeout` is set | `ErrorKind::TimedOut` from `connect_timeout`; `WouldBlock` (EAGAIN) or `TimedOut` from a read or write past its time-out |
//! | `socket.error`     | every other failure of a call     | any other kind: `ConnectionRefused`, `ConnectionReset`, `BrokenPipe`, ... |
//!
//! Every error message below names the Python exception it corresponds to.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

/// The notes' `sock.settimeout(20)`.
const TIMEOUT: Duration = Duration::from_secs(20);

/// The notes' `recv(1024)`.
const RECV_SIZE: usize = 1024;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // ADRES = "www.yahoo.com"; PORT = 80; SUNUCU = (ADRES, PORT); SAYFA = '/'
    let (adres, sayfa) = match args.as_slice() {
        [adres] => (adres.as_str(), "/"),
        [adres, sayfa] => (adres.as_str(), sayfa.as_str()),
        _ => {
            eprintln!("usage: blocking_client ADDR [PATH]   (ADDR is HOST:PORT)");
            return ExitCode::from(2);
        }
    };
    match fetch(adres, sayfa) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("blocking_client: {err}");
            ExitCode::FAILURE
        }
    }
}

fn fetch(adres: &str, sayfa: &str) -> Result<(), Failure> {
    // SUNUCU = (ADRES, PORT), resolved inside connect() in Python.
    //
    // Rust resolves first, explicitly, so a name that does not resolve is
    // told apart from a server that does not answer.
    let addrs: Vec<SocketAddr> = adres
        .to_socket_addrs()
        .map_err(|err| Failure::new(Step::Resolve, adres, err))?
        .collect();

    // sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    // sock.settimeout(20)
    // sock.connect(SUNUCU)
    //
    // std creates and connects in one call; `connect_timeout` is the
    // time-out for connecting, and the read and write time-outs below are
    // the rest of `settimeout(20)`. A name may resolve to several
    // addresses: try each, as Python's `create_connection` does.
    let mut last_error = io::Error::new(io::ErrorKind::NotFound, "no address to connect to");
    let mut connected = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, TIMEOUT) {
            Ok(stream) => {
                connected = Some(stream);
                break;
            }
            Err(err) => last_error = err,
        }
    }
    let mut sock = connected.ok_or_else(|| Failure::new(Step::Connect, adres, last_error))?;
    let io_failure = |step| move |err| Failure::new(step, adres, err);
    sock.set_read_timeout(Some(TIMEOUT))
        .map_err(io_failure(Step::Connect))?;
    sock.set_write_timeout(Some(TIMEOUT))
        .map_err(io_failure(Step::Connect))?;

    // sock.sendall('GET %s HTML/1.0\n\n' % (SAYFA))
    //
    // Fixed: the protocol is `HTTP/1.0`, and HTTP ends lines with `\r\n`.
    // `write_all` is `sendall`: it loops until every byte is sent (a
    // blocking socket may take part of a buffer per call), or fails.
    let request = format!("GET {sayfa} HTTP/1.0\r\n\r\n");
    sock.write_all(request.as_bytes())
        .map_err(io_failure(Step::Send))?;

    // socket.shutdown(socket.SHUT_WR)
    //
    // Fixed: the notes' client calls `shutdown` on the *module*, which raises
    // AttributeError; it is the socket's method. Shutting down the writing
    // half sends FIN: the server reads EOF ("no more requests") while we
    // can still read its answer. This is a half-close.
    sock.shutdown(Shutdown::Write)
        .map_err(io_failure(Step::Send))?;

    // while True:
    //     cevap = sock.recv(1024)      # answer
    //     if not cevap: break
    //     print cevap
    let mut cevap = [0u8; RECV_SIZE];
    let mut stdout = io::stdout().lock();
    loop {
        let n = match sock.read(&mut cevap) {
            Ok(0) => break, // The server closed: EOF, the whole answer is in.
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(Failure::new(Step::Receive, adres, err)),
        };
        // `print cevap` adds a newline after every 1024-byte chunk, splitting
        // the answer at arbitrary places; the port writes the bytes as they
        // came.
        stdout
            .write_all(&cevap[..n])
            .map_err(|err| Failure::new(Step::Print, adres, err))?;
    }
    stdout
        .flush()
        .map_err(|err| Failure::new(Step::Print, adres, err))?;
    // sock.close(): `sock` is dropped here.
    Ok(())
}

/// Which call failed.
#[derive(Debug, Clone, Copy)]
enum Step {
    Resolve,
    Connect,
    Send,
    Receive,
    Print,
}

/// A failed call, the address, and the error the system gave.
#[derive(Debug)]
struct Failure {
    step: Step,
    adres: String,
    source: io::Error,
}

impl Failure {
    fn new(step: Step, adres: &str, source: io::Error) -> Self {
        Failure {
            step,
            adres: adres.to_string(),
            source,
        }
    }

    /// The Python exception the notes' client would have seen for this failure.
    fn python_exception(&self) -> &'static str {
        match (self.step, self.source.kind()) {
            // getaddrinfo failed (herror belongs to the older gethostby*
            // calls, which std does not use).
            (Step::Resolve, _) => "socket.gaierror",
            // A read or write time-out on Unix is EAGAIN, that is
            // `WouldBlock`; a connect time-out is `TimedOut`.
            (_, io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => "socket.timeout",
            (Step::Print, _) => "IOError",
            _ => "socket.error",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.step {
            Step::Resolve => "cannot resolve",
            Step::Connect => "cannot connect to",
            Step::Send => "cannot send to",
            Step::Receive => "cannot receive from",
            Step::Print => "cannot print the answer from",
        };
        write!(
            f,
            "{what} {}: {} ({}, io::ErrorKind::{:?})",
            self.adres,
            self.source,
            self.python_exception(),
            self.source.kind()
        )
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}
