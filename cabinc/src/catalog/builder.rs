//! Building a catalog item: resolve its source tree (a directory, or a crate fetched by cargo),
//! run its build commands into the cache, check the result is static, rewrite it into a Cabin image
//! with the same pipeline as `cabinc build`, and generate its inputs.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime};

use anyhow::{bail, Context, Result};
use cabin_image::elf::{ElfError, ElfFile};
use cabin_rewriter::pipeline::{build_image, BuildOptions, Stage};

use super::manifest::{expand, SourceSpec};
use super::{inputs, CatalogContext, Item};
use crate::output::status;

/// A built item: where its native executable, image and inputs are, and its placeholders.
#[derive(Debug, Clone)]
pub struct Built {
    /// The item.
    pub item: Item,
    /// The static executable.
    pub native: PathBuf,
    /// The Cabin image.
    pub image: PathBuf,
    /// The item's cache directory.
    pub dir: PathBuf,
    /// Placeholder values for run arguments (`scratch` is added per run).
    pub vars: BTreeMap<String, String>,
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Finds the packaged source of a crates.io crate: a throwaway cargo project in the cache depends
/// on it, `cargo fetch` downloads it, and `cargo metadata` says where it was unpacked.
pub fn cargo_crate_source(cache: &Path, krate: &str, version: Option<&str>) -> Result<PathBuf> {
    let req = version.unwrap_or("*");
    let tag: String = format!("{krate}-{req}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
        .collect();
    let dir = cache.join("cargo-sources").join(tag);
    std::fs::create_dir_all(dir.join("src")).with_context(|| format!("cannot create {}", dir.display()))?;
    let manifest = format!(
        "# Written by cabinc catalog to locate the source of `{krate}`.\n[package]\nname = \"cabin-source-probe\"\n\
         version = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n[dependencies]\n{krate} = {req:?}\n\n[workspace]\n"
    );
    std::fs::write(dir.join("Cargo.toml"), manifest)?;
    std::fs::write(dir.join("src/lib.rs"), "")?;
    let mpath = dir.join("Cargo.toml");
    let out = Command::new(cargo())
        .args(["fetch", "--quiet", "--manifest-path"])
        .arg(&mpath)
        .stdout(Stdio::null())
        .output()
        .context("cannot run cargo fetch; help: install cargo or pass --source DIR")?;
    if !out.status.success() {
        bail!(
            "cargo fetch of {krate} {req} failed: {}; help: check the network or pass --source DIR",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let out = Command::new(cargo())
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(&mpath)
        .stderr(Stdio::null())
        .output()
        .context("cannot run cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed for {krate} {req}");
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("cargo metadata printed bad JSON")?;
    let found = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"].as_str() == Some(krate))
        .and_then(|p| p["manifest_path"].as_str())
        .with_context(|| format!("cargo metadata does not list {krate}"))?;
    Ok(Path::new(found).parent().map(Path::to_path_buf).unwrap_or_default())
}

/// The source directory of an item.
pub fn resolve_source(ctx: &CatalogContext, item: &Item, over: Option<&Path>) -> Result<PathBuf> {
    let m = &item.manifest;
    let base = match (over, &m.source) {
        (Some(d), _) => d.to_path_buf(),
        (None, None) => m.dir.clone(),
        (None, Some(SourceSpec { path: Some(p), .. })) => m.dir.join(p),
        (None, Some(SourceSpec { cargo_crate: Some(k), version, .. })) => {
            cargo_crate_source(&ctx.cache, k, version.as_deref())?
        }
        (None, Some(_)) => bail!("manifest of {} has an empty source", m.name),
    };
    let dir = match (over, m.source.as_ref().and_then(|s| s.subdir.as_ref())) {
        (None, Some(sub)) => base.join(sub),
        _ => base,
    };
    std::fs::canonicalize(&dir).with_context(|| {
        format!("source directory {} of {} does not exist; help: pass --source DIR", dir.display(), item.id())
    })
}

/// A progress display: a bar on a terminal, status lines otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    id: String,
}

impl Progress {
    fn new(id: &str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(100);
            b.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {prefix} {msg:>24} [{bar:30}] {percent}%")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.set_prefix(id.to_string());
            b.enable_steady_tick(std::time::Duration::from_millis(120));
            b
        });
        Progress { bar, id: id.to_string() }
    }

    /// Shows a step; without a terminal only `loud` steps (real work) print a line.
    fn step(&self, msg: &str, pct: u64, loud: bool) {
        match &self.bar {
            Some(b) => {
                b.set_message(msg.to_string());
                b.set_position(pct);
            }
            None if loud => status("Building", &format!("{}: {msg}", self.id)),
            None => {}
        }
    }

    fn done(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Builds (or finds fresh in the cache) an item's native executable, image and inputs.
pub fn build(ctx: &CatalogContext, item: &Item, source: Option<&Path>, force: bool) -> Result<Built> {
    let started = Instant::now();
    let m = &item.manifest;
    let dir = ctx.cache.join("catalog").join(&m.name).join(&item.variant);
    let work = dir.join("work");
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let inputs_dir = ctx.cache.join("catalog").join(&m.name).join("inputs");
    let native = dir.join(&m.name);
    let image = dir.join(format!("{}.cabin", m.name));
    let progress = Progress::new(&item.id());

    progress.step("source", 2, false);
    let src = resolve_source(ctx, item, source)?;
    let mut vars = BTreeMap::new();
    let s = |p: &Path| p.display().to_string();
    vars.insert("source".to_string(), s(&src));
    vars.insert("out".to_string(), s(&native));
    vars.insert("work".to_string(), s(&work));
    vars.insert("cc".to_string(), ctx.cc.clone());
    vars.insert("manifest_dir".to_string(), s(&m.dir));
    vars.insert("cache".to_string(), s(&ctx.cache));
    vars.insert("variant".to_string(), item.variant.clone());
    vars.insert("inputs".to_string(), s(&inputs_dir));
    vars.insert("name".to_string(), m.name.clone());
    for i in &m.inputs {
        vars.insert(format!("input.{}", i.name), s(&inputs_dir.join(&i.name)));
    }
    vars.extend(m.variant_vars(&item.variant));

    // The native build is fresh when its stamp (the manifest, variant, source and compiler) matches.
    let stamp_path = dir.join("native.stamp");
    // Edits to the files directly in the source directory also make the build stale.
    let newest = std::fs::read_dir(&src)
        .map(|rd| rd.flatten().filter_map(|e| e.metadata().and_then(|m| m.modified()).ok()).max())
        .ok()
        .flatten();
    let stamp = format!("{:?}\n{:?}\n{:?}\n", m, vars, newest);
    let fresh = !force
        && native.is_file()
        && std::fs::read_to_string(&stamp_path).ok().as_deref() == Some(stamp.as_str());
    if !fresh {
        let _ = std::fs::remove_file(&stamp_path);
        let log_path = dir.join("build.log");
        let mut log = std::fs::File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let n = m.build.commands.len();
        for (k, cmd) in m.build.commands.iter().enumerate() {
            let line = expand(cmd, &vars, true)?;
            progress.step(&format!("compile {}/{n}", k + 1), 5 + 60 * k as u64 / n as u64, true);
            let _ = writeln!(log, "$ {line}");
            let err_log = log.try_clone()?;
            let st = Command::new("sh")
                .arg("-c")
                .arg(&line)
                .current_dir(&work)
                .env("CC", &ctx.cc)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(err_log)
                .status()
                .context("cannot run sh")?;
            if !st.success() {
                progress.done();
                let text = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                bail!(
                    "build command {} of {} failed ({st}):\n  {line}\n{}\n(full log: {}); help: fix the source or the manifest's build.commands",
                    k + 1,
                    item.id(),
                    tail.join("\n"),
                    log_path.display()
                );
            }
        }
        if !native.is_file() {
            progress.done();
            bail!(
                "the build of {} left no executable at {}; help: the last command must write {{out}}",
                item.id(),
                native.display()
            );
        }
        std::fs::write(&stamp_path, &stamp)?;
    }

    // The image is fresh when newer than the native executable and built by
    // this toolchain (its rewriter and libos: `toolchain_id`, stamped next
    // to it). Not by this cabinc's file time: an older cabinc run after a
    // newer one (or a newer one with an old file time) would otherwise run
    // an image that links another libos than its own.
    let image_stamp = dir.join("image.stamp");
    let toolchain = cabin_rewriter::cache::toolchain_id();
    let image_fresh = !force
        && std::fs::read_to_string(&image_stamp).ok().as_deref() == Some(toolchain.as_str())
        && match (mtime(&image), mtime(&native)) {
            (Some(i), Some(n)) => i >= n,
            _ => false,
        };
    if !image_fresh {
        let _ = std::fs::remove_file(&image_stamp);
        progress.step("rewrite", 70, true);
        let bytes = std::fs::read(&native).with_context(|| format!("cannot read {}", native.display()))?;
        if m.build.require_static {
            if let Err(ElfError::Dynamic) = ElfFile::parse(&bytes) {
                progress.done();
                bail!(
                    "{} built a dynamically linked executable; help: link it statically (add -static to the link command, or use musl-gcc -static)",
                    item.id()
                );
            }
        }
        let mut on_stage = |st: Stage| {
            let pct = match st {
                Stage::Disassembling(done, total) => 70 + (done * 15 / total.max(1)) as u64,
                Stage::Planning => 86,
                Stage::Trampolines => 88,
                Stage::Emitting => 90,
                Stage::Measuring => 92,
            };
            if let Some(b) = &progress.bar {
                b.set_position(pct);
            }
        };
        let out = build_image(&bytes, &BuildOptions::default(), &mut on_stage)
            .with_context(|| format!("cannot build the image of {}", item.id()))?;
        crate::build::write_atomic(&image, &out.image, 0o755)?;
        std::fs::write(&image_stamp, &toolchain)
            .with_context(|| format!("cannot write {}", image_stamp.display()))?;
    }

    for (k, i) in m.inputs.iter().enumerate() {
        progress.step(&format!("input {}", i.name), 94 + k as u64, false);
        if inputs::ensure(&inputs_dir.join(&i.name), &i.generate)? {
            status(
                "Generated",
                &format!("{} ({} bytes)", inputs_dir.join(&i.name).display(), i.generate.bytes),
            );
        }
    }
    progress.done();
    if !fresh || !image_fresh {
        status(
            "Built",
            &format!("{} in {:.1}s -> {}", item.id(), started.elapsed().as_secs_f64(), dir.display()),
        );
    }
    Ok(Built { item: item.clone(), native, image, dir, vars })
}
