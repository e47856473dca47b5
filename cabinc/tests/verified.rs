//! The verified-measurement cache (`cabin_rewriter::verified`, docs/measurement.md) attacked
//! through `cabinc run`: an image checked once runs from the cache while it is the same file,
//! and every way of changing the file or the cache ends in a full check, a modified image
//! refused (126) as without the cache. `cabinc run -v` says which way the measurement was
//! known; these tests read that line.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cabin_tests::tempfile::TempDir;
use cabin_tests::{run, Cabinc, Invocation, Output, Samples};

const CACHED: &str = "taken from the verified-measurement cache";
const HASHED: &str = "checked against its pages";

fn cabinc_path() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cabinc"))
}

/// A built image in a fresh directory, old enough (past the racy window) to be cached.
fn settled_image() -> (TempDir, PathBuf) {
    let dir = cabin_tests::tempfile::tempdir().expect("tempdir");
    let sample = Samples::get().flavours_of("hello")[0];
    let image = dir.path().join("hello.cabin");
    Cabinc::new(cabinc_path()).build_ok(&sample.path, &image, &[]);
    std::thread::sleep(
        Duration::from_nanos(cabin_rewriter::verified::RACY_NS as u64) + Duration::from_millis(100),
    );
    (dir, image)
}

fn run_image(dir: &Path, image: &Path) -> Output {
    run(
        &cabinc_path(),
        &Invocation::new()
            .args(["run", "-v", "--backend", "process"])
            .arg(image)
            .env("XDG_CACHE_HOME", dir.join("cache")),
    )
}

fn verified_dir(dir: &Path) -> PathBuf {
    dir.join("cache/cabin/images/verified")
}

/// Runs and asserts it ran (exit 0) with the measurement known `how`.
fn runs(dir: &Path, image: &Path, how: &str) {
    let out = run_image(dir, image);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert!(out.stderr_str().contains(how), "expected {how:?}:\n{}", out.describe());
}

/// Runs and asserts it was refused as a modified image, after a full check.
fn refused(dir: &Path, image: &Path) {
    let out = run_image(dir, image);
    assert_eq!(out.code(), Some(126), "{}", out.describe());
    assert!(out.stderr_str().contains("measurement"), "{}", out.stderr_str());
    assert!(!out.stderr_str().contains(CACHED), "{}", out.describe());
}

/// The image with one byte of its first code page flipped, same size.
fn modified(image: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(image).expect("image");
    bytes[0x1000 + 0x40] ^= 0xff;
    bytes
}

/// Sets `path`'s atime and mtime to `md`'s (as `touch -d` can): its ctime moves to now.
fn restore_times(path: &Path, md: &std::fs::Metadata) {
    let f = std::fs::File::options().write(true).open(path).expect("open");
    let times = std::fs::FileTimes::new()
        .set_accessed(md.accessed().expect("atime"))
        .set_modified(md.modified().expect("mtime"));
    f.set_times(times).expect("set times");
}

