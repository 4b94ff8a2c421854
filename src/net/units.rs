//! Durations and byte sizes as people type them on a command line.
//!
//! `--idle-timeout 250ms`, `--max-line 64KiB`: every flag that takes a time or
//! a size goes through these two parsers, so `serve`, `send` and `bench` accept
//! the same spellings and reject bad ones with the same message. A dozen lines
//! each; a crate such as `humantime` would add more than it saves here.

use std::fmt;
use std::time::Duration;

/// A value on the command line that is not a duration or size we understand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitError {
    input: String,
    /// `duration` or `size`.
    what: &'static str,
    /// What would have been right, in parentheses after the value.
    hint: &'static str,
}

impl fmt::Display for UnitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {} '{}' ({})", self.what, self.input, self.hint)
    }
}

impl std::error::Error for UnitError {}

/// Parses `250ms`, `5s`, `1.5s`, `2m`, `1h`, or a bare number of seconds.
///
/// `0` is a zero duration; callers that treat zero as "off" say so
/// themselves (see [`parse_optional_duration`]). A value too small to be
/// anything but zero (`0.1ns`) is an error, not zero.
///
/// ```
/// use std::time::Duration;
/// use selectd::net::units::parse_duration;
/// assert_eq!(parse_duration("250ms")?, Duration::from_millis(250));
/// assert_eq!(parse_duration("2m")?, Duration::from_secs(120));
/// # Ok::<(), selectd::net::units::UnitError>(())
/// ```
pub fn parse_duration(input: &str) -> Result<Duration, UnitError> {
    let error = || UnitError {
        input: input.to_string(),
        what: "duration",
        hint: "e.g. 250ms, 5s, 2m",
    };
    let text = input.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| error())?;
    let seconds_per_unit = match unit.trim() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "" | "s" | "sec" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(error()),
    };
    let duration = Duration::try_from_secs_f64(value * seconds_per_unit).map_err(|_| error())?;
    // Deadlines are `now + duration`: keep that sum far from overflowing.
    if duration > MAX_DURATION {
        return Err(error());
    }
    // `0.1ns` is not zero to the person who typed it, but it is to a
    // `Duration`: where zero means "off", that would silently disable a
    // time-out. Only a written zero is zero.
    if duration.is_zero() && value != 0.0 {
        return Err(UnitError {
            input: input.to_string(),
            what: "duration",
            hint: "rounds to zero; the smallest is 1ns, and 0 is written 0",
        });
    }
    Ok(duration)
}

/// The longest duration accepted anywhere (100 years): "never" is spelled
/// `off`, and anything longer would only risk overflowing a deadline.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Like [`parse_duration`], but `0` and `off` mean "no time-out" (`None`).
pub fn parse_optional_duration(input: &str) -> Result<Option<Duration>, UnitError> {
    if input.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let duration = parse_duration(input)?;
    Ok((!duration.is_zero()).then_some(duration))
}

/// Parses a byte count: `65536`, `64k`, `64KiB`, `1M`, `1MiB` (powers of 1024).
///
/// ```
/// use selectd::net::units::parse_bytes;
/// assert_eq!(parse_bytes("64KiB")?, 65536);
/// assert_eq!(parse_bytes("100")?, 100);
/// # Ok::<(), selectd::net::units::UnitError>(())
/// ```
pub fn parse_bytes(input: &str) -> Result<usize, UnitError> {
    let error = || UnitError {
        input: input.to_string(),
        what: "size",
        hint: "e.g. 65536, 64KiB, 1MiB",
    };
    let text = input.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: usize = number.parse().map_err(|_| error())?;
    let multiplier: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(error()),
    };
    value.checked_mul(multiplier).ok_or_else(error)
}

/// Formats a duration the way [`parse_duration`] reads it: `500ms`, `5s`,
/// `1.5s`; under a millisecond, `250us` or `10ns` (never a `0ms` that is
/// not zero).
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if duration.is_zero() {
        "0ms".to_string()
    } else if millis == 0 && duration.subsec_nanos().is_multiple_of(1000) {
        format!("{}us", duration.as_micros())
    } else if millis == 0 {
        format!("{}ns", duration.as_nanos())
    } else if millis < 1000 {
        format!("{millis}ms")
    } else if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else {
        format!("{:.3}s", duration.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_durations_are_named() {
        for bad in [
            "",
            "s",
            "5x",
            "-1s",
            "1e9999s",
            "five",
            "18000000000000000000",
            "101y",
            "1000000h",
            "0.1ns",
            "-0.1ns",
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.to_string().contains(&format!("'{bad}'")), "{err}");
        }
    }

    #[test]
    fn zero_and_off_disable() {
        assert_eq!(parse_optional_duration("0"), Ok(None));
        assert_eq!(parse_optional_duration("off"), Ok(None));
        assert_eq!(parse_optional_duration("0s"), Ok(None));
        assert_eq!(parse_optional_duration("0.0ms"), Ok(None));
        assert!(parse_optional_duration("0.1ns").is_err());
        assert_eq!(
            parse_optional_duration("5s"),
            Ok(Some(Duration::from_secs(5)))
        );
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("65536"), Ok(65536));
        assert_eq!(parse_bytes("64k"), Ok(65536));
        assert_eq!(parse_bytes("64KiB"), Ok(65536));
        assert_eq!(parse_bytes("1MiB"), Ok(1 << 20));
        assert!(parse_bytes("1.5k").is_err());
        assert!(parse_bytes("99999999999999999999").is_err());
        assert!(parse_bytes("1TB").is_err());
    }

    #[test]
    fn durations_format_round_trip() {
        for text in ["250ms", "5s", "1.500s", "250us", "10ns", "0ms"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }
}
