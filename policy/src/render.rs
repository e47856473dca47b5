//! Writing a [`Policy`] back as a policy file (for `import` and `generate`).
//! The output always parses back to the same policy; tests check that.

use std::fmt::Write as _;

use super::{errno, Action, ListEntry, Mode, Op, Policy, VERSION};

fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn errno_value(e: i32) -> String {
    match errno::name(e) {
        Some(n) => quote(n),
        None => e.to_string(),
    }
}

/// The `action = …` line(s) of a `[default]` table or a `[[rule]]`.
fn write_action(out: &mut String, action: Action) {
    let _ = match action {
        Action::Allow => writeln!(out, "action = \"allow\""),
        Action::Deny(e) => writeln!(out, "action = \"deny\"\nerrno = {}", errno_value(e)),
        Action::Kill => writeln!(out, "action = \"kill\""),
    };
}

fn list(out: &mut String, key: &str, entries: &[ListEntry]) {
    if entries.is_empty() {
        return;
    }
    let items: Vec<String> = entries
        .iter()
        .map(|e| match e.entry {
            super::Entry::Syscall(nr) if super::names::name(nr).is_none() => nr.to_string(),
            _ => quote(&e.entry.spelling()),
        })
        .collect();
    let _ = writeln!(out, "{key} = [");
    let mut line = String::from("   ");
    for it in items {
        if line.len() + it.len() + 2 > 100 {
            let _ = writeln!(out, "{line}");
            line = String::from("   ");
        }
        line.push(' ');
        line.push_str(&it);
        line.push(',');
    }
    let _ = writeln!(out, "{line}");
    let _ = writeln!(out, "]");
}

