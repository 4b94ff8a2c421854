//! Where two features meet, each keeps its promise: limits with several
//! loops, stop behind a stalled output, clients handed between loops at
//! stop, and one consistent `stats` reply.

mod common;
mod deploy_support;
mod tls_support;

use std::io::Read;
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use common::*;
use tls_support::{Certs, rustls_client};

#[allow(unused_imports)]
use std::io::Write as _;

/// `--max-conns` bounds the server, not each loop: with eight loops
/// accepting at once, storm after storm of connects never gets more than
/// N clients in. (A check of the open count followed by a separate
/// increment let two loops both admit the last place.)
#[test]
fn max_conns_holds_under_connect_storms_on_many_loops() {
    const MAX: u64 = 16;
    const STORM: u64 = 300;
    let server = InProcess::start(|config| {
        config.reactors = 8;
        config.max_conns = Some(MAX as usize);
        config.idle_timeout = None;
    });
    for round in 0..25 {
        let before = server.stats();
        let addr = server.addr.clone();
        let storms: Vec<_> = (0..4)
            .map(|_| {
                let addr = addr.clone();
                thread::spawn(move || {
                    (0..STORM / 4)
                        .map(|_| TcpStream::connect(&addr).expect("connect"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let clients: Vec<TcpStream> = storms
            .into_iter()
            .flat_map(|storm| storm.join().expect("storm"))
            .collect();
        let mut after = server.stats();
        wait_until("every client of the storm admitted or refused", || {
            after = server.stats();
            (after.accepted - before.accepted) + (after.refused_full - before.refused_full) == STORM
        });
        let admitted = after.accepted - before.accepted;
        assert!(
            admitted <= MAX,
            "round {round}: {admitted} clients admitted with --max-conns {MAX}"
        );
        drop(clients);
        wait_until("every client closed", || server.stats().open == 0);
    }
}

/// Reads what the server sends until EOF or `limit` bytes.
#[allow(dead_code)]
fn read_some(stream: &mut TcpStream, limit: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let _ = stream.take(limit as u64).read_to_end(&mut got);
    got
}

#[allow(dead_code)]
const SHORT: Duration = Duration::from_millis(100);

/// One `stats` reply is one snapshot: under churn on three loops, the open
/// total always equals the sum of the per-loop figures beside it.
#[test]
fn a_stats_reply_agrees_with_itself_under_churn() {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let server = InProcess::start(|config| {
        config.reactors = 3;
        config.idle_timeout = None;
    });
    let done = Arc::new(AtomicBool::new(false));
    let churners: Vec<_> = (0..2)
        .map(|_| {
            let (addr, done) = (server.addr.clone(), Arc::clone(&done));
            thread::spawn(move || {
                let mut held = Vec::new();
                while !done.load(Ordering::Relaxed) {
                    held.push(TcpStream::connect(&addr).expect("connect"));
                    if held.len() > 20 {
                        held.drain(..10);
                    }
                }
            })
        })
        .collect();
    let mut disagreements = Vec::new();
    for _ in 0..1500 {
        let mut client = connect(&server.addr);
        client.write_all(b"stats\n").expect("ask");
        let mut reply = String::new();
        BufReader::new(&client)
            .read_line(&mut reply)
            .expect("reply");
        let field = |name: &str| -> String {
            reply
                .split_whitespace()
                .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
                .unwrap_or_else(|| panic!("no {name} in {reply:?}"))
                .to_string()
        };
        let open: u64 = field("open").parse().expect("open");
        let by_loop: u64 = field("open_by_reactor")
            .split(',')
            .map(|n| n.parse::<u64>().expect("a count"))
            .sum();
        if open != by_loop {
            disagreements.push(reply.trim().to_string());
        }
    }
    done.store(true, Ordering::Relaxed);
    for churner in churners {
        churner.join().expect("churner");
    }
    assert!(
        disagreements.is_empty(),
        "{} replies disagree, e.g. {:?}",
        disagreements.len(),
        disagreements.first()
    );
}

/// With several loops, a Unix client is handed from the loop that accepts
/// it to another. A stop (here SIGTERM) must not lose the clients on their way: every line
/// a client finished before the stop is printed, and the exit status is 0.
#[test]
fn unix_clients_on_their_way_to_a_loop_at_stop_are_served() {
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    const CLIENTS: usize = 200;
    for round in 0..20 {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("s.sock");
        let unix = format!("unix:{}", path.display());
        let mut server = ServerProcess::start(&[
            "--listen",
            "127.0.0.1:0",
            "--listen",
            &unix,
            "--reactors",
            "3",
            "--idle-timeout",
            "off",
            "--format",
            "plain",
        ]);
        // Frozen, the server lets the clients queue in the backlog: the
        // stop then finds them there, not yet accepted.
        server.freeze();
        let clients: Vec<UnixStream> = (0..CLIENTS)
            .map(|n| {
                let mut client = UnixStream::connect(&path).expect("connect");
                client
                    .write_all(format!("line {n}\n").as_bytes())
                    .expect("send");
                client
            })
            .collect();
        // The stop comes from outside the Unix listener (a TCP client,
        // served by any loop), so Unix clients may still be in its backlog
        // or in a loop's inbox.
        let mut stopper = server.connect();
        stopper.write_all(b"stop\n").expect("stop");
        server.thaw();
        let status = server.wait_exit();
        let printed = server.stdout();
        let missing: Vec<usize> = (0..CLIENTS)
            .filter(|n| !printed.contains(&format!("line {n}\n")))
            .collect();
        assert!(
            missing.is_empty(),
            "round {round}: {} of {CLIENTS} lines missing (e.g. line {}); stderr: {}",
            missing.len(),
            missing[0],
            server.stderr()
        );
        assert!(status.success(), "{status:?}: {}", server.stderr());
        drop(clients);
    }
}

/// `selectd serve --listen 127.0.0.1:0 ARGS` printing into a pipe that the
/// test reads only when it says so, with debug logs (they say when reading
/// pauses and when a stop is found).
struct Stalled {
    child: std::process::Child,
    addr: String,
    stderr: Captured,
    output: Option<std::io::PipeReader>,
}

impl Stalled {
    fn start(args: &[&str]) -> Stalled {
        use std::process::{Command, Stdio};
        let (reader, writer) = std::io::pipe().expect("pipe");
        let mut plug = writer.try_clone().expect("the pipe's write end");
        let mut child = Command::new(env!("CARGO_BIN_EXE_selectd"))
            .args(["serve", "--listen", "127.0.0.1:0", "--output-full", "block"])
            .args(args)
            .env("RUST_LOG", "selectd=debug")
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start selectd");
        let stderr = capture(child.stderr.take().expect("stderr"));
        let mut addr = String::new();
        let listening = wait_for(PATIENCE, || {
            stderr.with(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("listening on tcp://"))
                    .map(|found| addr = found.to_string())
                    .is_some()
            })
        });
        assert!(listening, "no listening line: {}", stderr.text());
        // The server has sized its output pipe (before listening). Fill it
        // up, a page per write, so that its writer cannot write a byte:
        // the output is stalled from the first line on, for good.
        use std::os::fd::AsRawFd;
        // SAFETY: F_GETPIPE_SZ reads nothing from us.
        let capacity = unsafe { libc::fcntl(plug.as_raw_fd(), libc::F_GETPIPE_SZ) };
        let page = [b'#'; 4095]
            .iter()
            .chain(b"\n")
            .copied()
            .collect::<Vec<u8>>();
        for _ in 0..usize::try_from(capacity).expect("a pipe size") / page.len() {
            std::io::Write::write_all(&mut plug, &page).expect("fill the pipe");
        }
        Stalled {
            child,
            addr,
            stderr,
            output: Some(reader),
        }
    }

    /// The `HOST:PORT` of the listener the server names `SCHEME://` (one
    /// given in `args`, beside the TCP one it always has).
    fn listening(&self, scheme: &str) -> String {
        let prefix = format!("listening on {scheme}://");
        self.stderr
            .text()
            .lines()
            .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
            .unwrap_or_else(|| panic!("no {scheme}:// listener: {}", self.stderr.text()))
    }

    fn wait_for_stderr(&self, needle: &str) {
        let found = wait_for(PATIENCE, || self.stderr.with(|text| text.contains(needle)));
        assert!(found, "no {needle:?} on stderr: {}", self.stderr.text());
    }

    /// Starts reading the output, into the returned text.
    fn read_output(
        &mut self,
    ) -> (
        thread::JoinHandle<()>,
        std::sync::Arc<std::sync::Mutex<String>>,
    ) {
        let reader = self.output.take().expect("output not read yet");
        let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let into = std::sync::Arc::clone(&text);
        let reading = thread::spawn(move || {
            let mut reader = reader;
            let mut buffer = [0u8; 64 * 1024];
            while let Ok(n) = reader.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                into.lock()
                    .expect("text")
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        (reading, text)
    }
}

impl Drop for Stalled {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends numbered lines (`filler 000000`, ...) until the server has
/// stopped reading for good: its output pipe is full (see `start`: its
/// writer can write nothing), so once it says it paused, it stays paused.
/// Returns the socket, kept open.
fn fill_until_unread(addr: &str, stalled: &Stalled) -> TcpStream {
    use std::io::Write;
    let mut stream = connect(addr);
    stream.set_nonblocking(true).expect("non-blocking");
    let paused_last = || {
        stalled.stderr.with(|text| {
            let paused = text.rfind("not reading from clients");
            let resumed = text.rfind("output has room again");
            paused.is_some() && paused > resumed
        })
    };
    let mut next = 0usize;
    let mut pending: Vec<u8> = Vec::new();
    wait_until("the server to stop reading for good", || {
        loop {
            if pending.is_empty() {
                for _ in 0..256 {
                    let line = format!("filler {next:06} {}\n", "x".repeat(40));
                    pending.extend_from_slice(line.as_bytes());
                    next += 1;
                }
            }
            match stream.write(&pending) {
                Ok(n) => {
                    pending.drain(..n);
                }
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(err) => panic!("filling: {err}"),
            }
        }
        paused_last()
    });
    stream
}

/// With the output stalled for good, reading is paused for every client;
/// a local client's `stop` is still obeyed: the server ends within the
/// grace period (exit 1, output unwritten), not only on a signal.
#[test]
fn stop_is_obeyed_while_the_output_is_stalled() {
    use std::io::Write;
    let mut server = Stalled::start(&["--output-buffer", "64KiB", "--grace", "1s"]);
    let _filler = fill_until_unread(&server.addr.clone(), &server);
    let mut stopper = connect(&server.addr);
    stopper.write_all(b"stop\n").expect("stop");
    server.wait_for_stderr("stop sent while the output is full");
    let status = wait_exit(&mut server.child);
    assert_eq!(status.code(), Some(1), "{}", server.stderr.text());
    server.wait_for_stderr("bytes of output unwritten");
}

/// The same stop, then the output drains within the grace period: every
/// line read before and after the stop is printed once, in order, the
/// stopper's own line before its `stop` too, and the server ends cleanly.
#[test]
fn stop_behind_a_stalled_output_loses_and_reorders_nothing() {
    use std::io::Write;
    let mut server = Stalled::start(&["--output-buffer", "64KiB", "--grace", "60s"]);
    let filler = fill_until_unread(&server.addr.clone(), &server);
    let mut stopper = connect(&server.addr);
    stopper
        .write_all(b"said before the stop\nstop\n")
        .expect("stop");
    server.wait_for_stderr("stop sent while the output is full");
    let (reading, printed) = server.read_output();
    let status = wait_exit(&mut server.child);
    reading.join().expect("reader");
    assert!(status.success(), "{status:?}: {}", server.stderr.text());
    drop(filler);
    let printed = printed.lock().expect("text").clone();
    assert!(
        printed.contains("] said before the stop\n"),
        "{}",
        &printed[printed.len().saturating_sub(500)..]
    );
    assert!(
        printed.contains("close: stop"),
        "the stopper closes with reason stop"
    );
    let numbers: Vec<usize> = printed
        .lines()
        .filter_map(|line| line.split("] filler ").nth(1))
        // The filler's last line is unfinished (printed at the stop as it
        // stands): only whole ones are numbered.
        .filter(|rest| rest.ends_with(&"x".repeat(40)))
        .filter_map(|rest| rest.split(' ').next()?.parse().ok())
        .collect();
    assert!(numbers.len() > 1000, "only {} filler lines", numbers.len());
    for (expected, &got) in numbers.iter().enumerate() {
        assert_eq!(got, expected, "filler lines out of order or missing");
    }
}

/// The unread bytes of a client are looked through again at each arrival
/// while the output is stalled, from where the last look left off: a
/// `stop` that comes in pieces, behind lines that arrived one by one
/// (each its own event and look), is still found.
#[test]
fn a_stop_arriving_in_pieces_behind_many_lines_is_still_seen() {
    use std::io::Write;
    let mut server = Stalled::start(&["--output-buffer", "64KiB", "--grace", "1s"]);
    let _filler = fill_until_unread(&server.addr.clone(), &server);
    let mut stopper = connect(&server.addr);
    // Some KiB of lines, each arriving apart, then the stop in two pieces.
    for at in 0..24 {
        let line = format!("waiting line {at:02} {}\n", "y".repeat(150));
        stopper.write_all(line.as_bytes()).expect("line");
        std::thread::sleep(Duration::from_millis(20));
    }
    stopper.write_all(b"st").expect("st");
    std::thread::sleep(Duration::from_millis(100));
    stopper.write_all(b"op\n").expect("op");
    server.wait_for_stderr("stop sent while the output is full");
    let status = wait_exit(&mut server.child);
    assert_eq!(status.code(), Some(1), "{}", server.stderr.text());
}

/// Signals reach the first loop. With two loops, the first can end before
/// the second (its clients are gone while the second still drains one that
/// does not read its replies, within a long `--grace`): a second signal
/// must still stop the server at once. (The first loop's signal handler
/// ended with it, and every later signal was caught and ignored.)
#[test]
fn a_second_signal_stops_at_once_after_the_first_loop_has_ended() {
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("s.sock");
    let unix = format!("unix:{}", path.display());
    let mut server = ServerProcess::start_with(
        &[
            "--listen",
            &unix,
            "--reactors",
            "2",
            "--echo",
            "--format",
            "none",
            "--idle-timeout",
            "off",
            "--grace",
            "60s",
            "--high-watermark",
            "8KiB",
            "--low-watermark",
            "4KiB",
        ],
        |command| {
            command.env("RUST_LOG", "info,selectd::serve::connection=debug");
        },
    );
    // Unix clients go to the loops in turn: the first stays with the first
    // loop (and leaves), the second is handed to the second loop.
    let mut first = UnixStream::connect(&path).expect("connect");
    first.write_all(b"disconnect\n").expect("send");
    let mut rest = Vec::new();
    first.read_to_end(&mut rest).expect("read to the end");
    // The second echoes into a client that never reads: its replies are
    // held back, and at a stop it keeps the second loop for `--grace`.
    let hog = UnixStream::connect(&path).expect("connect");
    hog.set_nonblocking(true).expect("non-blocking");
    let chunk = b"x"
        .repeat(999)
        .into_iter()
        .chain(*b"\n")
        .collect::<Vec<u8>>();
    wait_until("the hog's replies held back", || {
        match (&hog).write(&chunk) {
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(1));
            }
            Err(err) => panic!("{err}"),
        }
        server.stderr().contains("pausing reads")
    });
    server.signal(libc::SIGTERM);
    // The first loop, with no client left, ends; the second drains.
    wait_until("the first loop to end", || {
        server.stderr().contains("stopped:")
    });
    thread::sleep(Duration::from_millis(200));
    assert!(
        server.child.try_wait().expect("try_wait").is_none(),
        "exited before the second signal: {}",
        server.stderr()
    );
    server.signal(libc::SIGTERM);
    server.wait_exit();
    assert!(
        server.stderr().contains("again: stopping now"),
        "{}",
        server.stderr()
    );
    drop(hog);
}

/// While reading is paused for a stalled output, no client's clock runs,
/// the TLS handshake's time-out included: a TLS client that connected
/// during a pause longer than that time-out has it all again once reading
/// resumes. (Its clock ran on during the pause, and it was closed as soon
/// as reading resumed.)
#[test]
fn a_pause_in_reading_does_not_make_a_tls_handshake_late() {
    use std::io::Write;
    let Some(certs) = Certs::make() else { return };
    let mut args = certs.serve_args();
    args.extend(
        ["--tls-handshake-timeout", "2s", "--output-buffer", "64KiB"]
            .iter()
            .map(|s| s.to_string()),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = Stalled::start(&args);
    let tls_addr = server.listening("tls");
    let _filler = fill_until_unread(&server.addr.clone(), &server);
    // Accepted while reading is paused; the handshake begins later.
    let tcp = connect(&tls_addr);
    tcp.set_read_timeout(Some(PATIENCE)).expect("read time-out");
    // More than twice the handshake's time-out, reading paused throughout.
    thread::sleep(Duration::from_millis(4500));
    let (_reading, printed) = server.read_output();
    server.wait_for_stderr("output has room again");
    // Time enough for a clock left to run to close the client.
    thread::sleep(Duration::from_millis(300));
    let mut tls = rustls_client(tcp, &certs.ca, None);
    let sent = tls.write_all(b"tls hello\n").and_then(|()| tls.flush());
    let served = sent.is_ok()
        && wait_for(PATIENCE, || {
            printed.lock().expect("text").contains("] tls hello\n")
        });
    assert!(
        served,
        "the TLS client was not served ({sent:?}); stderr: {}",
        server.stderr.text()
    );
}

/// The output's bound holds for UDP as for streams, per read: with the
/// output stalled, a socket holding several large datagrams is read one
/// datagram past the bound at most, not its whole turn's budget (up to 256
/// datagrams of 64 KiB each).
#[test]
fn udp_reads_stop_at_the_output_bound() {
    use std::net::UdpSocket;
    let server = Stalled::start(&["--listen", "udp://127.0.0.1:0", "--output-buffer", "64KiB"]);
    let udp_addr = server.listening("udp");
    let pid = server.child.id() as i32;
    // Frozen, the server lets the datagrams queue in its socket: its first
    // read finds them all there.
    // SAFETY: kill(2) on the child we spawned.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    thread::sleep(Duration::from_millis(200));
    let sender = UdpSocket::bind("127.0.0.1:0").expect("bind");
    for n in 0..3 {
        let datagram = format!("{n}{}\n", "d".repeat(59_998));
        sender
            .send_to(datagram.as_bytes(), &udp_addr)
            .expect("send");
    }
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    server.wait_for_stderr("not reading from clients");
    let log = server.stderr.text();
    let waiting: usize = log
        .lines()
        .find_map(|l| {
            l.split("output full (")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no pending count: {log}"));
    // The bound, and one datagram (the largest a UDP payload can be).
    assert!(
        waiting <= 64 * 1024 + 65_536,
        "{waiting} bytes waiting over a 64 KiB bound: {log}"
    );
}
