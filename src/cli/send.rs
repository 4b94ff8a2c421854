//! `selectd send` flags, and the [`SendConfig`] they make.
//!
//! clap checks each value on its own (a stream address, a time-out above
//! zero); what is left is building the payload, where `--http` needs the
//! address for its `Host:` header.

use std::time::Duration;

use clap::Args;

use super::values;
use crate::net::addr::Address;
use crate::send::{Payload, SendConfig, SendError, http_request, unescape};

/// What `send --help` (and the man page) says after the flags.
pub const SEND_AFTER_HELP: &str = "\
Exit codes:
  0  the server closed the connection (everything it sent was printed)
  1  local failure: standard input, standard output, poll
  2  usage: a bad flag or value
  3  the host name does not resolve
  4  connection refused
  5  timed out (--timeout)
  6  reset by the server, or another socket error
  7  TLS failed (the server's certificate is not trusted, an alert)";

/// `selectd send` flags. `--data` and `--timeout` values may start with `-`
/// (`--data -x`), as numbers and durations do for
/// [`ServeArgs`](super::ServeArgs); paths and names may not.
#[derive(Debug, Clone, Args)]
pub struct SendArgs {
    /// Where to connect: `HOST:PORT`, `tcp://HOST:PORT`, `[V6]:PORT`, `tls://HOST:PORT` or `unix:PATH`.
    // Help text spelled out: in the doc comment, rustdoc reads `[V6]` as a link.
    #[arg(
        value_name = "ADDR",
        help = "Where to connect: HOST:PORT, tcp://HOST:PORT, [V6]:PORT, tls://HOST:PORT or unix:PATH",
        value_parser = values::stream_address
    )]
    pub addr: Address,

    /// Send TEXT instead of standard input (\n, \r, \t, \\, \0 and \xHH understood)
    #[arg(
        long,
        allow_hyphen_values = true,
        value_name = "TEXT",
        conflicts_with = "http"
    )]
    pub data: Option<String>,

    /// Send an HTTP/1.0 GET request for PATH instead of standard input
    #[arg(long, value_name = "PATH")]
    pub http: Option<String>,

    /// Bound on resolution plus connect, then on any wait for the socket to make progress
    #[arg(
        long,
        allow_hyphen_values = true,
        value_name = "DUR",
        default_value = "20s",
        value_parser = values::positive_duration
    )]
    pub timeout: Duration,

    /// Keep the write side open after the input ends (no shutdown(SHUT_WR))
    #[arg(long)]
    pub no_shutdown: bool,

    /// The flags of a tls:// address.
    #[cfg(feature = "tls")]
    #[command(flatten)]
    pub tls: SendTlsArgs,
}

/// How `send` speaks TLS (for a `tls://` address only).
#[cfg(feature = "tls")]
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct SendTlsArgs {
    /// tls://: trust the CAs in FILE (PEM) instead of the system's
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<std::path::PathBuf>,

    /// tls://: the name to send (SNI) and check the certificate against; default: the address's host
    #[arg(long, value_name = "NAME")]
    pub tls_server_name: Option<String>,

    /// tls://: a client certificate (PEM), for servers that require one
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// tls://: the client certificate's private key (PEM)
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,

    /// tls://: do not verify the server's certificate at all (a warning is printed)
    #[arg(long, conflicts_with = "tls_ca")]
    pub tls_insecure: bool,
}

#[cfg(feature = "tls")]
impl SendTlsArgs {
    /// The TLS settings, or `None` when no TLS flag was given.
    fn into_tls(self) -> Option<crate::send::SendTls> {
        if self == SendTlsArgs::default() {
            return None;
        }
        Some(crate::send::SendTls {
            files: crate::net::tls::ClientFiles {
                ca: self.tls_ca,
                identity: self.tls_cert.zip(self.tls_key),
                insecure: self.tls_insecure,
            },
            server_name: self.tls_server_name,
        })
    }
}

impl SendArgs {
    /// The client's settings: the payload built from `--data` or `--http`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use selectd::cli::SendArgs;
    /// use selectd::send::Payload;
    ///
    /// let args = SendArgs {
    ///     addr: "[::1]:8000".parse()?,
    ///     data: None,
    ///     http: Some("/".into()),
    ///     timeout: Duration::from_millis(500),
    ///     no_shutdown: false,
    ///     tls: Default::default(),
    /// };
    /// let config = args.into_config()?;
    /// assert_eq!(config.timeout, Duration::from_millis(500));
    /// assert_eq!(
    ///     config.payload,
    ///     Payload::Bytes(b"GET / HTTP/1.0\r\nHost: [::1]\r\n\r\n".to_vec())
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_config(self) -> Result<SendConfig, SendError> {
        let payload = match (self.data, self.http) {
            (Some(text), _) => Payload::Bytes(unescape(&text)),
            (None, Some(path)) => Payload::Bytes(http_request(&self.addr, &path)?),
            (None, None) => Payload::Stdin,
        };
        #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
        let mut config = SendConfig::new(self.addr, payload, self.timeout, !self.no_shutdown)?;
        #[cfg(feature = "tls")]
        {
            config.tls = self.tls.into_tls();
            config.check()?;
        }
        Ok(config)
    }
}
