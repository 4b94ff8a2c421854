//! Every command block in the README and in `docs/` runs, as written.
//!
//! A reader copies a block into a shell and expects it to work. This test
//! does the same with every block, so an example that races, leaves a server
//! running, or names a flag that changed fails here first.
//!
//! # The convention (for writers)
//!
//! - A block of commands is fenced as ` ```sh `, and holds only what a reader
//!   types: no `$ ` prompts. Output is shown as a `# ...` comment, or in a
//!   ` ```text ` block after it. Every fenced block is tagged; `console`,
//!   `bash`, `shell` and untagged fences are refused (use `sh` or `text`).
//! - Each `sh` block runs with `bash -e -o pipefail`, in a fresh directory
//!   shared by the blocks of the same file (one reader's session), with
//!   `HOME` a fresh directory too, stdin empty, no `RUST_LOG`, `MANPATH`
//!   or systemd variables, and at most 30 s. It must exit 0.
//! - `selectd` is on `PATH` as `~/.cargo/bin/selectd` (where `cargo install`
//!   puts it), the binary under test; `/usr/sbin` and `/sbin` end `PATH`.
//!   `cargo run [--release] [--example NAME] -- ARGS` runs the binary or
//!   example that this test run built (a release build of its own would
//!   take minutes); any other `cargo` command fails, so mark such a block
//!   `skip`.
//! - A block that starts a server stops it (`stop`, `kill $!`), as the docs
//!   must show the reader: a process still running 10 s after the block is
//!   done fails the block, and is killed.
//! - Lines directly above the fence, each `<!-- doc-test: DIRECTIVE -->`
//!   (invisible once rendered; several directives may share a line,
//!   separated by `;`), say more:
//!   - `skip (REASON)`: not run (`cargo install`, `sudo`, `systemctl`, the
//!     network, minutes of work); the reason is printed.
//!   - `needs PROG...`: run only where each PROG is on `PATH`; otherwise
//!     skipped with the reason printed, except under `CI=true`, where a
//!     missing program fails (add it to `.ci/run`'s `missing+=` list).
//!   - `setup COMMAND`: runs before the block, unseen by the reader: what
//!     the text assumes the reader has (`head -c 3M /dev/urandom > big.iso`).
//!   - `background "TEXT"`: the reader's second terminal. The block starts
//!     in the background; once its output shows TEXT (within 20 s) the next
//!     block runs, and after that one the background block must have ended
//!     by itself (within 10 s) with status 0: the next block stops it.
//!   - `contains "TEXT"` / `lacks "TEXT"`: the block's output (stdout and
//!     stderr together) must hold, or must not hold, TEXT.
//!   - `file NAME` (on a non-`sh` block, such as a config file): its text is
//!     written to NAME in the session's directory, for later blocks to use.
//!
//! `docs/writing-docs.md` says the same for writers. Blocks run one at a
//! time, and one runner at a time per machine (a lock file in the temporary
//! directory), since the docs use fixed ports (10001, 7000, 8000).

#[path = "doc_commands/blocks.rs"]
mod blocks;
mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use blocks::{Block, Directive, parse};
use common::{in_ci, wait_for};

/// The longest a block may run.
const BLOCK_LIMIT: Duration = Duration::from_secs(30);
/// How long a background block may take to show its text.
const BACKGROUND_READY: Duration = Duration::from_secs(20);
/// How long processes a block started may take to end once it is done.
const LINGER_LIMIT: Duration = Duration::from_secs(10);
/// How long to wait for another runner on this machine.
const LOCK_LIMIT: Duration = Duration::from_secs(300);

/// The ports the docs' examples listen on, on 127.0.0.1.
const DOC_PORTS: [u16; 4] = [10001, 10002, 7000, 8000];

/// The documents whose blocks run: the README and every page in docs/.
fn documents() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pages: Vec<PathBuf> = fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    pages.sort();
    let mut all = vec![root.join("README.md")];
    all.extend(pages);
    all
}

