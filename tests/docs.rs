//! The docs name code that exists.
//!
//! The README and the pages in `docs/` cite the code by name: files
//! (`src/serve/listen.rs`, `connection/mod.rs`), types and their members
//! (`Connection::on_readable`, `CloseReason::Idle`), constants
//! (`READ_BUDGET`), often as a link to the file that holds them:
//! ``[`EventLoop::run`](../src/serve/event_loop/mod.rs)``. When code moves or
//! is renamed, these tests list every citation that went stale, with its
//! line, so the guide cannot quietly teach names that are gone.
//!
//! What counts as a citation (only inline code, never fenced blocks):
//!
//! - a path (`src/...`, `tests/...`, a name ending in `.rs`, ...): the file
//!   exists; a bare file name (`listen.rs`) names a file somewhere in the
//!   crate, and a link's file name text is the file it links to;
//! - a Rust path (`Type::member`, `module::function`, inside any span): when
//!   its head is a type or module of this crate, every part is defined here
//!   (a `fn`, type, variant, field, `const`...); heads from elsewhere (`io`,
//!   `mio::Poll`, `Interest`) are not this crate's to check;
//! - a lone `CamelCase` or `SCREAMING_CASE` name: defined in this crate, or
//!   an environment variable the code or scripts read, or one of the
//!   outside names listed in [`OUTSIDE_NAMES`] (system constants, std and
//!   mio names);
//! - `` `name` in `file.rs` `` and a link's text: defined in that file.
//!
//! `docs/writing-docs.md` says the same for writers.

#[path = "docs/source.rs"]
mod source;

use std::fs;
use std::path::{Path, PathBuf};

use source::{leading_ident, source};

/// The teaching guide: it must cite a lot of code, through links.
const GUIDE: &str = "docs/select-to-mio.md";

/// Names the docs cite from outside this crate: std, mio, socket2, the OS,
/// the PROXY protocol, the notes' Python. A name here is never checked; a
/// system constant with a known prefix (see [`is_system_constant`]) need
/// not be listed.
const OUTSIDE_NAMES: &[&str] = &[
    // std and mio types, variants, constants
    "Arc",
    "SCHED_BATCH",
    // TLS messages, OpenSSL and rustls names the TLS docs compare with
    "ClientHello",
    "ServerHello",
    "SSL_read",
    "PemObject",
    "AtomicBool",
    "AtomicU64",
    "AtomicUsize",
    "Box",
    "Condvar",
    "Duration",
    "File",
    "HashMap",
    "Instant",
    "IoSlice",
    "Mutex",
    "Option",
    "Ordering",
    "Path",
    "PathBuf",
    "Registry",
    "Result",
    "SocketAddr",
    "String",
    "SystemTime",
    "UdpSocket",
    "VecDeque",
    "BrokenPipe",
    "BufReader",
    "BufWriter",
    "ConnectionAborted",
    "ConnectionRefused",
    "ConnectionReset",
    "Drop",
    "Events",
    "Interrupted",
    "None",
    "Ok",
    "Poll",
    "PRIORITY",
    "READABLE",
    "Some",
    "TcpListener",
    "TcpStream",
    "TimedOut",
    "Token",
    "UnixListener",
    "UnixStream",
    "Vec",
    "Waker",
    "WouldBlock",
    "WRITABLE",
    // std, mio and socket2 types whose members the docs name
    "Domain",
    "Event",
    "Interest",
    "Shutdown",
    "Socket",
    "Type",
    // system calls and kernel interfaces, in the OS's spelling
    "epoll_wait",
    "fd_set",
    "io_uring",
    // the Linux kernel's own functions and types (fs/select.c,
    // fs/eventpoll.c, net/ipv4/tcp.c), for the guide's select/poll/epoll
    // chapter
    "copy_from_user",
    "core_sys_select",
    "do_poll",
    "do_pollfd",
    "do_select",
    "do_sys_poll",
    "ep_insert",
    "ep_item_poll",
    "ep_poll",
    "ep_poll_callback",
    "ep_ptable_queue_proc",
    "ep_send_events",
    "get_fd_set",
    "poll_freewait",
    "poll_list",
    "poll_schedule_timeout",
    "set_fd_set",
    "tcp_poll",
    "vfs_poll",
    // a counter as `stats` prints it, made from its close reason's name
    "closed_proxy_header",
    // /proc fields
    "MemAvailable",
    "VmRSS",
    // the PROXY protocol's commands, HTTP and redis words, the notes'
    // Python constant
    "LOCAL",
    "UNKNOWN",
    "POST",
    "QUIT",
    "TIMEOUT",
    // environment variables of the shell and of CI
    "CI",
    "MANPATH",
    "PATH",
    "RUST_LOG",
];

