//! The PROXY protocol with hand-built headers over raw loopback sockets:
//! what a trusted proxy's header says is the peer everywhere, a bad header
//! closes the connection (`proxy-header`), and from anyone else a header is
//! just a line.
//!
//! The server trusts 127.0.0.1 only; an untrusted client binds 127.0.0.2
//! before connecting (the whole 127/8 range is loopback on Linux).

mod common;

use std::io::{Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{InProcess, PATIENCE, connect, read_to_end, wait_until};
use selectd::CloseReason;

fn trusting_localhost(adjust: impl FnOnce(&mut selectd::Config)) -> InProcess {
    InProcess::start(|config| {
        config.proxy_protocol = "127.0.0.1/32".parse().unwrap();
        config.idle_timeout = Some(Duration::from_secs(60));
        adjust(config);
    })
}

fn v1_tcp4(source_port: u16) -> Vec<u8> {
    format!("PROXY TCP4 203.0.113.7 127.0.0.1 {source_port} 10001\r\n").into_bytes()
}

fn v1_tcp6(source_port: u16) -> Vec<u8> {
    format!("PROXY TCP6 2001:db8::7 ::1 {source_port} 10001\r\n").into_bytes()
}

const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// A v2 header: `command` 0 is LOCAL, 1 is PROXY; `family` 0x11 is TCP
/// over IPv4, 0x21 over IPv6.
fn v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
    let mut header = V2_SIGNATURE.to_vec();
    header.push(0x20 | command);
    header.push(family);
    header.extend(u16::try_from(addresses.len()).unwrap().to_be_bytes());
    header.extend(addresses);
    header
}

fn v2_tcp4(source_port: u16) -> Vec<u8> {
    let mut addresses = vec![198, 51, 100, 9, 127, 0, 0, 1];
    addresses.extend(source_port.to_be_bytes());
    addresses.extend(10001u16.to_be_bytes());
    v2(1, 0x11, &addresses)
}

fn v2_tcp6(source_port: u16) -> Vec<u8> {
    let mut addresses = Vec::new();
    addresses.extend("2001:db8::9".parse::<Ipv6Addr>().unwrap().octets());
    addresses.extend(Ipv6Addr::LOCALHOST.octets());
    addresses.extend(source_port.to_be_bytes());
    addresses.extend(10001u16.to_be_bytes());
    v2(1, 0x21, &addresses)
}

