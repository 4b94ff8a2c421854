//! The reference most Rust users would write, for `benches/compare`: a line
//! echo server on tokio's single-threaded (`current_thread`) runtime.
//!
//! One task per connection: `BufReader::read_until(b'\n')`, then `write_all`
//! of that line. Same flags and output as `mio_echo`:
//!
//! ```text
//! cargo run --release --example tokio_echo -- --listen 127.0.0.1:0
//! ```
//!
//! `TCP_NODELAY` is set, as on the other servers, so small replies are not
//! held back by Nagle's algorithm (which would measure the kernel's
//! delayed-ACK timer, not the server).

use std::io::{self, ErrorKind};
use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

fn listen_arg() -> io::Result<SocketAddr> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag, addr] if flag == "--listen" => addr
            .parse()
            .map_err(|e| io::Error::new(ErrorKind::InvalidInput, format!("--listen {addr}: {e}"))),
        [] => Ok(SocketAddr::from(([127, 0, 0, 1], 0))),
        _ => Err(io::Error::new(
            ErrorKind::InvalidInput,
            "usage: tokio_echo [--listen ADDR]",
        )),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

async fn run() -> io::Result<()> {
    let listener = TcpListener::bind(listen_arg()?).await?;
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
