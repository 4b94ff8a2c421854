//! The man pages and shell completions, generated from the clap definitions.
//!
//! Written by hand, a man page drifts from the flags it describes; made from
//! the same [`Cli`] that parses them (as ripgrep does), it cannot.
//! One page for `selectd` and one per subcommand (`selectd-serve(1)`, ...),
//! as git does, so each page holds the flags, the help text after them
//! (line commands, signals, exit codes) and nothing else.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use clap::builder::PossibleValuesParser;
use clap::{Arg, ArgAction, Args, CommandFactory};
use clap_complete::Shell;

use super::Cli;

/// The subcommands that have a page of their own, `selectd-NAME(1)`: every
/// subcommand but clap's `help`. A unit test keeps this list equal to the
/// subcommands that [`Cli`] defines.
#[cfg(feature = "bench")]
pub const PAGES: &[&str] = &["serve", "send", "bench", "man", "completions"];
/// The subcommands that have a page of their own (no `bench` in this build).
#[cfg(not(feature = "bench"))]
pub const PAGES: &[&str] = &["serve", "send", "man", "completions"];

/// `selectd man [SUBCOMMAND]`, or `selectd man --dir DIR`.
#[derive(Debug, Clone, Args)]
pub struct ManArgs {
    /// The subcommand whose page to print; without one, the page for
    /// selectd itself.
    #[arg(
        value_name = "SUBCOMMAND",
        value_parser = PossibleValuesParser::new(PAGES),
        conflicts_with = "dir"
    )]
    pub subcommand: Option<String>,

    /// Write every page (selectd.1, selectd-serve.1, ...) into DIR instead
    /// of printing one, e.g. ~/.cargo/share/man/man1
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// `selectd completions SHELL`.
#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_name = "SHELL")]
    pub shell: Shell,
}

/// Writes the roff source of one page: `selectd(1)`, or
/// `selectd-SUBCOMMAND(1)` when a subcommand is named.
pub fn write_man_page(subcommand: Option<&str>, out: &mut dyn Write) -> io::Result<()> {
    let mut cli = Cli::command();
    cli.build();
    let version = cli.get_version().unwrap_or_default().to_string();
    let page = match subcommand {
        None => cli.clone(),
        Some(name) => {
            let Some(sub) = cli.find_subcommand(name).filter(|_| PAGES.contains(&name)) else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "no manual page for '{name}' (expected one of: {})",
                        PAGES.join(", ")
                    ),
                ));
            };
            sub.clone().display_name(format!("selectd-{name}"))
        }
    };
    let mut generated = Vec::new();
    clap_mangen::Man::new(page.clone())
        // The footer names the program and its version, on every page (by
        // default a subcommand's page shows its own name there).
        .source(format!("selectd {version}"))
        .render(&mut generated)?;
    let generated = String::from_utf8_lossy(&generated);
    let mut sections = Sections::split(&generated);
    sections.replace("SYNOPSIS", &synopsis(&page));
    if subcommand.is_none() {
        sections.replace("SUBCOMMANDS", &subcommand_list(&cli));
    }
    if let Some(after) = page.get_after_help() {
        sections.rename("EXTRA", "NOTES", &preformatted(&after.to_string()));
    }
    if subcommand.is_some() {
        sections.push("SEE ALSO", "\\fBselectd\\fR(1)\n");
    }
    out.write_all(sections.join().as_bytes())
}

/// Writes every page into `dir` (which must exist): `selectd.1` and one
/// `selectd-NAME.1` for each of [`PAGES`]. Returns the files written.
pub fn write_man_pages(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for page in std::iter::once(None).chain(PAGES.iter().map(|name| Some(*name))) {
        let file_name = match page {
            None => "selectd.1".to_string(),
            Some(name) => format!("selectd-{name}.1"),
        };
        let path = dir.join(file_name);
        let file = File::create(&path).map_err(|err| {
            io::Error::new(
                err.kind(),
                format!(
                    "cannot write {}: {}",
                    path.display(),
                    crate::net::os_reason(&err)
                ),
            )
        })?;
        let mut out = BufWriter::new(file);
        write_man_page(page, &mut out)?;
        out.flush()?;
        written.push(path);
    }
    Ok(written)
}

/// Writes the completion script for `shell`.
///
/// Written whole from memory: `clap_complete` panics on a write error
/// (stdout on a full disk), where this returns it.
pub fn write_completions(shell: Shell, out: &mut dyn Write) -> io::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "selectd", &mut script);
    out.write_all(&script)?;
    out.flush()
}

/// A page cut at its `.SH` lines: the head (title), then each section.
struct Sections {
    head: String,
    sections: Vec<(String, String)>,
}

impl Sections {
    fn split(page: &str) -> Sections {
        let mut head = String::new();
        let mut sections: Vec<(String, String)> = Vec::new();
        for line in page.split_inclusive('\n') {
            if let Some(name) = line.strip_prefix(".SH ") {
                sections.push((name.trim().trim_matches('"').to_string(), String::new()));
            } else if let Some((_, body)) = sections.last_mut() {
                body.push_str(line);
            } else {
                head.push_str(line);
            }
        }
        Sections { head, sections }
    }

    fn replace(&mut self, name: &str, body: &str) {
        for (section, old) in &mut self.sections {
            if section == name {
                *old = body.to_string();
            }
        }
    }

    fn rename(&mut self, name: &str, new_name: &str, body: &str) {
        for (section, old) in &mut self.sections {
            if section == name {
                *section = new_name.to_string();
                *old = body.to_string();
            }
        }
    }

