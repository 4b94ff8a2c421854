//! Set-up shared by the `send` tests: run the built binary with a deadline,
//! and small real servers on loopback to point it at.
//!
//! Every wait here is bounded: a child that outlives [`RUN_LIMIT`] is killed
//! and the test fails, so a deadlock shows as a failure, never a hang.

#![allow(dead_code)] // each test file uses a different part of this

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The longest any one run of the binary may take before the test fails.
pub const RUN_LIMIT: Duration = Duration::from_secs(120);

/// What a finished run of `selectd` left behind.
#[derive(Debug)]
pub struct Outcome {
    /// The exit code; `None` if a signal ended it.
    pub code: Option<i32>,
    /// Standard output, raw.
    pub stdout: Vec<u8>,
    /// Standard error, as text.
    pub stderr: String,
    /// Wall time from spawn to exit.
    pub elapsed: Duration,
}

/// What the child reads on standard input.
pub enum Input {
    /// `/dev/null`: the input ends at once.
    Null,
    /// These bytes, written by a thread, then end of file.
    Bytes(Vec<u8>),
}

/// Whether a test can run where it needs something the machine may lack
/// (a program, IPv6): `false` skips it with a printed reason, but when `CI`
/// is set it fails instead, since CI installs what the tests need.
pub fn available(what: &str, found: bool) -> bool {
    if found {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{what} is required in CI but was not found"
    );
    eprintln!("{what} not found: skipping");
    false
}

/// `selectd` with the given arguments, as cargo built it for this test run.
pub fn selectd(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_selectd"));
    command.args(args);
    command
}

/// Runs `selectd send ARGS` with `input`.
pub fn send(args: &[&str], input: Input) -> Outcome {
    let mut full = vec!["send"];
    full.extend_from_slice(args);
    run(&full, input)
}

/// Runs `selectd ARGS` with `input`, collecting both outputs on their own
/// threads so a full pipe never stalls the child.
pub fn run(args: &[&str], input: Input) -> Outcome {
    let mut command = selectd(args);
    command
        .stdin(match input {
            Input::Null => Stdio::null(),
            Input::Bytes(_) => Stdio::piped(),
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = command.spawn().expect("spawn selectd");
    let writer = match (input, child.stdin.take()) {
        (Input::Bytes(bytes), Some(mut stdin)) => Some(thread::spawn(move || {
            // The child may exit early (an error); a broken pipe is then fine.
            let _ = stdin.write_all(&bytes);
        })),
        _ => None,
    };
    let stdout = collect(child.stdout.take().expect("stdout piped"));
    let stderr = collect(child.stderr.take().expect("stderr piped"));
    let status = wait_bounded(&mut child, RUN_LIMIT);
    let elapsed = started.elapsed();
    if let Some(writer) = writer {
        writer.join().expect("stdin writer");
    }
    let stderr = String::from_utf8_lossy(&stderr.join().expect("stderr reader")).into_owned();
    Outcome {
        code: status,
        stdout: stdout.join().expect("stdout reader"),
        stderr,
        elapsed,
    }
}

fn collect(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        pipe.read_to_end(&mut bytes).expect("read child output");
        bytes
    })
}

/// Waits for `child` at most `limit`, polling every 10 ms; kills it and
/// panics if it is still running then.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("selectd still running after {limit:?}: killed");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Copies everything a connection sends straight back, one blocking thread
/// per connection, and shuts down its write side at end of input. Like a
/// real echo server, it stops reading while its writes are not being read.
fn echo(mut reader: impl Read, mut writer: impl Write, close: impl FnOnce()) {
    let _ = io::copy(&mut reader, &mut writer);
    close();
}

/// A TCP echo server on `127.0.0.1:0`; returns its `HOST:PORT`. The accept
/// thread lives as long as the test process.
pub fn tcp_echo_server() -> String {
    tcp_echo_server_on("127.0.0.1:0").expect("bind 127.0.0.1:0")
}

