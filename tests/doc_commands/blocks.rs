//! The doc-test convention, read: fenced blocks, their tags, and the
//! `<!-- doc-test: ... -->` directives above them (see the runner,
//! `tests/doc_commands.rs`, and `docs/writing-docs.md`).

/// The fence tags that mean "commands", refused in favour of `sh`.
const REFUSED_TAGS: [&str; 5] = ["console", "bash", "shell", "zsh", "shell-session"];

/// One fenced block and the directives above it.
#[derive(Debug, Clone)]
pub struct Block {
    /// `README.md:42`: the file and the line of the opening fence.
    pub place: String,
    /// The fence's tag: `sh`, `text`, ...
    pub tag: String,
    /// What the fence holds, line by line.
    pub text: String,
    pub directives: Vec<Directive>,
}

/// One `<!-- doc-test: ... -->` directive (the runner's docs say what each
/// means).
#[derive(Debug, Clone, PartialEq)]
pub enum Directive {
    /// `skip (REASON)`.
    Skip(String),
    /// `needs PROG...`.
    Needs(Vec<String>),
    /// `setup COMMAND`.
    Setup(String),
    /// `background "TEXT"`: the text to wait for.
    Background(String),
    /// `contains "TEXT"`.
    Contains(String),
    /// `lacks "TEXT"`.
    Lacks(String),
    /// `file NAME`.
    File(String),
}

/// `"TEXT"` → `TEXT`.
fn quoted(rest: &str) -> Result<String, String> {
    let rest = rest.trim();
    rest.strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .map(str::to_string)
        .ok_or_else(|| format!("expected a quoted \"TEXT\", found {rest:?}"))
}

fn parse_directive(text: &str) -> Result<Directive, String> {
    let text = text.trim();
    let (word, rest) = text.split_once(' ').unwrap_or((text, ""));
    let rest = rest.trim();
    Ok(match word {
        "skip" => {
            let reason = rest.trim_start_matches('(').trim_end_matches(')').trim();
            if reason.is_empty() {
                return Err("skip needs a reason: skip (REASON)".into());
            }
            Directive::Skip(reason.to_string())
        }
        "needs" if !rest.is_empty() => {
            Directive::Needs(rest.split_whitespace().map(str::to_string).collect())
        }
        "setup" if !rest.is_empty() => Directive::Setup(rest.to_string()),
        "background" => Directive::Background(quoted(rest)?),
        "contains" => Directive::Contains(quoted(rest)?),
        "lacks" => Directive::Lacks(quoted(rest)?),
        "file" if !rest.is_empty() && !rest.contains('/') => Directive::File(rest.to_string()),
        _ => return Err(format!("unknown doc-test directive {text:?}")),
    })
}

