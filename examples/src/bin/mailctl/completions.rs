//! `mailctl completions SHELL` and the hidden `mailctl man --dir DIR`: both generated from
//! the clap definition, so they always match the flags.

use std::io::Write as _;
use std::path::PathBuf;

use clap::CommandFactory as _;
use clap_complete::Shell;

use crate::{Cli, Failure, Outcome};

/// Flags of `mailctl completions`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The shell: bash, zsh, fish, elvish or powershell.
    #[arg(value_enum)]
    shell: Shell,
}

/// Flags of `mailctl man`.
#[derive(Debug, clap::Args)]
pub(crate) struct ManArgs {
    /// The directory to write the pages into (mailctl.1 and one page per subcommand).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
}

/// Prints the completion script. Load it with, for bash,
/// `source <(mailctl completions bash)`.
pub(crate) fn run(args: &Args) -> Outcome {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "mailctl", &mut script);
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&script)
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::local(format!("cannot write the script: {e}")))
}

/// Writes the man pages (`mailctl.1`, `mailctl-fetch.1`, ...).
pub(crate) fn man(args: &ManArgs) -> Outcome {
    write_man_pages(&args.dir).map_err(|e| {
        Failure::local(format!(
            "cannot write man pages to {}: {e}",
            args.dir.display()
        ))
    })
}

fn write_man_pages(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = Cli::command().disable_help_subcommand(true);
    // Gives each subcommand its page name (mailctl-fetch) and its flags their final form.
    cmd.build();
    let source = format!("mailctl {}", env!("CARGO_PKG_VERSION"));
    let mut pages: Vec<clap::Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    pages.push(cmd);
    for page in pages {
        let man = clap_mangen::Man::new(page).source(source.clone());
        let mut roff = Vec::new();
        man.render(&mut roff)?;
        // clap_mangen titles the after-help text EXTRA; in mailctl it is the exit statuses.
        let roff = String::from_utf8_lossy(&roff).replace(".SH EXTRA\n", ".SH \"EXIT STATUS\"\n");
        std::fs::write(dir.join(man.get_filename()), roff)?;
    }
    Ok(())
}
