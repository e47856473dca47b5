//! A policy in plain words (`cabinc policy explain`).
//!
//! The explanation is computed from the compiled table, so it says what the
//! monitor will actually do, after precedence between lists, groups and rules.

use std::fmt::Write as _;
use std::time::Duration;

use super::compile::{Decision, Origin, TABLE_SIZE};
use super::names::Serve;
use super::{errno, names, Action, Mode, Policy};

fn errno_words(e: i32) -> String {
    let what = match errno::name(e) {
        Some("ENOSYS") => " (\"function not implemented\": C libraries fall back as on an older kernel)",
        Some("EPERM") => " (\"operation not permitted\")",
        Some("EACCES") => " (\"permission denied\")",
        _ => "",
    };
    format!("{}{what}", errno::name_or_number(e))
}

fn size(b: u64) -> String {
    const U: [(&str, u64); 4] = [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (n, m) in U {
        if b >= m && b & (m - 1) == 0 {
            return format!("{} {n}", b / m);
        }
    }
    format!("{b} bytes")
}

fn dur(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

fn calls(n: usize) -> String {
    if n == 1 {
        "1 system call".into()
    } else {
        format!("{n} system calls")
    }
}

fn wrap(out: &mut String, indent: &str, words: &[String]) {
    let mut line = String::from(indent);
    for (i, w) in words.iter().enumerate() {
        let sep = if i + 1 < words.len() { ", " } else { "" };
        if line.len() + w.len() + sep.len() > 96 && line.len() > indent.len() {
            let _ = writeln!(out, "{}", line.trim_end());
            line = String::from(indent);
        }
        line.push_str(w);
        line.push_str(sep);
    }
    if line.len() > indent.len() {
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

/// The explanation, several paragraphs of text ending in a newline.
pub fn explain(p: &Policy) -> String {
    let c = p.compile();
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Policy {}{}",
        p.source,
        if p.digest.is_empty() { String::new() } else { format!(" ({})", p.digest) }
    );
    match p.mode {
        Mode::Enforce => {
            let _ = writeln!(o, "Mode: enforce: calls are refused as described below.");
        }
        Mode::Complain => {
            let _ = writeln!(
                o,
                "Mode: complain. Nothing is refused: every call the policy would refuse is served and \
                 logged (audit and stderr), so you can see what the program needs."
            );
        }
    }
    o.push('\n');
    let _ = match p.default {
        Action::Allow => writeln!(o, "Any system call not named below is ALLOWED."),
        Action::Deny(e) => {
            writeln!(o, "Any system call not named below is denied: it returns {}.", errno_words(e))
        }
        Action::Kill => writeln!(
            o,
            "Any system call not named below ends the program (exit status 159, like a seccomp kill)."
        ),
    };

    // What the table says, call by call, for calls with a name.
    let mut allowed = Vec::new();
    let mut denied: Vec<(i32, String)> = Vec::new();
    let mut killed = Vec::new();
    let mut conditional = Vec::new();
    let zero = [0u64; 6];
    for &names::Syscall { nr, name, .. } in names::TABLE {
        let nr = u64::from(nr);
        if nr as usize >= TABLE_SIZE {
            continue;
        }
        if p.rules.iter().any(|r| r.nr == nr) {
            conditional.push(nr);
            continue;
        }
        let v = c.verdict(nr, &zero);
        if matches!(*v.origin, Origin::Default | Origin::Always) {
            continue;
        }
        let action = match v.decision {
            Decision::Allow => Action::Allow,
            Decision::Deny(e) => Action::Deny(e),
            Decision::Kill => Action::Kill,
            Decision::Complain(a) => a,
        };
        match action {
            Action::Allow => allowed.push(name.to_string()),
            Action::Deny(e) => denied.push((e, name.to_string())),
            Action::Kill => killed.push(name.to_string()),
        }
    }
    if !allowed.is_empty() {
        let _ = writeln!(o, "\nAllowed ({}):", calls(allowed.len()));
        wrap(&mut o, "  ", &allowed);
    }
    let mut errnos: Vec<i32> = denied.iter().map(|(e, _)| *e).collect();
    errnos.sort_unstable();
    errnos.dedup();
    for e in errnos {
        let these: Vec<String> = denied.iter().filter(|(x, _)| *x == e).map(|(_, n)| n.clone()).collect();
        let _ = writeln!(o, "\nDenied with {} ({}):", errno_words(e), calls(these.len()));
        wrap(&mut o, "  ", &these);
    }
    if !killed.is_empty() {
        let _ = writeln!(o, "\nEnd the program, exit status 159 ({}):", calls(killed.len()));
        wrap(&mut o, "  ", &killed);
    }
    let groups: Vec<String> = p
        .allow
        .iter()
        .chain(&p.deny)
        .chain(&p.kill)
        .filter(|e| e.entry.spelling().starts_with('@'))
        .map(|e| e.entry.spelling())
        .collect();
    if !groups.is_empty() {
        let _ = writeln!(
            o,
            "\n(The lists use the groups {}; docs/policy.md lists their members.)",
            groups.join(", ")
        );
    }
    if !conditional.is_empty() {
        let _ = writeln!(
            o,
            "\nDepending on the arguments (rules are tried in order; the first that matches decides):"
        );
        for nr in conditional {
            let name = names::display(nr);
            for r in p.rules.iter().filter(|r| r.nr == nr) {
                let when = if r.conds.is_empty() {
                    "always".to_string()
                } else {
                    format!("when {}", r.conds.iter().map(|c| c.describe()).collect::<Vec<_>>().join(" and "))
                };
                let what = match r.action {
                    Action::Allow => "allowed".to_string(),
                    Action::Deny(e) => format!("denied with {}", errno::name_or_number(e)),
                    Action::Kill => "ends the program".to_string(),
                };
                let note = r.comment.as_ref().map(|c| format!(" — {c}")).unwrap_or_default();
                if r.conds.is_empty() {
                    let _ = writeln!(o, "  {name}: {when} {what} (line {}){note}", r.loc.line);
                } else {
                    let _ = writeln!(o, "  {name}: {what} {when} (line {}){note}", r.loc.line);
                }
            }
            if p.rules.iter().any(|r| r.nr == nr && r.conds.is_empty()) {
                continue;
            }
            let otherwise = match p.compile_fallback(nr) {
                Action::Allow => "allowed".to_string(),
                Action::Deny(e) => format!("denied with {}", errno::name_or_number(e)),
                Action::Kill => "ends the program".to_string(),
            };
            let _ = writeln!(o, "  {name}: otherwise {otherwise}");
        }
    }

    o.push('\n');
    if !p.view.is_empty() {
        let v = &p.view;
        let _ = writeln!(o, "View ([view]; outside it nothing exists for the program: ENOENT):");
        let root =
            v.root.as_ref().map_or("an empty read-only directory".to_string(), |r| r.display().to_string());
        let ro = if v.root_readonly { " (read-only)" } else { "" };
        let _ = writeln!(o, "  /: {root}{ro}");
        for b in &v.binds {
            let ro = if b.readonly { " (read-only)" } else { "" };
            let _ = writeln!(o, "  {}: host {}{ro}", b.dst.display(), b.src.display());
        }
        for t in &v.tmpfs {
            let size = t.size.map_or("64M".to_string(), size);
            let _ = writeln!(
                o,
                "  {}: a fresh tmpfs of {size}, counted against the memory bound",
                t.dst.display()
            );
        }
        if let Some(c) = &v.chdir {
            let _ = writeln!(o, "  starts in {}", c.display());
        }
    } else if p.paths.read.is_empty() && p.paths.write.is_empty() {
        let _ =
            writeln!(o, "Files: none are visible (add [paths] read/write, or --allow-read/--allow-write).");
    } else {
        let _ = writeln!(
            o,
            "Files (each directory and everything below it, each file that object only; nothing else is visible):"
        );
        for d in &p.paths.read {
            let _ = writeln!(o, "  read only:      {}{}", d.display(), grant_kind(d));
        }
        for d in &p.paths.write {
            let _ = writeln!(o, "  read and write: {}{}", d.display(), grant_kind(d));
        }
    }
    if p.paths.exec_images_only {
        let _ = writeln!(
            o,
            "Exec: Cabin images only; a plain static executable is ENOEXEC ([paths] exec = \"images\")."
        );
    }
    if p.paths.set_id {
        let _ = writeln!(
            o,
            "Set-id: the program may make set-uid/set-gid files and give files to other owners ([paths] set-id)."
        );
    }
    network(&mut o, &p.network);
    let l = &p.limits;
    if l.is_empty() {
        let _ = writeln!(
            o,
            "Limits: only the default memory bound ({}, or `cabinc run --mem`).",
            size(crate::limits::DEFAULT_MEMORY)
        );
    } else {
        let _ = writeln!(o, "Limits (the program is stopped with a message when it reaches one):");
        match l.memory {
            Some(v) => {
                let _ = writeln!(o, "  memory:        {}", size(v));
            }
            None => {
                let _ = writeln!(
                    o,
                    "  memory:        {} (the default bound)",
                    size(crate::limits::DEFAULT_MEMORY)
                );
            }
        }
        if let Some(v) = l.open_files {
            let _ = writeln!(o, "  open files:    {v}");
        }
        if let Some(v) = l.threads {
            let _ = writeln!(o, "  threads:       {v}");
        }
        if let Some(v) = l.processes {
            let _ = writeln!(o, "  processes:     {v}");
        }
        if let Some(v) = l.cpu_time {
            let _ = writeln!(o, "  CPU time:      {}", dur(v));
        }
        if let Some(v) = l.wall_time {
            let _ = writeln!(o, "  wall time:     {}", dur(v));
        }
        if let Some(v) = l.bytes_written {
            let _ = writeln!(o, "  bytes written: {}", size(v));
        }
        if let Some(v) = l.file_size {
            let _ = writeln!(o, "  file size:     {}", size(v));
        }
    }
    if p.env.set.is_empty() && p.env.pass.is_empty() {
        let _ = writeln!(o, "Environment: empty (plus any --env K=V).");
    } else {
        let mut parts: Vec<String> = p.env.set.iter().map(|(k, v)| format!("{k}={v}")).collect();
        parts.extend(p.env.pass.iter().map(|k| format!("{k} (copied from the caller when set)")));
        let _ = writeln!(o, "Environment: only {}.", parts.join(", "));
    }
    let local = |f: &dyn Fn(Serve) -> bool| -> Vec<&str> {
        names::TABLE.iter().filter(|s| f(s.serve)).map(|s| s.name).collect()
    };
    let served_here = local(&|s| matches!(s, Serve::Local | Serve::LocalOrForwarded));
    let checked: Vec<&str> =
        served_here.iter().copied().filter(|n| names::number(n).is_some_and(|nr| c.may_refuse(nr))).collect();
    let _ = writeln!(
        o,
        "\nServed inside the domain by the libos, and bound by this policy like any other call: {}.",
        served_here.join(", ")
    );
    if checked.is_empty() {
        let _ = writeln!(
            o,
            "This policy allows all of them, so the libos serves them without asking the monitor."
        );
    } else {
        let _ = writeln!(
            o,
            "This policy does not plainly allow {}: the libos has the monitor decide each of those calls first.",
            checked.join(", ")
        );
    }
    let _ = writeln!(
        o,
        "Always served, whatever a policy says (a program can always end itself): {}.",
        local(&|s| s == Serve::Always).join(", ")
    );
    for w in &p.warnings {
        let _ = writeln!(o, "warning: {w}");
    }
    o
}

impl Policy {
    /// What happens to `nr` when none of its rules match: the lists, then the default.
    pub(crate) fn compile_fallback(&self, nr: u64) -> Action {
        let mut without = self.clone();
        without.rules.clear();
        let c = without.compile();
        match c.verdict(nr, &[0; 6]).decision {
            Decision::Allow => Action::Allow,
            Decision::Deny(e) => Action::Deny(e),
            Decision::Kill => Action::Kill,
            Decision::Complain(a) => a,
        }
    }
}

/// The `Network:` paragraph.
fn network(o: &mut String, n: &crate::net::NetPolicy) {
    if n.is_empty() {
        let _ = writeln!(
            o,
            "Network: none (add [network] connect/listen/unix/abstract/resolver, or --allow-connect/--allow-listen)."
        );
        return;
    }
    let _ =
        writeln!(o, "Network (nothing else; IPv4 written as IPv6, e.g. ::ffff:a.b.c.d, is matched as IPv4):");
    let at = |l: crate::Loc| {
        if l.line == 0 {
            " (command line)".to_string()
        } else {
            format!(" (line {})", l.line)
        }
    };
    for r in &n.connect {
        let _ = writeln!(o, "  connect to:        {r}{}", at(r.loc));
    }
    if let Some(r) = n.resolver {
        let _ = writeln!(o, "  DNS resolver:      {r} (connect over UDP and TCP)");
    }
    for r in &n.listen {
        let _ = writeln!(o, "  listen on:         {r}{}", at(r.loc));
    }
    for u in &n.unix {
        let _ = writeln!(o, "  unix socket:       {}", u.display());
    }
    for a in &n.abstract_names {
        let _ = writeln!(o, "  abstract socket:   @{}", crate::net::abstract_text(a));
    }
}

/// How a `[paths]` entry is granted, by what it names now: a directory is
/// a tree (no mark), anything else exactly that object (a file grant).
fn grant_kind(p: &std::path::Path) -> &'static str {
    match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => "",
        Ok(_) => "  (file: only this object, no other name in its directory)",
        Err(_) => "",
    }
}
