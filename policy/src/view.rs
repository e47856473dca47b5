//! A view of the file system as written (`cabinc run --root/--bind/--tmpfs/
//! --chdir`, or a policy's `[view]`): checked text, before any host path is
//! opened. The monitor's `cabin_monitor::config::View` is built from it;
//! docs/views.md says what a view does.

use std::path::PathBuf;

/// A checked view (host paths are not opened yet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewSpec {
    /// `root`: the host directory the program sees as `/`.
    pub root: Option<PathBuf>,
    /// `root-read-only = true`: `/` itself is read-only.
    pub root_readonly: bool,
    /// `bind = ["SRC:DST[:ro]", ...]`.
    pub binds: Vec<BindSpec>,
    /// `tmpfs = ["DST[:SIZE]", ...]`.
    pub tmpfs: Vec<TmpfsSpec>,
    /// `chdir`: the starting directory, a view path.
    pub chdir: Option<PathBuf>,
}

/// One `SRC:DST[:ro]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindSpec {
    /// The host path.
    pub src: PathBuf,
    /// The view path.
    pub dst: PathBuf,
    /// `:ro`.
    pub readonly: bool,
}

/// One `DST[:SIZE]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TmpfsSpec {
    /// The view path.
    pub dst: PathBuf,
    /// Bytes (`None`: the default size).
    pub size: Option<u64>,
}

impl ViewSpec {
    /// Whether it says anything at all.
    pub fn is_empty(&self) -> bool {
        self.root.is_none() && self.binds.is_empty() && self.tmpfs.is_empty() && self.chdir.is_none()
    }
}

/// What is wrong with one entry, and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewError {
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub help: String,
}

impl std::fmt::Display for ViewError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; help: {}", self.message, self.help)
    }
}

/// Checks a view path (`DST`, `chdir`): absolute, no `..`, no NUL; `/` only
/// when `root_ok`.
pub fn check_view_path(what: &str, p: &str, root_ok: bool) -> Result<PathBuf, ViewError> {
    let err = |m: String, h: String| ViewError { message: format!("{what} {p:?}: {m}"), help: h };
    if !p.starts_with('/') {
        return Err(err(
            "a view path must be absolute".into(),
            format!("write /{}", p.trim_start_matches('/')),
        ));
    }
    if p.contains('\0') {
        return Err(err("a path cannot contain a NUL byte".into(), "remove it".into()));
    }
    if p.split('/').any(|c| c == "..") {
        return Err(err("a view path must not contain `..`".into(), "write the path without `..`".into()));
    }
    if !root_ok && p.split('/').all(|c| c.is_empty() || c == ".") {
        return Err(err("cannot be / itself".into(), "use --root (or `root` in [view]) for /".into()));
    }
    Ok(PathBuf::from(p))
}

/// Parses `SRC:DST[:ro]` (also `:rw`, the default).
pub fn parse_bind(s: &str) -> Result<BindSpec, ViewError> {
    let bad = |m: &str| ViewError {
        message: format!("bind {s:?}: {m}"),
        help: "write SRC:DST or SRC:DST:ro (SRC a host path, DST an absolute path in the view)".into(),
    };
    let parts: Vec<&str> = s.split(':').collect();
    let (src, dst, readonly) = match parts[..] {
        [src, dst] => (src, dst, false),
        [src, dst, "ro"] => (src, dst, true),
        [src, dst, "rw"] => (src, dst, false),
        [_, _, opt] => return Err(bad(&format!("unknown option `{opt}` (ro or rw)"))),
        _ => return Err(bad("expected SRC:DST[:ro]")),
    };
    if src.is_empty() || src.contains('\0') {
        return Err(bad("an empty source"));
    }
    let dst = check_view_path("bind", dst, false)?;
    Ok(BindSpec { src: PathBuf::from(src), dst, readonly })
}

/// Parses `DST[:SIZE]` (SIZE as `64M`, `1G`, bytes).
pub fn parse_tmpfs(s: &str) -> Result<TmpfsSpec, ViewError> {
    let (dst, size) = match s.split_once(':') {
        None => (s, None),
        Some((d, z)) => {
            let n = crate::file::parse_size(z).filter(|&n| n > 0).ok_or_else(|| ViewError {
                message: format!("tmpfs {s:?}: size {z:?} is not a size"),
                help: "write DST:SIZE with SIZE like 64M or 1G (more than 0)".into(),
            })?;
            (d, Some(n))
        }
    };
    let dst = check_view_path("tmpfs", dst, false)?;
    Ok(TmpfsSpec { dst, size })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_and_tmpfs_parse_or_say_the_fix() {
        assert_eq!(
            parse_bind("/a:/b:ro").unwrap(),
            BindSpec { src: "/a".into(), dst: "/b".into(), readonly: true }
        );
        assert!(!parse_bind("a:/b").unwrap().readonly);
        for bad in ["/a", "/a:b", "/a:/b:rx", "/a:/", ":/b", "/a:/b/../c", "/a:/b:ro:x"] {
            let e = parse_bind(bad).unwrap_err();
            assert!(!e.help.is_empty(), "{bad}");
        }
        assert_eq!(parse_tmpfs("/t:1M").unwrap().size, Some(1 << 20));
        assert_eq!(parse_tmpfs("/t").unwrap().size, None);
        for bad in ["t", "/t:0", "/t:12X", "/", "/a/.."] {
            assert!(parse_tmpfs(bad).is_err(), "{bad}");
        }
        assert!(check_view_path("chdir", "/", true).is_ok());
    }

    #[test]
    fn a_policy_view_parses_renders_and_says_where_it_is_wrong() {
        let text = "version = 1\n[view]\nroot = \"rootfs\"\nroot-read-only = true\nbind = [\"data:/data:ro\", \"/x:/y\"]\ntmpfs = [\"/tmp:1M\", \"/run\"]\nchdir = \"/data\"\n";
        let p = crate::Policy::parse("v.toml", text).expect("parses");
        assert_eq!(p.view.root, Some(PathBuf::from("rootfs")));
        assert!(p.view.root_readonly && p.view.binds[0].readonly && !p.view.binds[1].readonly);
        assert_eq!(p.view.tmpfs[0].size, Some(1 << 20));
        assert_eq!(p.view.chdir, Some(PathBuf::from("/data")));
        let again =
            crate::Policy::parse("v.toml", &crate::render::to_toml(&p, &[])).expect("rendered parses");
        assert_eq!(again.view, p.view);
        let words = crate::explain::explain(&p);
        assert!(
            words.contains("  /data: host data (read-only)") && words.contains("/tmp: a fresh tmpfs"),
            "{words}"
        );
        for (bad, needle) in [
            ("bind = [\"/a:rel\"]", "absolute"),
            ("tmpfs = [\"/t:lots\"]", "size"),
            ("chdir = \"rel\"", "absolute"),
            ("mount = []", "unknown field"),
        ] {
            let e = crate::Policy::parse("v.toml", &format!("version = 1\n[view]\n{bad}\n")).expect_err(bad);
            let e = e.to_string();
            assert!(e.contains("v.toml:3:") && e.contains(needle), "{bad}: {e}");
        }
    }
}
