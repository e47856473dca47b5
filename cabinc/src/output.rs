//! Terminal output: cargo-style status lines and one-line errors.

use std::io::{IsTerminal, Write};

/// Prints a right-aligned, bold-green status word and a message to stderr.
pub fn status(word: &str, msg: &str) {
    let mut err = std::io::stderr().lock();
    if std::io::stderr().is_terminal() {
        let _ = writeln!(err, "\x1b[1;32m{word:>12}\x1b[0m {msg}");
    } else {
        let _ = writeln!(err, "{word:>12} {msg}");
    }
}

/// Prints an error as `error: what` and, when the message carries one, a
/// separate `help:` line. Causes are joined with `: ` on the same line.
pub fn error(e: &anyhow::Error) {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
    }
    let (what, help) = match text.split_once("; help: ") {
        Some((w, h)) => (w.to_string(), Some(h.to_string())),
        None => (text, None),
    };
    let tty = std::io::stderr().is_terminal();
    let mut err = std::io::stderr().lock();
    if tty {
        let _ = writeln!(err, "\x1b[1;31merror\x1b[0m: {what}");
    } else {
        let _ = writeln!(err, "error: {what}");
    }
    if let Some(h) = help {
        let _ = writeln!(err, "help: {h}");
    }
}

/// `--format`: the one output-format option of every subcommand that prints
/// a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Text for people.
    #[default]
    #[value(alias = "human")]
    Text,
    /// JSON for scripts (one object on stdout; JSON lines for a trace).
    #[value(alias = "jsonl")]
    Json,
}

/// Writes `bytes` to stdout, for an output path given as `-`.
pub fn to_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| anyhow::anyhow!("cannot write to stdout: {e}"))
}

/// Whether an output path means stdout.
pub fn is_stdout(path: &std::path::Path) -> bool {
    path.as_os_str() == "-"
}
