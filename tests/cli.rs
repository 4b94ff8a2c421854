//! The command line as a black box: the built binary's flag errors, help
//! text, man pages, shell completions and exit codes, with stderr open and
//! with stderr a closed pipe.

#[path = "common/client_support.rs"]
mod support;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{Input, RUN_LIMIT, available, selectd, wait_bounded};

/// What one run of `selectd ARGS` left: exit code, stdout, stderr.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `selectd ARGS` to the end, with no input (bounded by `RUN_LIMIT`).
fn run(args: &[&str]) -> Run {
    let out = support::run(args, Input::Null);
    Run {
        code: out.code,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: out.stderr,
    }
}

fn has(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

// ---- flag errors ------------------------------------------------------------

/// A bad value is one line on stderr naming the flag and the value, exit 2;
/// never clap's usage dump, whatever the value looks like (negative numbers
/// and durations included).
#[test]
fn a_bad_serve_flag_is_one_line_naming_it() {
    for (args, says) in [
        (&["serve", "--backlog", "abc"][..], "error: --backlog: "),
        (
            &["serve", "--backlog=-5"],
            "error: --backlog: invalid number '-5'",
        ),
        (
            &["serve", "--max-conns=-1"],
            "error: --max-conns: invalid number '-1'",
        ),
        (
            &["serve", "--grace", "-1s"],
            "error: --grace: invalid duration '-1s'",
        ),
        (
            &["serve", "--idle-timeout", "soon"],
            "error: --idle-timeout: invalid duration 'soon'",
        ),
        (
            &["serve", "--format", "xml"],
            "error: --format: invalid value 'xml'",
        ),
        (
            &["serve", "--unix-mode", "999"],
            "error: --unix-mode: invalid mode '999'",
        ),
        (
            &["serve", "--max-line", "0"],
            "error: --max-line: invalid size '0'",
        ),
        (
            &["serve", "--listen", "nope"],
            "error: --listen: invalid address 'nope'",
        ),
        (&["serve", "--stats"], "error: --stats: a value is required"),
    ] {
        let out = run(args);
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
        assert!(out.stderr.starts_with(says), "{args:?}: {}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{args:?}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
    }
}

/// A flag whose value was forgotten does not take the next flag for it:
/// `--output --echo` is an error, not output to a file named `--echo`
/// (numbers and durations take a leading `-`, names and paths do not).
#[test]
fn a_forgotten_value_is_not_the_next_flag() {
    for (args, says) in [
        (
            &["serve", "--output", "--echo"][..],
            "error: --output: a value is required",
        ),
        (
            &["bench", "127.0.0.1:9", "--hgrm", "--json"],
            "error: --hgrm: a value is required",
        ),
        (
            &["send", "127.0.0.1:9", "--tls-ca", "--no-shutdown"],
            "error: --tls-ca: a value is required",
        ),
    ] {
        let out = run(args);
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
        assert!(out.stderr.starts_with(says), "{args:?}: {}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{args:?}: {}", out.stderr);
    }
    assert!(!std::path::Path::new("--echo").exists());
}

/// bench's flags too: a negative number is the flag's bad value, named,
/// not an unknown argument `-1`.
#[test]
fn a_bad_bench_flag_is_one_line_naming_it() {
    for (args, says) in [
        (
            &["bench", "127.0.0.1:9", "--conns", "-1"][..],
            "error: --conns: invalid value '-1'",
        ),
        (
            &["bench", "127.0.0.1:9", "--duration", "-1s"],
            "error: --duration: ",
        ),
        (
            &["bench", "127.0.0.1:9", "--rate", "-inf"],
            "error: --rate: ",
        ),
        (&["bench", "127.0.0.1:9", "--size", "-5"], "error: --size: "),
    ] {
        let out = run(args);
        assert_eq!(out.code, Some(2), "{args:?}: {}", out.stderr);
        assert!(out.stderr.starts_with(says), "{args:?}: {}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{args:?}: {}", out.stderr);
    }
}

/// `0.1ns` is not zero to a person, but would round to a zero `Duration`,
/// which means "off": refused. Only `0` and `off` switch a time-out off.
#[test]
fn a_duration_that_rounds_to_zero_is_refused() {
    let out = run(&["serve", "--idle-timeout", "0.1ns"]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr
            .starts_with("error: --idle-timeout: invalid duration '0.1ns'"),
        "{}",
        out.stderr
    );
    let out = run(&["send", "127.0.0.1:9", "--timeout", "0.1ns", "--data", "x"]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.starts_with("error: --timeout: "),
        "{}",
        out.stderr
    );
}

/// Slips a user coming from other tools makes get a hint at the right
/// spelling, not a misleading one.
#[test]
fn misspelled_addresses_get_a_useful_hint() {
    let port = run(&["serve", "--port", "10001"]);
    assert_eq!(port.code, Some(2));
    assert!(
        port.stderr.contains("--listen 127.0.0.1:10001"),
        "{}",
        port.stderr
    );
    assert!(!port.stderr.contains("--format"), "{}", port.stderr);

    let positional = run(&["serve", "127.0.0.1:10001"]);
    assert_eq!(positional.code, Some(2));
    assert!(
        positional.stderr.contains("--listen 127.0.0.1:10001"),
        "{}",
        positional.stderr
    );

    let scheme = run(&["serve", "--listen", "tcp:127.0.0.1:0"]);
    assert_eq!(scheme.code, Some(2));
    assert!(
        scheme.stderr.contains("tcp://127.0.0.1:0"),
        "{}",
        scheme.stderr
    );
    assert!(!scheme.stderr.contains("brackets"), "{}", scheme.stderr);

    let url = run(&["send", "http://127.0.0.1:8000/"]);
    assert_eq!(url.code, Some(2));
    assert!(url.stderr.contains("--http"), "{}", url.stderr);
    assert!(!url.stderr.contains("udp"), "{}", url.stderr);
    // bench has no `--http`: it is not offered one.
    let bench_url = run(&["bench", "http://127.0.0.1:8000/"]);
    assert_eq!(bench_url.code, Some(2));
    assert!(
        bench_url.stderr.contains("bench takes HOST:PORT"),
        "{}",
        bench_url.stderr
    );
    assert!(!bench_url.stderr.contains("--http"), "{}", bench_url.stderr);

    // A port alone: the host is what is missing, for serve and send alike.
    let bare = run(&["serve", "--listen", "10001"]);
    assert_eq!(bare.code, Some(2));
    assert_eq!(
        bare.stderr,
        "error: --listen: invalid address '10001': missing host (for this machine only: 127.0.0.1:10001)\n"
    );
    let bare_send = run(&["send", "10001"]);
    assert_eq!(bare_send.code, Some(2));
    assert!(
        bare_send.stderr.contains("missing host"),
        "{}",
        bare_send.stderr
    );

    // A misspelled subcommand gets clap's suggestion, on the same line.
    let serv = run(&["serv"]);
    assert_eq!(serv.code, Some(2));
    assert_eq!(
        serv.stderr,
        "error: unrecognized subcommand 'serv' (did you mean 'serve'?)\n"
    );

    for out in [
        port, positional, scheme, url, bench_url, bare, bare_send, serv,
    ] {
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    }
}

/// A scoped IPv6 address keeps its scope: `[::1%lo]:0` is served, and a
/// client reaches it.
#[test]
fn scoped_ipv6_listen_address_is_served() {
    let probe = std::net::TcpListener::bind("[::1]:0");
    if !available("IPv6 loopback", probe.is_ok()) {
        return;
    }
    drop(probe);
    let mut child = selectd(&["serve", "--listen", "[::1%lo]:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut line).expect("listening line");
    let addr = line
        .trim()
        .strip_prefix("listening on tcp://")
        .unwrap_or_else(|| panic!("{line}"))
        .to_string();
    assert!(addr.starts_with("[::1"), "{addr}");
    let mut client = std::net::TcpStream::connect(
        addr.parse::<std::net::SocketAddr>()
            .unwrap_or_else(|e| panic!("{addr}: {e}")),
    )
    .expect("connect");
    client.write_all(b"stop\n").expect("stop");
    assert_eq!(wait_bounded(&mut child, RUN_LIMIT), Some(0));
}

// ---- help, man pages, completions -------------------------------------------

/// `serve --help` says what the flags cannot: that `--allow-remote-stop`
/// covers `stats` as well as `stop`, the line commands, the signals, and
/// the exit codes.
#[test]
fn serve_help_lists_commands_signals_and_exit_codes() {
    let out = run(&["serve", "--help"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let help = out.stdout;
    let remote = help
        .lines()
        .skip_while(|line| !line.contains("--allow-remote-stop"))
        .take(2)
        .collect::<String>();
    assert!(
        remote.contains("stop") && remote.contains("stats"),
        "{remote}"
    );
    for word in [
        "stop ",
        "disconnect",
        "stats ",
        "SIGINT",
        "SIGTERM",
        "second one",
        "Exit codes",
        "2  usage",
    ] {
        assert!(help.contains(word), "{word:?} missing from:\n{help}");
    }
    let send = run(&["send", "--help"]);
    assert!(send.stdout.contains("5  timed out"), "{}", send.stdout);
    assert!(send.stdout.contains("tcp://HOST:PORT"), "{}", send.stdout);
}

/// `selectd man --dir DIR` writes every page that `selectd(1)` names, so the
/// main page points at no page that is missing; and the help text's tables
/// keep their lines (not refilled into paragraphs).
#[test]
fn man_dir_writes_every_page_the_main_page_names() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let out = run(&["man", "--dir", dir.path().to_str().expect("utf-8")]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let main = std::fs::read_to_string(dir.path().join("selectd.1")).expect("selectd.1");
    let named: Vec<String> = main
        .lines()
        .filter_map(|line| line.strip_prefix("\\fBselectd\\-"))
        .filter_map(|rest| rest.split_once("\\fR(1)"))
        .map(|(name, _)| name.to_string())
        .collect();
    assert!(named.len() >= 4, "{main}");
    for name in &named {
        let page = dir.path().join(format!("selectd-{name}.1"));
        assert!(page.exists(), "selectd(1) names {name}, not written");
    }
    assert!(!named.contains(&"help".to_string()), "{named:?}");
    let serve = std::fs::read_to_string(dir.path().join("selectd-serve.1")).expect("page");
    assert!(serve.contains("\\fIADDR\\fR]..."), "{serve}");
    assert!(
        serve.contains("\n  stop        stop the server"),
        "the line-command table lost its layout: {serve}"
    );

    let missing = run(&["man", "--dir", "/nonexistent/man1"]);
    assert_eq!(missing.code, Some(1));
    assert_eq!(missing.stderr.lines().count(), 1, "{}", missing.stderr);
}

/// `selectd man` and `selectd man serve` print roff that groff renders
/// without a warning, with the flags and the after-help text in it.
#[test]
fn man_pages_render_with_groff() {
    if !available("groff", has("groff")) {
        return;
    }
    for (page, expected) in [
        (None, "completions"),
        (Some("serve"), "--allow-remote-stop"),
        (Some("send"), "--timeout"),
        (Some("bench"), "--conns"),
    ] {
        let mut args = vec!["man"];
        args.extend(page);
        let out = run(&args);
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        let mut groff = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn groff");
        groff
            .stdin
            .take()
            .expect("stdin")
            .write_all(out.stdout.as_bytes())
            .expect("feed groff");
        let checked = groff.wait_with_output().expect("groff");
        assert!(checked.status.success(), "{page:?}");
        let warnings = String::from_utf8_lossy(&checked.stderr);
        assert!(warnings.is_empty(), "{page:?}: {warnings}");

        let text = Command::new("sh")
            .args(["-c", "groff -man -Tutf8 -P-cbou"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                child
                    .stdin
                    .take()
                    .expect("stdin")
                    .write_all(out.stdout.as_bytes())?;
                child.wait_with_output()
            })
            .expect("render");
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(text.contains(expected), "{page:?}: {text}");
    }
    let unknown = run(&["man", "nope"]);
    assert_eq!(unknown.code, Some(2));
    assert_eq!(unknown.stderr.lines().count(), 1, "{}", unknown.stderr);
}

/// The bash completion script is valid bash (`bash -n`) and completes the
/// subcommands and serve's flags; the others are generated too.
#[test]
fn completion_scripts_are_generated() {
    let bash = run(&["completions", "bash"]);
    assert_eq!(bash.code, Some(0), "{}", bash.stderr);
    assert!(bash.stdout.contains("--idle-timeout"), "{}", bash.stdout);
    if available("bash", has("bash")) {
        let mut check = Command::new("bash")
            .arg("-n")
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("bash -n");
        check
            .stdin
            .take()
            .expect("stdin")
            .write_all(bash.stdout.as_bytes())
            .expect("feed bash");
        let checked = check.wait_with_output().expect("bash");
        assert!(
            checked.status.success(),
            "{}",
            String::from_utf8_lossy(&checked.stderr)
        );
    }
    for shell in ["zsh", "fish", "powershell"] {
        let out = run(&["completions", shell]);
        assert_eq!(out.code, Some(0), "{shell}: {}", out.stderr);
        assert!(out.stdout.contains("serve"), "{shell}");
    }
    // `selectd man <TAB>` offers the page names.
    let man_line = bash
        .stdout
        .lines()
        .skip_while(|line| !line.contains("selectd__subcmd__man)"))
        .find(|line| line.contains("opts="))
        .unwrap_or_default()
        .to_string();
    for page in ["serve", "send", "bench", "--dir"] {
        assert!(man_line.contains(page), "{page}: {man_line}");
    }
    let bad = run(&["completions", "tcsh"]);
    assert_eq!(bad.code, Some(2));
    assert_eq!(bad.stderr.lines().count(), 1, "{}", bad.stderr);
}

/// A man page or a completion script that cannot be written (stdout on a
/// full disk) is an error, exit 1, never a panic or a silent success; a
/// reader that stops early (`| head`) is not.
#[test]
fn man_and_completions_report_a_failed_stdout() {
    for args in [&["completions", "bash"][..], &["man"], &["man", "send"]] {
        let full = std::fs::File::create("/dev/full").expect("/dev/full");
        let out = selectd(args)
            .stdin(Stdio::null())
            .stdout(full)
            .output()
            .expect("run selectd");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(
            stderr, "error: cannot write standard output: No space left on device (os error 28)\n",
            "{args:?}"
        );

        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let closed = selectd(args)
            .stdin(Stdio::null())
            .stdout(writer)
            .output()
            .expect("run selectd");
        assert_eq!(
            closed.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&closed.stderr)
        );
    }
}

// ---- stderr a closed pipe ------------------------------------------------------

/// `selectd ARGS` with stderr the write end of a pipe whose read end is
/// already closed: every diagnostic fails with `EPIPE`.
fn with_closed_stderr(args: &[&str]) -> std::process::Child {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    selectd(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(writer)
        .spawn()
        .expect("spawn selectd")
}

/// With stderr gone, `serve --listen bad` still exits 2 (usage) and `send`
/// to a closed port still exits 4: the exit code carries the outcome, and
/// a failed diagnostic is no panic (101).
#[test]
fn closed_stderr_keeps_the_documented_exit_codes() {
    let mut bad = with_closed_stderr(&["serve", "--listen", "bad"]);
    assert_eq!(wait_bounded(&mut bad, RUN_LIMIT), Some(2));

    let mut bad_flag = with_closed_stderr(&["serve", "--backlog", "x"]);
    assert_eq!(wait_bounded(&mut bad_flag, RUN_LIMIT), Some(2));

    let closed = support::closed_port();
    let mut refused = with_closed_stderr(&["send", &closed, "--data", "x"]);
    assert_eq!(wait_bounded(&mut refused, RUN_LIMIT), Some(4));
}

/// A server whose stderr is gone still starts (its `listening on` line is
/// lost), serves, and exits 0 on `stop`.
#[test]
fn serve_runs_and_stops_with_stderr_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.sock");
    let listen = format!("unix:{}", path.display());
    let mut server = with_closed_stderr(&["serve", "--listen", &listen]);
    let mut client = None;
    for _ in 0..2000 {
        if let Ok(stream) = UnixStream::connect(&path) {
            client = Some(stream);
            break;
        }
        if let Some(status) = server.try_wait().expect("try_wait") {
            panic!("serve exited early: {status}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut client = client.expect("serve never listened");
    client.write_all(b"hello\nstop\n").expect("write");
    assert_eq!(wait_bounded(&mut server, RUN_LIMIT), Some(0));
}