fn relative(path: &Path) -> String {
    path.strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The directories a block's `PATH` ends with, after the inherited ones:
/// where administrators' programs live (`haproxy` is in /usr/sbin), which a
/// user's `PATH` may lack.
const SYSTEM_DIRS: [&str; 2] = ["/usr/sbin", "/sbin"];

/// The inherited `PATH`, then [`SYSTEM_DIRS`].
fn search_path() -> Vec<PathBuf> {
    let inherited = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&inherited)
        .chain(SYSTEM_DIRS.iter().map(PathBuf::from))
        .collect()
}

/// Whether `program` is on the blocks' `PATH`.
fn on_path(program: &str) -> bool {
    search_path().iter().any(|dir| {
        fs::metadata(dir.join(program))
            .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    })
}

/// Where the blocks find `selectd`, the examples and the `cargo` stand-in.
struct Tools {
    /// Directories to put first on `PATH`, besides `~/.cargo/bin`.
    shim_dir: PathBuf,
}

fn bin_dir() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_selectd"))
        .parent()
        .expect("the selectd binary has a directory")
}

/// Examples that start other examples: the ladder runs each rung's server.
const EXAMPLES_RUN_BY: &[(&str, &[&str])] =
    &[("ladder", &["select_server", "poll_server", "mio_echo"])];

/// The examples the blocks run (`cargo run ... --example NAME`), and those
/// that these run in turn.
fn examples_named(all: &BTreeMap<String, Vec<Block>>) -> Vec<String> {
    let mut names: Vec<String> = all
        .values()
        .flatten()
        .filter(|block| block.tag == "sh")
        .flat_map(|block| {
            let words: Vec<String> = block.text.split_whitespace().map(str::to_string).collect();
            words
                .windows(2)
                .filter(|pair| pair[0] == "--example")
                .map(|pair| pair[1].clone())
                .collect::<Vec<_>>()
        })
        .collect();
    for (example, runs) in EXAMPLES_RUN_BY {
        if names.iter().any(|name| name == example) {
            names.extend(runs.iter().map(|name| name.to_string()));
        }
    }
    names.sort();
    names.dedup();
    names
}

/// Builds the examples the blocks run when this run of `cargo test` did
/// not (`cargo test --test doc_commands` alone), with the same cargo,
/// target and profile: only those, so the runner stays quick.
fn ensure_examples(names: &[String]) {
    let examples = bin_dir().join("examples");
    let missing: Vec<&String> = names
        .iter()
        .filter(|name| !examples.join(name).exists())
        .collect();
    if missing.is_empty() {
        return;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let profile = bin_dir().file_name().expect("a profile directory");
    let mut command = Command::new(cargo);
    command
        .arg("build")
        .arg("--manifest-path")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(bin_dir().parent().expect("a target directory"))
        .stdin(Stdio::null());
    if profile == "release" {
        command.arg("--release");
    }
    for name in missing {
        command.args(["--example", name]);
    }
    let status = command.status().expect("run cargo");
    assert!(status.success(), "cargo build of the examples: {status}");
}

/// The `cargo` that blocks see: `cargo run` runs what is built.
fn write_cargo_shim(dir: &Path) {
    let selectd = env!("CARGO_BIN_EXE_selectd");
    let examples = bin_dir().join("examples");
    let script = format!(
        r#"#!/bin/sh
# cargo, as tests/doc_commands.rs runs the docs: `cargo run` runs the binary
# or example that `cargo test` built. Anything else is not run here.
if [ "$1" != run ]; then
    echo "doc-test: only 'cargo run' runs here; mark this block skip" >&2
    exit 97
fi
shift
program='{selectd}'
while [ $# -gt 0 ]; do
    case "$1" in
        --release|-q|--quiet) shift ;;
        --example) program='{examples}'/"$2"; shift 2 ;;
        --) shift; break ;;
        *) echo "doc-test: cargo run $1: arguments to the program go after --" >&2; exit 97 ;;
    esac
done
exec "$program" "$@"
"#,
        examples = examples.display()
    );
    let path = dir.join("cargo");
    fs::write(&path, script).expect("write the cargo shim");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod the shim");
}

/// One reader's session: a working directory and a home.
struct Session {
    _root: tempfile::TempDir,
    work: PathBuf,
    home: PathBuf,
    path: std::ffi::OsString,
    counter: usize,
}

