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
//! | `tls://127.0.0.1:10443`         | TLS over `AF_INET(6)` TCP |
//!
//! Parsing is pure and checks only the form; names are resolved when the
//! socket is created (see [`Address::resolve`]), so a parse never blocks.

use std::fmt;
use std::io;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;

/// The longest Unix socket path, in bytes: `sun_path` holds 108 bytes,
/// the last of them the terminating NUL.
pub const MAX_UNIX_PATH: usize = 107;

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
    /// TLS over a TCP stream socket (`tls://HOST:PORT`).
    Tls {
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
    reason: String,
}

impl AddressError {
    fn new(input: &str, reason: impl Into<String>) -> Self {
        AddressError {
            input: input.to_string(),
            reason: reason.into(),
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
            if path.len() > MAX_UNIX_PATH {
                return Err(AddressError::new(
                    input,
                    format!(
                        "socket path is {} bytes; the limit is {MAX_UNIX_PATH} (use a shorter path, or a relative one)",
                        path.len()
                    ),
                ));
            }
            return Ok(Address::Unix(PathBuf::from(path)));
        }
        // `tcp:127.0.0.1:0` reads as host `tcp:127.0.0.1`: say what was
        // meant. (`tcp:80`, a host named `tcp`, is left alone.)
        for scheme in ["tcp", "udp", "tls"] {
            if let Some(rest) = input.strip_prefix(scheme).and_then(|r| r.strip_prefix(':'))
                && !rest.starts_with("//")
                && rest.contains(':')
            {
                return Err(AddressError::new(
                    input,
                    format!("missing '//' after '{scheme}:' (write {scheme}://{rest})"),
                ));
            }
        }
        if let Some(rest) = input.strip_prefix("udp://") {
            let (host, port) = split_host_port(input, rest)?;
            return Ok(Address::Udp { host, port });
        }
        if let Some(rest) = input.strip_prefix("tls://") {
            let (host, port) = split_host_port(input, rest)?;
            return Ok(Address::Tls { host, port });
        }
        let rest = input.strip_prefix("tcp://").unwrap_or(input);
        if rest.contains("://") {
            return Err(AddressError::new(
                input,
                "unknown scheme (use tcp://, tls://, udp:// or unix:)",
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
        // A link-local address needs its interface: `[fe80::1%eth0]:7`.
        // The scope travels with the host; the resolver turns it into the
        // socket address's scope id.
        let (ip, scope) = match host.split_once('%') {
            Some((ip, scope)) => (ip, Some(scope)),
            None => (host, None),
        };
        if ip.parse::<Ipv6Addr>().is_err() {
            return Err(AddressError::new(input, "not an IPv6 address inside [ ]"));
        }
        if scope.is_some_and(|scope| {
            scope.is_empty()
                || !scope
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        }) {
            return Err(AddressError::new(
                input,
                "invalid scope after '%' (an interface name or number, e.g. [fe80::1%eth0]:7)",
            ));
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
            Address::Tcp { host, port }
            | Address::Udp { host, port }
            | Address::Tls { host, port } => (host, *port),
            Address::Unix(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a Unix socket path has no IP address",
                ));
            }
        };
        if let Some((ip, scope)) = host.split_once('%')
            && let Ok(ip) = ip.parse::<Ipv6Addr>()
        {
            let scope_id = scope_id(scope)?;
            return Ok(vec![SocketAddr::V6(SocketAddrV6::new(
                ip, port, 0, scope_id,
            ))]);
        }
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
            Address::Tcp { host, .. } | Address::Udp { host, .. } | Address::Tls { host, .. } => {
                Some(host)
            }
            Address::Unix(_) => None,
        }
    }
}

/// The scope of `[fe80::1%eth0]`: a number, or an interface name turned
/// into its index. The resolver (`getaddrinfo`) takes a name only for
/// link-local addresses; `[::1%lo]` is as valid to the kernel, so the name
/// is looked up here, where Linux publishes it, without `unsafe` FFI.
fn scope_id(scope: &str) -> io::Result<u32> {
    if let Ok(number) = scope.parse::<u32>() {
        return Ok(number);
    }
    let unknown = || {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("no network interface named '{scope}'"),
        )
    };
    if scope.contains(['/', '.']) {
        return Err(unknown());
    }
    std::fs::read_to_string(format!("/sys/class/net/{scope}/ifindex"))
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok())
        .ok_or_else(unknown)
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
            Address::Tls { host, port } => write_host(f, "tls", host, *port),
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
    fn tls_addresses_parse_and_print() {
        let tls = Address::Tls {
            host: "::1".into(),
            port: 443,
        };
        assert_eq!("tls://[::1]:443".parse(), Ok(tls.clone()));
        assert_eq!(tls.to_string(), "tls://[::1]:443");
        let err = "tls:127.0.0.1:1"
            .parse::<Address>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("write tls://127.0.0.1:1"), "{err}");
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
            "[fe80::1%]:80",
            "[fe80::1%a b]:80",
        ] {
            let err = bad.parse::<Address>().unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("invalid address '{bad}': ")),
                "{err}"
            );
        }
    }

    #[test]
    fn scoped_ipv6_keeps_its_scope() {
        assert_eq!("[fe80::1%lo]:0".parse(), Ok(tcp("fe80::1%lo", 0)));
        assert_eq!("[::1%1]:7".parse(), Ok(tcp("::1%1", 7)));
        assert_eq!(tcp("fe80::1%lo", 0).to_string(), "tcp://[fe80::1%lo]:0");
        let resolved = tcp("::1%lo", 7).resolve().unwrap();
        assert!(
            matches!(resolved[0], SocketAddr::V6(v6) if v6.scope_id() != 0),
            "{resolved:?}"
        );
    }

    #[test]
    fn a_missing_double_slash_is_named() {
        let err = "tcp:127.0.0.1:0"
            .parse::<Address>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("write tcp://127.0.0.1:0"), "{err}");
        assert!(!err.contains("brackets"), "{err}");
    }

    #[test]
    fn unix_paths_longer_than_sun_path_are_refused() {
        let fits = format!("unix:/{}", "a".repeat(MAX_UNIX_PATH - 1));
        assert!(fits.parse::<Address>().is_ok());
        let long = format!("unix:/{}", "a".repeat(MAX_UNIX_PATH));
        let err = long.parse::<Address>().unwrap_err().to_string();
        assert!(err.contains("the limit is 107"), "{err}");
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
