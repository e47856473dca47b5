//! `cabinc cache list|clean`: the image cache of plain executables
//! (`cabin_rewriter::cache`, docs/processes.md "The image cache").

use std::process::ExitCode;

use anyhow::Result;
use cabin_rewriter::cache::ImageCache;
use serde_json::json;

use crate::output::Format;

/// Arguments of `cabinc cache`.
#[derive(Debug, clap::Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// List the cached images (oldest first): size, age, path.
    List {
        /// A table, or one JSON object.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Remove every cached image (each is rebuilt when next needed) and every verified
    /// measurement (each image is hashed again at its next run).
    Clean,
}

pub fn run(a: &CacheArgs) -> Result<ExitCode> {
    let cache = ImageCache::open_default()?;
    match &a.action {
        Action::List { format } => {
            let entries = cache.list()?;
            let total: u64 = entries.iter().map(|e| e.size).sum();
            if *format == Format::Json {
                let list: Vec<_> = entries
                    .iter()
                    .map(|e| json!({ "path": e.path, "size": e.size, "mtime": e.mtime }))
                    .collect();
                println!("{}", json!({ "dir": cache.dir(), "entries": list, "total_bytes": total }));
            } else {
                for e in &entries {
                    println!("{:>10}  {}", e.size, e.path.display());
                }
                println!("{} image(s), {} bytes in {}", entries.len(), total, cache.dir().display());
            }
        }
        Action::Clean => {
            let mut n = cache.clean()?;
            if let Some(v) = cabin_rewriter::verified::VerifiedCache::open(Some(cache.dir())) {
                n += v.clean()?;
            }
            println!("removed {n} file(s) from {}", cache.dir().display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
