//! What only Unix stream sockets do: pass file descriptors (`SCM_RIGHTS`),
//! cut reads at those messages, carry urgent data their own way, and leave
//! a socket file behind that a new server must probe before taking it.

mod common;

use std::io::{IoSlice, Write};
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};

use common::*;

fn unix_client(path: &Path) -> UnixStream {
    let stream = UnixStream::connect(path).expect("connect unix");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.set_write_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// Descriptors open in process `pid` right now.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc/PID/fd")
        .count()
}

/// Sends `bytes` with three descriptors (of `/dev/null`) attached.
fn send_with_fds(stream: &UnixStream, bytes: &[u8]) {
    let files: Vec<std::fs::File> = (0..3)
        .map(|_| std::fs::File::open("/dev/null").unwrap())
        .collect();
    let fds: Vec<_> = files.iter().map(|f| f.as_fd()).collect();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(3))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    assert!(control.push(SendAncillaryMessage::ScmRights(&fds)));
    let sent = rustix::net::sendmsg(
        stream,
        &[IoSlice::new(bytes)],
        &mut control,
        SendFlags::empty(),
    )
    .expect("sendmsg");
    assert_eq!(sent, bytes.len());
}

/// On Linux a Unix-socket read stops at a message that carries descriptors,
/// so a short read does not mean the queue is empty: the lines queued behind
/// such a message are read at once (not stranded until the idle time-out),
/// and every descriptor a client passes is closed at once, none kept.
#[test]
fn lines_behind_passed_descriptors_are_read_and_the_descriptors_closed() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("s.sock");
    let listen = format!("unix:{}", sock.display());
    let server = ServerProcess::start(&["--listen", &listen, "--idle-timeout", "3s"]);
    let client = unix_client(&sock);
    server.wait_for_output("] open\n");
    let baseline = open_fds(server.pid());
    // Everything is queued before the server reads any of it.
    server.freeze();
    for round in 0..5 {
        send_with_fds(&client, format!("first {round}\n").as_bytes());
    }
    (&client).write_all(b"second\nthird\n").unwrap();
    server.thaw();
    server.wait_for_output("] third\n");
    let output = server.stdout();
    for round in 0..5 {
        assert!(output.contains(&format!("] first {round}\n")), "{output}");
    }
    assert!(output.contains("] second\n"), "{output}");
    assert!(!output.contains("close: idle"), "{output}");
    assert_eq!(
        open_fds(server.pid()),
        baseline,
        "passed descriptors must be closed, not kept"
    );
}

/// Urgent data: TCP keeps the urgent byte inline (`SO_OOBINLINE`), and so
/// do Unix sockets, so both families print the same line.
#[test]
fn urgent_data_is_inline_over_unix_as_over_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("s.sock");
    let listen = format!("unix:{}", sock.display());
    let server = ServerProcess::start(&["--listen", "127.0.0.1:0", "--listen", &listen]);
    let tcp = server.connect();
    let unix = unix_client(&sock);
    for (family, fd) in [("tcp", tcp.as_fd()), ("unix", unix.as_fd())] {
        rustix::net::send(fd, b"ab", SendFlags::empty()).unwrap();
        rustix::net::send(fd, b"X", SendFlags::OOB).unwrap();
        rustix::net::send(fd, format!("cd {family}\n").as_bytes(), SendFlags::empty()).unwrap();
    }
    server.wait_for_output("abXcd tcp\n");
    wait_until("the unix line", || server.stdout().contains(" unix\n"));
    let output = server.stdout();
    assert!(output.contains("] abXcd unix\n"), "{output}");
}

/// A live socket whose owner does not accept and whose backlog is full:
/// the probe for a stale socket must not wait for room in that backlog; the
/// path is refused as in use, exit 1, at once.
#[test]
fn a_live_socket_with_a_full_backlog_is_refused_without_hanging() {
    use socket2::{Domain, SockAddr, Socket, Type};
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("busy.sock");
    let owner = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
    owner.bind(&SockAddr::unix(&sock).unwrap()).unwrap();
    owner.listen(1).unwrap();
    // Fill the backlog: non-blocking connects until the kernel says
    // "try again" (the owner never accepts).
    let mut queued = Vec::new();
    loop {
        let client = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
        client.set_nonblocking(true).unwrap();
        match client.connect(&SockAddr::unix(&sock).unwrap()) {
            Ok(()) => queued.push(client),
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(err) => panic!("unexpected connect error: {err}"),
        }
        assert!(queued.len() < 1000, "the backlog never filled");
    }
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_selectd"))
        .args(["serve", "--listen", &format!("unix:{}", sock.display())])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = collect(child.stderr.take().unwrap());
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve hung probing a live socket with a full backlog");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(1));
    wait_until("the error line", || stderr.lock().unwrap().contains('\n'));
    let text = stderr.lock().unwrap().clone();
    assert!(text.contains(&sock.display().to_string()), "{text}");
    assert!(text.contains("in use"), "{text}");
    assert!(sock.exists(), "a live socket is never removed");
    drop(queued);
}
