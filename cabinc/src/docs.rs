//! `cabinc completions SHELL` and `cabinc man DIR`: shell completions and
//! manual pages generated from the command-line definition itself, so they
//! never drift from `--help`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::Cli;

/// Arguments of `cabinc completions`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Arguments of `cabinc man`.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Directory to write cabinc.1 and cabinc-SUBCOMMAND.1 into (`-` prints
    /// cabinc.1 on stdout).
    #[arg(default_value = "-")]
    pub dir: PathBuf,
}

/// Prints the completion script.
pub fn completions(a: &CompletionsArgs) -> Result<ExitCode> {
    let mut cmd = Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "cabinc", &mut buf);
    crate::output::to_stdout(&buf)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes the manual pages.
pub fn man(a: &ManArgs) -> Result<ExitCode> {
    let cmd = Cli::command();
    if crate::output::is_stdout(&a.dir) {
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut buf).context("cannot render the manual page")?;
        crate::output::to_stdout(&buf)?;
        return Ok(ExitCode::SUCCESS);
    }
    std::fs::create_dir_all(&a.dir).with_context(|| format!("cannot create {}", a.dir.display()))?;
    let mut pages = vec![("cabinc".to_string(), cmd.clone())];
    for sub in cmd.get_subcommands() {
        // `cabinc-run.1` documents `cabinc run` (the name man(1) looks for).
        let page = sub
            .clone()
            .name(format!("cabinc-{}", sub.get_name()))
            .bin_name(format!("cabinc {}", sub.get_name()));
        pages.push((format!("cabinc-{}", sub.get_name()), page));
    }
    for (name, page) in pages {
        let mut buf = Vec::new();
        let file = format!("{name}.1");
        clap_mangen::Man::new(page).title(name).render(&mut buf).context("cannot render a manual page")?;
        crate::build::write_atomic(&a.dir.join(&file), &buf, 0o644)?;
    }
    crate::output::status("Wrote", &format!("{}/cabinc*.1", a.dir.display()));
    Ok(ExitCode::SUCCESS)
}
