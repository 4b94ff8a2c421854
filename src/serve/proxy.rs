//! The PROXY protocol: who is really on the other end of a proxied connection.
//!
//! Behind a load balancer (HAProxy, nginx `stream`, Envoy) every connection
//! comes from the balancer, so every client would print as the balancer's
//! address, and on the same host as a loopback one: anyone on the network
//! could then `stop` the server through it. HAProxy's PROXY protocol fixes
//! that: the balancer opens each connection with a header naming the client
//! (v1 is one text line, `PROXY TCP4 203.0.113.7 10.0.0.1 51234 10001\r\n`;
//! v2 is binary and starts with a 12-byte signature).
//!
//! A header is believed only from the proxies named in `--proxy-protocol`
//! ([`TrustedProxies`]); from anyone else it is just a line. From a trusted
//! proxy it is required: a connection that does not open with a valid header
//! within [`HEADER_TIMEOUT`] is closed (`proxy-header`), since serving it
//! would print, and trust, the proxy's own address.
//!
//! [`PendingHeader`] gathers the header across reads (TCP may split it
//! anywhere) and says how many bytes of the read that completed it were
//! header: the rest are the client's first bytes. It is fed only until the
//! header is complete, so the per-line path never sees it. Parsing is
//! `ppp`'s; this module only decides where a header ends, bounds it, and
//! turns it into the address to use. Nothing here reads the clock: the
//! event loop owns the deadline.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;

/// How long a trusted proxy has, from accept, to send its header.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// The v2 signature: no v1 header and no text line starts like this.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// A v2 header's fixed part: signature, version and command, family and
/// protocol, and the two-byte length of what follows.
const V2_FIXED: usize = 16;

/// The longest v2 header accepted: the largest address block (two Unix
/// paths, 216 bytes) leaves room for several kilobytes of TLVs, which is
/// more than HAProxy sends; a longer one is refused rather than buffered.
pub const MAX_V2_HEADER: usize = 4096;

/// The longest v1 header, `\r\n` included, as the specification bounds it.
pub const MAX_V1_HEADER: usize = 107;

/// The v1 header's first bytes.
const V1_PREFIX: &[u8] = b"PROXY ";

/// The proxies whose PROXY headers are believed (`--proxy-protocol`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Whether any proxy is trusted at all (the feature is on).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a connection from `ip` must start with a PROXY header. An
    /// IPv4-mapped IPv6 address is matched as the IPv4 address it carries.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|net| net.contains(&ip))
    }
}

impl FromStr for TrustedProxies {
    type Err = String;

    /// `CIDR[,CIDR...]`: `127.0.0.1/32,10.0.0.0/8,::1`; a bare address is
    /// one host.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let nets = text
            .split(',')
            .map(str::trim)
            .map(|item| {
                item.parse::<IpNet>()
                    .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!("invalid CIDR '{item}' (expected e.g. 127.0.0.1/32 or ::1/128)")
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustedProxies(nets))
    }
}

impl fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, net) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{net}")?;
        }
        Ok(())
    }
}

/// What a complete header says about the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carried {
    /// The client's address, to be used as the peer from now on.
    Client(SocketAddr),
    /// No client address: a v2 `LOCAL` header (the proxy's own health
    /// check), v1 `UNKNOWN`, or a family other than IP. The connection keeps
    /// the proxy's address.
    Proxy,
}

/// Why a trusted proxy's connection was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// The bytes are not a PROXY header, or not a valid one.
    Malformed(String),
    /// Longer than [`MAX_V1_HEADER`] or [`MAX_V2_HEADER`].
    TooLong,
    /// The connection ended before the header was complete.
    Missing,
    /// Not complete within [`HEADER_TIMEOUT`].
    Late,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::Malformed(why) => write!(f, "malformed PROXY header: {why}"),
            HeaderError::TooLong => f.write_str("PROXY header too long"),
            HeaderError::Missing => f.write_str("closed before sending a PROXY header"),
            HeaderError::Late => write!(f, "no PROXY header within {HEADER_TIMEOUT:?}"),
        }
    }
}

impl std::error::Error for HeaderError {}

/// The bytes of a header received so far, from a trusted proxy.
///
/// Bytes are taken one at a time until the header is complete, so the
/// header's end is found exactly, wherever the reads split it; a header is
/// at most a few hundred bytes and arrives once per connection.
#[derive(Debug, Default)]
pub struct PendingHeader {
    bytes: Vec<u8>,
}

