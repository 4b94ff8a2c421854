//! The teaching guide stays true to the code.
//!
//! `docs/select-to-mio.md` links to files in `src/`, `examples/` and
//! `tests/`, with the function it means as the link's text:
//! ``[`Connection::on_readable`](../src/connection.rs)``. When code moves or
//! a function is renamed, these tests say which link went stale.

use std::fs;
use std::path::{Path, PathBuf};

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
