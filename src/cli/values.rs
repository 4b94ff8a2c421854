//! Flag values, typed as clap parses them.
//!
//! Each function here is a clap `value_parser`: it turns the text after a
//! flag into the type the program runs with, or says in a few words what is
//! wrong with it. clap adds which flag it was, and [`usage`](super::usage)
//! prints the two as one line (`error: --grace: invalid duration '-1s' ...`).
//! Durations and sizes share their spelling with the library
//! ([`crate::net::units`]); counts and modes are checked here.

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

use crate::net::addr::Address;
use crate::net::units::{self, UnitError};
use crate::serve::{Format, OutputFull, OutputTarget};

/// A time-out that `0` or `off` switches off (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout(pub Option<Duration>);

impl FromStr for Timeout {
    type Err = UnitError;

    fn from_str(text: &str) -> Result<Self, UnitError> {
        units::parse_optional_duration(text).map(Timeout)
    }
}

/// A duration, zero included (`--grace 0` closes at once).
pub fn duration(text: &str) -> Result<Duration, UnitError> {
    units::parse_duration(text)
}

/// A duration greater than zero (`send --timeout`).
pub fn positive_duration(text: &str) -> Result<Duration, ValueError> {
    let duration = units::parse_duration(text).map_err(|err| ValueError(err.to_string()))?;
    if duration.is_zero() {
        return Err(ValueError(format!(
            "invalid duration '{text}' (must be greater than zero)"
        )));
    }
    Ok(duration)
}

/// A byte size (`64KiB`), at least one byte.
pub fn size(text: &str) -> Result<usize, ValueError> {
    match units::parse_bytes(text) {
        Ok(0) => Err(ValueError(format!(
            "invalid size '{text}' (must be at least 1 byte)"
        ))),
        Ok(bytes) => Ok(bytes),
        Err(err) => Err(ValueError(err.to_string())),
    }
}

/// `--max-line`: a byte size, or `off` for no limit (`usize::MAX`: raw echo
/// of binary data, long lines handed on in pieces; see `proto::line`).
pub fn line_limit(text: &str) -> Result<usize, ValueError> {
    if text == "off" {
        return Ok(usize::MAX);
    }
    size(text)
}

/// A byte size, zero allowed (watermarks).
pub fn size_or_zero(text: &str) -> Result<usize, UnitError> {
    units::parse_bytes(text)
}

/// A whole number within `range`, read in decimal.
fn count(text: &str, range: RangeInclusive<u64>) -> Result<u64, ValueError> {
    let wrong = || {
        ValueError(if *range.end() >= u64::from(u32::MAX) {
            format!(
                "invalid number '{text}' (expected a whole number, at least {})",
                range.start()
            )
        } else {
            format!(
                "invalid number '{text}' (expected a whole number from {} to {})",
                range.start(),
                range.end()
            )
        })
    };
    let trimmed = text.trim();
    if trimmed.is_empty() || !trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return Err(wrong());
    }
    let value: u64 = trimmed.parse().map_err(|_| wrong())?;
    if !range.contains(&value) {
        return Err(wrong());
    }
    Ok(value)
}

/// The `listen()` backlog: 1 to `i32::MAX` (the kernel caps it further,
/// at `net.core.somaxconn`, without complaint).
pub fn backlog(text: &str) -> Result<i32, ValueError> {
    let max = i32::MAX as u64;
    count(text, 1..=max).map(|n| i32::try_from(n).unwrap_or(i32::MAX))
}

/// A count of at least one (`--max-conns`).
pub fn positive_count(text: &str) -> Result<usize, ValueError> {
    let max = u64::try_from(usize::MAX).unwrap_or(u64::MAX);
    count(text, 1..=max).map(|n| usize::try_from(n).unwrap_or(usize::MAX))
}

/// `--reactors`: a count from 1 to [`MAX_REACTORS`](crate::serve::MAX_REACTORS),
/// or `auto` for one per CPU this process may run on.
pub fn reactors(text: &str) -> Result<usize, ValueError> {
    let max = crate::serve::MAX_REACTORS;
    if text == "auto" {
        return Ok(std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(max));
    }
    let max_u64 = u64::try_from(max).unwrap_or(u64::MAX);
    count(text, 1..=max_u64)
        .map(|n| usize::try_from(n).unwrap_or(max))
        .map_err(|_| {
            ValueError(format!(
                "invalid count '{text}' (expected auto or 1 to {max})"
            ))
        })
}

/// Permission bits in octal, as `chmod` takes them: `600`, `0660`.
pub fn unix_mode(text: &str) -> Result<u32, ValueError> {
    u32::from_str_radix(text, 8)
        .ok()
        .filter(|mode| *mode <= 0o777 && !text.starts_with('+'))
        .ok_or_else(|| ValueError(format!("invalid mode '{text}' (expected octal, e.g. 600)")))
}

/// An address to listen on (any family).
pub fn listen_address(text: &str) -> Result<Address, ValueError> {
    bare_port(text)?;
    text.parse::<Address>()
        .map_err(|err| ValueError(err.to_string()))
}

/// The metrics port's address: TCP only, `HOST:PORT` (or `tcp://HOST:PORT`).
/// A URL is told that, not the forms `--listen` takes.
pub fn metrics_address(text: &str) -> Result<Address, ValueError> {
    match listen_address(text) {
        // Another scheme (`http://`): the forms `--listen` takes are no
        // help. (A Unix or UDP address parses, and the configuration's
        // check says the same of it.)
        Err(_) if text.contains("://") && !text.starts_with("tcp://") => Err(ValueError(format!(
            "invalid address '{text}': --metrics takes a TCP address, HOST:PORT"
        ))),
        parsed => parsed,
    }
}