/// As [`tcp_echo_server`], on any local address (e.g. `[::1]:0`). An
/// address that cannot be bound is the caller's to skip on, except under
/// CI, whose machine has every loopback family: there it fails the test.
pub fn tcp_echo_server_on(bind: &str) -> io::Result<String> {
    let listener = TcpListener::bind(bind).inspect_err(|err| {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set, so this test may not skip: cannot bind {bind}: {err}"
        );
    })?;
    let addr = listener.local_addr()?.to_string();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let Ok(reader) = stream.try_clone() else {
                    return;
                };
                echo(reader, &stream, || {
                    let _ = stream.shutdown(Shutdown::Write);
                });
            });
        }
    });
    Ok(addr)
}

/// A Unix-socket echo server at `path`.
pub fn unix_echo_server(path: &Path) {
    let listener = UnixListener::bind(path).expect("bind unix socket");
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let Ok(reader) = stream.try_clone() else {
                    return;
                };
                echo(reader, &stream, || {
                    let _ = stream.shutdown(Shutdown::Write);
                });
            });
        }
    });
}

/// Runs `serve` on a thread against each accepted connection, one at a time.
pub fn tcp_server(serve: impl Fn(TcpStream) + Send + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local_addr").to_string();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            serve(stream);
        }
    });
    addr
}

/// The real `selectd serve --echo --format none` on one address, killed
/// when dropped.
pub struct EchoServe {
    child: Child,
    /// What `send` should connect to: `127.0.0.1:PORT` or `unix:PATH`.
    pub addr: String,
}

impl EchoServe {
    /// Starts the server on `listen` (`127.0.0.1:0`, `unix:PATH`, ...) and
    /// waits (at most 30 s) for its `listening on ADDR` line on stderr.
    pub fn start(listen: &str) -> EchoServe {
        let mut child = selectd(&["serve", "--echo", "--format", "none", "--listen", listen])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn selectd serve");
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, rx) = std::sync::mpsc::channel();
        // Keep draining stderr after the first line, so the server never
        // blocks on a full pipe.
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("listening on ") {
                        break addr.strip_prefix("tcp://").unwrap_or(addr).to_string();
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("selectd serve did not say where it listens");
                }
            }
        };
        EchoServe { child, addr }
    }
}

impl Drop for EchoServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `HOST:PORT` on loopback where nothing listens: bound, then closed.
pub fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").to_string()
}

/// Python's own `http.server`, serving `root` on an ephemeral loopback port;
/// killed when dropped.
pub struct HttpServer {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl HttpServer {
    /// Starts the server and waits (at most 30 s) for it to print its port.
    /// `None` if `python3` is not installed, for the caller to skip on;
    /// under CI, which installs it, that fails the test instead.
    pub fn start(root: &Path) -> Option<HttpServer> {
        const SCRIPT: &str = "\
import functools, http.server, sys
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
print(server.server_address[1], flush=True)
server.serve_forever()
";
        let spawned = Command::new("python3")
            .args(["-c", SCRIPT])
            .arg(root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(err) => {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "CI is set, so this test may not skip: cannot run python3: {err}"
                );
                return None;
            }
        };
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let port = rx.recv_timeout(Duration::from_secs(30)).ok();
        let port = port.and_then(|line| line.trim().parse::<u16>().ok());
        match port {
            Some(port) => Some(HttpServer {
                child,
                addr: format!("127.0.0.1:{port}"),
            }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("python3 http.server did not report a port");
            }
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Bytes that are not all alike, so a dropped or reordered chunk shows:
/// numbered lines of varying length.
pub fn numbered_lines(total: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(total + 64);
    let mut i = 0u64;
    while bytes.len() < total {
        writeln!(bytes, "line {i} {}", "x".repeat((i % 97) as usize)).expect("write to Vec");
        i += 1;
    }
    bytes.truncate(total);
    bytes
}
