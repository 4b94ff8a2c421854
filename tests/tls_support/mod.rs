//! Shared set-up for the TLS tests: certificates made at test time with
//! the real `openssl` command (a throw-away CA, a server certificate for
//! `localhost`, 127.0.0.1 and ::1, a client certificate for `alice`, and a
//! second CA nobody trusts), `openssl s_client` as a client, and a rustls
//! client for the cases `s_client` cannot play (a chosen source address,
//! a flood of records).
#![allow(dead_code)]

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;

use crate::common::{Captured, capture, wait_until};

/// Where `openssl` is, or `None` after printing why the test is skipped
/// (under `CI` a missing program fails instead).
pub fn openssl() -> Option<PathBuf> {
    crate::deploy_support::program("openssl", "openssl")
}

/// The files of one test's certificates, removed with the directory.
pub struct Certs {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub alice_cert: PathBuf,
    pub alice_key: PathBuf,
    /// A CA that signed nothing we use.
    pub other_ca: PathBuf,
    pub other_ca_key: PathBuf,
}

fn run(openssl: &Path, dir: &Path, args: &[&str]) {
    let out = Command::new(openssl)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A key and a certificate signed by `ca` (or self-signed, as a CA, when
/// `ca` is `None`), named `name`, with `extensions` (openssl's syntax).
fn issue(openssl: &Path, dir: &Path, name: &str, subject: &str, ca: Option<&str>, ext: &str) {
    let key = format!("{name}.key");
    let cert = format!("{name}.pem");
    match ca {
        None => run(
            openssl,
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &cert,
                "-days",
                "2",
                "-subj",
                subject,
            ],
        ),
        Some(ca) => {
            let csr = format!("{name}.csr");
            let ext_file = format!("{name}.ext");
            std::fs::write(dir.join(&ext_file), ext).unwrap();
            run(
                openssl,
                dir,
                &[
                    "req",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-nodes",
                    "-keyout",
                    &key,
                    "-out",
                    &csr,
                    "-subj",
                    subject,
                ],
            );
            run(
                openssl,
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    &format!("{ca}.pem"),
                    "-CAkey",
                    &format!("{ca}.key"),
                    "-CAcreateserial",
                    "-out",
                    &cert,
                    "-days",
                    "2",
                    "-extfile",
                    &ext_file,
                ],
            );
        }
    }
}

impl Certs {
    /// Makes every certificate, or `None` (skipped) without `openssl`.
    pub fn make() -> Option<Certs> {
        let openssl = openssl()?;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        issue(&openssl, path, "ca", "/CN=selectd test CA", None, "");
        issue(&openssl, path, "other", "/CN=nobody's CA", None, "");
        issue(
            &openssl,
            path,
            "server",
            "/CN=localhost",
            Some("ca"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        );
        issue(
            &openssl,
            path,
            "alice",
            "/CN=alice",
            Some("ca"),
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        );
        Some(Certs {
            ca: path.join("ca.pem"),
            server_cert: path.join("server.pem"),
            server_key: path.join("server.key"),
            alice_cert: path.join("alice.pem"),
            alice_key: path.join("alice.key"),
            other_ca: path.join("other.pem"),
            other_ca_key: path.join("other.key"),
            dir,
        })
    }

    /// Issues another server certificate from the other CA, for rotation:
    /// `(cert, key)`.
    pub fn other_server(&self) -> (PathBuf, PathBuf) {
        let openssl = openssl().expect("openssl");
        issue(
            &openssl,
            self.dir.path(),
            "server2",
            "/CN=localhost",
            Some("other"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        );
        (
            self.dir.path().join("server2.pem"),
            self.dir.path().join("server2.key"),
        )
    }

    /// `serve` flags for a TLS listener on 127.0.0.1:0 with these files.
    pub fn serve_args(&self) -> Vec<String> {
        vec![
            "--listen".into(),
            "tls://127.0.0.1:0".into(),
            "--tls-cert".into(),
            self.server_cert.display().to_string(),
            "--tls-key".into(),
            self.server_key.display().to_string(),
        ]
    }
}

/// `openssl s_client` connected to `addr`, its stdin ours, its stdout
/// (and stderr) collected. It sends `close_notify` when its stdin ends.
pub struct SClient {
    child: Child,
    stdin: Option<ChildStdin>,
    pub out: Captured,
    pub err: Captured,
}

impl SClient {
    /// `openssl s_client -connect ADDR -CAfile CA EXTRA...`.
    pub fn start(addr: &str, ca: &Path, extra: &[&str]) -> SClient {
        let mut child = Command::new(openssl().expect("openssl"))
            .args(["s_client", "-connect", addr, "-CAfile"])
            .arg(ca)
            .args([
                "-verify_return_error",
                "-no_ign_eof",
                "-servername",
                "localhost",
            ])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start openssl s_client");
        let stdin = child.stdin.take();
        let out = capture(child.stdout.take().unwrap());
        let err = capture(child.stderr.take().unwrap());
        SClient {
            child,
            stdin,
            out,
            err,
        }
    }

    /// Waits until the handshake is done (s_client prints the session).
    pub fn wait_connected(&self) {
        wait_until("s_client to finish its handshake", || {
            self.out.text().contains("Verify return code")
                || self.out.text().contains("---\nSSL handshake has read")
        });
    }

    pub fn send(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    /// Ends its input: it sends `close_notify` and closes.
    pub fn finish(&mut self) {
        self.stdin = None;
    }

    /// Waits for it to exit: its exit code, and everything it printed.
    pub fn wait(&mut self) -> (Option<i32>, String) {
        self.stdin = None;
        let status = crate::common::wait_exit(&mut self.child);
        self.out.wait_eof();
        self.err.wait_eof();
        (
            status.code(),
            format!("{}{}", self.out.text(), self.err.text()),
        )
    }
}

impl Drop for SClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking rustls client over `tcp`, trusting `ca`, with a client
/// certificate when given.
pub fn rustls_client(
    tcp: TcpStream,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let files = selectd::net::tls::ClientFiles {
        ca: Some(ca.to_path_buf()),
        identity: identity.map(|(c, k)| (c.to_path_buf(), k.to_path_buf())),
        insecure: false,
    };
    let config: Arc<rustls::ClientConfig> = selectd::net::tls::client_config(&files).unwrap();
    let name = selectd::net::tls::server_name("localhost").unwrap();
    let session = rustls::ClientConnection::new(config, name).unwrap();
    rustls::StreamOwned::new(session, tcp)
}