/// Every fenced block of `text` (a Markdown file called `name`), or the
/// convention's violations.
pub fn parse(name: &str, text: &str) -> Result<Vec<Block>, Vec<String>> {
    let mut blocks = Vec::new();
    let mut problems = Vec::new();
    let mut pending: Vec<Directive> = Vec::new();
    // The open fence: its line, tag, text so far, and its marker (``` or
    // ~~~; a ~~~ block may show ``` fences, as docs/writing-docs.md does).
    // The open fence: its line, tag, text so far, marker and indentation
    // (a block in a list item is indented; its lines lose that much).
    let mut open: Option<(usize, String, String, &str, usize)> = None;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let place = format!("{name}:{number}");
        if let Some((start, tag, body, fence, indent)) = open.as_mut() {
            if line.trim_start().starts_with(*fence) {
                blocks.push(Block {
                    place: format!("{name}:{start}"),
                    tag: tag.clone(),
                    text: std::mem::take(body),
                    directives: std::mem::take(&mut pending),
                });
                open = None;
            } else {
                let spaces = line.len() - line.trim_start_matches(' ').len();
                body.push_str(&line[spaces.min(*indent)..]);
                body.push('\n');
            }
            continue;
        }
        let trimmed = line.trim();
        let fence = ["```", "~~~"]
            .into_iter()
            .find(|fence| trimmed.starts_with(fence));
        if let Some(fence) = fence {
            let tag = &trimmed[fence.len()..];
            let tag = tag.trim().to_string();
            if tag.is_empty() {
                problems.push(format!("{place}: an untagged fence (use ```sh or ```text)"));
            } else if REFUSED_TAGS.contains(&tag.as_str()) {
                problems.push(format!("{place}: ```{tag} (use ```sh, without prompts)"));
            }
            if tag != "sh"
                && pending
                    .iter()
                    .any(|directive| !matches!(directive, Directive::File(_)))
            {
                problems.push(format!("{place}: only `file` applies to a ```{tag} block"));
            }
            let indent = line.len() - line.trim_start_matches(' ').len();
            open = Some((number, tag, String::new(), fence, indent));
            continue;
        }
        if let Some(inner) = trimmed
            .strip_prefix("<!-- doc-test:")
            .and_then(|inner| inner.strip_suffix("-->"))
        {
            for part in inner.split(';') {
                match parse_directive(part) {
                    Ok(directive) => pending.push(directive),
                    Err(problem) => problems.push(format!("{place}: {problem}")),
                }
            }
            continue;
        }
        if trimmed.contains("doc-test") && trimmed.starts_with("<!--") {
            problems.push(format!("{place}: a doc-test marker fits on one line"));
        }
        if !pending.is_empty() {
            problems.push(format!(
                "{place}: a doc-test marker must sit directly above a fence"
            ));
            pending.clear();
        }
    }
    if let Some((start, ..)) = open {
        problems.push(format!("{name}:{start}: a fence never closed"));
    }
    for block in &blocks {
        if block.tag == "sh" && block.text.lines().any(|line| line.starts_with("$ ")) {
            problems.push(format!(
                "{}: a `$ ` prompt in a ```sh block (write commands only)",
                block.place
            ));
        }
    }
    if problems.is_empty() {
        Ok(blocks)
    } else {
        Err(problems)
    }
}

// ---- the parser itself ------------------------------------------------------

#[test]
fn markers_above_a_fence_become_its_directives() {
    let text = "intro\n\
        <!-- doc-test: needs nc python3; setup touch x -->\n\
        <!-- doc-test: background \"listening on\" -->\n\
        ```sh\nselectd serve\n```\n\
        <!-- doc-test: file haproxy.cfg -->\n\
        ```text\nglobal\n```\n";
    let blocks = parse("t.md", text).expect("parses");
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[0].place, "t.md:4");
    assert_eq!(
        blocks[0].directives,
        [
            Directive::Needs(vec!["nc".into(), "python3".into()]),
            Directive::Setup("touch x".into()),
            Directive::Background("listening on".into()),
        ]
    );
    assert_eq!(blocks[0].text, "selectd serve\n");
    assert_eq!(
        blocks[1].directives,
        [Directive::File("haproxy.cfg".into())]
    );
}

#[test]
fn a_block_in_a_list_item_loses_its_indentation() {
    let text = "1. Run it:\n\n   <!-- doc-test: contains \"x\" -->\n   ```sh\n   echo x\n     echo y\n   ```\n";
    let blocks = parse("t.md", text).expect("parses");
    assert_eq!(blocks[0].text, "echo x\n  echo y\n");
    assert_eq!(blocks[0].directives, [Directive::Contains("x".into())]);
}

#[test]
fn convention_breaches_are_named_with_their_line() {
    for (text, says) in [
        ("```\nx\n```\n", "t.md:1: an untagged fence"),
        ("```console\n$ x\n```\n", "t.md:1: ```console"),
        ("```sh\n$ selectd\n```\n", "a `$ ` prompt"),
        ("<!-- doc-test: sometimes -->\n```sh\nx\n```\n", "unknown"),
        ("<!-- doc-test: skip -->\n```sh\nx\n```\n", "needs a reason"),
        (
            "<!-- doc-test: skip (x) -->\n\n```sh\nx\n```\n",
            "directly above",
        ),
        ("```sh\nx\n", "never closed"),
    ] {
        let problems = parse("t.md", text).expect_err(text);
        assert!(
            problems.iter().any(|problem| problem.contains(says)),
            "{text:?}: {problems:?}"
        );
    }
}