impl PendingHeader {
    /// Takes the bytes of one read. `Ok(None)`: the header is not complete
    /// yet (every byte was taken). `Ok(Some((carried, used)))`: complete,
    /// and `chunk[used..]` is the client's.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Option<(Carried, usize)>, HeaderError> {
        for (i, &byte) in chunk.iter().enumerate() {
            self.bytes.push(byte);
            if let Some(carried) = self.step()? {
                return Ok(Some((carried, i + 1)));
            }
        }
        Ok(None)
    }

    /// Bytes held so far.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// After each byte: is the header complete, still possible, or wrong?
    fn step(&self) -> Result<Option<Carried>, HeaderError> {
        let bytes = &self.bytes[..];
        if bytes[0] == V2_SIGNATURE[0] {
            return self.step_v2();
        }
        let prefix = bytes.len().min(V1_PREFIX.len());
        if bytes[..prefix] != V1_PREFIX[..prefix] {
            return Err(HeaderError::Malformed(
                "the connection does not start with a PROXY header".into(),
            ));
        }
        if bytes.last() == Some(&b'\n') {
            return parse_v1(bytes).map(Some);
        }
        if bytes.len() >= MAX_V1_HEADER {
            return Err(HeaderError::TooLong);
        }
        Ok(None)
    }

    fn step_v2(&self) -> Result<Option<Carried>, HeaderError> {
        let bytes = &self.bytes[..];
        let signature = bytes.len().min(V2_SIGNATURE.len());
        if bytes[..signature] != V2_SIGNATURE[..signature] {
            return Err(HeaderError::Malformed("bad v2 signature".into()));
        }
        if bytes.len() < V2_FIXED {
            return Ok(None);
        }
        let total = V2_FIXED + usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
        if total > MAX_V2_HEADER {
            return Err(HeaderError::TooLong);
        }
        if bytes.len() < total {
            return Ok(None);
        }
        parse_v2(bytes).map(Some)
    }
}

/// A whole v1 line, `\r\n` included.
fn parse_v1(line: &[u8]) -> Result<Carried, HeaderError> {
    use ppp::v1::{Addresses, Header};
    let header =
        Header::try_from(line).map_err(|err| HeaderError::Malformed(lowercase(err.to_string())))?;
    Ok(match header.addresses {
        Addresses::Tcp4(ip) => {
            Carried::Client(SocketAddr::from((ip.source_address, ip.source_port)))
        }
        Addresses::Tcp6(ip) => {
            Carried::Client(SocketAddr::from((ip.source_address, ip.source_port)))
        }
        Addresses::Unknown => Carried::Proxy,
    })
}

/// A whole v2 header, exactly as long as its length field says.
fn parse_v2(bytes: &[u8]) -> Result<Carried, HeaderError> {
    use ppp::v2::{Addresses, Command, Header};
    let header = Header::try_from(bytes)
        .map_err(|err| HeaderError::Malformed(lowercase(err.to_string())))?;
    if header.command == Command::Local {
        return Ok(Carried::Proxy);
    }
    Ok(match header.addresses {
        Addresses::IPv4(ip) => {
            Carried::Client(SocketAddr::from((ip.source_address, ip.source_port)))
        }
        Addresses::IPv6(ip) => {
            Carried::Client(SocketAddr::from((ip.source_address, ip.source_port)))
        }
        Addresses::Unspecified | Addresses::Unix(_) => Carried::Proxy,
    })
}

