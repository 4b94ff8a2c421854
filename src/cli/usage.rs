//! Usage errors as one line that names the flag.
//!
//! clap reports a bad flag in three lines or more: the error, a usage
//! synopsis, and a pointer to `--help`. A script's log, or a person who typed
//! one wrong value, is better served by one line that names the culprit:
//! `error: --backlog: invalid number 'abc' (...)`. [`one_line`] builds that
//! line from the parts clap records in its error (which flag, which value,
//! what our parser said), and adds a hint where a user coming from another
//! tool is likely to slip: `serve --port 10001` or `serve 127.0.0.1:10001`
//! where selectd says `--listen`.

use std::error::Error as _;
use std::ffi::OsString;

use clap::error::{ContextKind, ContextValue, ErrorKind};

/// The message (without the `error: ` prefix) for a clap error, on one
/// line. `args` is the command line as given, program name first, used to
/// suggest the right spelling.
pub fn one_line(err: &clap::Error, args: &[OsString]) -> String {
    let arg = context_string(err, ContextKind::InvalidArg);
    let value = context_string(err, ContextKind::InvalidValue);
    // `--grace <DUR>` → `--grace`; positional `<ADDR>` → `ADDR`.
    let flag = arg.as_deref().map(|arg| {
        let name = arg.split_whitespace().next().unwrap_or(arg);
        name.trim_start_matches('<')
            .trim_end_matches('>')
            .to_string()
    });
    match (err.kind(), flag) {
        (ErrorKind::ValueValidation, Some(flag)) => {
            let value = value.unwrap_or_default();
            let reason = match err.source().map(|source| source.to_string()) {
                // Our parsers quote the culprit (the value, or the bad part
                // of a list); others (`invalid digit found in string`) do
                // not, so the value is added.
                Some(reason) if reason.contains('\'') => reason,
                Some(reason) => format!("invalid value '{value}': {reason}"),
                None => format!("invalid value '{value}'"),
            };
            if flag.starts_with('-') {
                format!("{flag}: {reason}")
            } else {
                reason
            }
        }
        (ErrorKind::InvalidValue, Some(flag)) => match value.as_deref() {
            None | Some("") => format!("{flag}: a value is required"),
            Some(value) => {
                let expected = match err.get(ContextKind::ValidValue) {
                    Some(ContextValue::Strings(valid)) => {
                        format!(" (expected {})", valid.join(", "))
                    }
                    _ => String::new(),
                };
                format!("{flag}: invalid value '{value}'{expected}")
            }
        },
        (ErrorKind::UnknownArgument, Some(flag)) => {
            let hint = listen_hint(&flag, args).or_else(|| suggestion(err));
            match hint {
                Some(hint) => format!("unexpected argument '{flag}' ({hint})"),
                None => format!("unexpected argument '{flag}'"),
            }
        }
        (ErrorKind::InvalidSubcommand, _) => {
            let name = context_string(err, ContextKind::InvalidSubcommand).unwrap_or_default();
            match err.get(ContextKind::SuggestedSubcommand) {
                Some(ContextValue::Strings(similar)) if !similar.is_empty() => format!(
                    "unrecognized subcommand '{name}' (did you mean '{}'?)",
                    similar.join("' or '")
                ),
                _ => first_line(err),
            }
        }
        (ErrorKind::MissingRequiredArgument, _) => match err.get(ContextKind::InvalidArg) {
            Some(ContextValue::Strings(missing)) => {
                format!("missing required argument: {}", missing.join(", "))
            }
            _ => first_line(err),
        },
        _ => first_line(err),
    }
}