impl Session {
    fn new(tools: &Tools) -> Session {
        let root = tempfile::tempdir().expect("a temporary directory");
        let work = root.path().join("work");
        let home = root.path().join("home");
        let cargo_bin = home.join(".cargo/bin");
        fs::create_dir_all(&work).expect("mkdir work");
        fs::create_dir_all(&cargo_bin).expect("mkdir ~/.cargo/bin");
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_selectd"), cargo_bin.join("selectd"))
            .expect("link selectd into ~/.cargo/bin");
        let path = std::env::join_paths(
            [cargo_bin, tools.shim_dir.clone()]
                .into_iter()
                .chain(search_path()),
        )
        .expect("a PATH");
        Session {
            _root: root,
            work,
            home,
            path,
            counter: 0,
        }
    }

    /// Starts `script` in its own process group, its stdout and stderr
    /// both going to a file, which is returned with the child.
    fn start(&mut self, script: &str) -> (Child, PathBuf) {
        self.counter += 1;
        let log = self
            .home
            .parent()
            .expect("the session root")
            .join(format!("block-{}.out", self.counter));
        let out = File::create(&log).expect("create the block's log");
        let err = out.try_clone().expect("clone the log");
        let child = Command::new("bash")
            .args(["-e", "-o", "pipefail", "-c", script])
            .current_dir(&self.work)
            .env("HOME", &self.home)
            .env("PATH", &self.path)
            // A reader's fresh shell: no logging asked for, no systemd
            // around, man pages found the way the docs say (by PATH), and no
            // pager waiting for a key.
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDNAMES")
            .env_remove("MANPATH")
            .env("PAGER", "cat")
            .env("MANPAGER", "cat")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .expect("run bash");
        (child, log)
    }
}

/// The processes of group `pgid` still alive (zombies are dead), each as
/// `PID COMMAND`.
fn group_members(pgid: u32) -> Vec<String> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut members = Vec::new();
    for entry in entries.flatten() {
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `PID (COMM) STATE PPID PGRP ...`; COMM may hold spaces and ')'.
        let Some((head, tail)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = tail.split_whitespace().collect();
        if fields.len() < 3 || fields[0] == "Z" || fields[0] == "X" {
            continue;
        }
        if fields[2].parse::<u32>().ok() == Some(pgid) {
            let pid = head.split(" (").next().unwrap_or("?");
            let command = fs::read_to_string(entry.path().join("cmdline"))
                .unwrap_or_default()
                .replace('\0', " ");
            members.push(format!("{pid} {}", command.trim()));
        }
    }
    members
}

fn kill_group(pgid: u32) {
    // SAFETY: kill(2) with a negative pid signals a process group; no memory
    // is involved. The group is one this test created (process_group(0)).
    unsafe {
        libc::kill(-(pgid as i32), libc::SIGKILL);
    }
}

