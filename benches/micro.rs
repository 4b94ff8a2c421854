//! Criterion micro-benchmarks of the server's pure parts: line framing
//! (against a naive `BufRead::read_until` loop, measured in the same run),
//! terminal escaping, and the idle-deadline list at 100,000 connections.
//!
//! ```text
//! cargo bench --bench micro                 # everything, about 1 minute
//! cargo bench --bench micro -- framing      # one group
//! ```

use std::hint::black_box;
use std::io::{BufRead, BufReader};
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use selectd::internals::DeadlineList;
use selectd::proto::LineBuffer;
use selectd::proto::write_escaped;

/// About 1 MiB of `size`-byte lines (the `\n` included), varied content.
fn lines_of(size: usize) -> Vec<u8> {
    let count = (1 << 20) / size;
    let mut out = Vec::with_capacity(count * size);
    for i in 0..count {
        let start = out.len();
        out.extend_from_slice(format!("line {i} ").as_bytes());
        while out.len() < start + size - 1 {
            out.push(b'a' + (out.len() % 26) as u8);
        }
        out.push(b'\n');
    }
    out
}

/// The server reads in 64 KiB chunks; lines straddle chunk boundaries, so the
/// partial-line path is measured too.
const READ_SIZE: usize = 64 * 1024;

fn framing(c: &mut Criterion) {
    let mut group = c.benchmark_group("framing");
    for size in [64, 1024] {
        let input = lines_of(size);
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_function(format!("selectd_line_buffer/{size}B"), |b| {
            b.iter(|| {
                let mut buffer = LineBuffer::new(64 * 1024);
                let mut lines = 0usize;
                let mut bytes = 0usize;
                for chunk in input.chunks(READ_SIZE) {
                    let flow = buffer.feed(black_box(chunk), |line| {
                        lines += 1;
                        bytes += line.text.len();
                        ControlFlow::Continue(())
                    });
                    black_box(flow.expect("lines fit").is_continue());
                }
                black_box((lines, bytes))
            })
        });
        // What most code does: a BufReader over the stream, `read_until` into
        // a reused Vec (one copy of every byte), a 64 KiB buffer like ours.
        group.bench_function(format!("naive_read_until/{size}B"), |b| {
            b.iter(|| {
                let mut reader = BufReader::with_capacity(READ_SIZE, black_box(&input[..]));
                let mut line = Vec::with_capacity(128);
                let mut lines = 0usize;
                let mut bytes = 0usize;
                loop {
                    line.clear();
                    match reader.read_until(b'\n', &mut line) {
                        Ok(0) => break,
                        Ok(_) => {
                            let text = line.strip_suffix(b"\n").unwrap_or(&line);
                            let text = text.strip_suffix(b"\r").unwrap_or(text);
                            lines += 1;
                            bytes += text.len();
                        }
                        Err(e) => panic!("reading a slice cannot fail: {e}"),
                    }
                }
                black_box((lines, bytes))
            })
        });
    }
    group.finish();
}

fn escaping(c: &mut Criterion) {
    let mut group = c.benchmark_group("escaping");
    let ascii = b"GET /index.html HTTP/1.0 user=ali count=42 status=running ok".repeat(16);
    let turkish = "çalışıyor, görüşürüz, İstanbul'da şiddetli yağış; ".repeat(16);
    let hostile: Vec<u8> = b"\x1b[31mred\x1b[0m\0\x07bell \xff\xfe bad utf8 \xe2\x80\xae bidi "
        .iter()
        .copied()
        .cycle()
        .take(1000)
        .collect();
    for (name, input) in [
        ("ascii", &ascii[..]),
        ("turkish_utf8", turkish.as_bytes()),
        ("hostile", &hostile[..]),
    ] {
        group.throughput(Throughput::Bytes(input.len() as u64));
        let mut out = Vec::with_capacity(8 * input.len());
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                write_escaped(&mut out, black_box(input), false).expect("a Vec never fails");
                black_box(out.len())
            })
        });
    }
    group.finish();
}

/// Connections in the deadline benchmarks.
const CONNS: usize = 100_000;

fn full_list(start: Instant) -> DeadlineList {
    let mut list = DeadlineList::new(Duration::from_secs(5));
    for key in 0..CONNS {
        list.touch(key, start + Duration::from_nanos(key as u64));
    }
    list
}

fn deadlines(c: &mut Criterion) {
    let mut group = c.benchmark_group("deadline_100k");
    let start = Instant::now();

    // Activity on a connection: move it to the back. Keys jump around the
    // list (a multiplicative step), as real traffic does.
    let mut list = full_list(start);
    let mut key = 0usize;
    let mut tick = 0u64;
    group.throughput(Throughput::Elements(1));
    group.bench_function("touch", |b| {
        b.iter(|| {
            key = (key + 7919) % CONNS;
            tick += 1;
            list.touch(black_box(key), start + Duration::from_micros(tick));
        })
    });

    // Everyone timed out at once: pop all 100,000 in deadline order.
    group.throughput(Throughput::Elements(CONNS as u64));
    group.bench_function("expire_all", |b| {
        b.iter_batched(
            || full_list(start),
            |mut list| {
                let later = start + Duration::from_secs(60);
                let mut expired = 0usize;
                while let Some(key) = list.pop_expired(later) {
                    expired += black_box(key) & 1;
                }
                black_box(expired)
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = framing, escaping, deadlines
}
criterion_main!(benches);
