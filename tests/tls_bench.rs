//! `selectd bench tls://...` against `selectd serve` on a `tls://`
//! listener, in every mode: every echo verified, churn's visits each a
//! full handshake (the server counts them), no errors.
//! (A run that ends cuts the handshakes then in flight: the server counts
//! those as failed, at most one per connection.)

mod bench_common;
mod common;
mod deploy_support;
mod tls_support;

use bench_common::{bench, json};
use common::ServerProcess;
use tls_support::Certs;

/// A TLS echo server with `certs`; its `tls://HOST:PORT`.
fn serve(certs: &Certs) -> (ServerProcess, String) {
    let mut args = certs.serve_args();
    args.extend(["--echo", "--format", "none", "--idle-timeout", "60s"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = ServerProcess::start(&args);
    let target = server.listening[0].clone();
    (server, target)
}

fn run(target: &str, certs: &Certs, mode: &str) -> serde_json::Value {
    let ca = certs.ca.display().to_string();
    let output = bench(&[
        target,
        "--tls-ca",
        &ca,
        "--tls-server-name",
        "localhost",
        "--mode",
        mode,
        "--conns",
        "4",
        "--duration",
        "500ms",
        "--json",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    json(&output)
}

#[test]
fn bench_speaks_tls_in_every_mode() {
    let Some(certs) = Certs::make() else { return };
    let (mut server, target) = serve(&certs);
    for mode in ["echo", "ingest", "idle"] {
        let report = run(&target, &certs, mode);
        assert_eq!(report["errors"], 0, "{mode}: {report}");
        assert_eq!(report["addr"], target.as_str(), "{report}");
        if mode != "idle" {
            assert!(report["msgs"].as_u64().unwrap() > 0, "{mode}: {report}");
        }
    }
    let report = run(&target, &certs, "churn");
    assert_eq!(report["errors"], 0, "{report}");
    let visits = report["msgs"].as_u64().unwrap();
    assert!(visits > 0, "{report}");
    // Each visit was a full handshake: the server completed at least as
    // many (plus the other modes' connections), and none failed.
    let mut asker =
        tls_support::SClient::start(target.trim_start_matches("tls://"), &certs.ca, &[]);
    asker.wait_connected();
    asker.send(b"stats\n");
    common::wait_until("the stats reply", || {
        asker.out.text().contains("tls_handshake_failures=")
    });
    let stats = asker.out.text();
    let counter = |key: &str| -> u64 {
        stats
            .split_whitespace()
            .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {stats}"))
    };
    let handshakes = counter("tls_handshakes");
    assert!(
        handshakes >= visits,
        "{handshakes} handshakes for {visits} visits"
    );
    // The only failures: connections a run ended in mid-handshake (at most
    // its 4 connections, in each of the 4 runs).
    let failures = counter("tls_handshake_failures");
    assert!(failures <= 16, "{failures} failed handshakes: {stats}");
    asker.send(b"stop\n");
    assert!(server.wait_exit().success());
}
