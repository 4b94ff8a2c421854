//! What to send, where, and for how long: a checked `send` command.
//!
//! The command line builds one (`cli/send.rs`), and so may a program using
//! the library; either way [`SendConfig::new`] refuses what the client
//! cannot do (a datagram address, a zero time-out), so the session never
//! has to. The payload helpers are here too: `--data` escapes and the
//! `--http` request the notes' client meant to send.

use std::time::Duration;

use super::error::SendError;
use crate::net::addr::Address;
use crate::net::units::MAX_DURATION;

/// What to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Standard input, streamed as it arrives.
    Stdin,
    /// Bytes known up front: `--data` after unescaping, or the `--http` request.
    Bytes(Vec<u8>),
}

/// A checked `send` command: a stream address, the bytes to send, and a
/// non-zero time-out.
///
/// ```
/// use std::time::Duration;
/// use selectd::send::{Payload, SendConfig};
///
/// let config = SendConfig::new(
///     "127.0.0.1:7".parse()?,
///     Payload::Bytes(b"ping\n".to_vec()),
///     Duration::from_secs(2),
///     true,
/// )?;
/// assert_eq!(config.timeout, Duration::from_secs(2));
/// assert!(SendConfig::new("udp://127.0.0.1:7".parse()?, Payload::Stdin, Duration::from_secs(2), true).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct SendConfig {
    /// A TCP or Unix address; never UDP.
    pub addr: Address,
    /// Where the outgoing bytes come from.
    pub payload: Payload,
    /// Bound on resolution plus connect, then on any wait for the socket to
    /// make progress; greater than zero. Longer than
    /// [`MAX_DURATION`] counts as [`MAX_DURATION`].
    pub timeout: Duration,
    /// Shut down the write side after the payload (the notes' `shutdown(1)`).
    pub shutdown: bool,
    /// How a `tls://` address is verified (the system's roots when `None`).
    #[cfg(feature = "tls")]
    pub tls: Option<SendTls>,
}

/// How `send` speaks TLS to a `tls://` address.
#[cfg(feature = "tls")]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendTls {
    /// The CA, a client certificate, or no verification at all.
    pub files: crate::net::tls::ClientFiles,
    /// The name to ask for (SNI) and check the certificate against; the
    /// address's host when `None`.
    pub server_name: Option<String>,
}

impl SendConfig {
    /// Checks the parts: a stream address (TCP or Unix), a time-out above
    /// zero. Errors are usage errors (exit code 2).
    pub fn new(
        addr: Address,
        payload: Payload,
        timeout: Duration,
        shutdown: bool,
    ) -> Result<SendConfig, SendError> {
        let config = SendConfig {
            addr,
            payload,
            timeout: timeout.min(MAX_DURATION),
            shutdown,
            #[cfg(feature = "tls")]
            tls: None,
        };
        config.check()?;
        Ok(config)
    }

    /// The checks of [`SendConfig::new`], for a config built field by field.
    pub fn check(&self) -> Result<(), SendError> {
        if let Address::Udp { .. } = self.addr {
            return Err(SendError::Usage(format!(
                "send speaks stream sockets only; {} is a datagram address (use HOST:PORT or unix:PATH)",
                self.addr
            )));
        }
        #[cfg(feature = "tls")]
        if self.tls.is_some() && !matches!(self.addr, Address::Tls { .. }) {
            return Err(SendError::Usage(format!(
                "the --tls-* flags need a tls:// address (got {})",
                self.addr
            )));
        }
        #[cfg(not(feature = "tls"))]
        if let Address::Tls { .. } = self.addr {
            return Err(SendError::Usage(
                "tls:// addresses need selectd built with the `tls` feature".into(),
            ));
        }
        if self.timeout.is_zero() {
            return Err(SendError::Usage(
                "--timeout: must be greater than zero".into(),
            ));
        }
        Ok(())
    }
}

