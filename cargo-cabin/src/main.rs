//! `cargo cabin`: build a Rust package statically and write a Cabin image beside each executable
//! (`cargo cabin build [cargo build args]`), or build and run one confined
//! (`cargo cabin run [--bin NAME] [cargo build args] [-- program args]`).
//! Exit status: the program's for `run`; 1 when a build or image fails; 2 for usage errors.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{bail, Context, Result};
use cargo_cabin::messages::{self, Executable};
use cargo_cabin::settings::Settings;
use cargo_cabin::{static_rustflags, write_image, TARGET};
use clap::error::ErrorKind;
use clap::{Parser, Subcommand};

/// The one-line usage an argument error points to.
const USAGE: &str = "cargo cabin build [CARGO BUILD ARGS]... | cargo cabin run [--bin NAME] [CARGO BUILD ARGS]... [-- PROGRAM ARGS...]";

const SETTINGS_HELP: &str = "\
`cargo cabin run` takes these `cabinc run` options among the cargo arguments (before `--`);
they add to the package's settings, and --backend replaces its backend:
  --backend B  --policy FILE  --allow-read DIR  --allow-write DIR  --env K=V  --mem SIZE
  --stats FILE  --trace[=FILE]  --audit FILE  --forwarding ring|sync  --cpus split|shared
  --require-execute-only
The program's argv[0] is the executable's path as `cargo run` gives it.