/// A port alone (`10001`) is the usual slip: the host is what is missing,
/// and loopback is the safe guess to offer.
fn bare_port(text: &str) -> Result<(), ValueError> {
    match text.parse::<u16>() {
        Ok(port) => Err(ValueError(format!(
            "invalid address '{text}': missing host (for this machine only: 127.0.0.1:{port})"
        ))),
        Err(_) => Ok(()),
    }
}

/// What a URL given to `send` is told: `--http` is how `send` speaks HTTP.
pub const HTTP_HINT: &str = " (for an HTTP request: selectd send HOST:PORT --http /PATH)";

/// An address `send` can connect to: a stream socket, never UDP.
///
/// A URL is the usual slip (`send http://host:8000/`), so it gets its own
/// hint: `--http` is how `send` speaks HTTP.
pub fn stream_address(text: &str) -> Result<Address, ValueError> {
    const FORMS: &str = "HOST:PORT, tcp://HOST:PORT, [V6]:PORT, tls://HOST:PORT or unix:PATH";
    if let Some((scheme, _)) = text.split_once("://")
        && !matches!(scheme, "tcp" | "udp" | "tls")
    {
        let hint = if scheme.starts_with("http") {
            HTTP_HINT
        } else {
            ""
        };
        return Err(ValueError(format!(
            "invalid address '{text}': send takes {FORMS}, not a {scheme}:// URL{hint}"
        )));
    }
    bare_port(text)?;
    let addr = text
        .parse::<Address>()
        .map_err(|err| ValueError(err.to_string()))?;
    if let Address::Udp { .. } = addr {
        return Err(ValueError(format!(
            "invalid address '{text}': send speaks stream sockets only, not datagrams (use {FORMS})"
        )));
    }
    Ok(addr)
}

/// Where printed output goes: `-` for stdout, or a file path.
pub fn output_target(text: &str) -> Result<OutputTarget, ValueError> {
    match text {
        "-" => Ok(OutputTarget::Stdout),
        "" => Err(ValueError("empty path (use - for stdout)".into())),
        path => Ok(OutputTarget::File(path.into())),
    }
}

/// A flag value that is not what the flag takes; the text says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError(String);

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ValueError {}

/// The output formats, for clap: listed in `--help`, the man page and the
/// shell completions, and checked by clap.
impl clap::ValueEnum for Format {
    fn value_variants<'a>() -> &'a [Self] {
        &[Format::Tagged, Format::Plain, Format::Json, Format::None]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        let (name, help) = match self {
            Format::Tagged => ("tagged", "[PEER] LINE, with open and close events"),
            Format::Plain => (
                "plain",
                "each line trimmed, a rule after each client (the notes' server)",
            ),
            Format::Json => ("json", "one JSON object per event"),
            Format::None => ("none", "print nothing"),
        };
        Some(clap::builder::PossibleValue::new(name).help(help))
    }
}

/// The policies for a full output buffer, for clap (listed in `--help`).
impl clap::ValueEnum for OutputFull {
    fn value_variants<'a>() -> &'a [Self] {
        &[OutputFull::Block, OutputFull::Drop]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        let (name, help) = match self {
            OutputFull::Block => (
                "block",
                "stop reading from clients until it drains; nothing is lost",
            ),
            OutputFull::Drop => ("drop", "keep serving; drop whole lines and count them"),
        };
        Some(clap::builder::PossibleValue::new(name).help(help))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_refuse_signs_words_and_the_out_of_range() {
        assert_eq!(backlog("128"), Ok(128));
        for bad in ["-5", "abc", "", "0", "+3", "1.5", "99999999999"] {
            let err = backlog(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("'{bad}'")), "{err}");
        }
        assert_eq!(positive_count("1"), Ok(1));
        assert!(positive_count("-1").is_err());
        assert!(positive_count("0").is_err());
    }

    #[test]
    fn durations_that_round_to_zero_are_refused() {
        assert!(Timeout::from_str("0.1ns").is_err());
        assert_eq!(Timeout::from_str("off"), Ok(Timeout(None)));
        assert_eq!(Timeout::from_str("0"), Ok(Timeout(None)));
        assert!(positive_duration("0").is_err());
        assert_eq!(duration("0"), Ok(Duration::ZERO));
        assert!(duration("-1s").is_err());
    }

    #[test]
    fn modes_are_octal_permission_bits() {
        assert_eq!(unix_mode("600"), Ok(0o600));
        assert_eq!(unix_mode("0660"), Ok(0o660));
        for bad in ["800", "1777", "rw", "", "+7"] {
            assert!(unix_mode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn send_refuses_datagrams_and_urls_with_a_hint() {
        assert!(stream_address("127.0.0.1:9").is_ok());
        assert!(stream_address("unix:/tmp/s").is_ok());
        let udp = stream_address("udp://127.0.0.1:9").unwrap_err().to_string();
        assert!(udp.contains("stream sockets only"), "{udp}");
        let http = stream_address("http://127.0.0.1:8000/")
            .unwrap_err()
            .to_string();
        assert!(http.contains("--http"), "{http}");
        assert!(!http.contains("udp"), "{http}");
    }
}