/// The policy as TOML. `header` lines are written first as `#` comments.
pub fn to_toml(p: &Policy, header: &[String]) -> String {
    let mut o = String::new();
    for h in header {
        for l in h.lines() {
            if l.is_empty() {
                o.push_str("#\n");
            } else {
                let _ = writeln!(o, "# {l}");
            }
        }
    }
    if !header.is_empty() {
        o.push('\n');
    }
    let _ = writeln!(o, "version = {VERSION}");
    let _ = writeln!(o, "mode = {}", quote(p.mode.as_str()));
    let _ = writeln!(o, "\n[default]");
    write_action(&mut o, p.default);
    if !(p.allow.is_empty() && p.deny.is_empty() && p.kill.is_empty()) {
        let _ = writeln!(o, "\n[syscalls]");
        list(&mut o, "allow", &p.allow);
        if !p.deny.is_empty() {
            let _ = writeln!(o, "deny-errno = {}", errno_value(p.deny_errno));
        }
        list(&mut o, "deny", &p.deny);
        list(&mut o, "kill", &p.kill);
    }
    for r in &p.rules {
        let _ = writeln!(o, "\n[[rule]]");
        let name = match super::names::name(r.nr) {
            Some(n) => quote(n),
            None => r.nr.to_string(),
        };
        let _ = writeln!(o, "syscall = {name}");
        write_action(&mut o, r.action);
        if !r.conds.is_empty() {
            let cs: Vec<String> = r
                .conds
                .iter()
                .map(|c| {
                    let mask = if c.op == Op::MaskedEq {
                        format!(", mask = \"{:#x}\"", c.mask)
                    } else {
                        String::new()
                    };
                    format!(
                        "{{ arg = {}, op = \"{}\"{mask}, value = \"{:#x}\" }}",
                        c.arg,
                        c.op.as_str(),
                        c.value
                    )
                })
                .collect();
            let _ = writeln!(o, "all = [{}]", cs.join(", "));
        }
        if let Some(c) = &r.comment {
            let _ = writeln!(o, "comment = {}", quote(c));
        }
    }
    if !p.paths.read.is_empty() || !p.paths.write.is_empty() || p.paths.set_id || p.paths.exec_images_only {
        let _ = writeln!(o, "\n[paths]");
        if p.paths.set_id {
            let _ = writeln!(o, "set-id = true");
        }
        if p.paths.exec_images_only {
            let _ = writeln!(o, "exec = \"images\"");
        }
        for (k, v) in [("read", &p.paths.read), ("write", &p.paths.write)] {
            if !v.is_empty() {
                let items: Vec<String> = v.iter().map(|p| quote(&p.to_string_lossy())).collect();
                let _ = writeln!(o, "{k} = [{}]", items.join(", "));
            }
        }
    }
    if !p.view.is_empty() || p.view.root_readonly {
        let v = &p.view;
        let _ = writeln!(o, "\n[view]");
        if let Some(r) = &v.root {
            let _ = writeln!(o, "root = {}", quote(&r.to_string_lossy()));
        }
        if v.root_readonly {
            let _ = writeln!(o, "root-read-only = true");
        }
        if !v.binds.is_empty() {
            let items: Vec<String> = v
                .binds
                .iter()
                .map(|b| {
                    let ro = if b.readonly { ":ro" } else { "" };
                    quote(&format!("{}:{}{ro}", b.src.to_string_lossy(), b.dst.to_string_lossy()))
                })
                .collect();
            let _ = writeln!(o, "bind = [{}]", items.join(", "));
        }
        if !v.tmpfs.is_empty() {
            let items: Vec<String> = v
                .tmpfs
                .iter()
                .map(|t| {
                    let size = t.size.map(|n| format!(":{n}")).unwrap_or_default();
                    quote(&format!("{}{size}", t.dst.to_string_lossy()))
                })
                .collect();
            let _ = writeln!(o, "tmpfs = [{}]", items.join(", "));
        }
        if let Some(c) = &v.chdir {
            let _ = writeln!(o, "chdir = {}", quote(&c.to_string_lossy()));
        }
    }
    if !p.limits.is_empty() {
        let l = &p.limits;
        let _ = writeln!(o, "\n[limits]");
        for (k, v) in [
            ("memory", l.memory),
            ("open-files", l.open_files),
            ("threads", l.threads),
            ("processes", l.processes),
        ] {
            if let Some(v) = v {
                let _ = writeln!(o, "{k} = {v}");
            }
        }
        for (k, v) in [("cpu-time", l.cpu_time), ("wall-time", l.wall_time)] {
            if let Some(v) = v {
                let _ = writeln!(o, "{k} = \"{}ms\"", v.as_millis());
            }
        }
        for (k, v) in [("bytes-written", l.bytes_written), ("file-size", l.file_size)] {
            if let Some(v) = v {
                let _ = writeln!(o, "{k} = {v}");
            }
        }
    }
    if !p.network.is_empty() {
        let n = &p.network;
        let _ = writeln!(o, "\n[network]");
        for (k, v) in [("connect", &n.connect), ("listen", &n.listen)] {
            if !v.is_empty() {
                let items: Vec<String> = v.iter().map(|r| quote(&r.to_string())).collect();
                let _ = writeln!(o, "{k} = [{}]", items.join(", "));
            }
        }
        if !n.unix.is_empty() {
            let items: Vec<String> = n.unix.iter().map(|u| quote(&u.to_string_lossy())).collect();
            let _ = writeln!(o, "unix = [{}]", items.join(", "));
        }
        if !n.abstract_names.is_empty() {
            let items: Vec<String> =
                n.abstract_names.iter().map(|a| quote(&crate::net::abstract_text(a))).collect();
            let _ = writeln!(o, "abstract = [{}]", items.join(", "));
        }
        if let Some(r) = n.resolver {
            let _ = writeln!(o, "resolver = {}", quote(&r.to_string()));
        }
    }
    if !(p.env.set.is_empty() && p.env.pass.is_empty()) {
        let _ = writeln!(o, "\n[env]");
        if !p.env.pass.is_empty() {
            let items: Vec<String> = p.env.pass.iter().map(|k| quote(k)).collect();
            let _ = writeln!(o, "pass = [{}]", items.join(", "));
        }
        if !p.env.set.is_empty() {
            let items: Vec<String> = p.env.set.iter().map(|(k, v)| format!("{k} = {}", quote(v))).collect();
            let _ = writeln!(o, "set = {{ {} }}", items.join(", "));
        }
    }
    if p.mode == Mode::Complain {
        let _ = writeln!(o, "\n# complain mode: refusals are logged, and the calls are served.");
    }
    o
}