Settings come from the package's [package.metadata.cabin]:
  backend = \"auto\"              auto | process | kvm (cabinc run --backend)
  policy = \"cabin-policy.toml\"  a cabinc run --policy file (docs/policy.md), relative to the package
  allow-read = [\"data\"]         extra --allow-read trees, relative to the package
  allow-write = [\"out\"]         extra --allow-write trees
  env = [\"RUST_LOG=info\"]       extra --env entries
  allow-readable-code = false   cabinc build --allow-readable-code

Exit status: the program's for `run`; 1 when a build or an image fails; 2 for usage errors.";

/// Build a Rust package statically and turn its executables into Cabin images; run one confined.
#[derive(Debug, Parser)]
#[command(name = "cargo-cabin", bin_name = "cargo cabin", version, arg_required_else_help = true)]
#[command(after_help = SETTINGS_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Build for x86_64-unknown-linux-gnu with +crt-static and write <bin>.cabin beside each executable
    Build {
        /// Arguments for `cargo build` (--release, -p NAME, --features F, --bin NAME, ...)
        #[arg(value_name = "CARGO BUILD ARGS", trailing_var_arg = true, allow_hyphen_values = true)]
        cargo_args: Vec<String>,
    },
    /// Build, then run one executable's image confined with `cabinc run`
    #[command(override_usage = "cargo cabin run [--bin NAME] [CARGO BUILD ARGS]... [-- PROGRAM ARGS...]")]
    #[command(after_help = SETTINGS_HELP)]
    #[command(long_about = "Build, then run one executable's image confined with `cabinc run`.\n\n\
        cabinc is $CABINC when set, else the first on PATH or beside cargo-cabin. Without a \
        `cabinc run` the image runs directly (passthrough, NOT confined), and cargo cabin says so.")]
    Run {
        /// Arguments for `cargo build` (--release, -p NAME, --features F, ...); `--bin NAME` among
        /// them also picks the executable to run (needed when the package has several);
        /// `cabinc run` options among them (--allow-read DIR, --policy FILE, ...: see below) go
        /// to `cabinc run`. The program's arguments follow `--`.
        #[arg(value_name = "CARGO BUILD ARGS", trailing_var_arg = true, allow_hyphen_values = true)]
        cargo_args: Vec<String>,
    },
}

fn status(word: &str, msg: &str) {
    eprintln!("{word:>12} {msg}");
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// A built executable with its image and its package's settings.
#[derive(Debug)]
struct Built {
    exe: Executable,
    image: PathBuf,
    settings: Settings,
    package_dir: PathBuf,
}

/// Package id -> (settings, package directory), from `cargo metadata`.
fn package_settings(cargo_args: &[String]) -> Result<Vec<(String, Settings, PathBuf)>> {
    let mut cmd = cargo_metadata::MetadataCommand::new();
    cmd.cargo_path(cargo()).no_deps().verbose(true);
    // Pass on the options that choose the workspace.
    let mut options = Vec::new();
    let mut it = cargo_args.iter();
    while let Some(a) = it.next() {
        if a == "--manifest-path" {
            if let Some(v) = it.next() {
                cmd.manifest_path(v);
            }
        } else if a.starts_with("--manifest-path=") || a == "--offline" || a == "--frozen" || a == "--locked"
        {
            options.push(a.clone());
        }
    }
    let metadata = cmd.other_options(options).exec().map_err(|e| match e {
        // Its stderr has been shown already.
        cargo_metadata::Error::CargoMetadata { .. } => anyhow::anyhow!("cargo metadata failed"),
        other => anyhow::Error::new(other).context("cannot run cargo metadata"),
    })?;
    let mut res = Vec::new();
    for p in metadata.packages {
        let dir =
            p.manifest_path.parent().map_or_else(|| PathBuf::from("."), |d| d.as_std_path().to_path_buf());
        let s = Settings::from_metadata(&p.name, &p.metadata)?;
        res.push((p.id.repr, s, dir));
    }
    Ok(res)
}

fn build(cargo_args: &[String]) -> Result<Vec<Built>> {
    if cargo_args.iter().any(|a| a == "--target" || a.starts_with("--target=")) {
        bail!("cargo cabin builds for {TARGET} only; help: drop the --target argument");
    }
    let settings = package_settings(cargo_args)?;
    let mut cmd = Command::new(cargo());
    cmd.args(["build", "--message-format=json-render-diagnostics", "--target", TARGET]).args(cargo_args);
    if let Ok(enc) = std::env::var("CARGO_ENCODED_RUSTFLAGS") {
        // Cargo ignores RUSTFLAGS when this is set: add the flag here instead.
        let mut v: Vec<&str> = enc.split('\x1f').filter(|s| !s.is_empty()).collect();
        if !enc.contains("+crt-static") {
            v.extend(["-C", "target-feature=+crt-static"]);
        }
        cmd.env("CARGO_ENCODED_RUSTFLAGS", v.join("\x1f"));
    } else {
        cmd.env("RUSTFLAGS", static_rustflags(std::env::var("RUSTFLAGS").ok().as_deref()));
    }
    status("Building", &format!("cargo build --target {TARGET} with +crt-static"));
    let out =
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).output().context("cannot run cargo build")?;
    let msgs = messages::parse(&String::from_utf8_lossy(&out.stdout));
    if !out.status.success() || msgs.success == Some(false) {
        bail!("cargo build failed");
    }
    let exes: Vec<Executable> =
        msgs.executables.into_iter().filter(|e| e.kind == "bin" || e.kind == "example").collect();
    if exes.is_empty() {
        bail!("cargo built no executable; help: the package needs a [[bin]] target (src/main.rs)");
    }
    let mut built = Vec::new();
    for exe in exes {
        let (s, dir) = settings
            .iter()
            .find(|(id, _, _)| *id == exe.package_id)
            .map(|(_, s, d)| (s.clone(), d.clone()))
            .unwrap_or_else(|| (Settings::default(), PathBuf::from(".")));
        let (image, rewritten) = write_image(&exe.path, s.allow_readable_code)?;
        status("Cabin", &format!("{} ({rewritten} system-call sites rewritten)", image.display()));
        built.push(Built { exe, image, settings: s, package_dir: dir });
    }
    Ok(built)
}

/// `cabinc`, when it has a `run` subcommand.
fn find_cabinc() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    // $CABINC, when set, is the only candidate.
    if let Some(c) = std::env::var_os("CABINC") {
        candidates.push(c.into());
    } else if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("cabinc")));
    }
    if std::env::var_os("CABINC").is_none() {
        if let Some(dir) = std::env::current_exe().ok().as_deref().and_then(Path::parent) {
            candidates.push(dir.join("cabinc"));
        }
    }
    candidates.into_iter().filter(|c| c.is_file()).find(|c| {
        Command::new(c)
            .args(["run", "--help"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

fn exit_code(st: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => ExitCode::from(c.clamp(0, 255) as u8),
        (None, Some(s)) => ExitCode::from((128 + s).clamp(0, 255) as u8),
        _ => ExitCode::from(1),
    }
}

/// The command line before the first `--`, and the program's arguments after it.
fn split_program_args(args: &[String]) -> (&[String], &[String]) {
    match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[]),
    }
}

/// `cabinc run` options `cargo cabin run` takes from its command line (none of
/// them is a `cargo build` option): name, and whether it takes a value.
const RUN_OPTIONS: &[(&str, bool)] = &[
    ("--backend", true),
    ("--policy", true),
    ("--allow-read", true),
    ("--allow-write", true),
    ("--env", true),
    ("--mem", true),
    ("--stats", true),
    ("--audit", true),
    ("--forwarding", true),
    ("--cpus", true),
    ("--require-execute-only", false),
];

/// Splits the arguments before `--` into cargo's and `cabinc run`'s
/// ([`RUN_OPTIONS`], and `--trace` / `--trace=FILE`, which takes its value
/// only after `=`). Errors when an option lacks its value.
fn split_run_options(args: &[String]) -> Result<(Vec<String>, Vec<String>)> {
    let (mut cargo, mut run) = (Vec::new(), Vec::new());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--trace" || a.starts_with("--trace=") {
            run.push(a.clone());
            continue;
        }
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (a.as_str(), None),
        };
        match RUN_OPTIONS.iter().find(|(n, _)| *n == name) {
            Some((_, false)) if inline.is_none() => run.push(a.clone()),
            Some((_, true)) => {
                let value = match inline {
                    Some(v) => v.to_string(),
                    None => it.next().cloned().with_context(|| {
                        format!(
                            "{name} needs a value; help: write {name} VALUE (see `cargo cabin run --help`)"
                        )
                    })?,
                };
                run.push(name.to_string());
                run.push(value);
            }
            _ => cargo.push(a.clone()),
        }
    }
    Ok((cargo, run))
}

