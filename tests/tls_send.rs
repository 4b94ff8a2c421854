//! `selectd send tls://...` against the real `openssl s_server`: verified
//! with `--tls-ca`, refused with a wrong CA (exit code 7 and a message
//! naming the reason), SNI sent, a client certificate when asked; and
//! against `selectd serve` on a `tls://` listener, a large echo both ways.

mod common;
mod deploy_support;
#[path = "common/client_support.rs"]
mod support;
mod tls_support;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{Captured, capture, wait_until};
use deploy_support::{Reaped, free_port};
use support::{Input, send};
use tls_support::{Certs, openssl};

/// A running `openssl s_server -rev` (it answers each line reversed) for
/// one connection, and its output.
struct SServer {
    _child: Reaped,
    addr: String,
    out: Captured,
}

impl SServer {
    fn start(certs: &Certs, extra: &[&str]) -> SServer {
        let openssl = openssl().expect("openssl");
        for _ in 0..5 {
            let addr = format!("127.0.0.1:{}", free_port());
            let mut child = Reaped(
                Command::new(&openssl)
                    .args([
                        "s_server", "-accept", &addr, "-naccept", "1", "-rev", "-cert",
                    ])
                    .arg(&certs.server_cert)
                    .arg("-key")
                    .arg(&certs.server_key)
                    .args(extra)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("start openssl s_server"),
            );
            let out = capture(child.0.stdout.take().unwrap());
            let err = capture(child.0.stderr.take().unwrap());
            wait_until("s_server to listen or fail", || {
                out.text().contains("ACCEPT") || child.0.try_wait().unwrap().is_some()
            });
            if out.text().contains("ACCEPT") {
                return SServer {
                    _child: child,
                    addr,
                    out,
                };
            }
            assert!(
                err.text().contains("in use"),
                "s_server failed: {}",
                err.text()
            );
        }
        panic!("no free port for s_server after 5 tries");
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// Verified against `--tls-ca`, with the server name sent as SNI: the
/// reply arrives and `send` exits 0.
#[test]
fn send_verifies_the_server_with_tls_ca_and_sends_sni() {
    let Some(certs) = Certs::make() else { return };
    let cert = path(&certs.server_cert);
    let key = path(&certs.server_key);
    let server = SServer::start(
        &certs,
        &["-servername", "localhost", "-cert2", &cert, "-key2", &key],
    );
    let target = format!("tls://{}", server.addr);
    let ca = path(&certs.ca);
    let outcome = send(
        &[&target, "--tls-ca", &ca, "--tls-server-name", "localhost"],
        Input::Bytes(b"merhaba\n".to_vec()),
    );
    assert_eq!(outcome.code, Some(0), "{}", outcome.stderr);
    assert_eq!(outcome.stdout, b"abahrem\n");
    wait_until("s_server to report the SNI", || {
        server
            .out
            .text()
            .contains("Hostname in TLS extension: \"localhost\"")
    });
}

/// A server whose certificate the given CA did not sign: exit code 7, and
/// one line saying TLS failed and why.
#[test]
fn send_refuses_a_server_signed_by_another_ca() {
    let Some(certs) = Certs::make() else { return };
    let server = SServer::start(&certs, &[]);
    let target = format!("tls://{}", server.addr);
    let other = path(&certs.other_ca);
    let outcome = send(
        &[&target, "--tls-ca", &other],
        Input::Bytes(b"secret\n".to_vec()),
    );
    assert_eq!(outcome.code, Some(7), "{}", outcome.stderr);
    assert!(outcome.stdout.is_empty());
    let expected =
        format!("error: TLS with {target} failed: invalid peer certificate: UnknownIssuer");
    assert!(outcome.stderr.contains(&expected), "{}", outcome.stderr);
    assert!(
        !server.out.text().contains("secret"),
        "{}",
        server.out.text()
    );
}

/// A server that requires a client certificate gets one from
/// `--tls-cert` and `--tls-key`.
#[test]
fn send_presents_a_client_certificate() {
    let Some(certs) = Certs::make() else { return };
    let ca = path(&certs.ca);
    let server = SServer::start(&certs, &["-Verify", "1", "-CAfile", &ca]);
    let target = format!("tls://{}", server.addr);
    let (cert, key) = (path(&certs.alice_cert), path(&certs.alice_key));
    let outcome = send(
        &[
            &target,
            "--tls-ca",
            &ca,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
        Input::Bytes(b"alice\n".to_vec()),
    );
    assert_eq!(outcome.code, Some(0), "{}", outcome.stderr);
    assert_eq!(outcome.stdout, b"ecila\n");
}

/// `--tls-insecure` connects to anything, and says on stderr that nothing
/// was verified.
#[test]
fn send_insecure_warns() {
    let Some(certs) = Certs::make() else { return };
    let server = SServer::start(&certs, &[]);
    let target = format!("tls://{}", server.addr);
    let outcome = send(&[&target, "--tls-insecure"], Input::Bytes(b"x\n".to_vec()));
    assert_eq!(outcome.code, Some(0), "{}", outcome.stderr);
    assert!(
        outcome.stderr.contains("is not verified"),
        "{}",
        outcome.stderr
    );
}

/// `send` through `serve --echo` over TLS, with a client certificate: 4 MiB
/// come back byte for byte (partial writes on both sides, the watermarks in
/// between), and the server names the client by its certificate.
#[test]
fn send_and_serve_echo_a_large_input_over_tls() {
    let Some(certs) = Certs::make() else { return };
    let ca = path(&certs.ca);
    let mut args = certs.serve_args();
    args.extend(
        [
            "--echo",
            "--max-line",
            "off",
            "--tls-client-ca",
            &ca,
            "--idle-timeout",
            "60s",
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = common::ServerProcess::start(&args);
    let target = server.listening[0].clone();
    let input: Vec<u8> = (0..4 * 1024 * 1024u32)
        .map(|i| {
            if i % 61 == 60 {
                b'\n'
            } else {
                b'a' + (i % 26) as u8
            }
        })
        .collect();
    let (cert, key) = (path(&certs.alice_cert), path(&certs.alice_key));
    let outcome = send(
        &[
            &target,
            "--tls-ca",
            &ca,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
        Input::Bytes(input.clone()),
    );
    assert_eq!(outcome.code, Some(0), "{}", outcome.stderr);
    assert!(
        outcome.stdout == input,
        "echo differs ({} bytes back)",
        outcome.stdout.len()
    );
    server.wait_for_output("#cn=alice] close: eof\n");
    let stop = send(
        &[
            &target,
            "--tls-ca",
            &ca,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
        Input::Bytes(b"stop\n".to_vec()),
    );
    assert_eq!(stop.code, Some(0), "{}", stop.stderr);
    assert!(server.wait_exit().success());
}

/// A server that takes the ClientHello and closes without answering: the
/// handshake never happened, nothing was verified or sent, so TLS failed
/// (exit 7), not a reply cut short (0, with a warning).
#[test]
fn a_server_that_closes_during_the_handshake_is_a_tls_failure() {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let closer = std::thread::spawn(move || {
        let (mut client, _) = listener.accept().expect("accept");
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .expect("time-out");
        let mut hello = [0u8; 4096];
        let _ = client.read(&mut hello);
        let _ = client.shutdown(std::net::Shutdown::Write);
        // Until the client gives up: then it sees our end, not a reset.
        while matches!(client.read(&mut hello), Ok(n) if n > 0) {}
    });
    let target = format!("tls://{addr}");
    let outcome = send(
        &[&target, "--tls-insecure", "--timeout", "20s"],
        Input::Bytes(b"secret\n".to_vec()),
    );
    closer.join().expect("closer");
    assert_eq!(outcome.code, Some(7), "{}", outcome.stderr);
    assert!(outcome.stdout.is_empty());
    assert!(
        outcome.stderr.contains(&format!(
            "error: TLS with {target} failed: the server closed the connection before the TLS handshake was done"
        )),
        "{}",
        outcome.stderr
    );
}
