//! The blocking ports of the notes' programs (`examples/`), run as processes.
//!
//! `cargo test` builds the examples before it runs the tests, into
//! `target/<profile>/examples/`, next to the `selectd` binary's directory.
//! A run that did not build them (`cargo test --test examples` alone) builds
//! them here, once, with the same cargo and profile: these tests never pass
//! without running.
//!
//! Everything is on loopback, on ports the kernel picks; every wait is
//! bounded; time is only ever bounded from below.

mod common;

use std::io::Write;
use std::net::{Shutdown, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    Captured, ServerProcess, capture, connect, cpu_ticks, read_to_end, skip, wait_exit, wait_until,
};

/// The notes' separator line.
const SEPARATOR: &str = "----------------\n";

/// The examples these tests run.
const EXAMPLES: [&str; 2] = ["blocking_server", "blocking_client"];

/// The example `name`, built by `cargo test` or, if it was not, by
/// [`build_examples`] now.
fn example(name: &str) -> PathBuf {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_selectd"))
        .parent()
        .expect("the selectd binary has a directory");
    let path = bin_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !path.exists() {
        static BUILT: OnceLock<()> = OnceLock::new();
        BUILT.get_or_init(|| build_examples(bin_dir));
    }
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// Builds [`EXAMPLES`] with the cargo running these tests, into the same
/// target directory and profile as the `selectd` binary under test.
fn build_examples(bin_dir: &Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let profile = bin_dir.file_name().expect("a profile directory");
    let target_dir = bin_dir.parent().expect("a target directory");
    let mut command = Command::new(cargo);
    command
        .arg("build")
        .arg("--manifest-path")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .stdin(Stdio::null());
    if profile == "release" {
        command.arg("--release");
    }
    for name in EXAMPLES {
        command.args(["--example", name]);
    }
    eprintln!("examples not built by this run: {command:?}");
    let status = command.status().expect("run cargo");
    assert!(status.success(), "cargo build of the examples: {status}");
}

/// A process with its stdout and stderr collected as they arrive.
struct Spawned {
    child: Child,
    stdout: Captured,
    stderr: Captured,
}

impl Spawned {
    fn start(program: &PathBuf, args: &[&str]) -> Spawned {
        Spawned::spawn(Command::new(program).args(args))
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", program.display()))
    }

    fn spawn(command: &mut Command) -> std::io::Result<Spawned> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdout = capture(child.stdout.take().expect("stdout"));
        let stderr = capture(child.stderr.take().expect("stderr"));
        Ok(Spawned {
            child,
            stdout,
            stderr,
        })
    }

    fn stdout(&self) -> String {
        self.stdout.text()
    }

    fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// Waits for a stderr line starting with `prefix`; returns the rest of it.
    fn wait_for_stderr_line(&self, prefix: &str) -> String {
        let mut found = None;
        wait_until(&format!("{prefix:?} on stderr"), || {
            found = self
                .stderr()
                .lines()
                .find_map(|line| line.strip_prefix(prefix).map(str::to_string));
            found.is_some()
        });
        found.expect("found")
    }

    fn wait_for_stdout(&self, needle: &str) {
        wait_until(&format!("{needle:?} on stdout"), || {
            self.stdout().contains(needle)
        });
    }

    /// Waits for the process to exit, and for its pipes to reach EOF.
    fn wait_exit(&mut self) -> ExitStatus {
        let status = wait_exit(&mut self.child);
        self.stdout.wait_eof();
        self.stderr.wait_eof();
        status
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `blocking_server` on an ephemeral loopback port, and that port.
fn blocking_server(extra: &[&str]) -> (Spawned, String) {
    let program = example("blocking_server");
    let mut args = vec!["--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let server = Spawned::start(&program, &args);
    let addr = server.wait_for_stderr_line("listening on tcp://");
    (server, addr)
}

/// Sends `stop\r\n` as its own chunk and checks the server exits 0.
fn stop(server: &mut Spawned, addr: &str) {
    let mut stopper = connect(addr);
    stopper.write_all(b"stop\r\n").unwrap();
    let status = server.wait_exit();
    assert!(status.success(), "{status:?}; stderr: {}", server.stderr());
    assert_eq!(read_to_end(&mut stopper), b"", "closed after stop");
}

// ---- blocking_server: the notes' server ----

/// Each chunk a client sends is printed stripped; `disconnect` ends that
/// client, which is followed by the separator; `stop` ends the server with
/// exit status 0, after one more separator.
#[test]
fn blocking_server_prints_chunks_and_obeys_disconnect_and_stop() {
    let (mut server, addr) = blocking_server(&[]);
    let mut client = connect(&addr);
    client.write_all(b"  merhaba d\xc3\xbcnya \r\n").unwrap();
    // A chunk is a message: wait until this one is read before sending the
    // next, or both might arrive in one recv and be printed as one.
    server.wait_for_stdout("merhaba dünya\n");
    client.write_all(b"disconnect\r\n").unwrap();
    assert_eq!(read_to_end(&mut client), b"", "the server closed");
    server.wait_for_stdout(&format!("merhaba dünya\n{SEPARATOR}"));

    stop(&mut server, &addr);
    assert_eq!(
        server.stdout(),
        format!("merhaba dünya\n{SEPARATOR}{SEPARATOR}")
    );
}

/// A client silent for the time-out (the notes' `select(.., TIMEOUT)`
/// returning nothing) is dropped: not before the time-out has passed.
#[test]
fn blocking_server_drops_idle_client_after_timeout() {
    let (mut server, addr) = blocking_server(&["--timeout", "500ms"]);
    let start = Instant::now();
    let mut idle = connect(&addr);
    assert_eq!(read_to_end(&mut idle), b"", "the server closed");
    assert!(start.elapsed() >= Duration::from_millis(500));
    server.wait_for_stdout(SEPARATOR);
    // stderr is read by its own thread: wait for it rather than race it.
    wait_until("the idle message on stderr", || {
        server.stderr().contains("silent for 500ms")
    });

    stop(&mut server, &addr);
}

/// A client that closes without `disconnect` ends that client, and the
/// server goes back to waiting in `accept`, using no CPU. The notes' server spun
/// here, printing blank lines forever.
#[test]
fn blocking_server_does_not_spin_at_eof() {
    let (mut server, addr) = blocking_server(&[]);
    let mut leaving = connect(&addr);
    leaving.write_all(b"bye\r\n").unwrap();
    server.wait_for_stdout("bye\n");
    leaving.shutdown(Shutdown::Write).unwrap();
    server.wait_for_stdout(&format!("bye\n{SEPARATOR}"));
    assert_eq!(read_to_end(&mut leaving), b"");

    let pid = server.child.id();
    let before = cpu_ticks(pid);
    thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(pid) - before;
    // A spinning process uses about 100 ticks a second; a blocked one none.
    assert!(used < 20, "used {used} clock ticks in 1 s while idle");
    assert_eq!(
        server.stdout(),
        format!("bye\n{SEPARATOR}"),
        "no blank lines"
    );

    // And it still serves the next client.
    let mut next = connect(&addr);
    next.write_all(b"next\r\n").unwrap();
    server.wait_for_stdout("next\n");
    drop(next);
    stop(&mut server, &addr);
}

/// One client at a time: a second client's chunk waits in the backlog
/// until the first client leaves (the notes' limitation, kept on purpose).
#[test]
fn blocking_server_serves_one_client_at_a_time() {
    let (mut server, addr) = blocking_server(&[]);
    let mut first = connect(&addr);
    first.write_all(b"first\r\n").unwrap();
    server.wait_for_stdout("first\n");
    let mut second = connect(&addr); // Completes: the kernel queues it.
    second.write_all(b"second\r\n").unwrap();
    first.write_all(b"still first\r\n").unwrap();
    server.wait_for_stdout("still first\n");
    assert!(!server.stdout().contains("second\n"), "{}", server.stdout());

    first.write_all(b"disconnect\r\n").unwrap();
    server.wait_for_stdout(&format!("still first\n{SEPARATOR}second\n"));
    drop(first);
    second.write_all(b"disconnect\r\n").unwrap();
    assert_eq!(read_to_end(&mut second), b"");
    stop(&mut server, &addr);
}

// ---- blocking_client: the notes' client ----

/// Against `selectd serve --echo`, the client's request comes back byte for
/// byte, fixed (`HTTP/1.0`, CRLF), and the half-close makes selectd finish
/// and close, so the client reads to EOF and exits 0.
#[test]
fn blocking_client_reads_selectd_echo_to_eof() {
    let client = example("blocking_client");
    let server = ServerProcess::start(&["--echo"]);
    let mut fetch = Spawned::start(&client, &[&server.addr, "/sayfa"]);
    let status = fetch.wait_exit();
    assert!(status.success(), "{status:?}: {}", fetch.stderr());
    assert_eq!(fetch.stdout(), "GET /sayfa HTTP/1.0\r\n\r\n");
    server.wait_for_output("] close: eof\n");
    assert!(server.stdout().contains("] GET /sayfa HTTP/1.0\n"));
}

/// Against Python's own `http.server`, the fixed request is a valid HTTP
/// request: the page comes back, headers and body.
#[test]
fn blocking_client_fetches_a_page_from_python_http_server() {
    let client = example("blocking_client");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sayfa.txt"), "merhaba dünya\n").unwrap();
    let python = Spawned::spawn(
        Command::new("python3")
            .args(["-u", "-m", "http.server", "0", "--bind", "127.0.0.1"])
            .arg("--directory")
            .arg(dir.path()),
    );
    let http = match python {
        Ok(http) => http,
        Err(err) => return skip(&format!("cannot run python3: {err}")),
    };
    // "Serving HTTP on 127.0.0.1 port 43617 (http://127.0.0.1:43617/) ..."
    let mut port = None;
    wait_until("python's serving line", || {
        port = http.stdout().lines().find_map(|line| {
            let rest = line.strip_prefix("Serving HTTP on 127.0.0.1 port ")?;
            rest.split_whitespace().next().map(str::to_string)
        });
        port.is_some()
    });
    let addr = format!("127.0.0.1:{}", port.expect("port"));

    let mut fetch = Spawned::start(&client, &[&addr, "/sayfa.txt"]);
    let status = fetch.wait_exit();
    assert!(status.success(), "{status:?}: {}", fetch.stderr());
    let page = fetch.stdout();
    assert!(page.starts_with("HTTP/1.0 200 OK\r\n"), "{page}");
    assert!(page.ends_with("\r\n\r\nmerhaba dünya\n"), "{page}");
}

/// The two ports talk to each other: the server prints the request as one
/// chunk, and the client's half-close is EOF to it (no spin), so it closes
/// and the client exits 0 with nothing printed.
#[test]
fn blocking_client_against_blocking_server() {
    let client = example("blocking_client");
    let (mut server, addr) = blocking_server(&[]);
    let mut fetch = Spawned::start(&client, &[&addr]);
    let status = fetch.wait_exit();
    assert!(status.success(), "{status:?}: {}", fetch.stderr());
    assert_eq!(fetch.stdout(), "");
    server.wait_for_stdout(&format!("GET / HTTP/1.0\n{SEPARATOR}"));
    stop(&mut server, &addr);
}

/// A refused connection is reported as the notes' client would have seen it:
/// `socket.error`, with the `io::ErrorKind`, and exit status 1.
#[test]
fn blocking_client_names_the_python_exception() {
    let client = example("blocking_client");
    // A port that was free a moment ago: nothing listens there now.
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let mut fetch = Spawned::start(&client, &[&addr]);
    let status = fetch.wait_exit();
    assert_eq!(status.code(), Some(1));
    let stderr = fetch.stderr();
    assert!(stderr.starts_with(&format!("blocking_client: cannot connect to {addr}: ")));
    assert!(
        stderr.contains("(socket.error, io::ErrorKind::ConnectionRefused)"),
        "{stderr}"
    );
}
