//! `cabinc catalog`: the benchmark catalog. Each entry is a TOML manifest (see docs/catalog.md)
//! saying how to build a program statically from a source tree, which inputs to generate, how to
//! run it and how to read its scores. This module finds manifests, builds native executables and
//! Cabin images into a cache directory, and runs them; `cabinc bench` uses the same pieces.
//! It never writes into a source tree or the repository: everything it makes goes to the cache.

pub mod builder;
pub mod inputs;
pub mod manifest;
pub mod runner;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use crate::output::status;
pub use manifest::Manifest;

/// Arguments of `cabinc catalog`.
#[derive(Debug, clap::Args)]
pub struct CatalogArgs {
    #[command(subcommand)]
    pub command: CatalogCommand,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Options shared by `cabinc catalog` and `cabinc bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// An extra catalog directory to search first (repeatable).
    #[arg(long, value_name = "DIR", global = true)]
    pub catalog: Vec<PathBuf>,
    /// Cache directory for sources, builds and inputs
    /// [default: $CABIN_CACHE_DIR, else $XDG_CACHE_HOME/cabin, else ~/.cache/cabin].
    #[arg(long, value_name = "DIR", global = true)]
    pub cache_dir: Option<PathBuf>,
    /// C compiler for the {cc} placeholder [default: $CC, else gcc].
    #[arg(long, value_name = "CC", global = true)]
    pub cc: Option<String>,
}

/// `cabinc catalog` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum CatalogCommand {
    /// List the entries and their variants.
    List {
        /// Output format: the list, or a JSON array of
        /// `{"name", "description", "variants", "format", "dir"}`.
        #[arg(long, value_enum, default_value_t = crate::Format::Text)]
        format: crate::Format,
    },
    /// Build an entry's native executable and Cabin image into the cache.
    Build {
        /// Entry name, or NAME/VARIANT for one variant.
        name: String,
        /// Source tree to build from (overrides the manifest's `source`).
        #[arg(long, value_name = "DIR")]
        source: Option<PathBuf>,
        /// Rebuild even when the cache is fresh.
        #[arg(long)]
        force: bool,
    },
    /// Build (if needed) and run an entry, showing its output and scores.
    Run {
        /// Entry name, or NAME/VARIANT.
        name: String,
        /// Source tree to build from (overrides the manifest's `source`).
        #[arg(long, value_name = "DIR")]
        source: Option<PathBuf>,
        /// How to run: native, passthrough (the image as a plain process, not confined), or
        /// confined with `cabinc run --backend process|kvm|auto`.
        #[arg(long, default_value = "auto")]
        backend: String,
        /// Arguments replacing the manifest's `run.args`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Copy a manifest into the user catalog directory.
    Add {
        /// The manifest file.
        manifest: PathBuf,
        /// Record this source tree as the entry's source.
        #[arg(long, value_name = "DIR")]
        source: Option<PathBuf>,
        /// Replace an existing user entry of the same name.
        #[arg(long)]
        force: bool,
    },
    /// Print the catalog directories searched, in order.
    Dirs,
}

/// Where the catalog lives and where builds go.
#[derive(Debug, Clone)]
pub struct CatalogContext {
    /// Directories searched for `*.toml`, first match of a name wins.
    pub dirs: Vec<PathBuf>,
    /// Cache root.
    pub cache: PathBuf,
    /// C compiler.
    pub cc: String,
}

/// One runnable thing: an entry in one variant.
#[derive(Debug, Clone)]
pub struct Item {
    /// The entry.
    pub manifest: Arc<Manifest>,
    /// The variant name.
    pub variant: String,
}

impl Item {
    /// `name` for single-variant entries, `name/variant` otherwise.
    pub fn id(&self) -> String {
        if self.manifest.variants.is_empty() {
            self.manifest.name.clone()
        } else {
            format!("{}/{}", self.manifest.name, self.variant)
        }
    }
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from)
}

/// The user catalog: $XDG_DATA_HOME/cabin/catalog, else ~/.local/share/cabin/catalog.
pub fn user_dir() -> Option<PathBuf> {
    match std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        Some(d) => Some(PathBuf::from(d).join("cabin/catalog")),
        None => home().map(|h| h.join(".local/share/cabin/catalog")),
    }
}

/// The shipped catalog: `$CABIN_CATALOG` when set; else, found from where
/// this cabinc lies, `PREFIX/share/cabin/catalog` for an installed
/// `PREFIX/bin/cabinc`, or the `catalog/` of the checkout whose target
/// directory holds it. Never a path compiled in: an installed cabinc must
/// not list (or build from) the checkout it was built from.
pub fn builtin_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("CABIN_CATALOG").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(d));
    }
    let exe = std::env::current_exe().ok()?;
    let exe = std::fs::canonicalize(&exe).unwrap_or(exe);
    let bin = exe.parent()?;
    let installed = bin.parent().map(|p| p.join("share/cabin/catalog"));
    if let Some(d) = installed.filter(|d| d.is_dir()) {
        return Some(d);
    }
    // A checkout's build: ROOT/target/PROFILE[/deps] or ROOT/target/TRIPLE/PROFILE.
    bin.ancestors()
        .find(|a| {
            let rel = bin.strip_prefix(a).map(|r| r.components().count()).unwrap_or(usize::MAX);
            a.join("catalog").is_dir()
                && a.join("cabinc/Cargo.toml").is_file()
                && bin.starts_with(a.join("target"))
                && rel <= 3
        })
        .map(|a| a.join("catalog"))
}

/// The error when no catalog entry is found anywhere.
pub const NO_CATALOG_HELP: &str = "set CABIN_CATALOG=DIR (a checkout's catalog/), pass --catalog DIR, or \
    install one to PREFIX/share/cabin/catalog beside PREFIX/bin/cabinc; `cabinc catalog dirs` shows where \
    cabinc looks";

impl CatalogContext {
    /// The context from command-line options and the environment.
    pub fn new(c: &CommonArgs) -> Result<CatalogContext> {
        let mut dirs = c.catalog.clone();
        if let Some(p) = std::env::var_os("CABIN_CATALOG_PATH") {
            dirs.extend(std::env::split_paths(&p).filter(|p| !p.as_os_str().is_empty()));
        }
        dirs.extend(user_dir());
        if let Some(b) = builtin_dir() {
            dirs.push(std::fs::canonicalize(&b).unwrap_or(b));
        }
        let cache = match (&c.cache_dir, std::env::var_os("CABIN_CACHE_DIR").filter(|v| !v.is_empty())) {
            (Some(d), _) => d.clone(),
            (None, Some(d)) => PathBuf::from(d),
            (None, None) => match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
                Some(d) => PathBuf::from(d).join("cabin"),
                None => home()
                    .map(|h| h.join(".cache/cabin"))
                    .context("no cache directory; help: pass --cache-dir DIR or set CABIN_CACHE_DIR")?,
            },
        };
        std::fs::create_dir_all(&cache).with_context(|| format!("cannot create {}", cache.display()))?;
        let cache = std::fs::canonicalize(&cache).unwrap_or(cache);
        let cc = c.cc.clone().or_else(|| std::env::var("CC").ok()).unwrap_or_else(|| "gcc".into());
        Ok(CatalogContext { dirs, cache, cc })
    }

    /// Every manifest, first of each name; malformed manifests are reported and skipped.
    pub fn entries(&self) -> Vec<Arc<Manifest>> {
        let mut out: Vec<Arc<Manifest>> = Vec::new();
        for d in &self.dirs {
            let Ok(rd) = std::fs::read_dir(d) else { continue };
            let mut paths: Vec<PathBuf> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect();
            paths.sort();
            for p in paths {
                match Manifest::load(&p) {
                    Ok(m) => {
                        if !out.iter().any(|o| o.name == m.name) {
                            out.push(Arc::new(m));
                        }
                    }
                    Err(e) => {
                        crate::output::error(&anyhow::Error::new(e).context("skipping a catalog entry"))
                    }
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// The items a name selects: `name` (all its variants) or `name/variant`.
    pub fn select(&self, name: &str) -> Result<Vec<Item>> {
        let (entry, variant) = match name.split_once('/') {
            Some((e, v)) => (e, Some(v)),
            None => (name, None),
        };
        let all = self.entries();
        if all.is_empty() {
            bail!("no catalog entries found; help: {NO_CATALOG_HELP}");
        }
        let Some(m) = all.iter().find(|m| m.name == entry) else {
            let names: Vec<&str> = all.iter().map(|m| m.name.as_str()).collect();
            bail!("no catalog entry named `{entry}`; help: known entries: {}", names.join(", "));
        };
        let variants = m.variant_names();
        match variant {
            Some(v) if variants.iter().any(|x| x == v) => {
                Ok(vec![Item { manifest: m.clone(), variant: v.to_string() }])
            }
            Some(v) => {
                bail!("entry `{entry}` has no variant `{v}`; help: its variants: {}", variants.join(", "))
            }
            None => Ok(variants.into_iter().map(|v| Item { manifest: m.clone(), variant: v }).collect()),
        }
    }
}

/// Entry point of `cabinc catalog`.
pub fn run_catalog(args: &CatalogArgs) -> Result<ExitCode> {
    let ctx = CatalogContext::new(&args.common)?;
    match &args.command {
        CatalogCommand::List { format: crate::Format::Json } => {
            let v: Vec<serde_json::Value> = ctx
                .entries()
                .iter()
                .map(|m| {
                    serde_json::json!({
                        "name": m.name,
                        "description": m.description,
                        "variants": m.variant_names(),
                        "format": m.format,
                        "dir": m.dir,
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(ExitCode::SUCCESS)
        }
        CatalogCommand::List { format: crate::Format::Text } => {
            let entries = ctx.entries();
            if entries.is_empty() {
                bail!("no catalog entries found; help: {NO_CATALOG_HELP}");
            }
            for m in entries {
                let variants = if m.variants.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", m.variant_names().join(", "))
                };
                println!("{:<20} {}{}", m.name, m.description, variants);
                for (v, spec) in &m.variants {
                    if !spec.description.is_empty() {
                        println!("{:<20}   {}/{v}: {}", "", m.name, spec.description);
                    }
                }
                println!("{:<20}   (format {}, from {})", "", m.format, m.dir.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        CatalogCommand::Dirs => {
            for d in &ctx.dirs {
                println!("{}{}", d.display(), if d.is_dir() { "" } else { " (missing)" });
            }
            println!("cache: {}", ctx.cache.display());
            Ok(ExitCode::SUCCESS)
        }
        CatalogCommand::Build { name, source, force } => {
            for item in ctx.select(name)? {
                builder::build(&ctx, &item, source.as_deref(), *force)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        CatalogCommand::Run { name, source, backend, args: extra } => {
            let items = ctx.select(name)?;
            if items.len() > 1 {
                let ids: Vec<String> = items.iter().map(Item::id).collect();
                bail!("`{name}` has several variants; help: pick one: {}", ids.join(", "));
            }
            let item = &items[0];
            let built = builder::build(&ctx, item, source.as_deref(), false)?;
            let backend = runner::Backend::parse(backend)?;
            let extra = (!extra.is_empty()).then_some(extra.as_slice());
            let res = runner::run_once(&built, backend.clone(), extra, true)?;
            if let Some(e) = &res.failure {
                status("Failed", e);
                return Ok(ExitCode::from(1));
            }
            for s in &res.scores {
                status("Score", &format!("{} = {} {}", s.name, runner::show(s.value), s.unit));
            }
            status("Finished", &format!("{} ({backend}) in {:.3}s", item.id(), res.wall.as_secs_f64()));
            Ok(ExitCode::SUCCESS)
        }
        CatalogCommand::Add { manifest, source, force } => {
            add(manifest, source.as_deref(), *force)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `cabinc catalog add`: validates the manifest, pins its directory (`origin`) and optionally its
/// source, and writes it to the user catalog as NAME.toml.
fn add(path: &Path, source: Option<&Path>, force: bool) -> Result<()> {
    let m = Manifest::load(path)?;
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut table: toml::Table =
        toml::from_str(&text).with_context(|| format!("cannot parse {}", path.display()))?;
    let origin = m.origin_dir();
    table.insert("origin".into(), toml::Value::String(origin.display().to_string()));
    if let Some(src) = source {
        let src = std::fs::canonicalize(src)
            .with_context(|| format!("source directory {} does not exist", src.display()))?;
        let mut t = toml::Table::new();
        t.insert("path".into(), toml::Value::String(src.display().to_string()));
        table.insert("source".into(), toml::Value::Table(t));
    }
    let out_text = format!(
        "# Added by `cabinc catalog add {}`.\n{}",
        path.display(),
        toml::to_string_pretty(&table).context("cannot write the manifest back")?
    );
    // The rewritten manifest must still be valid.
    Manifest::parse(&out_text, &path.display().to_string(), &origin)?;
    let dir = user_dir().context("no user catalog directory; help: set XDG_DATA_HOME or HOME")?;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dest = dir.join(format!("{}.toml", m.name));
    if dest.exists() && !force {
        bail!("{} exists; help: pass --force to replace it", dest.display());
    }
    crate::build::write_atomic(&dest, out_text.as_bytes(), 0o644)?;
    status("Added", &format!("{} -> {}", m.name, dest.display()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every manifest shipped in the repository parses and validates.
    #[test]
    fn shipped_manifests_are_valid() {
        let mut n = 0;
        let builtin = builtin_dir().expect("the checkout's catalog");
        for dir in [builtin.clone(), builtin.join("examples")] {
            for e in std::fs::read_dir(&dir).expect("catalog dir").flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "toml") {
                    let m = Manifest::load(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                    assert!(!m.variant_names().is_empty());
                    n += 1;
                }
            }
        }
        assert!(n >= 7, "found only {n} manifests");
    }

    #[test]
    fn select_by_name_and_variant() {
        let dirs = vec![builtin_dir().expect("the checkout's catalog")];
        let ctx = CatalogContext { dirs, cache: std::env::temp_dir(), cc: "gcc".into() };
        let all = ctx.select("wolfcrypt-bench").expect("entry");
        let ids: Vec<String> = all.iter().map(Item::id).collect();
        assert_eq!(ids, vec!["wolfcrypt-bench/asm", "wolfcrypt-bench/noasm"]);
        assert_eq!(ctx.select("syscalls/null").expect("variant").len(), 1);
        assert_eq!(ctx.select("busybox-sort").expect("single")[0].id(), "busybox-sort");
        assert!(ctx.select("wolfcrypt-bench/avx512").is_err());
        assert!(ctx.select("no-such-entry").is_err());
    }
}