/// A client connecting from `source` (an address of the loopback range).
fn connect_from(source: &str, server: &str) -> TcpStream {
    let server: SocketAddr = server.parse().unwrap();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let source: SocketAddr = format!("{source}:0").parse().unwrap();
    socket.bind(&source.into()).unwrap();
    socket.connect(&server.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.set_write_timeout(Some(PATIENCE)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Each header, followed by a first line in the same segment, and split in
/// two writes at every byte (the first read by the server before the second
/// is sent):
/// the client the header names is the peer of the `open` event and of the
/// line, and nothing of the header leaks into the line.
#[test]
fn headers_split_at_every_byte_name_the_client() {
    let server = trusting_localhost(|_| {});
    type Make = fn(u16) -> Vec<u8>;
    let kinds: [(&str, Make, &str); 4] = [
        ("v1 tcp4", v1_tcp4, "203.0.113.7"),
        ("v1 tcp6", v1_tcp6, "[2001:db8::7]"),
        ("v2 tcp4", v2_tcp4, "198.51.100.9"),
        ("v2 tcp6", v2_tcp6, "[2001:db8::9]"),
    ];
    // Bytes sent so far by every client: the server's `bytes_in` says when
    // it has read them all.
    let mut sent = 0u64;
    for (kind, make, client) in kinds {
        let first_line = b"first line\n";
        let len = make(0).len() + first_line.len();
        // Split at 0 is one write; every other split is two.
        let mut clients = Vec::new();
        for split in 0..len {
            let port = 20000 + u16::try_from(split).unwrap();
            let mut bytes = make(port);
            bytes.extend(first_line);
            let mut stream = server.connect();
            stream.write_all(&bytes[..split.max(1)]).unwrap();
            sent += split.max(1) as u64;
            clients.push((stream, bytes, split.max(1), port));
        }
        server.wait_bytes_in(sent);
        for (stream, bytes, split, _) in &mut clients {
            stream.write_all(&bytes[*split..]).unwrap();
            sent += (bytes.len() - *split) as u64;
        }
        for (_, _, split, port) in &clients {
            let line = format!("[{client}:{port}] first line\n");
            wait_until(&format!("{kind} split at {split}: {line:?}"), || {
                server.output().contains(&line)
            });
            let open = format!("* [{client}:{port}] open\n");
            assert!(server.output().contains(&open), "{kind}: {open:?}");
        }
        drop(clients);
    }
    let output = server.stop();
    assert!(!output.contains("PROXY"), "a header leaked into the output");
    assert!(!output.contains("proxy-header"), "{output}");
}

/// The close event and a line after the header carry the client's address
/// too: the header's peer stands for the whole connection.
#[test]
fn the_carried_address_is_the_peer_until_close() {
    let server = trusting_localhost(|_| {});
    let mut stream = server.connect();
    let mut bytes = v2_tcp4(40001);
    bytes.extend(b"one\n");
    stream.write_all(&bytes).unwrap();
    server.wait_for_output("[198.51.100.9:40001] one\n");
    stream.write_all(b"two\n").unwrap();
    server.wait_for_output("[198.51.100.9:40001] two\n");
    drop(stream);
    server.wait_for_output("* [198.51.100.9:40001] close: eof\n");
}

/// A header that names a client on another host gives that client the
/// rights of a remote one: `stop` and `stats` are refused, and the server
/// keeps running.
#[test]
fn a_header_claiming_a_remote_source_cannot_stop_the_server() {
    let server = trusting_localhost(|_| {});
    for header in [v1_tcp4(40002), v2_tcp6(40003)] {
        let mut stream = server.connect();
        let mut bytes = header;
        bytes.extend(b"stop\nstats\n");
        stream.write_all(&bytes).unwrap();
        let expected = b"error: stop is only accepted from local clients\r\n\
                         error: stats is only accepted from local clients\r\n";
        let mut reply = vec![0; expected.len()];
        stream.read_exact(&mut reply).unwrap();
        assert_eq!(reply, expected);
    }
    // Still serving.
    let mut stream = server.connect();
    let mut bytes = v1_tcp4(40004);
    bytes.extend(b"still here\n");
    stream.write_all(&bytes).unwrap();
    server.wait_for_output("[203.0.113.7:40004] still here\n");
    assert_eq!(server.handle.stats().closed_for(CloseReason::Stop), 0);
}

/// A header naming a loopback client, from the trusted proxy, may stop the
/// server: the proxy vouches for a local client.
#[test]
fn a_header_naming_a_local_client_may_stop_the_server() {
    let mut server = trusting_localhost(|_| {});
    let mut stream = server.connect();
    stream
        .write_all(b"PROXY TCP4 127.0.0.9 127.0.0.1 40005 10001\r\nstop\n")
        .unwrap();
    server.join();
    assert!(
        server
            .output()
            .contains("* [127.0.0.9:40005] close: stop\n")
    );
}

/// A v2 LOCAL header (a proxy's own health check) keeps the proxy's address.
#[test]
fn a_v2_local_header_keeps_the_proxy_address() {
    let server = trusting_localhost(|_| {});
    let mut stream = server.connect();
    let own = stream.local_addr().unwrap();
    let mut bytes = v2(0, 0x00, &[]);
    bytes.extend(b"ping\n");
    stream.write_all(&bytes).unwrap();
    server.wait_for_output(&format!("[{own}] ping\n"));
}

/// Missing, malformed, oversized, unfinished and slow headers from a trusted
/// proxy close the connection with `proxy-header`; each is counted, and the
/// peer is the proxy's address (it named no client).
#[test]
fn bad_headers_close_with_proxy_header() {
    let server = trusting_localhost(|_| {});
    let mut too_long_v1 = b"PROXY TCP4 ".to_vec();
    too_long_v1.extend([b'1'; 200]);
    let mut too_long_v2 = V2_SIGNATURE.to_vec();
    too_long_v2.extend([0x21, 0x11, 0xff, 0xff]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("no header", b"hello\n".to_vec()),
        (
            "bad v1",
            b"PROXY TCP4 203.0.113.300 127.0.0.1 1 2\r\nhello\n".to_vec(),
        ),
        (
            "v1 without CR",
            b"PROXY TCP4 203.0.113.7 127.0.0.1 1 2\nhello\n".to_vec(),
        ),
        ("bad v2 version", {
            let mut h = v2_tcp4(1);
            h[12] = 0x11;
            h
        }),
        ("oversized v1", too_long_v1),
        ("oversized v2", too_long_v2),
    ];
    let count = cases.len() + 1;
    for (what, bytes) in cases {
        let mut stream = server.connect();
        let own = stream.local_addr().unwrap();
        stream.write_all(&bytes).unwrap();
        let rest = read_to_end(&mut stream);
        assert!(rest.is_empty(), "{what}: {rest:?}");
        server.wait_for_output(&format!("* [{own}] close: proxy-header\n"));
    }
    // Closed before the header was complete.
    let mut stream = server.connect();
    let own = stream.local_addr().unwrap();
    stream.write_all(b"PROXY TCP4 203.0").unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    server.wait_for_output(&format!("* [{own}] close: proxy-header\n"));
    wait_until("the counter", || {
        server.handle.stats().closed_for(CloseReason::ProxyHeader) == count as u64
    });
    let output = server.output();
    assert!(
        !output.contains("hello"),
        "nothing after a bad header is served"
    );
}

/// A trusted proxy that sends nothing, or half a header, is closed with
/// `proxy-header` once the header's 5 s are up (and not before).
#[test]
fn slow_headers_close_with_proxy_header_after_five_seconds() {
    let server = trusting_localhost(|_| {});
    let start = Instant::now();
    let mut silent = server.connect();
    let mut trickle = server.connect();
    trickle.write_all(b"PROXY TCP4 203.0.113.7 ").unwrap();
    let rest = read_to_end(&mut silent);
    assert!(rest.is_empty());
    read_to_end(&mut trickle);
    assert!(
        start.elapsed() >= Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    wait_until("both counted", || {
        server.handle.stats().closed_for(CloseReason::ProxyHeader) == 2
    });
}

/// A client that is not a trusted proxy is served as always: a PROXY header
/// it sends is a line like any other, printed with its own address.
#[test]
fn an_untrusted_source_sending_a_header_gets_it_printed_as_a_line() {
    let server = trusting_localhost(|_| {});
    let mut stream = connect_from("127.0.0.2", &server.addr);
    let own = stream.local_addr().unwrap();
    stream
        .write_all(b"PROXY TCP4 198.51.100.1 127.0.0.1 1 2\r\nstop\n")
        .unwrap();
    server.wait_for_output(&format!("[{own}] PROXY TCP4 198.51.100.1 127.0.0.1 1 2\n"));
    // Its own (loopback) address decides: it may stop the server.
    let output = server.stop();
    assert!(output.contains(&format!("* [{own}] open\n")), "{output}");
    assert_eq!(output.matches("proxy-header").count(), 0, "{output}");
}

/// Without `--proxy-protocol` nobody is trusted: a header is just a line.
#[test]
fn without_the_flag_a_header_is_a_line() {
    let server = InProcess::start(|_| {});
    let mut stream = connect(&server.addr);
    let own = stream.local_addr().unwrap();
    stream
        .write_all(b"PROXY TCP4 198.51.100.1 127.0.0.1 1 2\r\n")
        .unwrap();
    server.wait_for_output(&format!("[{own}] PROXY TCP4 198.51.100.1 127.0.0.1 1 2\n"));
}

/// The binary refuses a bad `--proxy-protocol` with one line naming it.
#[test]
fn a_bad_cidr_is_refused_with_its_flag() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_selectd"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--proxy-protocol",
            "10.0.0.0/8,nope",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.trim_end(),
        "error: --proxy-protocol: invalid CIDR 'nope' (expected e.g. 127.0.0.1/32 or ::1/128)"
    );
}
