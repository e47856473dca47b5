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

const USAGE: &str = "usage: cargo cabin build [cargo build args...]
       cargo cabin run [--bin NAME] [cargo build args...] [-- program args...]

build  builds the package for x86_64-unknown-linux-gnu with +crt-static and writes <bin>.cabin
       beside each executable.
run    builds, then runs one executable's image confined with `cabinc run` (found as $CABINC
       when set, else on PATH or beside cargo-cabin); without `cabinc run` it runs the image directly
       (passthrough, not confined) and says so.
Settings: [package.metadata.cabin] backend, policy (a `cabinc run --policy` file), allow-read,\nallow-write, env, allow-readable-code.";

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
    let mut cmd = Command::new(cargo());
    cmd.args(["metadata", "--format-version", "1", "--no-deps"]);
    // Pass on the options that choose the workspace.
    let mut it = cargo_args.iter();
    while let Some(a) = it.next() {
        if a == "--manifest-path" {
            if let Some(v) = it.next() {
                cmd.arg(a).arg(v);
            }
        } else if a.starts_with("--manifest-path=") || a == "--offline" || a == "--frozen" || a == "--locked"
        {
            cmd.arg(a);
        }
    }
    let out = cmd.stderr(Stdio::inherit()).output().context("cannot run cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed");
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("cargo metadata printed bad JSON")?;
    let mut res = Vec::new();
    for p in v["packages"].as_array().into_iter().flatten() {
        let id = p["id"].as_str().unwrap_or_default().to_string();
        let name = p["name"].as_str().unwrap_or_default();
        let dir = p["manifest_path"].as_str().map(Path::new).and_then(Path::parent).unwrap_or(Path::new("."));
        let s = Settings::from_metadata(name, &p["metadata"])?;
        res.push((id, s, dir.to_path_buf()));
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

fn run(args: &[String]) -> Result<ExitCode> {
    let (before, program_args) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[][..]),
    };
    // --bin NAME also narrows the build.
    let bin = before.iter().position(|a| a == "--bin").and_then(|i| before.get(i + 1)).cloned();
    let built = build(before)?;
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
            cmd.arg("run")
                .args(b.settings.run_args(&b.package_dir)?)
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
            Command::new(&b.image)
                .args(program_args)
                .status()
                .with_context(|| format!("cannot run {}", b.image.display()))?
        }
    };
    Ok(exit_code(st))
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo cabin X` runs `cargo-cabin cabin X`.
    if args.first().map(String::as_str) == Some("cabin") {
        args.remove(0);
    }
    let result = match args.first().map(String::as_str) {
        Some("build") => build(&args[1..]).map(|_| ExitCode::SUCCESS),
        Some("run") => run(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some("-V" | "--version") => {
            println!("cargo-cabin {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
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