/// Turns `\n`, `\r`, `\t`, `\\`, `\0` and `\xHH` into the bytes they name.
///
/// Any other backslash is kept as written, as `printf` does, so a Windows
/// path or a regular expression survives unchanged.
///
/// ```
/// use selectd::send::unescape;
/// assert_eq!(unescape(r"stop\r\n"), b"stop\r\n");
/// assert_eq!(unescape(r"a\qb\x41"), b"a\\qbA");
/// ```
pub fn unescape(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' || i + 1 == bytes.len() {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let (byte, used) = match bytes[i + 1] {
            b'n' => (b'\n', 2),
            b'r' => (b'\r', 2),
            b't' => (b'\t', 2),
            b'0' => (0, 2),
            b'\\' => (b'\\', 2),
            b'x' => match text
                .get(i + 2..i + 4)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            {
                Some(byte) => (byte, 4),
                None => (b'\\', 1),
            },
            _ => (b'\\', 1),
        };
        out.push(byte);
        i += used;
    }
    out
}

/// Builds `GET PATH HTTP/1.0\r\nHost: HOST\r\n\r\n`, the request the notes' client
/// meant to send (which wrote `HTML/1.0` and bare `\n`).
///
/// An IPv6 host is bracketed, as RFC 3986 requires; a Unix socket has no host,
/// so it sends `localhost`. A path with spaces or control characters would
/// change the request line itself, so it is refused.
///
/// ```
/// use selectd::send::http_request;
/// let addr = "localhost:8000".parse()?;
/// assert_eq!(
///     http_request(&addr, "/index.html")?,
///     b"GET /index.html HTTP/1.0\r\nHost: localhost\r\n\r\n"
/// );
/// assert!(http_request(&addr, "/a b").is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn http_request(addr: &Address, path: &str) -> Result<Vec<u8>, SendError> {
    if path.is_empty() || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(SendError::Usage(format!(
            "--http path '{}' must be non-empty, without spaces or control characters",
            path.escape_debug()
        )));
    }
    let host = match addr.host() {
        Some(host) if host.contains(':') => format!("[{host}]"),
        Some(host) => host.to_string(),
        None => "localhost".to_string(),
    };
    Ok(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").into_bytes())
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn escapes_become_bytes() {
        assert_eq!(unescape(r"a\nb\r\n\t\\\0"), b"a\nb\r\n\t\\\0");
        assert_eq!(unescape(r"\x41\x7e"), b"A~");
        assert_eq!(unescape(r"\q\x4"), b"\\q\\x4");
        assert_eq!(unescape("trailing\\"), b"trailing\\");
        assert_eq!(unescape("ünï"), "ünï".as_bytes());
    }

    #[test]
    fn http_request_is_well_formed() {
        let tcp = "127.0.0.1:8000".parse().expect("parses");
        assert_eq!(
            http_request(&tcp, "/index.html").expect("valid"),
            b"GET /index.html HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
        );
        let v6 = "[::1]:80".parse().expect("parses");
        assert_eq!(
            http_request(&v6, "/").expect("valid"),
            b"GET / HTTP/1.0\r\nHost: [::1]\r\n\r\n"
        );
        for bad in ["", "/a b", "/a\r\nX: y"] {
            assert_eq!(http_request(&tcp, bad).map_err(|e| e.exit_code()), Err(2));
        }
    }

    #[test]
    fn udp_and_zero_timeout_are_usage_errors() {
        let udp = "udp://127.0.0.1:9".parse().expect("parses");
        let err = SendConfig::new(udp, Payload::Stdin, Duration::from_secs(1), true)
            .expect_err("udp refused");
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("udp://127.0.0.1:9"), "{err}");
        let tcp = "127.0.0.1:9".parse().expect("parses");
        let zero = SendConfig::new(tcp, Payload::Stdin, Duration::ZERO, true);
        assert_eq!(zero.map_err(|e| e.exit_code()).err(), Some(2));
    }

    #[test]
    fn huge_timeouts_are_cut_and_never_overflow() {
        let tcp = "127.0.0.1:9".parse().expect("parses");
        let config = SendConfig::new(tcp, Payload::Stdin, Duration::MAX, true).expect("valid");
        assert_eq!(config.timeout, MAX_DURATION);
        assert!(Instant::now().checked_add(config.timeout).is_some());
    }
}