    fn push(&mut self, name: &str, body: &str) {
        self.sections.push((name.to_string(), body.to_string()));
    }

    fn join(&self) -> String {
        let mut page = self.head.clone();
        for (name, body) in &self.sections {
            if name.contains(' ') {
                page.push_str(&format!(".SH \"{name}\"\n"));
            } else {
                page.push_str(&format!(".SH {name}\n"));
            }
            page.push_str(body);
        }
        page
    }
}

/// Text as roff shows it literally: backslashes and hyphens escaped, and
/// no line taken for a request.
fn escape(text: &str) -> String {
    let escaped = text.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with(['.', '\'']) {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

/// The synopsis with every flag's value, as `--help` spells it:
/// `selectd serve [--listen ADDR]... [--echo] ...`.
fn synopsis(page: &clap::Command) -> String {
    let name = page.get_bin_name().unwrap_or_else(|| page.get_name());
    let mut parts = vec![format!("\\fB{}\\fR", escape(name))];
    for arg in page.get_arguments().filter(|arg| !arg.is_hide_set()) {
        parts.push(synopsis_arg(arg));
    }
    if page.has_subcommands() {
        parts.push("\\fISUBCOMMAND\\fR".to_string());
    }
    format!(".nh\n.ad l\n{}\n.ad\n.hy\n", parts.join(" "))
}

fn synopsis_arg(arg: &Arg) -> String {
    let value = arg
        .get_value_names()
        .map(|names| {
            names
                .iter()
                .map(|name| format!("\\fI{}\\fR", escape(name)))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| format!("\\fI{}\\fR", escape(arg.get_id().as_str())));
    let repeat = if matches!(arg.get_action(), ArgAction::Append) {
        "..."
    } else {
        ""
    };
    if arg.is_positional() {
        return if arg.is_required_set() {
            format!("{value}{repeat}")
        } else {
            format!("[{value}]{repeat}")
        };
    }
    let mut names = Vec::new();
    if let Some(short) = arg.get_short() {
        names.push(format!("\\fB\\-{short}\\fR"));
    }
    if let Some(long) = arg.get_long() {
        names.push(format!("\\fB\\-\\-{}\\fR", escape(long)));
    }
    let flag = names.join("|");
    let takes_value = matches!(arg.get_action(), ArgAction::Set | ArgAction::Append);
    let inner = if takes_value {
        // An unbreakable space: a line never ends between flag and value.
        format!("{flag}\\ {value}")
    } else {
        flag
    };
    if arg.is_required_set() {
        format!("{inner}{repeat}")
    } else {
        format!("[{inner}]{repeat}")
    }
}

/// The main page's list of the other pages: the ones [`write_man_pages`]
/// writes, so every page it names exists.
fn subcommand_list(cli: &clap::Command) -> String {
    let mut list = String::new();
    for name in PAGES {
        let about = cli
            .find_subcommand(name)
            .and_then(|sub| sub.get_about())
            .map(|about| about.to_string())
            .unwrap_or_default();
        list.push_str(&format!(
            ".TP\n\\fBselectd\\-{}\\fR(1)\n{}\n",
            escape(name),
            escape(&about)
        ));
    }
    list
}

/// Text shown as written, line for line (the help text's tables), instead
/// of refilled into paragraphs.
fn preformatted(text: &str) -> String {
    let mut body = String::from(".nf\n");
    for line in text.lines() {
        body.push_str(&escape(line));
        body.push('\n');
    }
    body.push_str(".fi\n");
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subcommand_has_a_page_naming_its_flags() {
        let mut main = Vec::new();
        write_man_page(None, &mut main).unwrap();
        let main = String::from_utf8(main).unwrap();
        assert!(main.starts_with(".ie"), "{main}");
        assert!(main.contains("serve"), "{main}");

        let mut serve = Vec::new();
        write_man_page(Some("serve"), &mut serve).unwrap();
        let serve = String::from_utf8(serve).unwrap();
        assert!(serve.contains("selectd\\-serve"), "{serve}");
        assert!(serve.contains("allow\\-remote\\-stop"), "{serve}");
        assert!(serve.contains("SIGTERM"), "{serve}");

        assert!(write_man_page(Some("nope"), &mut Vec::new()).is_err());
        assert!(write_man_page(Some("help"), &mut Vec::new()).is_err());
    }

    #[test]
    fn every_subcommand_but_help_has_a_page() {
        let cli = Cli::command();
        let names: Vec<&str> = cli
            .get_subcommands()
            .map(|sub| sub.get_name())
            .filter(|name| *name != "help")
            .collect();
        let mut pages = PAGES.to_vec();
        let mut sorted = names.clone();
        pages.sort_unstable();
        sorted.sort_unstable();
        assert_eq!(pages, sorted);
    }

    #[test]
    fn the_synopsis_names_each_value() {
        let mut serve = Vec::new();
        write_man_page(Some("serve"), &mut serve).unwrap();
        let serve = String::from_utf8(serve).unwrap();
        assert!(
            serve.contains("[\\fB\\-\\-listen\\fR\\ \\fIADDR\\fR]..."),
            "{serve}"
        );
        assert!(serve.contains("[\\fB\\-\\-echo\\fR]"), "{serve}");
        // The footer names the program's version, not the subcommand.
        let title = serve.lines().find(|line| line.starts_with(".TH")).unwrap();
        assert!(title.contains("selectd 0."), "{title}");
        assert!(serve.contains(".SH \"SEE ALSO\""), "{serve}");
    }
}