/// Waits for `child` (bounded by `limit`); `None` if it is still running.
fn wait_child(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if start.elapsed() >= limit {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the group of `pgid` is empty, bounded by `limit`; kills
/// what is left and says what that was.
fn settle_group(pgid: u32, limit: Duration) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let members = group_members(pgid);
        if members.is_empty() {
            return Ok(());
        }
        if start.elapsed() >= limit {
            kill_group(pgid);
            return Err(format!(
                "left running {limit:?} after the block (stop it in the docs): {}",
                members.join("; ")
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn read_log(log: &Path) -> String {
    String::from_utf8_lossy(&fs::read(log).unwrap_or_default()).into_owned()
}

/// What the block's `contains`/`lacks` directives say of its output.
fn check_output(block: &Block, output: &str) -> Result<(), String> {
    for directive in &block.directives {
        match directive {
            Directive::Contains(text) if !output.contains(text.as_str()) => {
                return Err(format!("its output lacks {text:?}"));
            }
            Directive::Lacks(text) if output.contains(text.as_str()) => {
                return Err(format!("its output holds {text:?}"));
            }
            _ => {}
        }
    }
    Ok(())
}

fn script_of(block: &Block) -> String {
    let mut script = String::new();
    for directive in &block.directives {
        if let Directive::Setup(command) = directive {
            let _ = writeln!(script, "{command}");
        }
    }
    script.push_str(&block.text);
    script
}

/// A block running in the background, waiting for its partner to stop it.
struct Background {
    place: String,
    child: Child,
    log: PathBuf,
    block: Block,
}

/// Why a block does not run here, if it does not.
fn reason_to_skip(block: &Block) -> Result<Option<String>, String> {
    for directive in &block.directives {
        match directive {
            Directive::Skip(reason) => return Ok(Some(reason.clone())),
            Directive::Needs(programs) => {
                let missing: Vec<&str> = programs
                    .iter()
                    .map(String::as_str)
                    .filter(|program| !on_path(program))
                    .collect();
                if !missing.is_empty() {
                    let reason = format!("needs {} (not on PATH)", missing.join(", "));
                    if in_ci() {
                        return Err(format!(
                            "{reason}; CI is set, so it may not skip: add it to .ci/run"
                        ));
                    }
                    return Ok(Some(reason));
                }
            }
            _ => {}
        }
    }
    Ok(None)
}

/// Runs the blocks of one document; returns the failures.
fn run_document(name: &str, blocks: &[Block], tools: &Tools) -> Vec<String> {
    let mut failures = Vec::new();
    let mut session = Session::new(tools);
    let mut background: Option<Background> = None;
    for block in blocks {
        if block.tag != "sh" {
            for directive in &block.directives {
                if let Directive::File(file) = directive {
                    fs::write(session.work.join(file), &block.text).expect("write the file");
                }
            }
            continue;
        }
        match reason_to_skip(block) {
            Ok(Some(reason)) => {
                eprintln!("skipped {}: {reason}", block.place);
                continue;
            }
            Ok(None) => {}
            Err(problem) => {
                failures.push(format!("{}: {problem}", block.place));
                continue;
            }
        }
        let started = Instant::now();
        let (mut child, log) = session.start(&script_of(block));
        let pgid = child.id();
        if let Some(Directive::Background(text)) = block
            .directives
            .iter()
            .find(|directive| matches!(directive, Directive::Background(_)))
        {
            if let Some(previous) = background.take() {
                failures.push(finish_background(previous));
            }
            let ready = wait_for(BACKGROUND_READY, || {
                read_log(&log).contains(text.as_str()) || child.try_wait().ok().flatten().is_some()
            });
            if ready && read_log(&log).contains(text.as_str()) {
                eprintln!("started {} in the background", block.place);
                background = Some(Background {
                    place: block.place.clone(),
                    child,
                    log,
                    block: block.clone(),
                });
            } else {
                kill_group(pgid);
                let _ = child.wait();
                failures.push(format!(
                    "{}: never showed {text:?}; its output:\n{}",
                    block.place,
                    read_log(&log)
                ));
            }
            continue;
        }
        let status = wait_child(&mut child, BLOCK_LIMIT);
        let mut problems = Vec::new();
        match status {
            None => {
                kill_group(pgid);
                let _ = child.wait();
                problems.push(format!("still running after {BLOCK_LIMIT:?}"));
            }
            Some(status) if !status.success() => problems.push(format!("ended with {status}")),
            Some(_) => {}
        }
        if let Err(problem) = settle_group(pgid, LINGER_LIMIT) {
            problems.push(problem);
        }
        let output = read_log(&log);
        if problems.is_empty()
            && let Err(problem) = check_output(block, &output)
        {
            problems.push(problem);
        }
        if problems.is_empty() {
            eprintln!("ran {} in {:.1?}", block.place, started.elapsed());
        } else {
            failures.push(format!(
                "{}: {}; its output:\n{output}",
                block.place,
                problems.join("; ")
            ));
        }
        if let Some(previous) = background.take() {
            let failure = finish_background(previous);
            if !failure.is_empty() {
                failures.push(failure);
            }
        }
    }
    if let Some(previous) = background.take() {
        let place = previous.place.clone();
        failures.push(format!(
            "{place}: a background block with no block after it to stop it. {}",
            finish_background(previous)
        ));
    }
    failures.retain(|failure| !failure.is_empty());
    if !failures.is_empty() {
        eprintln!("{name}: {} block(s) failed", failures.len());
    }
    failures
}

/// Waits for a background block to end by itself; an empty string if it
/// did, with status 0 and the output its directives ask for.
fn finish_background(mut background: Background) -> String {
    let pgid = background.child.id();
    let status = wait_child(&mut background.child, LINGER_LIMIT);
    let mut problems = Vec::new();
    match status {
        None => {
            kill_group(pgid);
            let _ = background.child.wait();
            problems.push(format!(
                "still running {LINGER_LIMIT:?} after the next block (which should stop it)"
            ));
        }
        Some(status) if !status.success() => problems.push(format!("ended with {status}")),
        Some(_) => {}
    }
    if let Err(problem) = settle_group(pgid, LINGER_LIMIT) {
        problems.push(problem);
    }
    let output = read_log(&background.log);
    if problems.is_empty()
        && let Err(problem) = check_output(&background.block, &output)
    {
        problems.push(problem);
    }
    if problems.is_empty() {
        String::new()
    } else {
        format!(
            "{} (in the background): {}; its output:\n{output}",
            background.place,
            problems.join("; ")
        )
    }
}

/// Holds the machine-wide lock until dropped: the docs use fixed ports, so
/// two runners (two checkouts tested at once) must take turns.
struct MachineLock {
    _file: File,
}

impl MachineLock {
    fn take() -> MachineLock {
        use std::os::fd::AsRawFd;
        let path = std::env::temp_dir().join("selectd-doc-commands.lock");
        let file = File::create(&path).expect("create the lock file");
        let start = Instant::now();
        loop {
            // SAFETY: flock(2) on a descriptor this File owns for its life.
            let taken =
                unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
            if taken {
                return MachineLock { _file: file };
            }
            assert!(
                start.elapsed() < LOCK_LIMIT,
                "another doc runner held {} for {LOCK_LIMIT:?}",
                path.display()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}

fn parsed_documents() -> BTreeMap<String, Vec<Block>> {
    let mut all = BTreeMap::new();
    let mut problems = Vec::new();
    for path in documents() {
        let name = relative(&path);
        let text = fs::read_to_string(&path).expect("readable");
        match parse(&name, &text) {
            Ok(blocks) => {
                all.insert(name, blocks);
            }
            Err(mut found) => problems.append(&mut found),
        }
    }
    assert!(
        problems.is_empty(),
        "the docs break the doc-test convention (see tests/doc_commands.rs):\n{}",
        problems.join("\n")
    );
    all
}

/// Every fence in the README and docs/ follows the convention: tagged,
/// commands as `sh` without prompts, markers that parse and sit on a fence.
#[test]
fn docs_follow_the_block_convention() {
    let all = parsed_documents();
    let commands: usize = all
        .values()
        .map(|blocks| blocks.iter().filter(|block| block.tag == "sh").count())
        .sum();
    assert!(commands >= 10, "only {commands} sh blocks found");
}

/// Every `sh` block of the README and docs/ runs as written and exits 0,
/// leaving nothing running; what cannot run here says why.
#[test]
fn every_command_block_runs_as_written() {
    let all = parsed_documents();
    ensure_examples(&examples_named(&all));
    let _lock = MachineLock::take();
    let busy: Vec<u16> = DOC_PORTS
        .into_iter()
        .filter(|port| std::net::TcpListener::bind(("127.0.0.1", *port)).is_err())
        .collect();
    assert!(
        busy.is_empty(),
        "the docs' examples listen on 127.0.0.1 ports {DOC_PORTS:?}, and {busy:?} is taken \
         by another program (a selectd you started?): stop it and run again"
    );
    let shims = tempfile::tempdir().expect("a temporary directory");
    write_cargo_shim(shims.path());
    let tools = Tools {
        shim_dir: shims.path().to_path_buf(),
    };
    let mut failures = Vec::new();
    for (name, blocks) in &all {
        failures.extend(run_document(name, blocks, &tools));
    }
    assert!(
        failures.is_empty(),
        "{} doc block(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
