//! The TLS reference for `benches/compare`: `tokio_echo` with tokio-rustls
//! in front, on tokio's single-threaded runtime. The same certificate, key
//! and rustls configuration as `selectd serve --listen tls://...` (made by
//! the same function, with the same `ring` crypto provider), so that the
//! comparison is of the loops around rustls, not of the cryptography.
//!
//! One task per connection: the handshake (`TlsAcceptor::accept`), then
//! `BufReader::read_until(b'\n')` and `write_all` of that line, as in
//! `tokio_echo`:
//!
//! ```text
//! cargo run --release --example tokio_rustls_echo -- --listen 127.0.0.1:0 --cert CERT.pem --key KEY.pem
//! ```

use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::path::PathBuf;

use selectd::net::tls::{ServerFiles, server_config};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// `--listen ADDR` (default `127.0.0.1:0`), `--cert FILE`, `--key FILE`.
fn args() -> io::Result<(SocketAddr, ServerFiles)> {
    let usage = || {
        io::Error::new(
            ErrorKind::InvalidInput,
            "usage: tokio_rustls_echo [--listen ADDR] --cert FILE --key FILE",
        )
    };
    let mut addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let (mut cert, mut key) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(usage)?;
        match flag.as_str() {
            "--listen" => addr = value.parse().map_err(|_| usage())?,
            "--cert" => cert = Some(PathBuf::from(value)),
            "--key" => key = Some(PathBuf::from(value)),
            _ => return Err(usage()),
        }
    }
    let files = ServerFiles {
        cert: cert.ok_or_else(usage)?,
        key: key.ok_or_else(usage)?,
        client_ca: None,
    };
    Ok((addr, files))
}

fn main() {
    let result = args().and_then(|(addr, files)| {
        let config = server_config(&files).map_err(io::Error::other)?;
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(run(addr, TlsAcceptor::from(config)))
    });
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

async fn run(addr: SocketAddr, acceptor: TlsAcceptor) -> io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    eprintln!("listening on tls://{}", listener.local_addr()?);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A client's error ends that client only.
                    let _ = echo_lines(acceptor, stream).await;
                });
            }
            // Out of descriptors and the like: keep serving those we have.
            Err(e) => eprintln!("accept: {e}"),
        }
    }
}

async fn echo_lines(acceptor: TlsAcceptor, stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let stream = acceptor.accept(stream).await?;
    let mut reader = BufReader::new(stream);
    let mut line = Vec::with_capacity(128);
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            reader.get_mut().shutdown().await?;
            return Ok(());
        }
        reader.get_mut().write_all(&line).await?;
        // What rustls could not write yet must go out before we wait for
        // more input: flush once the lines already read are all answered.
        if reader.buffer().is_empty() {
            reader.get_mut().flush().await?;
        }
    }
}
