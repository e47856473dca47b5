//! The image cache is not the program's (issue 14, docs/processes.md, "The
//! image cache"): with `--allow-write` of the directory above
//! `cabin/images`, a confined program tries to read, list, change and
//! execute an entry, forge one (created in place, moved or linked in, a
//! directory renamed over or exchanged with the cache), move the cache or
//! its parent away, and reach it by other spellings (`..`, a symbolic link,
//! `openat` from its parent). Every attempt is refused (`EACCES`), the
//! directory above stays the program's, and afterwards the cache holds
//! exactly the entry it held, unchanged. A second run, whose cache did not
//! exist yet, finds it made by the monitor before it started (so it
//! cannot make it itself, full of forged entries, for the next run).

use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use cabin_monitor::RunConfig;

use crate::common::{self, Backend};

on_both_backends!(the_image_cache_is_hidden_from_the_program);

const ENTRY: &str = "00aa-0123456789abcdef.cabin";

const WANT: &str = "read an entry: EACCES
write an entry: EACCES
truncate an entry: EACCES
create a forged entry: EACCES
list the cache: EACCES
stat the cache: EACCES
stat an entry: EACCES
chdir into the cache: EACCES
chmod the cache: EACCES
exec an entry: EACCES
read through ..: EACCES
open the cache's parent: ok
openat from the parent: EACCES
symlink to the cache: ok
read through the symlink: EACCES
link an entry out: EACCES
unlink an entry: EACCES
rmdir the cache: EACCES
rename the cache: EACCES
rename the cache's parent: EACCES
mkdir the cache: EACCES
mkdir a directory beside it: ok
write a forged entry beside it: ok
move the forged entry in: EACCES
link the forged entry in: EACCES
exchange a directory with the cache: EACCES
rename an empty directory over the cache: EACCES
rmdir the directory beside it: ok
write a file in the parent: ok
list the cache's parent: ok
";

/// Runs the attack with `--allow-write parent`, the cache `parent/cabin/images`.
fn attack(b: Backend, img: &[u8], parent: &Path, dir: &Path) -> String {
    let cache = parent.join("cabin/images");
    let path = dir.join("out");
    let out = std::fs::File::create(&path).expect("output file");
    let cfg = RunConfig {
        args: vec![
            "attack_cache".into(),
            parent.to_str().expect("utf-8").into(),
            cache.to_str().expect("utf-8").into(),
            ENTRY.into(),
        ],
        quiet: true,
        allow_write: vec![parent.to_path_buf()],
        image_cache: Some(cache),
        stdio: Some([0, out.as_raw_fd(), 2]),
        ..RunConfig::default()
    };
    let o = b.run(img, &cfg).expect("the monitor runs the attack");
    assert_eq!(o.exit_code, 0, "the attack ends normally: {:?}", o.reason);
    std::fs::read_to_string(&path).expect("read the output")
}

fn the_image_cache_is_hidden_from_the_program(b: Backend) {
    let t = tempfile::tempdir().expect("tempdir");
    let Some(img) = common::image("attack_cache", t.path()) else { return };
    // A cache that exists, with one entry (0600 in a 0700 directory, as
    // the cache makes them).
    let parent = t.path().join("xdg");
    let cache = parent.join("cabin/images");
    std::fs::create_dir_all(&cache).expect("mkdir");
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::fs::write(cache.join(ENTRY), b"THE ENTRY").expect("entry");
    std::fs::set_permissions(cache.join(ENTRY), std::fs::Permissions::from_mode(0o600)).expect("chmod");
    assert_eq!(attack(b, &img, &parent, t.path()), WANT, "{b:?}");
    let names = |d: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&cache), vec![ENTRY.to_string()], "the cache holds its one entry");
    assert_eq!(std::fs::read(cache.join(ENTRY)).expect("entry"), b"THE ENTRY", "the entry is unchanged");
    assert_eq!(
        names(&parent),
        vec!["cabin", "l", "mine"],
        "the parent: what the program made, and the cache"
    );
    let mode = std::fs::metadata(&cache).expect("cache").permissions().mode() & 0o7777;
    assert_eq!(mode, 0o700, "the cache's mode");

    // A cache that does not exist yet: the monitor makes it before the
    // program runs, and the program can do nothing with it either.
    let fresh = t.path().join("fresh");
    std::fs::create_dir(&fresh).expect("mkdir");
    let got = attack(b, &img, &fresh, t.path());
    let cache = fresh.join("cabin/images");
    assert!(cache.is_dir(), "the monitor made the cache");
    assert_eq!(names(&cache), Vec::<String>::new(), "nothing forged into the new cache");
    // ENTRY does not exist there: the same refusals, whatever the name.
    assert_eq!(got, WANT, "{b:?}, a cache made by the monitor");
}