/// `serve` takes addresses through `--listen`, unlike `send` (a positional
/// ADDR) and unlike servers that take `--port`: say so when that is the slip.
fn listen_hint(flag: &str, args: &[OsString]) -> Option<String> {
    let args: Vec<String> = args
        .iter()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    if subcommand(&args) != Some("serve") {
        return None;
    }
    let listen = |addr: &str| format!("to listen there: --listen {addr}");
    let (name, attached) = match flag.split_once('=') {
        Some((name, value)) => (name, Some(value.to_string())),
        None => (flag, None),
    };
    if matches!(name, "--port" | "-p") {
        let value = attached.or_else(|| {
            let at = args.iter().position(|arg| arg == flag)?;
            args.get(at + 1).cloned()
        });
        return Some(match value {
            Some(port) if port.parse::<u16>().is_ok() => listen(&format!("127.0.0.1:{port}")),
            _ => "serve takes --listen HOST:PORT, e.g. --listen 127.0.0.1:10001".to_string(),
        });
    }
    if matches!(name, "--host" | "--bind" | "--addr" | "--address" | "-l") {
        return Some("serve takes --listen HOST:PORT, e.g. --listen 127.0.0.1:10001".to_string());
    }
    if flag.starts_with('-') {
        return None;
    }
    // A positional argument: `serve 127.0.0.1:10001`, as `send` takes it,
    // or `serve 10001`.
    if flag.parse::<u16>().is_ok() {
        return Some(listen(&format!("127.0.0.1:{flag}")));
    }
    if flag.parse::<crate::net::addr::Address>().is_ok() {
        return Some(listen(flag));
    }
    None
}

/// The subcommand named on the command line: the first argument after the
/// program name that is not a flag.
fn subcommand(args: &[String]) -> Option<&str> {
    args.iter()
        .skip(1)
        .find(|arg| !arg.starts_with('-'))
        .map(String::as_str)
}

/// clap's own "a similar argument exists" suggestion, when it has one.
fn suggestion(err: &clap::Error) -> Option<String> {
    match err.get(ContextKind::SuggestedArg) {
        Some(ContextValue::String(similar)) => Some(format!("did you mean '{similar}'?")),
        _ => None,
    }
}

fn context_string(err: &clap::Error, kind: ContextKind) -> Option<String> {
    match err.get(kind) {
        Some(ContextValue::String(text)) => Some(text.clone()),
        _ => None,
    }
}

/// clap's message, cut to its first line, without the `error: ` prefix.
fn first_line(err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    let line = rendered
        .lines()
        .find(|line| !line.trim().is_empty())
        .unwrap_or("invalid command line");
    line.trim_start_matches("error: ").trim().to_string()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::Cli;

    fn error_for(line: &str) -> String {
        let args: Vec<OsString> = line.split(' ').map(OsString::from).collect();
        let err = Cli::try_parse_from(&args).expect_err("a usage error");
        one_line(&err, &args)
    }

    #[test]
    fn a_bad_value_names_the_flag_on_one_line() {
        let cases = [
            (
                "selectd serve --idle-timeout soon",
                "--idle-timeout: invalid duration 'soon'",
            ),
            (
                "selectd serve --backlog abc",
                "--backlog: invalid number 'abc'",
            ),
            (
                "selectd serve --backlog=-5",
                "--backlog: invalid number '-5'",
            ),
            (
                "selectd serve --max-conns=-1",
                "--max-conns: invalid number '-1'",
            ),
            (
                "selectd serve --grace -1s",
                "--grace: invalid duration '-1s'",
            ),
            (
                "selectd serve --format xml",
                "--format: invalid value 'xml' (expected tagged",
            ),
            (
                "selectd send udp://127.0.0.1:9",
                "invalid address 'udp://127.0.0.1:9'",
            ),
            (
                "selectd serve --idle-timeout",
                "--idle-timeout: a value is required",
            ),
        ];
        for (line, expected) in cases {
            let message = error_for(line);
            assert!(message.starts_with(expected), "{line}: {message}");
            assert!(!message.contains('\n'), "{line}: {message}");
        }
    }

    #[test]
    fn a_misspelled_subcommand_gets_a_suggestion() {
        let message = error_for("selectd serv");
        assert_eq!(
            message,
            "unrecognized subcommand 'serv' (did you mean 'serve'?)"
        );
    }

    #[test]
    fn a_port_alone_is_missing_its_host() {
        let message = error_for("selectd serve --listen 10001");
        assert_eq!(
            message,
            "--listen: invalid address '10001': missing host (for this machine only: 127.0.0.1:10001)"
        );
        let message = error_for("selectd send 10001");
        assert!(message.contains("missing host"), "{message}");
    }

    #[test]
    fn serve_hints_at_listen() {
        let port = error_for("selectd serve --port 10001");
        assert!(port.contains("--listen 127.0.0.1:10001"), "{port}");
        assert!(!port.contains("--format"), "{port}");
        let positional = error_for("selectd serve 127.0.0.1:10001");
        assert!(
            positional.contains("--listen 127.0.0.1:10001"),
            "{positional}"
        );
    }
}