/// argv[0] as `cargo run` gives it: the executable's path relative to the
/// current directory when it lies under it (`./NAME` directly in it), else
/// absolute.
fn cargo_run_argv0(exe: &Path) -> String {
    let cwd = std::env::current_dir().ok();
    let shown = match cwd.as_deref().and_then(|c| exe.strip_prefix(c).ok()) {
        Some(rel) if rel.file_name() == Some(rel.as_os_str()) => Path::new(".").join(rel),
        Some(rel) => rel.to_path_buf(),
        None => exe.to_path_buf(),
    };
    shown.display().to_string()
}

/// The `--bin NAME` (or `--bin=NAME`) among cargo's arguments, if any.
fn bin_name(cargo_args: &[String]) -> Option<String> {
    let mut it = cargo_args.iter();
    while let Some(a) = it.next() {
        if a == "--bin" {
            return it.next().cloned();
        }
        if let Some(name) = a.strip_prefix("--bin=") {
            return Some(name.to_string());
        }
    }
    None
}

fn run(args: &[String], program_args: &[String]) -> Result<ExitCode> {
    let (cargo_args, run_options) = split_run_options(args)?;
    let cargo_args = cargo_args.as_slice();
    // --bin NAME also narrows the build.
    let bin = bin_name(cargo_args);
    let built = build(cargo_args)?;
    let chosen: Vec<&Built> = built
        .iter()
        .filter(|b| b.exe.kind == "bin" && bin.as_ref().is_none_or(|n| *n == b.exe.name))
        .collect();
    let b = match chosen.as_slice() {
        [one] => *one,
        [] => bail!("no executable to run; help: name one with --bin NAME"),
        many => {
            let names: Vec<&str> = many.iter().map(|b| b.exe.name.as_str()).collect();
            bail!("several executables: {}; help: pick one with --bin NAME", names.join(", "))
        }
    };
    let st = match find_cabinc() {
        Some(cabinc) => {
            let mut cmd = Command::new(&cabinc);
            let mut settings = b.settings.run_args(&b.package_dir)?;
            if run_options.iter().any(|o| o == "--backend") {
                // The command line's backend replaces the settings' (the first pair).
                settings.drain(..2);
            }
            cmd.arg("run")
                .args(settings)
                .args(&run_options)
                .arg("--arg0")
                .arg(cargo_run_argv0(&b.exe.path))
                .arg(&b.image)
                .arg("--")
                .args(program_args);
            status("Running", &format!("{} confined ({})", b.image.display(), cabinc.display()));
            cmd.status().with_context(|| format!("cannot run {}", cabinc.display()))?
        }
        None => {
            status(
                "Warning",
                "`cabinc run` is not available (no cabinc with a run subcommand in $CABINC, PATH or beside cargo-cabin): running the image in passthrough mode, NOT confined",
            );
            status("Running", &format!("{} (passthrough)", b.image.display()));
            if !run_options.is_empty() {
                status("Warning", &format!("ignored without cabinc: {}", run_options.join(" ")));
            }
            use std::os::unix::process::CommandExt;
            Command::new(&b.image)
                .arg0(cargo_run_argv0(&b.exe.path))
                .args(program_args)
                .status()
                .with_context(|| format!("cannot run {}", b.image.display()))?
        }
    };
    Ok(exit_code(st))
}

