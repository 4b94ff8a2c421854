//! Shared set-up for the integration tests: a `selectd` process (or an
//! in-process server) on an ephemeral loopback port, clients with time-outs,
//! and bounded waiting. Nothing here sleeps for a fixed time to make a test
//! pass; waits poll a condition until a generous limit.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub mod examples;

use selectd::MemorySink;
use selectd::{Config, Server, ServerHandle};

/// The most any single wait in a test may take before it fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Polls `condition` every 10 ms until it holds (true) or `limit` passes
/// (false). The building block of every wait: a test never sleeps a fixed
/// time hoping that something has happened meanwhile.
pub fn wait_for(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if condition() {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until `condition` holds; fails the test after `PATIENCE`.
pub fn wait_until(what: &str, condition: impl FnMut() -> bool) {
    assert!(
        wait_for(PATIENCE, condition),
        "timed out after {PATIENCE:?} waiting for {what}"
    );
}

/// Whether this run is CI's (`CI` set): there a test that cannot run is a
/// failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// Skips the calling test (the caller returns) with `reason` printed, or
/// fails it when `CI` is set: CI installs everything the tests need, so a
/// green CI run means every test ran.
pub fn skip(reason: &str) {
    assert!(!in_ci(), "CI is set, so this test may not skip: {reason}");
    eprintln!("skipped: {reason}");
}

/// A `selectd serve` process with its stdout and stderr collected.
pub struct ServerProcess {
    pub child: Child,
    /// `127.0.0.1:PORT` of the first listener.
    pub addr: String,
    /// Every `listening on ...` address, as printed.
    pub listening: Vec<String>,
    stdout: Captured,
    stderr: Captured,
}

impl ServerProcess {
    /// Starts `selectd serve ARGS` (add `--listen 127.0.0.1:0` yourself if
    /// you pass other listeners; it is added when `args` has no `--listen`).
    pub fn start(args: &[&str]) -> ServerProcess {
        Self::start_with(args, |_| {})
    }

    /// As [`start`](Self::start), letting the caller adjust the command.
    pub fn start_with(args: &[&str], adjust: impl FnOnce(&mut Command)) -> ServerProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_selectd"));
        command.arg("serve");
        if !args.contains(&"--listen") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        adjust(&mut command);
        let mut child = command.spawn().expect("start selectd");
        let stdout = capture(child.stdout.take().expect("stdout"));
        let stderr = capture(child.stderr.take().expect("stderr"));
        let expected = args.iter().filter(|a| **a == "--listen").count().max(1);
        let mut listening = Vec::new();
        wait_until("the listening line", || {
            listening = stderr
                .text()
                .lines()
                .filter_map(|l| l.strip_prefix("listening on ").map(str::to_string))
                .collect();
            listening.len() >= expected
        });
        let addr = listening[0]
            .strip_prefix("tcp://")
            .unwrap_or(&listening[0])
            .to_string();
        ServerProcess {
            child,
            addr,
            listening,
            stdout,
            stderr,
        }
    }

    pub fn connect(&self) -> TcpStream {
        connect(&self.addr)
    }

    pub fn stdout(&self) -> String {
        self.stdout.text()
    }

    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// Runs `look` on stdout as captured so far, without copying it (the
    /// soak's output runs to megabytes).
    pub fn with_stdout<T>(&self, look: impl FnOnce(&str) -> T) -> T {
        self.stdout.with(look)
    }

    /// Waits until stdout contains `needle`.
    pub fn wait_for_output(&self, needle: &str) {
        wait_until(&format!("{needle:?} on stdout"), || {
            self.stdout().contains(needle)
        });
    }

    /// Waits for the process to exit and for its pipes to be read to the
    /// end: afterwards `stdout()` and `stderr()` hold everything it wrote.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let status = wait_exit(&mut self.child);
        self.stdout.wait_eof();
        self.stderr.wait_eof();
        status
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with a pid we spawned and still own.
        let rc = unsafe { libc::kill(self.pid() as i32, signal) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Stops the process (SIGSTOP) and waits until it is stopped: what a
    /// test does next happens while the server cannot run.
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
        wait_until("the server to be stopped", || {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
            stat.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('T')
        });
    }

    /// Lets a frozen process run again (SIGCONT).
    pub fn thaw(&self) {
        self.signal(libc::SIGCONT);
    }

    /// CPU time (user + system) the process has used, in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        cpu_ticks(self.pid())
    }

    /// Peak resident memory (`VmHWM`) in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM:")
    }

    /// Resident memory in KiB.
    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `kB` field of `/proc/PID/status` (`VmRSS:`, `VmHWM:`), in KiB.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// utime + stime of a process, in clock ticks, from `/proc/PID/stat`.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields[11].parse().unwrap();
    let stime: u64 = fields[12].parse().unwrap();
    utime + stime
}

