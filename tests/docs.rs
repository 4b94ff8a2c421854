//! The docs stay true to the code.
//!
//! `docs/select-to-mio.md` links to files in `src/`, `examples/` and
//! `tests/`, with the function it means as the link's text:
//! ``[`Connection::on_readable`](../src/serve/connection.rs)``. When code
//! moves or a function is renamed, these tests say which link went stale.
//! And a README example a user types as written must work as written.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const GUIDE: &str = "docs/select-to-mio.md";

/// One relative link: its text and the path it points at.
struct Link {
    text: String,
    target: PathBuf,
}

fn guide_links() -> Vec<Link> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let guide = root.join(GUIDE);
    let text = fs::read_to_string(&guide).expect("the guide exists");
    let base = guide.parent().expect("docs/").to_path_buf();
    let mut links = Vec::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("](") {
        let before = &rest[..at];
        let after = &rest[at + 2..];
        rest = after;
        let (Some(open), Some(close)) = (before.rfind('['), after.find(')')) else {
            continue;
        };
        let target = &after[..close];
        let target = target.split('#').next().unwrap_or_default();
        if target.is_empty() || target.contains("://") {
            continue;
        }
        links.push(Link {
            text: before[open + 1..].trim_matches('`').to_string(),
            target: base.join(target),
        });
    }
    links
}

/// Whether `word` occurs in `text` with no identifier character either side.
fn contains_word(text: &str, word: &str) -> bool {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

/// Every relative link in the guide points at a file that exists.
#[test]
fn guide_links_point_at_existing_files() {
    let links = guide_links();
    assert!(links.len() > 50, "only {} links found", links.len());
    let missing: Vec<String> = links
        .iter()
        .filter(|link| !link.target.exists())
        .map(|link| format!("[{}]({})", link.text, link.target.display()))
        .collect();
    assert!(
        missing.is_empty(),
        "{GUIDE} links to missing files: {missing:#?}"
    );
}

/// A link whose text names code (`Server::run`, `CloseReason`) points at the
/// file that defines it: every part of the path appears there, and a
/// lower-case last part is a function (`fn run`).
#[test]
fn guide_links_name_code_that_exists() {
    let mut stale = Vec::new();
    for link in guide_links() {
        let name = link.text.as_str();
        if name.contains(['/', '.', ' ']) || !link.target.is_file() {
            continue; // A file name or prose, not a code name.
        }
        let source = fs::read_to_string(&link.target).expect("readable");
        let parts: Vec<&str> = name.split("::").collect();
        let last = parts[parts.len() - 1];
        let defined = parts.iter().all(|part| contains_word(&source, part))
            && (!last.starts_with(char::is_lowercase)
                || contains_word(&source, &format!("fn {last}")));
        if !defined {
            stale.push(format!("`{name}` in {}", link.target.display()));
        }
    }
    assert!(
        stale.is_empty(),
        "{GUIDE} names code that is not there: {stale:#?}"
    );
}

/// The fenced `sh` block of the README that contains `needle`.
fn readme_block(needle: &str) -> String {
    let readme = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("the README exists");
    readme
        .split("```")
        .skip(1)
        .step_by(2)
        .filter_map(|block| block.strip_prefix("sh\n"))
        .find(|block| block.contains(needle))
        .unwrap_or_else(|| panic!("no sh block in the README contains {needle:?}"))
        .to_string()
}

/// The README's web-page example, typed as written (a web server started
/// in the background, then `selectd send --http /`), fetches the page: the
/// client waits for the server to listen instead of racing it. Port 8000
/// becomes a free port, and `selectd` the binary under test.
#[test]
fn readme_http_example_works_as_typed() {
    let block = readme_block("python3 -m http.server");
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let script = block.replace("8000", &port.to_string());
    assert_ne!(script, block, "the example uses port 8000");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_selectd")).parent().unwrap();
    let path = std::env::join_paths(std::iter::once(bin_dir.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let root = tempfile::tempdir().unwrap();
    fs::write(root.path().join("index.html"), "merhaba dünya\n").unwrap();
    // The example leaves the web server running; stop it afterwards.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{script}status=$?\nkill $! 2>/dev/null\nexit $status\n"
        ))
        .current_dir(root.path())
        .env("PATH", path)
        .stdin(Stdio::null())
        .output()
        .expect("run sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("python3: not found") || stderr.contains("python3: command not found") {
        return common::skip("python3 is not installed");
    }
    assert!(out.status.success(), "{}: {stderr}", out.status);
    // The web server's own "Serving HTTP on ..." shares stdout with the page.
    let page = stdout
        .find("HTTP/1.0 ")
        .map(|at| &stdout[at..])
        .unwrap_or_default();
    assert!(page.starts_with("HTTP/1.0 200 OK\r\n"), "{stdout}");
    assert!(page.contains("\r\n\r\nmerhaba dünya\n"), "{stdout}");
}
