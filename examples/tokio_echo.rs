//! The reference most Rust users would write, for `benches/compare` and
//! `benches/scale`: a line echo server on tokio's single-threaded
//! (`current_thread`) runtime, or with `--threads N` on its multi-threaded
//! runtime with N workers (work-stealing: any worker may run any task).
//!
//! One task per connection: `BufReader::read_until(b'\n')`, then `write_all`
//! of that line. Same flags and output as `mio_echo`:
//!
//! ```text
//! cargo run --release --example tokio_echo -- --listen 127.0.0.1:0 [--threads N]
//! ```
//!
//! `TCP_NODELAY` is set, as on the other servers, so small replies are not
//! held back by Nagle's algorithm (which would measure the kernel's
//! delayed-ACK timer, not the server).

use std::io::{self, ErrorKind};
use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// `--listen ADDR` (default `127.0.0.1:0`) and `--threads N` (default 1).
fn args() -> io::Result<(SocketAddr, usize)> {
    let usage = || {
        io::Error::new(
            ErrorKind::InvalidInput,
            "usage: tokio_echo [--listen ADDR] [--threads N]",
        )
    };
    let mut addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut threads = 1;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(usage)?;
        match flag.as_str() {
            "--listen" => addr = value.parse().map_err(|_| usage())?,
            "--threads" => threads = value.parse().ok().filter(|&n| n > 0).ok_or_else(usage)?,
            _ => return Err(usage()),
        }
    }
    Ok((addr, threads))
}

fn main() {
    let result = args().and_then(|(addr, threads)| {
        let runtime = if threads == 1 {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .enable_all()
                .build()?
        };
        runtime.block_on(run(addr))
    });
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

async fn run(addr: SocketAddr) -> io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    eprintln!("listening on tcp://{}", listener.local_addr()?);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(async move {
                    // A client's error ends that client only.
                    let _ = echo_lines(stream).await;
                });
            }
            // Out of descriptors and the like: keep serving those we have.
            Err(e) => eprintln!("accept: {e}"),
        }
    }
}

async fn echo_lines(stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream);
    let mut line = Vec::with_capacity(128);
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        reader.get_mut().write_all(&line).await?;
    }
}
