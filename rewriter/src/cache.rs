//! The content-addressed image cache (issue 20, docs/processes.md "The
//! image cache"): `cabinc run ./prog` and `execve` of a plain static
//! executable build the program's image once and reuse it.
//!
//! - Where: `$XDG_CACHE_HOME/cabin/images`, else `$HOME/.cache/cabin/images`
//!   (root too). The directory is made 0700; one that is not a directory of
//!   ours, or that others may write to, is refused ([`CacheError::Unsafe`]).
//! - Key: the SHA-256 of the input's bytes and the toolchain
//!   ([`toolchain_id`]: this crate's version, the manifest format, the libos
//!   version and the embedded libos blob's hash). An entry is
//!   `<input sha256>-<toolchain>.cabin`, mode 0600.
//! - Writing: to a temporary file in the directory, renamed into place, so
//!   two runs that build the same input at once both succeed and one
//!   build wins; a reader never sees half an entry.
//! - Reading: an entry is used only if it is a regular file of ours, an
//!   intact Cabin image (its recorded measurement checks) built by this
//!   libos, whose measured manifest records the key's input hash. Anything
//!   else (corrupted, truncated, an image of another input put under the
//!   key) is refused with a reason and rebuilt in its place: the entry is
//!   only ever a shortcut, never trusted over the input.
//! - Bound: after a store, the oldest entries go until the directory holds
//!   at most [`DEFAULT_MAX_BYTES`] (`CABIN_CACHE_MAX_BYTES` overrides).
//!
//! The caller reads the input once and hands the bytes in: the hash and the
//! build are of the same bytes, whatever happens to the file meanwhile.

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use cabin_image::image::Image;
use thiserror::Error;

use crate::pipeline::{build_image, input_sha256, BuildError, BuildOptions};

/// The default bound on the cache directory's size (2 GiB).
pub const DEFAULT_MAX_BYTES: u64 = 2 << 30;
/// The largest entry read back (a larger file is refused).
pub const MAX_ENTRY_BYTES: u64 = 512 << 20;

/// Why the cache cannot be used.
#[derive(Debug, Error)]
pub enum CacheError {
    /// Neither `XDG_CACHE_HOME` nor `HOME` names a directory.
    #[error("no cache directory: neither XDG_CACHE_HOME nor HOME is set to an absolute path")]
    NoHome,
    /// The directory is not safe to take images from.
    #[error("the image cache {dir} is not safe to use: {why}; help: remove it (it is rebuilt, 0700) or set XDG_CACHE_HOME")]
    Unsafe {
        /// The directory.
        dir: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// A file-system operation failed.
    #[error("image cache {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The input does not build.
    #[error(transparent)]
    Build(#[from] BuildError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io { path: path.to_path_buf(), source }
}

/// Hex of the first 8 bytes of the SHA-256 of everything that decides
/// what an image built from a given input looks like.
pub fn toolchain_id() -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"cabin-rewriter ");
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.update(cabin_abi::note::FORMAT_VERSION.to_le_bytes());
    h.update(cabin_abi::LIBOS_VERSION.to_le_bytes());
    h.update(crate::libos_blob::LIBOS_ELF);
    hex::encode(&h.finalize()[..8])
}

/// `$XDG_CACHE_HOME/cabin/images`, else `$HOME/.cache/cabin/images`.
pub fn default_dir() -> Result<PathBuf, CacheError> {
    let abs = |v: Option<std::ffi::OsString>| v.map(PathBuf::from).filter(|p| p.is_absolute());
    if let Some(x) = abs(std::env::var_os("XDG_CACHE_HOME")) {
        return Ok(x.join("cabin").join("images"));
    }
    abs(std::env::var_os("HOME"))
        .map(|h| h.join(".cache").join("cabin").join("images"))
        .ok_or(CacheError::NoHome)
}

/// What [`ImageCache::get_or_build`] found.
#[derive(Debug)]
pub struct Cached {
    /// The image (checked, or just built).
    pub image: Vec<u8>,
    /// The entry's path.
    pub path: PathBuf,
    /// Whether it was built now (a miss or a refused entry).
    pub built: bool,
    /// Why an entry under the key was refused (and replaced).
    pub refused: Option<String>,
}

/// One entry of [`ImageCache::list`].
#[derive(Debug)]
pub struct Entry {
    /// Its path.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Last modified, seconds since the epoch.
    pub mtime: i64,
}

/// An opened (created and checked) cache directory.
#[derive(Debug, Clone)]
pub struct ImageCache {
    dir: PathBuf,
    max_bytes: u64,
}

/// A distinct name for each temporary file of this process.
static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

impl ImageCache {
    /// Opens the default directory ([`default_dir`]).
    pub fn open_default() -> Result<ImageCache, CacheError> {
        ImageCache::open(&default_dir()?)
    }

