//! The man pages and shell completions, generated from the clap definitions.
//!
//! Written by hand, a man page drifts from the flags it describes; made from
//! the same [`Cli`] that parses them (as ripgrep does), it cannot.
//! One page for `selectd` and one per subcommand (`selectd-serve(1)`, ...),
//! as git does, so each page holds the flags, the help text after them
//! (line commands, signals, exit codes) and nothing else.

use std::io::{self, Write};

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::Cli;

/// `selectd man [SUBCOMMAND]`.
#[derive(Debug, Clone, Args)]
pub struct ManArgs {
    /// The subcommand whose page to print (serve, send, bench); without
    /// one, the page for selectd itself.
    #[arg(value_name = "SUBCOMMAND")]
    pub subcommand: Option<String>,
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
    let page = match subcommand {
        None => cli,
        Some(name) => {
            let Some(sub) = cli.find_subcommand(name) else {
                let names: Vec<&str> = cli.get_subcommands().map(|s| s.get_name()).collect();
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "no manual page for '{name}' (expected one of: {})",
                        names.join(", ")
                    ),
                ));
            };
            let title = format!("selectd-{name}");
            sub.clone().display_name(title)
        }
    };
    clap_mangen::Man::new(page).render(out)
}

/// Writes the completion script for `shell`.
pub fn write_completions(shell: Shell, out: &mut dyn Write) {
    clap_complete::generate(shell, &mut Cli::command(), "selectd", out);
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
    }
}
