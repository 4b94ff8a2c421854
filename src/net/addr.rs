//! Addresses as written on the command line, for every socket family in the notes.
//!
//! The notes' `bind(address)` says "the form of the address depends on the
//! socket family". selectd writes the family into the address instead, so one
//! `--listen` flag (or the `send` client's ADDR) can name any of them:
//!
//! | written                         | family                    |
//! |---------------------------------|---------------------------|
//! | `127.0.0.1:10001`, `tcp://...`  | `AF_INET`, `SOCK_STREAM`  |
//! | `[::1]:10001`, `tcp://[::]:0`   | `AF_INET6`, `SOCK_STREAM` |
//! | `localhost:10001`               | every address the name resolves to |
//! | `unix:/run/selectd.sock`        | `AF_UNIX`, `SOCK_STREAM`  |
//! | `udp://127.0.0.1:10001`         | `AF_INET(6)`, `SOCK_DGRAM`|
//!
//! Parsing is pure and checks only the form; names are resolved when the
//! socket is created (see [`Address::resolve`]), so a parse never blocks.

use std::fmt;
use std::io;
use std::net::{Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;

/// Where to listen or connect: a host and port for TCP or UDP, or a path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// A TCP stream socket; the host is an IP literal or a name to resolve.
    Tcp {
        /// `127.0.0.1`, `::1` (without brackets), or a host name.
        host: String,
        /// `0` asks the kernel for an ephemeral port.
        port: u16,
    },
    /// A Unix stream socket at a filesystem path.
    Unix(PathBuf),
    /// A UDP datagram socket.
    Udp {
        /// As for [`Address::Tcp`].
        host: String,
        /// As for [`Address::Tcp`].
        port: u16,
    },
}

/// An address that cannot be parsed; names the text and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressError {
    input: String,
    reason: &'static str,
}

impl AddressError {
    fn new(input: &str, reason: &'static str) -> Self {
        AddressError {
            input: input.to_string(),
            reason,
        }
    }
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid address '{}': {}", self.input, self.reason)
    }
}

impl std::error::Error for AddressError {}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if let Some(path) = input.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(AddressError::new(
                    input,
                    "missing socket path after 'unix:'",
                ));
            }
            if path.contains('\0') {
                return Err(AddressError::new(input, "socket path contains a NUL byte"));
            }
            return Ok(Address::Unix(PathBuf::from(path)));
        }
        if let Some(rest) = input.strip_prefix("udp://") {
            let (host, port) = split_host_port(input, rest)?;
            return Ok(Address::Udp { host, port });
        }
        let rest = input.strip_prefix("tcp://").unwrap_or(input);
        if rest.contains("://") {
            return Err(AddressError::new(
                input,
                "unknown scheme (use tcp://, udp:// or unix:)",
            ));
        }
        let (host, port) = split_host_port(input, rest)?;
        Ok(Address::Tcp { host, port })
    }
}

/// Splits `host:port` or `[v6]:port`, checking both halves.
fn split_host_port(input: &str, text: &str) -> Result<(String, u16), AddressError> {
    let (host, port) = if let Some(bracketed) = text.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| AddressError::new(input, "missing ']' after IPv6 address"))?;
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(AddressError::new(input, "not an IPv6 address inside [ ]"));
        }
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| AddressError::new(input, "missing port (expected [HOST]:PORT)"))?;
        (host, port)
    } else {
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| AddressError::new(input, "missing port (expected HOST:PORT)"))?;
        if host.contains(':') {
            return Err(AddressError::new(
                input,
                "IPv6 addresses need brackets, e.g. [::1]:10001",
            ));
        }
        (host, port)
    };
    if host.is_empty() {
        return Err(AddressError::new(input, "missing host"));
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '%'))
    {
        return Err(AddressError::new(input, "invalid character in host"));
    }
    if port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()) {
        return Err(AddressError::new(input, "port is not a number"));
    }
    let port = port
        .parse::<u16>()
        .map_err(|_| AddressError::new(input, "port out of range (0-65535)"))?;
    Ok((host.to_string(), port))
}

impl Address {
    /// Resolves a TCP or UDP address to every socket address its host names
    /// (one for an IP literal); a Unix address has none and yields an error.
    ///
    /// This may block on DNS: call it before the reactor runs.
    pub fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
        let (host, port) = match self {
            Address::Tcp { host, port } | Address::Udp { host, port } => (host, *port),
            Address::Unix(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a Unix socket path has no IP address",
                ));
            }
        };
        let found: Vec<SocketAddr> = (host.as_str(), port).to_socket_addrs()?.collect();
        if found.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "name resolves to no address",
            ));
        }
        Ok(found)
    }

    /// The host part, for messages and the HTTP `Host:` header (`None` for Unix).
    pub fn host(&self) -> Option<&str> {
        match self {
            Address::Tcp { host, .. } | Address::Udp { host, .. } => Some(host),
            Address::Unix(_) => None,
        }
    }
}

impl fmt::Display for Address {
    /// The canonical spelling, with the scheme: `tcp://[::1]:10001`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let write_host = |f: &mut fmt::Formatter<'_>, scheme: &str, host: &str, port: u16| {
            if host.contains(':') {
                write!(f, "{scheme}://[{host}]:{port}")
            } else {
                write!(f, "{scheme}://{host}:{port}")
            }
        };
        match self {
            Address::Tcp { host, port } => write_host(f, "tcp", host, *port),
            Address::Udp { host, port } => write_host(f, "udp", host, *port),
            Address::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> Address {
        Address::Tcp {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn every_family_parses() {
        assert_eq!("127.0.0.1:10001".parse(), Ok(tcp("127.0.0.1", 10001)));
        assert_eq!("tcp://127.0.0.1:0".parse(), Ok(tcp("127.0.0.1", 0)));
        assert_eq!("[::1]:7".parse(), Ok(tcp("::1", 7)));
        assert_eq!("tcp://[::]:7".parse(), Ok(tcp("::", 7)));
        assert_eq!("localhost:10001".parse(), Ok(tcp("localhost", 10001)));
        assert_eq!(
            "unix:/tmp/s.sock".parse(),
            Ok(Address::Unix("/tmp/s.sock".into()))
        );
        assert_eq!(
            "udp://127.0.0.1:9".parse(),
            Ok(Address::Udp {
                host: "127.0.0.1".into(),
                port: 9
            })
        );
    }

    #[test]
    fn bad_addresses_name_themselves() {
        for bad in [
            "unix:",
            "udp://nope",
            "[::1",
            "127.0.0.1:70000",
            "127.0.0.1",
            ":80",
            "::1:80",
            "[nope]:80",
            "http://x:80",
            "a b:80",
            "host:-1",
        ] {
            let err = bad.parse::<Address>().unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("invalid address '{bad}': ")),
                "{err}"
            );
        }
    }

    #[test]
    fn display_is_canonical() {
        assert_eq!(tcp("::1", 5).to_string(), "tcp://[::1]:5");
        assert_eq!(tcp("127.0.0.1", 5).to_string(), "tcp://127.0.0.1:5");
        assert_eq!(Address::Unix("/x".into()).to_string(), "unix:/x");
    }

    #[test]
    fn literals_resolve_to_themselves() {
        let addrs = tcp("127.0.0.1", 5).resolve().unwrap();
        assert_eq!(addrs, vec!["127.0.0.1:5".parse().unwrap()]);
        assert!(Address::Unix("/x".into()).resolve().is_err());
    }
}
