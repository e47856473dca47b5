//! Set-id files and owners (issue 11, item 5): by default a program never
//! makes a set-uid or set-gid file (created files, `chmod`, `fchmod`; and
//! writing to an existing one clears the bits, as Linux does for an
//! unprivileged writer), and `chown` only gives files to the identity the
//! program runs as (its `getuid`/`getgid`; -1 keeps), else `EPERM` with a
//! `[paths]` record.

use cabin_monitor::RunConfig;

use crate::common::Backend;
use crate::pathprobe::{self, refused};

fn set_id_bits_and_owners(b: Backend) {
    if pathprobe::image().is_none() {
        return;
    }
    // SAFETY: getuid/getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let (_t, r) = pathprobe::tempdir();
    let w = r.join("w");
    std::fs::create_dir(&w).expect("w");
    let wd = w.to_str().expect("utf-8").to_string();
    let cfg = RunConfig { allow_write: vec![w.clone()], ..RunConfig::default() };
    let mut problems = Vec::new();
    // (steps, expected last line; None = refused with EPERM)
    let cases: Vec<(String, Option<String>)> = vec![
        (format!("create {wd}/c1 6755 -- mode {wd}/c1"), Some("ok mode=100755".into())),
        (format!("write {wd}/c2 x -- chmodm {wd}/c2 4755 -- mode {wd}/c2"), Some("ok mode=100755".into())),
        (format!("write {wd}/c3 x -- fchmod {wd}/c3 2755 -- mode {wd}/c3"), Some("ok mode=100755".into())),
        (format!("mkdirm {wd}/d1 6755 -- mode {wd}/d1"), Some("ok mode=40755".into())),
        (format!("write {wd}/c4 x -- chown {wd}/c4 12345 -1"), None),
        (format!("write {wd}/c5 x -- chown {wd}/c5 -1 12345"), None),
        (format!("write {wd}/c6 x -- lchown {wd}/c6 12345 12345"), None),
        (format!("write {wd}/c7 x -- fchown {wd}/c7 12345 -1"), None),
        (format!("write {wd}/c8 x -- fchownat {wd}/c8 -1 12345"), None),
        (
            format!("write {wd}/c9 x -- chown {wd}/c9 {uid} {gid} -- chown {wd}/c9 -1 -1 -- mode {wd}/c9"),
            Some(format!("ok mode=100644 uid={uid} gid={gid}")),
        ),
        // A set-uid file placed in the tree beforehand loses its bits when written.
        (format!("append {wd}/suid x -- mode {wd}/suid"), Some("ok mode=100755".into())),
        (format!("truncate {wd}/sgid -- mode {wd}/sgid"), Some("ok mode=100755".into())),
    ];
    for (steps, want) in &cases {
        use std::os::unix::fs::PermissionsExt;
        for (name, mode) in [("suid", 0o4755), ("sgid", 0o2755)] {
            std::fs::write(w.join(name), "#!/bin/sh\n").expect("suid file");
            std::fs::set_permissions(w.join(name), std::fs::Permissions::from_mode(mode)).expect("chmod");
        }
        let o = pathprobe::run(b, steps, cfg.clone());
        let res = match want {
            None => refused(&o, libc::EPERM),
            Some(w) if o.last().starts_with(w.as_str()) => Ok(()),
            Some(w) => Err(format!("expected {w}")),
        };
        if let Err(m) = res {
            problems.push(format!("{steps}: {m}; output {:?}", o.lines));
        }
    }
    assert!(problems.is_empty(), "on {b:?}:\n{}", problems.join("\n"));
}

on_both_backends!(set_id_bits_and_owners);

/// `[paths] set-id = true` allows both, explicitly (and survives `policy
/// show`'s rendering).
fn set_id_allowed_by_policy(b: Backend) {
    use cabin_policy::{render, Policy};
    if pathprobe::image().is_none() {
        return;
    }
    let text = "version = 1\n[default]\naction = \"allow\"\n[paths]\nset-id = true\n";
    let p = Policy::parse("set-id.toml", text).unwrap_or_else(|e| panic!("{e}"));
    assert!(p.paths.set_id);
    let again = Policy::parse("rendered.toml", &render::to_toml(&p, &[])).expect("rendered policy parses");
    assert!(again.paths.set_id);
    let (_t, r) = pathprobe::tempdir();
    let w = r.join("w");
    std::fs::create_dir(&w).expect("w");
    let wd = w.to_str().expect("utf-8");
    let cfg = RunConfig { allow_write: vec![w.clone()], allow_set_id: true, ..RunConfig::default() };
    let o =
        pathprobe::run(b, &format!("create {wd}/s 4755 -- chmodm {wd}/s 6755 -- mode {wd}/s"), cfg.clone());
    assert_eq!(o.last().split(' ').nth(1), Some("mode=106755"), "{:?}", o.lines);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let o = pathprobe::run(b, &format!("chown {wd}/s 12345 12345 -- mode {wd}/s"), cfg);
        assert_eq!(o.last(), "ok mode=100755 uid=12345 gid=12345", "{:?}", o.lines);
    } else {
        cabin_tests::not_run("root", "the chown case needs root");
    }
}

on_both_backends!(set_id_allowed_by_policy);