    /// Creates `dir` (0700) if it is missing and checks it: a directory
    /// (not a symbolic link) owned by this user that no one else may write.
    pub fn open(dir: &Path) -> Result<ImageCache, CacheError> {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io(dir))?;
        let md = std::fs::symlink_metadata(dir).map_err(io(dir))?;
        let unsafe_ = |why: String| Err(CacheError::Unsafe { dir: dir.to_path_buf(), why });
        if !md.file_type().is_dir() {
            return unsafe_("it is not a directory (a symbolic link or a file)".into());
        }
        if md.uid() != euid() {
            return unsafe_(format!("it belongs to uid {}, not to this user (uid {})", md.uid(), euid()));
        }
        if md.mode() & 0o022 != 0 {
            return unsafe_(format!("others may write to it (mode {:o})", md.mode() & 0o7777));
        }
        let max_bytes = std::env::var("CABIN_CACHE_MAX_BYTES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_MAX_BYTES);
        Ok(ImageCache { dir: dir.to_path_buf(), max_bytes })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The entry of an input with this SHA-256.
    pub fn entry_path(&self, input_sha256: &[u8; 32]) -> PathBuf {
        self.dir.join(format!("{}-{}.cabin", hex::encode(input_sha256), toolchain_id()))
    }

    /// The checked image of `input` from the cache, or built (with default
    /// options: execute-only, rewritten sites) and stored.
    pub fn get_or_build(&self, input: &[u8]) -> Result<Cached, CacheError> {
        let digest = input_sha256(input);
        let path = self.entry_path(&digest);
        let refused = match self.load(&path, &digest) {
            Ok(Some(image)) => return Ok(Cached { image, path, built: false, refused: None }),
            Ok(None) => None,
            Err(why) => Some(why),
        };
        let out = build_image(input, &BuildOptions::default(), &mut |_| {})?;
        self.store(&path, &out.image)?;
        self.bound();
        Ok(Cached { image: out.image, path, built: true, refused })
    }

    /// `Ok(None)` for no entry; `Err(why)` for an entry that is refused.
    fn load(&self, path: &Path, digest: &[u8; 32]) -> Result<Option<Vec<u8>>, String> {
        let f = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot open it: {e}")),
        };
        let md = f.metadata().map_err(|e| format!("cannot stat it: {e}"))?;
        if !md.file_type().is_file() {
            return Err("it is not a regular file".into());
        }
        if md.uid() != euid() || md.mode() & 0o022 != 0 {
            return Err(format!(
                "it is not this user's own file (uid {}, mode {:o})",
                md.uid(),
                md.mode() & 0o7777
            ));
        }
        if md.len() > MAX_ENTRY_BYTES {
            return Err(format!("it is too large ({} bytes)", md.len()));
        }
        let mut image = Vec::with_capacity(md.len() as usize);
        f.take(MAX_ENTRY_BYTES).read_to_end(&mut image).map_err(|e| format!("cannot read it: {e}"))?;
        check_entry(&image, digest)?;
        Ok(Some(image))
    }

    fn store(&self, path: &Path, image: &[u8]) -> Result<(), CacheError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let tmp = self.dir.join(format!(
            ".tmp-{}-{}-{}",
            std::process::id(),
            nanos,
            TMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&tmp)?;
            f.write_all(image)?;
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            std::fs::rename(&tmp, path)
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(path)(e));
        }
        Ok(())
    }

    /// The entries (not temporary files), oldest first.
    pub fn list(&self) -> Result<Vec<Entry>, CacheError> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let e = e.map_err(io(&self.dir))?;
            let path = e.path();
            if path.extension().is_none_or(|x| x != "cabin") {
                continue;
            }
            let Ok(md) = std::fs::symlink_metadata(&path) else { continue };
            out.push(Entry { path, size: md.len(), mtime: md.mtime() });
        }
        out.sort_by_key(|e| (e.mtime, e.path.clone()));
        Ok(out)
    }

    /// Removes every entry and leftover temporary file; how many went.
    pub fn clean(&self) -> Result<usize, CacheError> {
        let mut n = 0;
        for e in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let path = e.map_err(io(&self.dir))?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if name.ends_with(".cabin") || name.starts_with(".tmp-") {
                std::fs::remove_file(&path).map_err(io(&path))?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Removes the oldest entries until the directory is within its bound.
    fn bound(&self) {
        let Ok(entries) = self.list() else { return };
        let mut total: u64 = entries.iter().map(|e| e.size).sum();
        for e in entries {
            if total <= self.max_bytes {
                break;
            }
            if std::fs::remove_file(&e.path).is_ok() {
                total = total.saturating_sub(e.size);
            }
        }
    }
}

/// `Err(why)` unless `image` is an intact Cabin image built by this libos
/// from the input with SHA-256 `digest`.
pub fn check_entry(image: &[u8], digest: &[u8; 32]) -> Result<(), String> {
    let parsed = Image::parse(image).map_err(|e| format!("it is not a valid Cabin image: {e}"))?;
    parsed.verify_measurement().map_err(|e| format!("it is not an intact Cabin image: {e}"))?;
    if parsed.manifest.header.libos_version != cabin_abi::LIBOS_VERSION {
        return Err(format!("it links libos version {}, not this one", parsed.manifest.header.libos_version));
    }
    match parsed.manifest.input_digest {
        Some(d) if &d == digest => Ok(()),
        Some(d) => Err(format!("it was built from another input (sha256 {})", hex::encode(d))),
        None => Err("it records no input hash".into()),
    }
}