/// Prints an argument error as one line with a help line, like the
/// other errors; `--help` and `--version` print as usual.
fn usage_error(e: clap::Error) -> ExitCode {
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
        || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    {
        let _ = e.print();
        return ExitCode::from(e.exit_code().clamp(0, 255) as u8);
    }
    let text = e.to_string();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let what = lines.next().unwrap_or("bad arguments");
    let what = what.strip_prefix("error: ").unwrap_or(what);
    let tip = lines.find_map(|l| l.strip_prefix("tip: "));
    match tip {
        Some(tip) => eprintln!("error: {what}\nhelp: {tip}; usage: {USAGE}"),
        None => eprintln!("error: {what}\nhelp: usage: {USAGE} (see `cargo cabin --help`)"),
    }
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().collect();
    // `cargo cabin X` runs `cargo-cabin cabin X`.
    if args.get(1).map(String::as_str) == Some("cabin") {
        args.remove(1);
    }
    // Everything after `--` is the program's: clap never sees it.
    let (args, program_args) = split_program_args(&args);
    // `--help` among the cargo arguments is ours: passed on, cargo would
    // print its own help and build nothing.
    let wants_help = args.iter().skip(2).any(|a| a == "--help" || a == "-h");
    if wants_help && matches!(args.get(1).map(String::as_str), Some("build" | "run")) {
        if let Err(e) = Cli::try_parse_from([args[0].as_str(), args[1].as_str(), "--help"]) {
            return usage_error(e);
        }
    }
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let result = match cli.command {
        Cmd::Build { .. } if !program_args.is_empty() => Err(anyhow::anyhow!(
            "`cargo cabin build` runs no program, so it takes no arguments after `--`; help: drop them, or use `cargo cabin run`"
        )),
        Cmd::Build { cargo_args } => build(&cargo_args).map(|_| ExitCode::SUCCESS),
        Cmd::Run { cargo_args } => run(&cargo_args, program_args),
    };
    match result {
        Ok(c) => c,
        Err(e) => {
            let text = format!("{e:#}");
            match text.split_once("; help: ") {
                Some((w, h)) => eprintln!("error: {w}\nhelp: {h}"),
                None => eprintln!("error: {text}"),
            }
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cmd, ErrorKind> {
        let args = std::iter::once("cargo-cabin").chain(args.iter().copied());
        Cli::try_parse_from(args).map(|c| c.command).map_err(|e| e.kind())
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn build_passes_every_argument_to_cargo() {
        let Ok(Cmd::Build { cargo_args }) = parse(&["build", "--release", "-p", "app", "--bin", "x"]) else {
            panic!("not a build")
        };
        assert_eq!(cargo_args, strings(&["--release", "-p", "app", "--bin", "x"]));
        assert!(matches!(parse(&["build"]), Ok(Cmd::Build { cargo_args }) if cargo_args.is_empty()));
    }

    /// `run`'s cargo and program arguments, as `main` splits and parses them.
    fn run_args(args: &[&str]) -> (Vec<String>, Vec<String>) {
        let all = strings(&[&["cargo-cabin"], args].concat());
        let (head, program) = split_program_args(&all);
        let Ok(Cli { command: Cmd::Run { cargo_args } }) = Cli::try_parse_from(head) else {
            panic!("not a run: {args:?}")
        };
        (cargo_args, program.to_vec())
    }

    #[test]
    fn run_splits_cargo_and_program_arguments() {
        let (cargo_args, program_args) = run_args(&[
            "run",
            "--release",
            "--bin",
            "app",
            "--features",
            "f",
            "--",
            "--exit",
            "3",
            "--",
            "a",
        ]);
        assert_eq!(cargo_args, strings(&["--release", "--bin", "app", "--features", "f"]));
        assert_eq!(program_args, strings(&["--exit", "3", "--", "a"]));
        assert_eq!(bin_name(&cargo_args).as_deref(), Some("app"));
        let (cargo_args, program_args) = run_args(&["run", "--bin=app", "--", "-x"]);
        assert_eq!(bin_name(&cargo_args).as_deref(), Some("app"));
        assert_eq!(program_args, strings(&["-x"]));
        let (cargo_args, program_args) = run_args(&["run", "--", "--exit", "3"]);
        assert_eq!((cargo_args.len(), program_args), (0, strings(&["--exit", "3"])));
        let (cargo_args, program_args) = run_args(&["run"]);
        assert_eq!((bin_name(&cargo_args), program_args.len()), (None, 0));
    }

    #[test]
    fn run_options_go_to_cabinc_and_the_rest_to_cargo() {
        let (cargo, run) = split_run_options(&strings(&[
            "--release",
            "--allow-read",
            "data",
            "--bin=app",
            "--env=A=1",
            "--trace",
            "--require-execute-only",
            "--mem",
            "1G",
            "-v",
        ]))
        .expect("split");
        assert_eq!(cargo, strings(&["--release", "--bin=app", "-v"]));
        assert_eq!(
            run,
            strings(&[
                "--allow-read",
                "data",
                "--env",
                "A=1",
                "--trace",
                "--require-execute-only",
                "--mem",
                "1G"
            ])
        );
        assert!(split_run_options(&strings(&["--policy"])).is_err());
    }

    #[test]
    fn argv0_is_what_cargo_run_gives() {
        let cwd = std::env::current_dir().expect("cwd");
        assert_eq!(cargo_run_argv0(&cwd.join("target/debug/app")), "target/debug/app");
        assert_eq!(cargo_run_argv0(&cwd.join("app")), "./app");
        assert_eq!(cargo_run_argv0(Path::new("/nonexistent/app")), "/nonexistent/app");
    }

    #[test]
    fn help_version_and_usage_errors() {
        assert_eq!(parse(&["--help"]).err(), Some(ErrorKind::DisplayHelp));
        assert_eq!(parse(&["run", "--help"]).err(), Some(ErrorKind::DisplayHelp));
        assert_eq!(parse(&["--version"]).err(), Some(ErrorKind::DisplayVersion));
        assert_eq!(parse(&[]).err(), Some(ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand));
        assert_eq!(parse(&["frobnicate"]).err(), Some(ErrorKind::InvalidSubcommand));
    }
}