#[test]
fn a_settled_image_is_hashed_once_then_taken_from_the_cache() {
    let (dir, image) = settled_image();
    runs(dir.path(), &image, HASHED);
    runs(dir.path(), &image, CACHED);
    runs(dir.path(), &image, CACHED);
    let mode = std::fs::metadata(verified_dir(dir.path())).expect("verified/").permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn an_image_just_written_is_not_cached() {
    let dir = cabin_tests::tempfile::tempdir().expect("tempdir");
    let sample = Samples::get().flavours_of("hello")[0];
    let image = dir.path().join("hello.cabin");
    Cabinc::new(cabinc_path()).build_ok(&sample.path, &image, &[]);
    runs(dir.path(), &image, HASHED);
    runs(dir.path(), &image, HASHED);
}

/// Content changed in place (same inode, same size) and its mtime put back: the ctime moved.
#[test]
fn content_changed_with_its_mtime_restored_is_checked_in_full() {
    let (dir, image) = settled_image();
    runs(dir.path(), &image, HASHED);
    runs(dir.path(), &image, CACHED);
    let md = std::fs::metadata(&image).expect("stat");
    std::fs::write(&image, modified(&image)).expect("write in place");
    restore_times(&image, &md);
    let now = std::fs::metadata(&image).expect("stat");
    assert_eq!((now.len(), now.modified().ok()), (md.len(), md.modified().ok()), "size and mtime as before");
    refused(dir.path(), &image);
    // Even after waiting out the racy window (the key is then stable, but another one).
    std::thread::sleep(
        Duration::from_nanos(cabin_rewriter::verified::RACY_NS as u64) + Duration::from_millis(100),
    );
    refused(dir.path(), &image);
}

/// Another file of the same size renamed over the image (a new inode, or the old number again).
#[test]
fn a_file_replaced_by_another_of_the_same_size_is_checked_in_full() {
    let (dir, image) = settled_image();
    runs(dir.path(), &image, HASHED);
    runs(dir.path(), &image, CACHED);
    let md = std::fs::metadata(&image).expect("stat");
    let bad = modified(&image);
    let other = dir.path().join("other.cabin");
    std::fs::write(&other, &bad).expect("write");
    restore_times(&other, &md);
    std::fs::rename(&other, &image).expect("rename over");
    refused(dir.path(), &image);
    // Removed and written again under the same name (the inode number may come back).
    std::fs::remove_file(&image).expect("rm");
    std::fs::write(&image, &bad).expect("write");
    restore_times(&image, &md);
    refused(dir.path(), &image);
}

/// An entry edited (any byte), cut or replaced by a symbolic link vouches for nothing.
#[test]
fn an_edited_cache_entry_means_a_full_check() {
    let (dir, image) = settled_image();
    runs(dir.path(), &image, HASHED);
    let entries: Vec<PathBuf> = std::fs::read_dir(verified_dir(dir.path()))
        .expect("verified/")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    let good = std::fs::read(entry).expect("entry");
    for at in [0, 20, 70, good.len() - 1] {
        let mut bad = good.clone();
        bad[at] ^= 0x01;
        std::fs::write(entry, &bad).expect("edit");
        runs(dir.path(), &image, HASHED);
        // The full check wrote it back.
        assert_eq!(std::fs::read(entry).expect("entry"), good);
    }
    std::fs::write(entry, &good[..good.len() / 2]).expect("cut");
    runs(dir.path(), &image, HASHED);
    runs(dir.path(), &image, CACHED);
}

/// A cache directory others may write, or of another owner, is not used (one warning), and
/// a modified image is refused as ever.
#[test]
fn an_unsafe_cache_directory_is_ignored() {
    let (dir, image) = settled_image();
    runs(dir.path(), &image, HASHED);
    runs(dir.path(), &image, CACHED);
    let verified = verified_dir(dir.path());
    std::fs::set_permissions(&verified, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let out = run_image(dir.path(), &image);
    assert_eq!(out.code(), Some(0), "{}", out.describe());
    assert!(out.stderr_str().contains(HASHED), "{}", out.describe());
    assert_eq!(
        out.stderr_str().matches("verified-measurement cache is not used").count(),
        1,
        "{}",
        out.describe()
    );
    std::fs::set_permissions(&verified, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    runs(dir.path(), &image, CACHED);
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::chown(&verified, Some(65534), Some(65534)).expect("chown");
        runs(dir.path(), &image, HASHED);
        std::os::unix::fs::chown(&verified, Some(0), Some(0)).expect("chown");
    } else {
        cabin_tests::not_run("cache of another owner", "needs root to chown the directory");
    }
    // With the directory unusable, a modified image is refused after a full check.
    std::fs::set_permissions(&verified, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let md = std::fs::metadata(&image).expect("stat");
    std::fs::write(&image, modified(&image)).expect("write");
    restore_times(&image, &md);
    refused(dir.path(), &image);
}