/// Prefixes of the OS's constants and variables (sockets, errors, signals,
/// epoll, systemd's protocol), cited by the docs and not defined here.
fn is_system_constant(name: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "POLL",
        "CLOCK_",
        "SOMAXCONN",
        "F_",
        "PR_",
        "AF_",
        "SOCK_",
        "SO_",
        "SOL_",
        "SHUT_",
        "MSG_",
        "SCM_",
        "TCP_",
        "IP_",
        "IPV6_",
        "EPOLL",
        "SIG",
        "O_",
        "FD_",
        "RLIMIT_",
        "LISTEN_",
        "NOTIFY_",
        "TIME_WAIT",
    ];
    let errno = name.len() >= 3
        && name.starts_with('E')
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    errno || PREFIXES.iter().any(|prefix| name.starts_with(prefix))
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The pages whose citations are checked: the README and docs/*.md.
fn pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    pages.sort();
    pages.insert(0, root().join("README.md"));
    pages
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

// ---- citations ------------------------------------------------------------------

/// One inline code span: where it is, its text, and the link it is the text
/// of, if any.
struct Citation {
    place: String,
    text: String,
    /// The link's target, repo-relative, when the span is a link's text.
    link: Option<PathBuf>,
    /// A file named right after it: `` `NAME` in `file.rs` `` or
    /// `` `NAME` in [`file.rs`](...) ``.
    in_file: Option<PathBuf>,
}

/// The inline code spans of one page, outside fenced blocks.
fn citations(page: &Path) -> Vec<Citation> {
    let text = fs::read_to_string(page).expect("readable");
    let base = page.parent().expect("a directory").to_path_buf();
    citations_in(&relative(page), &base, &text)
}

/// The inline code spans of `text`, a page called `name` in directory
/// `base` (for its relative links).
fn citations_in(name: &str, base: &Path, text: &str) -> Vec<Citation> {
    let mut found = Vec::new();
    // The open fence's marker, and whether it is a diagram: a sequence
    // diagram's `Type::member` names are citations too.
    let mut fence: Option<(&str, bool)> = None;
    // The paragraph being read (lines joined by spaces, so that a span or a
    // link that wraps is read whole) and where each of its lines starts.
    let mut paragraph = String::new();
    let mut starts: Vec<(usize, usize)> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let trimmed = line.trim_start();
        if let Some((open, diagram)) = fence {
            if trimmed.starts_with(open) {
                fence = None;
            } else if diagram {
                for path in rust_paths(line) {
                    found.push(Citation {
                        place: format!("{name}:{number}"),
                        text: path.join("::"),
                        link: None,
                        in_file: None,
                    });
                }
            }
            continue;
        }
        let fence_opens = ["```", "~~~"].into_iter().find(|f| trimmed.starts_with(f));
        let new_block = trimmed.is_empty()
            || fence_opens.is_some()
            || trimmed.starts_with(['#', '|', '-', '>'])
            || trimmed.starts_with("<!--");
        if new_block {
            spans_of(name, base, &paragraph, &starts, &mut found);
            paragraph.clear();
            starts.clear();
        }
        if let Some(open) = fence_opens {
            fence = Some((open, trimmed[open.len()..].trim() == "mermaid"));
            continue;
        }
        if !paragraph.is_empty() {
            paragraph.push(' ');
        }
        starts.push((paragraph.len(), number));
        paragraph.push_str(line);
    }
    spans_of(name, base, &paragraph, &starts, &mut found);
    found
}

/// The inline code spans of one paragraph (or list item, or table row).
fn spans_of(
    name: &str,
    base: &Path,
    paragraph: &str,
    starts: &[(usize, usize)],
    found: &mut Vec<Citation>,
) {
    let line_at = |offset: usize| {
        starts
            .iter()
            .rev()
            .find(|(start, _)| *start <= offset)
            .map_or(0, |(_, number)| *number)
    };
    let pieces: Vec<&str> = paragraph.split('`').collect();
    let mut offsets = Vec::with_capacity(pieces.len());
    let mut offset = 0;
    for piece in &pieces {
        offsets.push(offset);
        offset += piece.len() + 1;
    }
    let first = found.len();
    // Whether each span is followed by " in " and another span.
    let mut chained = Vec::new();
    // Odd pieces are code (``[`X`](...)`` inside double backticks is read
    // the same way: the double backticks make an empty even piece).
    for at in (1..pieces.len()).step_by(2) {
        if at + 1 >= pieces.len() {
            break; // An unclosed span.
        }
        let span = pieces[at];
        if span.is_empty() {
            continue;
        }
        let after = pieces[at + 1];
        let link = if pieces[at - 1].ends_with('[') {
            after.strip_prefix("](").and_then(|rest| {
                let target = rest.split(')').next()?.split('#').next()?;
                if target.is_empty() || target.contains("://") {
                    return None;
                }
                Some(normalize(&base.join(target)))
            })
        } else {
            None
        };
        let followed_by_in = after == " in " || after == " in [";
        let in_file = followed_by_in
            .then(|| pieces.get(at + 2))
            .flatten()
            .and_then(|file| {
                // A link to a Rust file (in [`EventLoop::run`](../src/...rs)),
                // or a file named bare (in `listen.rs`).
                let target = pieces
                    .get(at + 3)
                    .and_then(|rest| rest.strip_prefix("]("))
                    .and_then(|rest| rest.split(')').next())
                    .map(|target| normalize(&base.join(target)))
                    .filter(|target| target.extension().is_some_and(|ext| ext == "rs"));
                match target {
                    Some(target) => Some(target),
                    None => file.ends_with(".rs").then(|| PathBuf::from(file)),
                }
            });
        chained.push(followed_by_in);
        found.push(Citation {
            place: format!("{name}:{}", line_at(offsets[at])),
            text: span.to_string(),
            link,
            in_file,
        });
    }
    // `X` in `bound_socket` in [`listen.rs`](...): X is in that file too.
    for index in (first..found.len().saturating_sub(1)).rev() {
        let next = &found[index + 1];
        let next_is_name = leading_ident(&next.text) == next.text;
        if found[index].in_file.is_none() && chained[index - first] && next_is_name {
            found[index].in_file = next.in_file.clone();
        }
    }
}

/// `docs/../src/x.rs` → `src/x.rs`, relative to the repository.
fn normalize(path: &Path) -> PathBuf {
    let mut parts: Vec<std::path::Component> = Vec::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                parts.pop();
            }
            std::path::Component::CurDir => {}
            other => parts.push(other),
        }
    }
    let full: PathBuf = parts.iter().collect();
    full.strip_prefix(root())
        .map(Path::to_path_buf)
        .unwrap_or(full)
}

const PATH_DIRS: &[&str] = &[
    "src/",
    "tests/",
    "examples/",
    "docs/",
    "contrib/",
    "benches/",
    "fuzz/",
    ".ci/",
];

fn looks_like_path(span: &str) -> bool {
    !span.contains(char::is_whitespace)
        && !span.contains("://")
        && (PATH_DIRS.iter().any(|dir| span.starts_with(dir))
            || span.ends_with(".rs")
            || span.ends_with(".md"))
}

/// The Rust paths in a span: `A::b`, `a::B::c` (at least two parts).
fn rust_paths(span: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut rest = span;
    loop {
        let ident = leading_ident(rest);
        if !ident.is_empty() && !ident.starts_with(|c: char| c.is_ascii_digit()) {
            current.push(ident.to_string());
            rest = &rest[ident.len()..];
            if let Some(after) = rest.strip_prefix("::") {
                rest = after;
                continue;
            }
        }
        if current.len() >= 2 {
            paths.push(std::mem::take(&mut current));
        }
        current.clear();
        let mut chars = rest.chars();
        if chars.next().is_none() {
            break;
        }
        rest = chars.as_str();
    }
    paths
}

fn is_camel(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase())
        && name.contains(|c: char| c.is_ascii_lowercase())
}

fn is_screaming(name: &str) -> bool {
    name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_uppercase())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Why a citation is stale, if it is.
fn check(citation: &Citation) -> Option<String> {
    let source = source();
    let span = citation.text.trim_end_matches("()");
    // Flags, addresses, attributes, commands: not code names.
    if span.starts_with('-') || span.starts_with('#') || span.contains('[') || span.contains('%') {
        return None;
    }
    if looks_like_path(span) {
        return check_path(citation, span);
    }
    if let Some(target) = &citation.link
        && !source.files.contains(target)
        && !root().join(target).exists()
    {
        return Some(format!(
            "links to {}, which does not exist",
            target.display()
        ));
    }
    let mut problems = Vec::new();
    for path in rust_paths(span) {
        if let Some(problem) = check_rust_path(&path, citation) {
            problems.push(problem);
        }
    }
    if rust_paths(span).is_empty()
        && leading_ident(span) == span
        && let Some(problem) = check_name(span, citation)
    {
        problems.push(problem);
    }
    if let Some(file) = &citation.in_file {
        let files = if file.components().count() > 1 {
            vec![file]
        } else {
            source.files_named(&file.to_string_lossy())
        };
        let name = span.rsplit("::").next().unwrap_or(span);
        if leading_ident(name) == name && !name.is_empty() {
            if !files.iter().any(|file| source.defines_in(file, name)) {
                problems.push(format!("`{name}` is not defined in {}", file.display()));
            }
        } else if is_snippet(span) && !files.iter().any(|file| holds_snippet(file, span)) {
            problems.push(format!("this code is not in {}", file.display()));
        }
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

/// A span that quotes code: punctuation a sentence does not use.
fn is_snippet(span: &str) -> bool {
    span.contains(['(', '{', '=', '!', ';', '.']) && !span.contains("://")
}

/// Whether `file` holds `snippet`, whitespace aside; `...` stands for
/// anything, so each piece between is looked for in order.
fn holds_snippet(file: &Path, snippet: &str) -> bool {
    let squeeze = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
    let Ok(code) = fs::read_to_string(root().join(file)) else {
        return false;
    };
    let code = squeeze(&code);
    let mut from = 0;
    for piece in snippet.split("...") {
        let piece = squeeze(piece);
        if piece.is_empty() {
            continue;
        }
        match code[from..].find(&piece) {
            Some(at) => from += at + piece.len(),
            None => return false,
        }
    }
    true
}

fn check_path(citation: &Citation, span: &str) -> Option<String> {
    let source = source();
    let span = span.trim_end_matches('/');
    if let Some(target) = &citation.link {
        if !root().join(target).exists() {
            return Some(format!(
                "links to {}, which does not exist",
                target.display()
            ));
        }
        // The text names the file it links to: `listen.rs` → .../listen.rs.
        if !target.ends_with(span) {
            return Some(format!("says {span} but links to {}", target.display()));
        }
        return None;
    }
    if citation.text.ends_with('/')
        || span.contains('/') && PATH_DIRS.iter().any(|dir| span.starts_with(dir))
    {
        // A directory the code makes or reads at run time (`fuzz/regressions/`,
        // git-ignored `fuzz/artifacts/`) counts when the code names it.
        let named = || {
            let tail = span.split_once('/').map_or(span, |(_, tail)| tail);
            // `fuzz/artifacts/framing/` is under `/fuzz/artifacts` in .gitignore.
            let parts: Vec<&str> = span.split('/').collect();
            citation.text.ends_with('/')
                && (source.mentions(tail)
                    || (2..parts.len()).any(|n| source.mentions(&parts[..n].join("/"))))
        };
        return (!root().join(span).exists() && !named()).then(|| format!("{span} does not exist"));
    }
    let known = source.files.iter().any(|file| file.ends_with(span));
    (!known).then(|| format!("no file {span} in the repository"))
}

fn check_rust_path(path: &[String], citation: &Citation) -> Option<String> {
    let source = source();
    let joined = path.join("::");
    let head = path[0].as_str();
    let last = path[path.len() - 1].as_str();
    // The crate's own path: `selectd::bench::hgrm`.
    if head == "selectd" {
        let module = path[1..path.len() - 1].join("/");
        let as_module = format!("src/{}", path[1..].join("/"));
        let exists = root().join(format!("{as_module}.rs")).exists()
            || root().join(&as_module).join("mod.rs").exists()
            || source.all.contains(last)
                && (module.is_empty()
                    || root().join("src").join(&module).exists()
                    || root().join(format!("src/{module}.rs")).exists());
        return (!exists).then(|| format!("`{joined}` is not in the crate"));
    }
    if let Some(target) = &citation.link
        && target.extension().is_some_and(|ext| ext == "rs")
    {
        // `datagram::on_readable` linked to datagram.rs: the module is the
        // file itself.
        let module = target
            .file_stem()
            .filter(|stem| *stem != "mod")
            .or_else(|| target.parent().and_then(Path::file_name))
            .and_then(|name| name.to_str())
            .unwrap_or_default();
        let path: Vec<&String> = path.iter().filter(|part| *part != module).collect();
        let head = path.first().map(|part| part.as_str())?;
        let missing: Vec<&&String> = path
            .iter()
            .filter(|part| !source.defines_in(target, part))
            .collect();
        // A type may be defined in another file of the same module
        // (impl blocks); its member must be in the linked file.
        let member_missing = !source.defines_in(target, last);
        let head_missing = !source.all.contains(head);
        if member_missing || head_missing {
            return Some(format!(
                "`{joined}` is not defined in {} (missing: {})",
                target.display(),
                missing
                    .iter()
                    .map(|part| part.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        return None;
    }
    let ours = if head.starts_with(|c: char| c.is_ascii_lowercase()) {
        // A module of this crate (`datagram::on_readable`), or someone else's
        // (`io::ErrorKind`, `std::net`).
        let files = source.module_files(head);
        if files.is_empty() {
            return None;
        }
        return (!files.iter().any(|file| source.defines_in(file, last)))
            .then(|| format!("`{last}` is not defined in module {head}"));
    } else {
        source.types.contains(head)
    };
    if !ours {
        // Someone else's type (`Interest::READABLE`,
        // `TcpStream::connect_timeout`), listed as such; any other head is
        // a type this crate no longer has.
        return (!OUTSIDE_NAMES.contains(&head)).then(|| {
            format!(
                "`{joined}`: no type {head} in this crate (if it is someone else's, add it to OUTSIDE_NAMES in tests/docs.rs)"
            )
        });
    }
    // `Type::member`: the member is defined where the type is defined or
    // implemented; a longer path (`Phase::Closing::..`) checks each part.
    let member = path[1].as_str();
    if !source.member_of(head, member) {
        return Some(format!("`{joined}`: {head} has no {member}"));
    }
    let missing: Vec<&str> = path[2..]
        .iter()
        .map(String::as_str)
        .filter(|part| !source.all.contains(*part))
        .collect();
    (!missing.is_empty()).then(|| format!("`{joined}`: {} defined nowhere", missing.join(", ")))
}

fn check_name(name: &str, citation: &Citation) -> Option<String> {
    let source = source();
    if let Some(target) = &citation.link
        && target.extension().is_some_and(|ext| ext == "rs")
    {
        // A link's text is defined in the file it links to; a lower-case
        // one is a function there.
        let defined = source.defines_in(target, name);
        return (!defined).then(|| format!("`{name}` is not defined in {}", target.display()));
    }
    if name.starts_with("selectd_") {
        // A metric: defined in the code without the suffix the encoder
        // adds to a counter.
        let base = name.strip_suffix("_total").unwrap_or(name);
        return (!source.mentions_word(base))
            .then(|| format!("`{name}`: the metric `{base}` is defined nowhere in the code"));
    }
    if name.starts_with("Selectd") && is_camel(name) {
        // An alert: defined in the rules that `contrib/` ships.
        let rules = std::fs::read_to_string("contrib/prometheus-alerts.yml").unwrap_or_default();
        let defined = rules.contains(&format!("alert: {name}"));
        return (!defined)
            .then(|| format!("`{name}`: no such alert in contrib/prometheus-alerts.yml"));
    }
    if name.contains('_') && name.starts_with(|c: char| c.is_ascii_lowercase()) {
        // `drain_fully`, `bind_tcp`: a name of this crate's code (a function,
        // field or test), somewhere in it.
        return (!OUTSIDE_NAMES.contains(&name) && !source.mentions_word(name)).then(|| {
            format!(
                "`{name}` appears nowhere in the code (if it is someone else's, add it to OUTSIDE_NAMES in tests/docs.rs)"
            )
        });
    }
    if !(is_camel(name) || is_screaming(name)) {
        return None; // `stop`, `recv`, `settle`: words and calls, not checked alone.
    }
    if OUTSIDE_NAMES.contains(&name) || source.all.contains(name) {
        return None;
    }
    if is_screaming(name) && (is_system_constant(name) || source.variables.contains(name)) {
        return None;
    }
    Some(format!(
        "`{name}` is defined nowhere in this crate (if it is someone else's, add it to OUTSIDE_NAMES in tests/docs.rs)"
    ))
}

/// Stale citations in chapter 6 of the guide, which is being rewritten
/// apart from the rest: tolerated until the new chapter lands, each as
/// (page, cited text). An entry that is no longer stale fails
/// [`known_stale_entries_are_still_stale`], so whoever merges the new
/// chapter removes them, and the list cannot outlive its reason.
const KNOWN_STALE: &[(&str, &str)] = &[];

fn known_stale(place: &str, text: &str) -> bool {
    KNOWN_STALE
        .iter()
        .any(|(page, cited)| place.starts_with(&format!("{page}:")) && *cited == text)
}

/// Every stale citation, as (`PLACE: TEXT: PROBLEM`, the cited text).
fn stale_citations() -> Vec<(String, String)> {
    let mut stale = Vec::new();
    for page in pages() {
        for citation in citations(&page) {
            if let Some(problem) = check(&citation) {
                stale.push((
                    format!("{}: `{}`: {problem}", citation.place, citation.text),
                    citation.text.clone(),
                ));
            }
        }
    }
    stale
}

/// Every code name the README and docs/ cite exists where they say.
#[test]
fn docs_cite_code_that_exists() {
    let all: Vec<Citation> = pages().iter().flat_map(|page| citations(page)).collect();
    assert!(all.len() > 500, "only {} code spans found", all.len());
    let snippets = all
        .iter()
        .filter(|citation| citation.in_file.is_some() && is_snippet(&citation.text))
        .count();
    assert!(snippets >= 3, "only {snippets} quoted snippets found");
    let stale: Vec<String> = stale_citations()
        .into_iter()
        .filter(|(line, text)| !known_stale(line, text))
        .map(|(line, _)| line)
        .collect();
    assert!(
        stale.is_empty(),
        "{} stale citation(s) in the docs:\n{}",
        stale.len(),
        stale.join("\n")
    );
}

/// [`KNOWN_STALE`] lists only what is still stale: fixed entries go.
#[test]
fn known_stale_entries_are_still_stale() {
    let pinned = size_in_test().map(|(size, _)| size);
    let mut found: Vec<(String, String)> = stale_citations();
    found.extend(
        size_claims()
            .into_iter()
            .filter(|(_, bytes)| Some(*bytes) != pinned)
            .map(|(place, bytes)| (place, format!("{bytes} bytes"))),
    );
    for (page, cited) in KNOWN_STALE {
        assert!(
            found
                .iter()
                .any(|(line, text)| line.starts_with(&format!("{page}:")) && text == cited),
            "{page}: `{cited}` is no longer stale: remove it from KNOWN_STALE in tests/docs.rs"
        );
    }
}

/// The size the unit test `an_idle_connection_is_small` (in
/// src/serve/connection/mod.rs) pins, and whether it pins it exactly
/// (`assert_eq!(size, N)`) or bounds it (`assert!(size <= N)`).
fn size_in_test() -> Option<(u64, bool)> {
    let text = fs::read_to_string(root().join("src/serve/connection/mod.rs")).ok()?;
    let test = &text[text.find("fn an_idle_connection_is_small")?..];
    for (form, exact) in [("assert_eq!(size, ", true), ("assert!(size <= ", false)] {
        if let Some(at) = test.find(form) {
            let number = leading_ident(&test[at + form.len()..]);
            return Some((number.parse().ok()?, exact));
        }
    }
    None
}

/// Every place the README or docs/ give a connection's size ("a
/// `Connection` is N bytes", "an idle connection is N bytes"), as
/// (place, N).
fn size_claims() -> Vec<(String, u64)> {
    let mut claims = Vec::new();
    for page in pages() {
        let text = fs::read_to_string(&page).expect("readable");
        // Sentences wrap: read the page as one line (same length).
        let flat = text.replace('\n', " ");
        for marker in ["onnection` is ", "onnection is "] {
            for (at, _) in flat.match_indices(marker) {
                let rest = &flat[at + marker.len()..];
                let number = leading_ident(rest);
                if let Ok(bytes) = number.parse::<u64>()
                    && rest[number.len()..].starts_with(" bytes")
                {
                    let line = text[..at].matches('\n').count() + 1;
                    claims.push((format!("{}:{line}", relative(&page)), bytes));
                }
            }
        }
    }
    claims
}

/// The docs give one size for a connection, the one the unit test pins: a
/// number that drifts from the code fails here, not in a reader's head.
#[test]
fn connection_size_is_one_number_the_code_keeps() {
    let (pinned, exact) = size_in_test().expect(
        "src/serve/connection/mod.rs: an_idle_connection_is_small asserts `size <= N` or `assert_eq!(size, N)`",
    );
    let claims: Vec<(String, u64)> = size_claims()
        .into_iter()
        .filter(|(place, bytes)| !known_stale(place, &format!("{bytes} bytes")))
        .collect();
    assert!(
        claims
            .iter()
            .any(|(place, _)| place.starts_with("README.md:")),
        "the README gives no connection size: {claims:?}"
    );
    let wrong: Vec<&(String, u64)> = claims
        .iter()
        .filter(|(_, bytes)| {
            let fits = if exact {
                *bytes == pinned
            } else {
                *bytes <= pinned
            };
            !fits || claims.iter().any(|(_, other)| other != bytes)
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "the docs must give one size, which the test pins ({} {pinned} bytes): {wrong:?}",
        if exact { "exactly" } else { "at most" }
    );
}

/// The guide teaches through links to the code: many, all to files that
/// exist.
#[test]
fn guide_links_point_at_existing_files() {
    let links: Vec<Citation> = citations(&root().join(GUIDE))
        .into_iter()
        .filter(|citation| citation.link.is_some())
        .collect();
    assert!(links.len() > 50, "only {} links found", links.len());
    let missing: Vec<String> = links
        .iter()
        .filter_map(|citation| {
            let target = citation.link.as_ref()?;
            (!root().join(target).exists())
                .then(|| format!("{}: {}", citation.place, target.display()))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "{GUIDE} links to missing files: {missing:#?}"
    );
}

/// The checker itself: stale names of each kind are caught.
#[test]
fn stale_names_of_every_kind_are_caught() {
    let cite = |text: &str, link: Option<&str>, in_file: Option<&str>| Citation {
        place: "t.md:1".into(),
        text: text.into(),
        link: link.map(PathBuf::from),
        in_file: in_file.map(PathBuf::from),
    };
    // Alive.
    for good in [
        cite("READ_BUDGET", None, None),
        cite("Connection::on_readable", None, None),
        cite("EventLoop::run", Some("src/serve/event_loop/mod.rs"), None),
        cite("listen.rs", Some("src/serve/listen.rs"), None),
        cite("src/serve/listen.rs", None, None),
        cite("CloseReason::Idle", None, None),
        cite("SO_REUSEADDR", None, None),
        cite("io::ErrorKind::WouldBlock", None, None),
        cite("SELECTD_SOAK_SECS", None, None),
        cite(
            "socket.set_reuse_address(true)",
            None,
            Some("src/serve/listen.rs"),
        ),
        cite(
            "if n < want && !self.drain_fully { break; }",
            None,
            Some("src/serve/connection/mod.rs"),
        ),
    ] {
        assert_eq!(check(&good), None, "{}", good.text);
    }
    // Stale.
    for bad in [
        cite("KEEP_OUTPUT_CAPACITY", None, None),
        cite("Server::close", None, None),
        cite("reactor.rs", None, None),
        cite("reactor.rs", Some("src/serve/event_loop/mod.rs"), None),
        cite("src/serve/reactor.rs", None, None),
        cite("EventLoop::run", Some("src/serve/listen.rs"), None),
        cite("CloseReason", Some("src/serve/connection/mod.rs"), None),
        cite("NoSuchType", None, None),
        cite("bind_tcp", None, Some("src/serve/accept.rs")),
        cite("Gone::member", None, None),
        cite("no_such_function", None, None),
        cite(
            "socket.set_reuse_address(false)",
            None,
            Some("src/serve/listen.rs"),
        ),
    ] {
        assert!(check(&bad).is_some(), "{} not caught", bad.text);
    }
}

/// Spans are found in prose, in links (with their target) and in sequence
/// diagrams, never in other fenced blocks; `` `NAME` in `FILE` `` ties the
/// name to the file.
#[test]
fn citations_are_found_where_the_docs_put_them() {
    let text = "See [`EventLoop::run`](../src/serve/event_loop/mod.rs) and\n\
        `bind_tcp` in [`listen.rs`](../src/serve/listen.rs), `READ_BUDGET`.\n\
        ```rust\nlet x = Gone::away();\n```\n\
        ```mermaid\nsequenceDiagram\n    R->>R: Server::close: forget\n```\n";
    let found = citations_in("t.md", &root().join("docs"), text);
    let texts: Vec<&str> = found.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "EventLoop::run",
            "bind_tcp",
            "listen.rs",
            "READ_BUDGET",
            "Server::close"
        ]
    );
    assert_eq!(
        found[0].link.as_deref(),
        Some(Path::new("src/serve/event_loop/mod.rs"))
    );
    assert_eq!(
        found[1].in_file.as_deref(),
        Some(Path::new("src/serve/listen.rs"))
    );
    assert_eq!(found[4].place, "t.md:8");
    let stale: Vec<&str> = found
        .iter()
        .filter(|citation| check(citation).is_some())
        .map(|citation| citation.text.as_str())
        .collect();
    assert_eq!(stale, ["Server::close"]);
}

/// The long flags of `selectd SUBCOMMAND`, as clap defines them (the
/// help flag aside).
fn flags_of(subcommand: &str) -> Vec<String> {
    use clap::CommandFactory;
    let cli = selectd::cli::Cli::command();
    let sub = cli
        .find_subcommand(subcommand)
        .unwrap_or_else(|| panic!("no subcommand {subcommand}"));
    sub.get_arguments()
        .filter(|arg| !arg.is_hide_set())
        .filter_map(|arg| arg.get_long())
        .filter(|long| *long != "help")
        .map(|long| format!("--{long}"))
        .collect()
}

/// The README's usage block for `selectd SUBCOMMAND`: the `text` block
/// that starts with it.
fn readme_usage(subcommand: &str) -> String {
    let readme = fs::read_to_string(root().join("README.md")).expect("the README");
    let start = format!("```text\nselectd {subcommand} ");
    let at = readme
        .find(&start)
        .unwrap_or_else(|| panic!("the README has no usage block for {subcommand}"));
    let block = &readme[at + "```text\n".len()..];
    block[..block.find("```").unwrap_or(block.len())].to_string()
}

/// The README's usage blocks name every flag `serve` and `send` take, and
/// its flag table has a row for each of serve's: a new flag cannot be left
/// out of the docs.
#[test]
fn readme_usage_names_every_flag() {
    let readme = fs::read_to_string(root().join("README.md")).expect("the README");
    for subcommand in ["serve", "send"] {
        let usage = readme_usage(subcommand);
        let missing: Vec<String> = flags_of(subcommand)
            .into_iter()
            .filter(|flag| !contains_flag(&usage, flag))
            .collect();
        assert!(
            missing.is_empty(),
            "the README's `selectd {subcommand}` usage omits {missing:?}:\n{usage}"
        );
    }
    let missing: Vec<String> = flags_of("serve")
        .into_iter()
        .filter(|flag| !readme.contains(&format!("\n| `{flag}")))
        .collect();
    assert!(
        missing.is_empty(),
        "the README's serve flag table has no row for {missing:?}"
    );
}

/// Whether `text` holds `flag` whole (`--output` is not `--output-full`).
fn contains_flag(text: &str, flag: &str) -> bool {
    text.match_indices(flag).any(|(at, _)| {
        let after = text[at + flag.len()..].chars().next();
        !after.is_some_and(|c| c.is_alphanumeric() || c == '-' || c == '_')
    })
}

/// GitHub's anchor for a heading: lower case, punctuation dropped (but `-`
/// and `_`), each space a `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a page's headings (outside fenced blocks).
fn anchors(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.starts_with("```") || line.starts_with("~~~") {
            fenced = !fenced;
            continue;
        }
        if !fenced && line.starts_with('#') {
            found.push(slug(line.trim_start_matches('#')));
        }
    }
    found
}

/// Every link to a section (`#anchor`, `page.md#anchor`) in the README and
/// docs/ finds its heading, as GitHub names it.
#[test]
fn section_links_find_their_heading() {
    let mut broken = Vec::new();
    for page in pages() {
        let text = fs::read_to_string(&page).expect("readable");
        let base = page.parent().expect("a directory");
        let mut rest = text.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let Some(end) = rest.find(')') else { break };
            let target = &rest[..end];
            let Some((file, anchor)) = target.split_once('#') else {
                continue;
            };
            if target.contains("://") || anchor.is_empty() {
                continue;
            }
            let linked = if file.is_empty() {
                text.clone()
            } else {
                fs::read_to_string(base.join(file)).unwrap_or_default()
            };
            if !anchors(&linked).iter().any(|found| found == anchor) {
                broken.push(format!("{}: {target}", relative(&page)));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "links to sections that do not exist: {broken:#?}"
    );
}
