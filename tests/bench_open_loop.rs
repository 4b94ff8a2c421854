//! `selectd bench --rate`: the open loop and its coordinated-omission
//! correction, against in-test servers that stall or lag on purpose.
//! Assertions are about what the measurement sees, with wide margins; none
//! is about speed.

mod bench_common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use bench_common::{bench, json, num};

/// An echo server on 127.0.0.1:0 that runs `pause(elapsed since its first
/// byte)` before each echo: the pause it returns is slept, not reading.
fn echo_server(pause: fn(Duration) -> Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local_addr").to_string();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            thread::spawn(move || echo(stream, pause));
        }
    });
    addr
}

fn echo(mut stream: TcpStream, pause: fn(Duration) -> Duration) {
    let mut buf = [0u8; 16 * 1024];
    let mut first = None;
    while let Ok(n @ 1..) = stream.read(&mut buf) {
        let since = first.get_or_insert_with(Instant::now).elapsed();
        thread::sleep(pause(since));
        if stream.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

fn steady(_: Duration) -> Duration {
    Duration::ZERO
}

/// Stops reading for 1 s, once, 1 s after the first byte.
fn stall_once(since: Duration) -> Duration {
    static STALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if since >= Duration::from_secs(1) && !STALLED.swap(true, std::sync::atomic::Ordering::SeqCst) {
        Duration::from_secs(1)
    } else {
        Duration::ZERO
    }
}

/// Stops reading for good 1 s after the first byte (the connection stays
/// open): a stall the window ends in.
fn stall_to_the_end(since: Duration) -> Duration {
    if since >= Duration::from_secs(1) {
        Duration::from_secs(60)
    } else {
        Duration::ZERO
    }
}

/// 20 ms per read: at most about 50 round trips a second per connection.
fn slow(_: Duration) -> Duration {
    Duration::from_millis(20)
}

/// A 1 s stall in a 3 s run: the corrected p99 counts the lines that should
/// have gone out during the stall (hundreds of ms); the uncorrected p99,
/// which starts each clock when the line finally went, stays low.
#[test]
fn open_loop_sees_a_stall_the_uncorrected_latency_hides() {
    let addr = echo_server(stall_once);
    let output = bench(&[&addr, "--rate", "500", "--duration", "3s", "--json"]);
    assert!(output.status.success(), "{output:?}");
    let report = json(&output);
    assert!(num(&report, "p99_us") >= 300_000.0, "{report}");
    assert!(num(&report, "max_us") >= 700_000.0, "{report}");
    assert!(
        num(&report, "uncorrected_p99_us") < num(&report, "p99_us") / 3.0,
        "{report}"
    );
}

/// Against a steady server well under its capacity the two measures agree:
/// the corrected median is within the uncorrected tail (plus 20 ms of
/// scheduling noise on a busy machine).
#[test]
fn steady_server_corrected_and_uncorrected_agree() {
    let addr = echo_server(steady);
    let output = bench(&[
        &addr,
        "--rate",
        "200",
        "--conns",
        "2",
        "--duration",
        "2s",
        "--json",
    ]);
    assert!(output.status.success(), "{output:?}");
    let report = json(&output);
    let corrected = num(&report, "p50_us");
    let uncorrected_p99 = num(&report, "uncorrected_p99_us");
    assert!(corrected <= uncorrected_p99 + 20_000.0, "{report}");
    assert_eq!(report["saturated"], false, "{report}");
}

/// The schedule is kept: the achieved rate is within 5% of a modest target.
#[test]
fn rate_is_kept_within_five_percent() {
    let addr = echo_server(steady);
    let output = bench(&[
        &addr,
        "--rate",
        "1000",
        "--conns",
        "4",
        "--duration",
        "4s",
        "--json",
    ]);
    assert!(output.status.success(), "{output:?}");
    let report = json(&output);
    assert_eq!(num(&report, "rate"), 1000.0);
    let achieved = num(&report, "achieved_rate");
    assert!((950.0..=1050.0).contains(&achieved), "{report}");
    assert_eq!(report["saturated"], false);
}

/// A server slower than the rate: reported saturated, in JSON and on stderr.
#[test]
fn server_slower_than_the_rate_is_saturated() {
    let addr = echo_server(slow);
    let output = bench(&[&addr, "--rate", "500", "--duration", "1s", "--json"]);
    assert!(output.status.success(), "{output:?}");
    let report = json(&output);
    assert_eq!(report["saturated"], true, "{report}");
    assert!(num(&report, "achieved_rate") < 475.0, "{report}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("saturated"), "{stderr}");
}

/// A stall the window ends in: the lines it left unanswered, sent or only
/// due, count at the time they had waited by then. Without them the report
/// held only the fast first second (a p99 of a few ms), as if the server
/// had never stalled. A 2 s run, the server stalled for its last second:
/// about half the lines due waited hundreds of ms or more.
#[test]
fn lines_left_unanswered_by_a_stall_at_the_end_count() {
    let addr = echo_server(stall_to_the_end);
    let output = bench(&[&addr, "--rate", "500", "--duration", "2s", "--json"]);
    assert!(output.status.success(), "{output:?}");
    let report = json(&output);
    assert!(num(&report, "p90_us") >= 300_000.0, "{report}");
    assert!(num(&report, "max_us") >= 700_000.0, "{report}");
}
