//! Why `send` failed, as one of the notes' exceptions, each with its own
//! exit code.
//!
//! The notes' client catches `gaierror`, `herror`, `timeout` and `error`
//! and prints them alike. A script calling `selectd send` wants to tell
//! "nobody listens" from "the name is wrong" from "it hung", so each is a
//! variant here, with a stable exit code and a one-line message naming the
//! address as the user wrote it.

use std::fmt;
use std::io;
use std::time::Duration;

use crate::net::os_reason;
use crate::net::units::format_duration;

/// Why `send` failed. Each variant is one of the notes' exceptions (or a
/// usage or local failure) and has its own exit code.
#[derive(Debug)]
pub enum SendError {
    /// The command line is valid to clap but not to us (exit code 2).
    Usage(String),
    /// `gaierror`/`herror`: the host name does not resolve (exit code 3).
    Resolve {
        /// The address as the user wrote it.
        addr: String,
        /// The resolver's reason.
        source: io::Error,
    },
    /// Nobody listens there: `ECONNREFUSED` (exit code 4).
    Refused {
        /// The address as the user wrote it.
        addr: String,
    },
    /// `timeout`: resolution plus connect, or one wait for progress, took
    /// longer than `--timeout` (exit code 5).
    TimedOut {
        /// The address as the user wrote it.
        addr: String,
        /// The `--timeout` that ran out.
        after: Duration,
    },
    /// `error`: any other socket failure, such as a reset by the peer
    /// (exit code 6).
    Socket {
        /// The address as the user wrote it.
        addr: String,
        /// What we were doing: `connect to`, `send to`, `receive from`.
        doing: &'static str,
        /// The operating system's reason.
        source: io::Error,
    },
    /// The TLS handshake or session failed: the server's certificate is not
    /// trusted or names another host, an alert, a corrupt record (exit
    /// code 7).
    Tls {
        /// The address as the user wrote it.
        addr: String,
        /// rustls's reason.
        source: io::Error,
    },
    /// Reading standard input, writing standard output or polling failed;
    /// not the peer's fault (exit code 1).
    Local {
        /// What failed: `read standard input`, `write standard output`, `poll`.
        what: &'static str,
        /// The operating system's reason.
        source: io::Error,
    },
}

impl SendError {
    /// The process exit code for this error; stable, documented in
    /// `docs/client.md`. Success is 0.
    ///
    /// | code | meaning |
    /// |------|---------|
    /// | 1 | local failure: standard input, standard output, poll |
    /// | 2 | usage |
    /// | 3 | cannot resolve (`gaierror`) |
    /// | 4 | connection refused |
    /// | 5 | timed out (`timeout`) |
    /// | 6 | reset by peer or another socket error (`error`) |
    /// | 7 | TLS failed (an untrusted certificate, an alert) |
    pub fn exit_code(&self) -> i32 {
        match self {
            SendError::Local { .. } => 1,
            SendError::Usage(_) => 2,
            SendError::Resolve { .. } => 3,
            SendError::Refused { .. } => 4,
            SendError::TimedOut { .. } => 5,
            SendError::Socket { .. } => 6,
            SendError::Tls { .. } => 7,
        }
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Usage(message) => f.write_str(message),
            SendError::Resolve { addr, source } => {
                write!(f, "cannot resolve {addr}: {}", os_reason(source))
            }
            SendError::Refused { addr } => write!(f, "connection to {addr} refused"),
            SendError::TimedOut { addr, after } => write!(
                f,
                "timed out after {} waiting for {addr}",
                format_duration(*after)
            ),
            SendError::Socket { addr, source, .. }
                if source.kind() == io::ErrorKind::ConnectionReset =>
            {
                write!(f, "connection to {addr} reset by peer")
            }
            SendError::Socket {
                addr,
                doing,
                source,
            } => write!(f, "cannot {doing} {addr}: {}", os_reason(source)),
            SendError::Local { what, source } => write!(f, "cannot {what}: {}", os_reason(source)),
            SendError::Tls { addr, source } => {
                write!(f, "TLS with {addr} failed: {}", os_reason(source))
            }
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SendError::Resolve { source, .. }
            | SendError::Socket { source, .. }
            | SendError::Local { source, .. }
            | SendError::Tls { source, .. } => Some(source),
            SendError::Usage(_) | SendError::Refused { .. } | SendError::TimedOut { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_address_and_reason() {
        let refused = SendError::Refused {
            addr: "127.0.0.1:9".into(),
        };
        assert_eq!(refused.to_string(), "connection to 127.0.0.1:9 refused");
        let timed_out = SendError::TimedOut {
            addr: "127.0.0.1:41000".into(),
            after: Duration::from_millis(500),
        };
        assert_eq!(
            timed_out.to_string(),
            "timed out after 500ms waiting for 127.0.0.1:41000"
        );
        let reset = SendError::Socket {
            addr: "[::1]:7".into(),
            doing: "receive from",
            source: io::ErrorKind::ConnectionReset.into(),
        };
        assert_eq!(reset.to_string(), "connection to [::1]:7 reset by peer");
    }

    #[test]
    fn exit_codes_are_distinct() {
        let codes = [
            SendError::Local {
                what: "poll",
                source: io::ErrorKind::Other.into(),
            },
            SendError::Usage(String::new()),
            SendError::Resolve {
                addr: String::new(),
                source: io::ErrorKind::NotFound.into(),
            },
            SendError::Refused {
                addr: String::new(),
            },
            SendError::TimedOut {
                addr: String::new(),
                after: Duration::ZERO,
            },
            SendError::Socket {
                addr: String::new(),
                doing: "",
                source: io::ErrorKind::Other.into(),
            },
            SendError::Tls {
                addr: String::new(),
                source: io::ErrorKind::InvalidData.into(),
            },
        ]
        .map(|e| e.exit_code());
        assert_eq!(codes, [1, 2, 3, 4, 5, 6, 7]);
    }
}
