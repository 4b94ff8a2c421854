//! Shared set-up for the metrics tests: a `selectd serve --metrics` process,
//! a tiny blocking HTTP client that reads one response at a time (so that
//! keep-alive can be tested), the value of a metric in an exposition, and a
//! line client that proves the line clients are still served.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use crate::common::{PATIENCE, ServerProcess, connect, wait_until};

/// A server with a metrics port, and where that port is.
pub struct MetricsServer {
    pub server: ServerProcess,
    pub metrics: SocketAddr,
}

impl MetricsServer {
    /// `selectd serve --metrics 127.0.0.1:0 ARGS`.
    pub fn start(args: &[&str]) -> MetricsServer {
        Self::start_with(args, |_| {})
    }

    /// As [`start`](Self::start), letting the caller adjust the command.
    pub fn start_with(
        args: &[&str],
        adjust: impl FnOnce(&mut std::process::Command),
    ) -> MetricsServer {
        let mut all = vec!["--metrics", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let server = ServerProcess::start_with(&all, adjust);
        let mut metrics = None;
        wait_until("the metrics line", || {
            metrics = server.stderr().lines().find_map(|line| {
                line.strip_prefix("metrics on http://")
                    .and_then(|rest| rest.strip_suffix("/metrics"))
                    .and_then(|addr| addr.parse().ok())
            });
            metrics.is_some()
        });
        MetricsServer {
            server,
            metrics: metrics.expect("metrics address"),
        }
    }

    /// A new connection to the metrics port.
    pub fn connect(&self) -> TcpStream {
        connect(&self.metrics.to_string())
    }

    /// `GET path` on a connection of its own.
    pub fn get(&self, path: &str) -> Response {
        self.request(&format!("GET {path} HTTP/1.1\r\nHost: selectd\r\n\r\n"))
    }

    /// Sends `request` on a connection of its own and reads the response.
    pub fn request(&self, request: &str) -> Response {
        let mut stream = self.connect();
        stream.write_all(request.as_bytes()).expect("send request");
        read_response(&mut stream).expect("a response")
    }

    /// The value of the sample `series` (name and labels, as printed) in a
    /// scrape now.
    pub fn sample(&self, series: &str) -> Option<f64> {
        sample(&self.get("/metrics").text(), series)
    }

    /// Waits until the sample `series` reads `value`.
    pub fn wait_sample(&self, series: &str, value: f64) {
        let mut last = None;
        wait_until(&format!("{series} to read {value}"), || {
            last = self.sample(series);
            last == Some(value)
        });
    }
}

/// An HTTP response, as read from the wire.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header lines, as `name: value`, names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response (head, then `Content-Length` bytes of body) from
/// `stream`, leaving what follows; `None` at EOF before any byte. A `HEAD`
/// response is read with [`read_head`].
pub fn read_response(stream: &mut impl Read) -> Option<Response> {
    let mut response = read_head(stream)?;
    let length: usize = response
        .header("content-length")
        .expect("a Content-Length")
        .parse()
        .expect("a numeric Content-Length");
    let mut body = vec![0; length];
    stream.read_exact(&mut body).expect("the whole body");
    response.body = body;
    Some(response)
}

/// Reads a response head only (no body).
pub fn read_head(stream: &mut impl Read) -> Option<Response> {
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(0) if head.is_empty() => return None,
            Ok(0) => panic!("EOF inside a response head: {head:?}"),
            Ok(_) => head.push(byte[0]),
            Err(err) => panic!("reading a response head: {err}"),
        }
        assert!(head.len() < 64 * 1024, "a response head this long?");
    }
    let text = String::from_utf8(head).expect("a UTF-8 head");
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {status_line:?}"));
    let headers = lines
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (name, value) = line.split_once(':').expect("a header line");
            (name.trim().to_ascii_lowercase(), value.trim().to_string())
        })
        .collect();
    Some(Response {
        status,
        headers,
        body: Vec::new(),
    })
}

/// Whether the server closed `stream` (EOF or reset) within `PATIENCE`,
/// reading and discarding whatever else it sends.
pub fn closed_by_server(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// The value of `series` (a metric name with its labels exactly as
/// printed, e.g. `selectd_connections_open{reactor="1"}`) in `exposition`.
pub fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// A line client of an `--echo` server: proves, round trip by round trip,
/// that line clients are served.
pub struct LineProbe {
    stream: TcpStream,
    sent: usize,
}

impl LineProbe {
    pub fn connect(server: &ServerProcess) -> LineProbe {
        LineProbe {
            stream: server.connect(),
            sent: 0,
        }
    }

    /// Sends a line and reads its echo (fails the test after `PATIENCE`).
    pub fn round_trip(&mut self) {
        self.sent += 1;
        let line = format!("probe {}\n", self.sent);
        self.stream.write_all(line.as_bytes()).expect("send a line");
        let mut echo = vec![0; line.len()];
        self.stream.read_exact(&mut echo).expect("read its echo");
        assert_eq!(echo, line.as_bytes());
    }
}

/// A line client that floods an `--echo` server without reading, until the
/// server holds it back: while it is connected, a stop stays in its grace
/// period.
pub struct HeldBack {
    client: Option<std::net::TcpStream>,
    done: Arc<AtomicBool>,
    writer: Option<thread::JoinHandle<()>>,
}

/// Starts a [`HeldBack`] client; the server must run with `--echo` and log
/// `selectd::serve::connection` at debug level (`pausing reads`).
pub fn hold_back(server: &ServerProcess) -> HeldBack {
    let client = server.connect();
    let mut writer = client.try_clone().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let stop = Arc::clone(&done);
    let writer = thread::spawn(move || {
        let chunk = [b"flooding, never reading\n".as_slice(); 1024].concat();
        while !stop.load(Ordering::Relaxed) && writer.write_all(&chunk).is_ok() {}
    });
    wait_until("the client to be held back", || {
        server.stderr().contains("pausing reads")
    });
    HeldBack {
        client: Some(client),
        done,
        writer: Some(writer),
    }
}

impl Drop for HeldBack {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(client) = self.client.take() {
            let _ = client.shutdown(Shutdown::Both);
        }
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}
