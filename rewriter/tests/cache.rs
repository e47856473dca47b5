//! The image cache (`cabin_rewriter::cache`, issue 20): miss then hit,
//! corrupted and forged entries refused and rebuilt, concurrent builds of
//! one input, an unsafe directory refused, entries that are not plain files
//! of ours refused, `list`/`clean`, the size bound.
//!
//! Needs gcc with a static libc (the input is compiled per test).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use cabin_rewriter::cache::{check_entry, CacheError, ImageCache};
use cabin_rewriter::pipeline::input_sha256;

/// A small static program, `variant` making each a different input.
fn program(dir: &Path, variant: u32) -> Option<Vec<u8>> {
    let c = dir.join(format!("p{variant}.c"));
    std::fs::write(&c, format!("int main(void) {{ return {variant}; }}\n")).expect("write");
    let exe = dir.join(format!("p{variant}"));
    let ok = Command::new("gcc").args(["-static", "-O1", "-o"]).arg(&exe).arg(&c).status();
    if !ok.map(|s| s.success()).unwrap_or(false) {
        cabin_tests::not_run("cache", "gcc with a static libc is missing (apt-get install gcc libc6-dev)");
        return None;
    }
    Some(std::fs::read(&exe).expect("read"))
}

fn fresh() -> (cabin_tests::tempfile::TempDir, PathBuf) {
    let t = cabin_tests::tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("cache").join("cabin").join("images");
    (t, dir)
}

#[test]
fn miss_then_hit_then_refused_entries_rebuilt() {
    let (t, dir) = fresh();
    let Some(input) = program(t.path(), 1) else { return };
    let Some(other) = program(t.path(), 2) else { return };
    let cache = ImageCache::open(&dir).expect("open");
    let md = std::fs::metadata(&dir).expect("dir");
    assert_eq!(md.mode() & 0o777, 0o700, "the directory is 0700");
    let first = cache.get_or_build(&input).expect("build");
    assert!(first.built && first.refused.is_none());
    assert_eq!(std::fs::metadata(&first.path).expect("entry").mode() & 0o777, 0o600, "entries are 0600");
    let name = first.path.file_name().expect("name").to_string_lossy().into_owned();
    assert!(name.starts_with(&hex::encode(input_sha256(&input))), "{name}");
    check_entry(&first.image, &input_sha256(&input)).expect("a valid entry");
    let second = cache.get_or_build(&input).expect("hit");
    assert!(!second.built, "the second lookup builds nothing");
    assert_eq!(second.image, first.image);
    // Corrupted: refused with the reason, rebuilt in place.
    let mut bad = first.image.clone();
    let at = bad.len() / 3;
    bad[at] ^= 0xff;
    std::fs::write(&first.path, &bad).expect("corrupt");
    let third = cache.get_or_build(&input).expect("rebuilt");
    assert!(third.built, "rebuilt");
    let why = third.refused.expect("refused");
    assert!(why.contains("not an intact Cabin image") || why.contains("not a valid Cabin image"), "{why}");
    assert_eq!(std::fs::read(&first.path).expect("entry"), first.image, "the entry is good again");
    // Truncated.
    std::fs::write(&first.path, &first.image[..100]).expect("truncate");
    let r = cache.get_or_build(&input).expect("rebuilt");
    assert!(r.built && r.refused.is_some());
    // Forged: a valid image of another input under this input's key.
    let other_img = cache.get_or_build(&other).expect("other").image;
    std::fs::write(&first.path, &other_img).expect("forge");
    let r = cache.get_or_build(&input).expect("rebuilt");
    let why = r.refused.expect("refused");
    assert!(why.contains("built from another input"), "{why}");
    assert_eq!(r.image, first.image, "the input's own image, not the forged one");
    // An image that records no input (the trailer removed is a changed
    // manifest: its measurement no longer checks) cannot pass either.
    assert!(check_entry(&other_img, &input_sha256(&input)).is_err());
    // A symbolic link as the entry: refused (never followed).
    std::fs::remove_file(&first.path).expect("rm");
    let target = t.path().join("elsewhere.cabin");
    std::fs::write(&target, &first.image).expect("write");
    std::os::unix::fs::symlink(&target, &first.path).expect("symlink");
    let r = cache.get_or_build(&input).expect("rebuilt");
    assert!(r.refused.expect("refused").contains("cannot open it"));
    assert!(std::fs::symlink_metadata(&first.path).expect("entry").file_type().is_file());
    // Writable by others: refused.
    std::fs::set_permissions(&first.path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let r = cache.get_or_build(&input).expect("rebuilt");
    assert!(r.refused.expect("refused").contains("not this user's own file"));
    // list and clean.
    let list = cache.list().expect("list");
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(cache.clean().expect("clean"), 2);
    assert!(cache.list().expect("list").is_empty());
}

/// Two builders of the same input at once (threads here, processes in
/// cabinc's tests): both succeed with the same image, one entry is left,
/// no temporary file.
#[test]
fn concurrent_builds_of_one_input() {
    let (t, dir) = fresh();
    let Some(input) = program(t.path(), 3) else { return };
    let images: Vec<Vec<u8>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..3)
            .map(|_| {
                let (dir, input) = (&dir, &input);
                s.spawn(move || {
                    ImageCache::open(dir).expect("open").get_or_build(input).expect("build").image
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("no panic")).collect()
    });
    assert!(images.windows(2).all(|w| w[0] == w[1]), "the build is deterministic");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("e").file_name().to_string_lossy().into())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].ends_with(".cabin"), "{names:?}");
}

/// A directory others may write to, a symbolic link, a directory of
/// another user: refused with the reason, never used.
#[test]
fn unsafe_directories_are_refused() {
    let (t, dir) = fresh();
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let e = ImageCache::open(&dir).expect_err("world-writable");
    assert!(matches!(e, CacheError::Unsafe { .. }) && e.to_string().contains("others may write"), "{e}");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o770)).expect("chmod");
    assert!(ImageCache::open(&dir).is_err(), "group-writable");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    ImageCache::open(&dir).expect("0700 is fine");
    let link = t.path().join("link");
    std::os::unix::fs::symlink(&dir, &link).expect("symlink");
    let e = ImageCache::open(&link).expect_err("symlink");
    assert!(e.to_string().contains("not a directory"), "{e}");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let p = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: chown of a path this test made (a NUL-terminated string),
        // to the `nobody` uid.
        assert_eq!(unsafe { libc::chown(p.as_ptr(), 65534, 65534) }, 0);
        let e = ImageCache::open(&dir).expect_err("another user's");
        assert!(e.to_string().contains("belongs to uid 65534"), "{e}");
    }
}
