//! The source index for `tests/docs.rs`: what the crate defines, file by
//! file, read as text (no compiler): items after their keyword, variants
//! and fields, the types each file implements, the upper-case words its
//! strings and scripts hold (environment variables), and every file's path.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use super::root;

/// What the crate defines, file by file.
pub struct Source {
    /// Every Rust file (repo-relative) and the names it defines.
    pub defined: BTreeMap<PathBuf, BTreeSet<String>>,
    /// Every name defined anywhere.
    pub all: BTreeSet<String>,
    /// Types (struct, enum, trait, type, union) defined anywhere.
    pub types: BTreeSet<String>,
    /// Every Rust file and the types it defines or implements.
    pub types_in: BTreeMap<PathBuf, BTreeSet<String>>,
    /// Upper-case words in string literals and scripts: environment
    /// variables the code reads (`SELECTD_SOAK_SECS`, `RATE`).
    pub variables: BTreeSet<String>,
    /// Every file of the repository (relative), for paths.
    pub files: BTreeSet<PathBuf>,
    /// The text of every code file, for paths made at run time.
    pub texts: Vec<String>,
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

pub fn leading_ident(text: &str) -> &str {
    let end = text.find(|c: char| !is_ident_char(c)).unwrap_or(text.len());
    &text[..end]
}

/// The names one Rust file defines: items after their keyword, and
/// variants and fields (a line that starts with a name and then `,`, `(`,
/// `{`, `:` or `=`). A superset is fine: a citation is stale only when its
/// name is defined nowhere. The second set holds the types the file
/// defines or implements (`impl Name`, `impl Trait for Name`).
fn definitions(text: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    const ITEMS: &[&str] = &[
        "fn", "struct", "enum", "trait", "type", "const", "static", "union",
    ];
    const TYPES: &[&str] = &["struct", "enum", "trait", "type", "union"];
    let mut names = BTreeSet::new();
    let mut types = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("//") {
            continue;
        }
        let words: Vec<&str> = line
            .split(|c: char| !is_ident_char(c) && c != '!')
            .filter(|word| !word.is_empty())
            .collect();
        for pair in words.windows(2) {
            if ITEMS.contains(&pair[0]) || pair[0] == "macro_rules!" {
                names.insert(pair[1].to_string());
                if TYPES.contains(&pair[0]) {
                    types.insert(pair[1].to_string());
                }
            }
        }
        if let Some(implemented) = implemented_type(line) {
            types.insert(implemented);
        }
        let mut rest = line;
        for visibility in ["pub(crate) ", "pub(super) ", "pub "] {
            rest = rest.strip_prefix(visibility).unwrap_or(rest);
        }
        let name = leading_ident(rest);
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        let after = rest[name.len()..].trim_start();
        let member = after.is_empty()
            || after.starts_with([',', '(', '{', '='])
            || (after.starts_with(':') && !after.starts_with("::"));
        if member {
            names.insert(name.to_string());
        }
    }
    (names, types)
}

/// `impl<T> Name<T> {`, `impl fmt::Display for Name {` → `Name`.
fn implemented_type(line: &str) -> Option<String> {
    let rest = line.strip_prefix("impl")?;
    if !rest.starts_with(['<', ' ']) {
        return None;
    }
    let mut depth = 0;
    let mut plain = String::new();
    for c in rest.chars() {
        match c {
            '<' => depth += 1,
            '>' => depth -= 1,
            _ if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    let target = match plain.split_once(" for ") {
        Some((_, target)) => target,
        None => plain.as_str(),
    };
    let target = target.trim().trim_start_matches('&');
    let last = target.split_whitespace().next()?.rsplit("::").next()?;
    let name = leading_ident(last);
    (!name.is_empty()).then(|| name.to_string())
}

/// Upper-case words that appear inside string literals (`env::var("X")`).
fn quoted_words(text: &str, into: &mut BTreeSet<String>) {
    for (index, piece) in text.split('"').enumerate() {
        if index % 2 == 1 {
            upper_words(piece, into);
        }
    }
}

fn upper_words(text: &str, into: &mut BTreeSet<String>) {
    for word in text.split(|c: char| !is_ident_char(c)) {
        if word.len() >= 2
            && word
                .chars()
                .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit())
        {
            into.insert(word.to_string());
        }
    }
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let hidden = name.starts_with('.') && name != ".ci" && name != ".gitignore";
        if hidden || name == "target" || name == "corpus" {
            continue;
        }
        if path.is_dir() {
            walk(&path, files);
        } else {
            files.push(path);
        }
    }
}