/// Waits (at most `PATIENCE`) for `child` to exit.
pub fn wait_exit(child: &mut Child) -> ExitStatus {
    let mut status = None;
    wait_until("the process to exit", || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    status.expect("exited")
}

/// A child's pipe, read line by line on its own thread into a shared string.
pub struct Captured {
    text: Arc<Mutex<String>>,
    reader: Option<thread::JoinHandle<()>>,
}

impl Captured {
    /// What arrived so far.
    pub fn text(&self) -> String {
        self.with(str::to_string)
    }

    /// Runs `look` on what arrived so far.
    pub fn with<T>(&self, look: impl FnOnce(&str) -> T) -> T {
        look(&self.text.lock().unwrap())
    }

    /// Waits (at most `PATIENCE`) until the pipe reached its end, i.e. every
    /// process holding it exited: then `text` is complete.
    pub fn wait_eof(&mut self) {
        if let Some(reader) = self.reader.take() {
            wait_until("the pipe to reach its end", || reader.is_finished());
            reader.join().expect("pipe reader");
        }
    }
}

/// Reads `pipe` into a shared string, for a caller that never needs to know
/// it reached its end (prefer [`capture`] and [`Captured::wait_eof`] when
/// reading what a process wrote before it exited).
pub fn collect(pipe: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    capture(pipe).text
}

/// Starts reading `pipe` into a [`Captured`].
pub fn capture(pipe: impl Read + Send + 'static) -> Captured {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&text);
    let reader = thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&line));
            line.clear();
        }
    });
    Captured {
        text,
        reader: Some(reader),
    }
}

/// A client with generous read and write time-outs.
pub fn connect(addr: &str) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.set_write_timeout(Some(PATIENCE)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Reads until EOF; panics after `PATIENCE`.
pub fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    stream.read_to_end(&mut all).expect("read to EOF");
    all
}

/// Reads exactly `n` bytes.
pub fn read_exactly(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    stream.read_exact(&mut buf).expect("read_exact");
    buf
}

/// Sends `bytes` and half-closes.
pub fn send_and_shutdown(stream: &mut TcpStream, bytes: &[u8]) {
    stream.write_all(bytes).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
}

/// Closes with RST instead of FIN (SO_LINGER with a zero time-out).
pub fn reset(stream: TcpStream) {
    let socket = socket2::Socket::from(stream);
    socket.set_linger(Some(Duration::ZERO)).unwrap();
    drop(socket);
}

/// An in-process server whose output is captured in memory.
pub struct InProcess {
    pub addr: String,
    pub output: MemorySink,
    pub handle: ServerHandle,
    thread: Option<thread::JoinHandle<Result<(), selectd::Error>>>,
}

impl InProcess {
    pub fn start(adjust: impl FnOnce(&mut Config)) -> InProcess {
        let mut config = Config::listening_on("127.0.0.1:0".parse().unwrap());
        adjust(&mut config);
        let output = MemorySink::new();
        let server = Server::bind(config)
            .expect("bind")
            .with_output(output.clone());
        let addr = server.local_addrs()[0]
            .to_string()
            .trim_start_matches("tcp://")
            .to_string();
        let handle = server.handle();
        let thread = thread::spawn(move || server.run());
        InProcess {
            addr,
            output,
            handle,
            thread: Some(thread),
        }
    }

    pub fn connect(&self) -> TcpStream {
        connect(&self.addr)
    }

    pub fn output(&self) -> String {
        self.output.contents()
    }

    pub fn wait_for_output(&self, needle: &str) {
        wait_until(&format!("{needle:?} in output"), || {
            self.output().contains(needle)
        });
    }

    /// Stops the server and waits for `run` to return.
    pub fn stop(mut self) -> String {
        self.handle.stop();
        self.join();
        self.output()
    }

    /// Takes the thread that runs the server, to join it and see what
    /// `run` returned (a test that expects it to fail); the server is then
    /// the caller's to stop.
    pub fn take_run(&mut self) -> thread::JoinHandle<Result<(), selectd::Error>> {
        self.thread.take().expect("the server's thread, taken once")
    }

    /// Waits for `run` to return (after a `stop` line, say).
    pub fn join(&mut self) {
        if let Some(thread) = self.thread.take() {
            wait_until("the server to stop", || thread.is_finished());
            thread.join().expect("server thread").expect("server run");
        }
    }

    /// The server's counters, as published at the end of its last turn.
    pub fn stats(&self) -> selectd::Counters {
        self.handle.stats()
    }

    /// Waits until the server has read `n` bytes in all: what was sent
    /// before is then framed, so the next write arrives in a read of its own.
    pub fn wait_bytes_in(&self, n: u64) {
        wait_until(&format!("the server to read {n} bytes"), || {
            self.stats().bytes_in >= n
        });
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.handle.stop();
            if !thread::panicking() {
                self.join();
            }
        }
    }
}