/// `ppp`'s messages are sentences; ours are lowercase fragments.
fn lowercase(message: String) -> String {
    let message = message.trim_end_matches('.');
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const V1_TCP4: &[u8] = b"PROXY TCP4 203.0.113.7 127.0.0.1 51234 10001\r\n";
    const V1_TCP6: &[u8] = b"PROXY TCP6 2001:db8::7 ::1 51234 10001\r\n";

    fn v2(command: u8, family: u8, addresses: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut header = V2_SIGNATURE.to_vec();
        header.push(0x20 | command);
        header.push(family);
        let len = u16::try_from(addresses.len() + tlvs.len()).unwrap();
        header.extend(len.to_be_bytes());
        header.extend(addresses);
        header.extend(tlvs);
        header
    }

    fn v2_tcp4() -> Vec<u8> {
        // 198.51.100.9:40000 -> 127.0.0.1:10001, then a NOOP TLV.
        let addresses = [198, 51, 100, 9, 127, 0, 0, 1, 0x9c, 0x40, 0x27, 0x11];
        v2(1, 0x11, &addresses, &[0x04, 0, 2, 0, 0])
    }

    fn v2_tcp6() -> Vec<u8> {
        let mut addresses = Vec::new();
        addresses.extend(
            "2001:db8::9"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        addresses.extend(std::net::Ipv6Addr::LOCALHOST.octets());
        addresses.extend([0x9c, 0x41, 0x27, 0x11]);
        v2(1, 0x21, &addresses, &[])
    }

    fn client(text: &str) -> Carried {
        Carried::Client(text.parse().unwrap())
    }

    /// Feeds `bytes` in the pieces `cuts` makes; returns the result and the
    /// bytes left over for the client.
    fn feed_split(bytes: &[u8], cuts: &[usize]) -> (Result<Carried, HeaderError>, Vec<u8>) {
        let mut pending = PendingHeader::default();
        let mut start = 0;
        let mut ends: Vec<usize> = cuts.iter().copied().filter(|&c| c < bytes.len()).collect();
        ends.sort_unstable();
        ends.push(bytes.len());
        for end in ends {
            let piece = &bytes[start..end.max(start)];
            match pending.feed(piece) {
                Ok(Some((carried, used))) => {
                    let mut rest = piece[used..].to_vec();
                    rest.extend(&bytes[end.max(start)..]);
                    return (Ok(carried), rest);
                }
                Ok(None) => {}
                Err(err) => return (Err(err), Vec::new()),
            }
            start = end.max(start);
        }
        (Err(HeaderError::Missing), Vec::new())
    }

    // ---- trusted proxies ------------------------------------------------

    #[test]
    fn trusted_proxies_parse_cidrs_and_bare_addresses() {
        let trusted: TrustedProxies = "127.0.0.1/32, 10.0.0.0/8,::1".parse().unwrap();
        assert!(trusted.trusts("127.0.0.1".parse().unwrap()));
        assert!(trusted.trusts("10.200.3.4".parse().unwrap()));
        assert!(trusted.trusts("::1".parse().unwrap()));
        assert!(trusted.trusts("::ffff:10.1.1.1".parse().unwrap()));
        assert!(!trusted.trusts("127.0.0.2".parse().unwrap()));
        assert!(!trusted.trusts("::2".parse().unwrap()));
        assert_eq!(trusted.to_string(), "127.0.0.1/32,10.0.0.0/8,::1/128");
    }

    #[test]
    fn trusted_proxies_name_the_bad_item() {
        let err = "127.0.0.1/32,nope".parse::<TrustedProxies>().unwrap_err();
        assert!(err.contains("'nope'"), "{err}");
        assert!("10.0.0.0/33".parse::<TrustedProxies>().is_err());
        assert!("".parse::<TrustedProxies>().is_err());
    }

    // ---- v1 -------------------------------------------------------------

    #[test]
    fn v1_tcp4_whole() {
        let mut pending = PendingHeader::default();
        let mut bytes = V1_TCP4.to_vec();
        bytes.extend(b"hello\n");
        let (carried, used) = pending.feed(&bytes).unwrap().unwrap();
        assert_eq!(carried, client("203.0.113.7:51234"));
        assert_eq!(&bytes[used..], b"hello\n");
    }

    #[test]
    fn v1_tcp6_whole() {
        assert_eq!(
            feed_split(V1_TCP6, &[]),
            (Ok(client("[2001:db8::7]:51234")), Vec::new())
        );
    }

    #[test]
    fn v1_unknown_keeps_the_proxy() {
        assert_eq!(feed_split(b"PROXY UNKNOWN\r\n", &[]).0, Ok(Carried::Proxy));
        assert_eq!(
            feed_split(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", &[]).0,
            Ok(Carried::Proxy)
        );
    }

    #[test]
    fn v1_partial_waits() {
        let mut pending = PendingHeader::default();
        assert_eq!(pending.feed(&V1_TCP4[..20]), Ok(None));
        assert_eq!(pending.len(), 20);
    }

    #[test]
    fn v1_malformed() {
        for bad in [
            &b"PROXY TCP4 203.0.113.7 127.0.0.1 51234\r\n"[..],
            b"PROXY TCP4 300.0.113.7 127.0.0.1 51234 10001\r\n",
            b"PROXY TCP4 203.0.113.7 127.0.0.1 51234 10001\n",
            b"PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n",
            b"PROXY TCP4 203.0.113.7 127.0.0.1 99999 10001\r\n",
        ] {
            let result = feed_split(bad, &[]).0;
            assert!(
                matches!(result, Err(HeaderError::Malformed(_))),
                "{:?}: {result:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn v1_not_a_header_fails_at_the_first_wrong_byte() {
        let mut pending = PendingHeader::default();
        assert!(matches!(
            pending.feed(b"PRX"),
            Err(HeaderError::Malformed(_))
        ));
        let mut pending = PendingHeader::default();
        assert!(matches!(
            pending.feed(b"hello\n"),
            Err(HeaderError::Malformed(_))
        ));
    }

    #[test]
    fn v1_too_long() {
        let mut line = b"PROXY TCP4 ".to_vec();
        line.extend(vec![b'1'; 200]);
        assert_eq!(feed_split(&line, &[]).0, Err(HeaderError::TooLong));
    }

    // ---- v2 -------------------------------------------------------------

    #[test]
    fn v2_tcp4_with_a_tlv() {
        let mut bytes = v2_tcp4();
        let header_len = bytes.len();
        bytes.extend(b"first\n");
        let mut pending = PendingHeader::default();
        let (carried, used) = pending.feed(&bytes).unwrap().unwrap();
        assert_eq!(carried, client("198.51.100.9:40000"));
        assert_eq!(used, header_len);
    }

    #[test]
    fn v2_tcp6_whole() {
        assert_eq!(
            feed_split(&v2_tcp6(), &[]).0,
            Ok(client("[2001:db8::9]:40001"))
        );
    }

    #[test]
    fn v2_local_keeps_the_proxy() {
        assert_eq!(
            feed_split(&v2(0, 0x00, &[], &[]), &[]).0,
            Ok(Carried::Proxy)
        );
        // LOCAL with addresses (HAProxy's checks may send them): still the proxy.
        let addresses = [127, 0, 0, 1, 127, 0, 0, 1, 0, 1, 0, 2];
        assert_eq!(
            feed_split(&v2(0, 0x11, &addresses, &[]), &[]).0,
            Ok(Carried::Proxy)
        );
    }

    #[test]
    fn v2_unspecified_family_keeps_the_proxy() {
        assert_eq!(
            feed_split(&v2(1, 0x00, &[], &[]), &[]).0,
            Ok(Carried::Proxy)
        );
    }

    #[test]
    fn v2_malformed() {
        let mut bad_version = v2_tcp4();
        bad_version[12] = 0x11;
        let mut bad_command = v2_tcp4();
        bad_command[12] = 0x2f;
        let short_addresses = v2(1, 0x11, &[1, 2, 3], &[]);
        let mut bad_signature = v2_tcp4();
        bad_signature[6] = b'X';
        for bad in [bad_version, bad_command, short_addresses, bad_signature] {
            let result = feed_split(&bad, &[]).0;
            assert!(
                matches!(result, Err(HeaderError::Malformed(_))),
                "{result:?}"
            );
        }
    }

    #[test]
    fn v2_too_long_is_refused_from_its_length_field() {
        let mut header = V2_SIGNATURE.to_vec();
        header.extend([0x21, 0x11, 0xff, 0xff]);
        let mut pending = PendingHeader::default();
        assert_eq!(pending.feed(&header), Err(HeaderError::TooLong));
    }

    #[test]
    fn errors_read_as_one_line() {
        let err = feed_split(b"PROXY TCP4 x y 1 2\r\n", &[]).0.unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("malformed PROXY header: "), "{text}");
        assert!(!text.contains('\n'));
        assert_eq!(HeaderError::Late.to_string(), "no PROXY header within 5s");
    }

    // ---- any split ------------------------------------------------------

    fn every_header() -> Vec<(Vec<u8>, Carried)> {
        vec![
            (V1_TCP4.to_vec(), client("203.0.113.7:51234")),
            (V1_TCP6.to_vec(), client("[2001:db8::7]:51234")),
            (v2_tcp4(), client("198.51.100.9:40000")),
            (v2_tcp6(), client("[2001:db8::9]:40001")),
            (v2(0, 0, &[], &[]), Carried::Proxy),
        ]
    }

    #[test]
    fn split_at_every_byte_gives_the_same_header_and_first_line() {
        for (header, expected) in every_header() {
            let mut bytes = header.clone();
            bytes.extend(b"first line\n");
            for cut in 0..=bytes.len() {
                let (carried, rest) = feed_split(&bytes, &[cut]);
                assert_eq!(carried, Ok(expected), "cut at {cut}");
                assert_eq!(rest, b"first line\n", "cut at {cut}");
            }
            let every: Vec<usize> = (1..bytes.len()).collect();
            assert_eq!(
                feed_split(&bytes, &every),
                (Ok(expected), b"first line\n".to_vec())
            );
        }
    }

    proptest! {
        #[test]
        fn any_splits_give_the_same_result(
            which in 0usize..5,
            cuts in proptest::collection::vec(0usize..80, 0..8),
            tail in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let (header, expected) = every_header().swap_remove(which);
            let mut bytes = header;
            bytes.extend(&tail);
            let (carried, rest) = feed_split(&bytes, &cuts);
            prop_assert_eq!(carried, Ok(expected));
            prop_assert_eq!(rest, tail);
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_stay_bounded(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
            cuts in proptest::collection::vec(0usize..600, 0..8),
        ) {
            let mut pending = PendingHeader::default();
            let mut start = 0;
            let mut ends = cuts;
            ends.push(bytes.len());
            ends.sort_unstable();
            for end in ends {
                let end = end.min(bytes.len()).max(start);
                if pending.feed(&bytes[start..end]).map_or(true, |done| done.is_some()) {
                    break;
                }
                start = end;
            }
            prop_assert!(pending.len() <= MAX_V2_HEADER);
        }
    }
}