pub fn source() -> &'static Source {
    static SOURCE: std::sync::OnceLock<Source> = std::sync::OnceLock::new();
    SOURCE.get_or_init(|| {
        let mut all_files = Vec::new();
        walk(root(), &mut all_files);
        let mut source = Source {
            defined: BTreeMap::new(),
            all: BTreeSet::new(),
            types: BTreeSet::new(),
            types_in: BTreeMap::new(),
            variables: BTreeSet::new(),
            files: BTreeSet::new(),
            texts: Vec::new(),
        };
        for path in all_files {
            let rel = path.strip_prefix(root()).unwrap_or(&path).to_path_buf();
            let code_dir = [
                "src", "examples", "tests", "benches", "fuzz", ".ci", "contrib",
            ]
            .iter()
            .any(|dir| rel.starts_with(dir))
                || rel == Path::new(".gitignore");
            // The checker's own files name stale things on purpose.
            let checker = rel == Path::new("tests/docs.rs") || rel.starts_with("tests/docs");
            let code_dir = code_dir && !checker;
            if code_dir && let Ok(text) = fs::read_to_string(&path) {
                if rel.extension().is_some_and(|ext| ext == "rs") {
                    let (names, types) = definitions(&text);
                    source.all.extend(names.iter().cloned());
                    source.types.extend(types.iter().cloned());
                    source.types_in.insert(rel.clone(), types);
                    source.defined.insert(rel.clone(), names);
                    quoted_words(&text, &mut source.variables);
                } else {
                    upper_words(&text, &mut source.variables);
                }
                source.texts.push(text);
            }
            source.files.insert(rel);
        }
        source
    })
}

impl Source {
    /// The Rust files whose name is `file_name` (`listen.rs`) or whose
    /// path ends with it (`connection/mod.rs`).
    pub fn files_named(&self, file_name: &str) -> Vec<&PathBuf> {
        self.defined
            .keys()
            .filter(|path| path.ends_with(file_name))
            .collect()
    }

    /// The file of module `name` under src/ (`datagram` → `src/serve/event_loop/datagram.rs`).
    pub fn module_files(&self, name: &str) -> Vec<&PathBuf> {
        let as_file = format!("{name}.rs");
        let as_dir = format!("{name}/mod.rs");
        self.defined
            .keys()
            .filter(|path| {
                path.starts_with("src") && (path.ends_with(&as_file) || path.ends_with(&as_dir))
            })
            .collect()
    }

    /// Whether some code file holds `word` with no identifier character
    /// either side.
    pub fn mentions_word(&self, word: &str) -> bool {
        self.texts.iter().any(|code| {
            code.match_indices(word).any(|(at, _)| {
                let before = code[..at].chars().next_back();
                let after = code[at + word.len()..].chars().next();
                !before.is_some_and(is_ident_char) && !after.is_some_and(is_ident_char)
            })
        })
    }

    /// Whether some code file holds `text` (a directory it makes or reads).
    pub fn mentions(&self, text: &str) -> bool {
        let text = text.trim_end_matches('/');
        self.texts.iter().any(|code| code.contains(text))
    }

    /// Whether a file that defines or implements `type_name` defines
    /// `member`: `Server::close` is stale even though some other type has
    /// a `close`.
    pub fn member_of(&self, type_name: &str, member: &str) -> bool {
        self.types_in
            .iter()
            .filter(|(_, types)| types.contains(type_name))
            .any(|(file, _)| self.defines_in(file, member))
    }

    pub fn defines_in(&self, file: &Path, name: &str) -> bool {
        self.defined
            .get(file)
            .is_some_and(|names| names.contains(name))
    }
}
