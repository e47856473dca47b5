//! `cabinc syscalls`: how each x86-64 system call of a confined program is
//! served, printed from the one system-call table ([`cabin_abi::syscalls`]:
//! number, name, argument kinds, served by the libos or forwarded) and the
//! monitor service's table of handlers (a forwarded call without one is
//! answered `ENOSYS`). `--doc` prints docs/syscalls.md, which explains each.

use std::fmt::Write;

use cabin_abi::syscalls::{Arg, Serve, TABLE};
use cabin_monitor::service;

/// Arguments of `cabinc syscalls`.
#[derive(Debug, clap::Args)]
pub struct SyscallsArgs {
    /// Print docs/syscalls.md (what each served call does, the path rules)
    /// instead of the table.
    #[arg(long)]
    pub doc: bool,
    /// Output format: the table, or a JSON array of
    /// `{"nr", "name", "args", "served_by", "refused"}`.
    #[arg(long, value_enum, default_value_t = crate::Format::Text)]
    pub format: crate::Format,
}

/// Whether the backends refuse call `nr` (answer `ENOSYS`): not in the
/// table, or forwarded with no monitor handler (`clone`/`clone3` are taken
/// by the libos for threads and count as served). `cabinc build` warns about
/// sites of such calls.
pub fn refused(nr: u64) -> bool {
    match TABLE.iter().find(|s| u64::from(s.nr) == nr) {
        None => true,
        Some(s) => s.serve == Serve::Forwarded && !monitor_serves(nr) && !is_clone(nr),
    }
}

/// Whether the monitor serves forwarded call `nr`: its service table, or
/// the process tree (System V IPC).
fn monitor_serves(nr: u64) -> bool {
    service::serves(nr) || cabin_monitor::tree::serves(nr)
}

/// The name of call `nr`, or `syscall_N`.
pub fn name(nr: u64) -> String {
    TABLE
        .iter()
        .find(|s| u64::from(s.nr) == nr)
        .map_or_else(|| format!("syscall_{nr}"), |s| s.name.to_string())
}

/// The table as JSON.
pub fn to_json() -> serde_json::Value {
    let rows: Vec<serde_json::Value> = TABLE
        .iter()
        .map(|s| {
            let nr = u64::from(s.nr);
            serde_json::json!({
                "nr": nr,
                "name": s.name,
                "args": s.args.map(|a| a.iter().map(kind).collect::<Vec<_>>()),
                "served_by": served_by(nr, s.serve),
                "refused": refused(nr),
            })
        })
        .collect();
    serde_json::Value::Array(rows)
}

/// Who serves a call, as the table column says it.
fn served_by(nr: u64, serve: Serve) -> &'static str {
    match serve {
        Serve::Always if nr == cabin_abi::syscalls::nr::rt_sigreturn => {
            "libos, always (returns from a handler)"
        }
        Serve::Always => "libos, always (ends the program)",
        Serve::Local => "libos",
        Serve::LocalOrForwarded => "libos, or the monitor",
        Serve::Forwarded if monitor_serves(nr) => "monitor",
        // The libos's entry takes these before the table (docs/threads.md).
        Serve::Forwarded if is_clone(nr) => "libos: threads (process backend); others not served: ENOSYS",
        Serve::Forwarded => "not served: ENOSYS",
    }
}

fn kind(a: &Arg) -> String {
    match a {
        Arg::Int => "int".into(),
        Arg::Len => "len".into(),
        Arg::Offset => "offset".into(),
        Arg::Fd => "fd".into(),
        Arg::DirFd => "dirfd".into(),
        Arg::Path => "path".into(),
        Arg::Str => "str".into(),
        Arg::BufIn(n) => format!("in[arg{n}]"),
        Arg::BufOut(n) => format!("out[arg{n}]"),
        Arg::In => "in".into(),
        Arg::Out => "out".into(),
        Arg::InOut => "inout".into(),
        Arg::Addr => "addr".into(),
        Arg::OpenFlags => "oflags".into(),
        Arg::Prot => "prot".into(),
        Arg::Mode => "mode".into(),
        Arg::Flags => "flags".into(),
        Arg::Any => "any".into(),
    }
}

/// `clone` and `clone3`: threads are started by the libos, every other flag
/// set (a child process) is refused.
fn is_clone(nr: u64) -> bool {
    nr == cabin_abi::syscalls::nr::clone || nr == cabin_abi::syscalls::nr::clone3
}

/// The table `cabinc syscalls` prints.
pub fn render() -> String {
    let mut out = String::from(
        "How each x86-64 system call of a confined program is served. A policy decides every call \
         but exit, exit_group\nand rt_sigreturn, whichever side serves it; `cabinc syscalls --doc` explains each \
         (docs/syscalls.md).\n\n",
    );
    let _ = writeln!(out, "{:>4}  {:<48} served by", "nr", "call (argument kinds)");
    let (mut libos, mut monitor, mut refused) = (0, 0, 0);
    for s in TABLE {
        let nr = u64::from(s.nr);
        let call = match s.args {
            Some(args) => format!("{}({})", s.name, args.iter().map(kind).collect::<Vec<_>>().join(", ")),
            None => format!("{}(..)", s.name),
        };
        match (s.serve, monitor_serves(nr)) {
            (Serve::Forwarded, true) => monitor += 1,
            (Serve::Forwarded, false) if is_clone(nr) => libos += 1,
            (Serve::Forwarded, false) => refused += 1,
            _ => libos += 1,
        }
        let _ = writeln!(out, "{nr:>4}  {call:<48} {}", served_by(nr, s.serve));
    }
    let _ = writeln!(
        out,
        "\n{} calls: {libos} served by the libos, {monitor} by the monitor, {refused} not served (ENOSYS, \
         as is every number not listed).",
        TABLE.len()
    );
    out
}

/// Runs `cabinc syscalls`.
pub fn run(a: &SyscallsArgs) -> anyhow::Result<std::process::ExitCode> {
    if a.doc {
        print!("{}", include_str!("../../docs/syscalls.md"));
    } else if a.format == crate::Format::Json {
        println!("{}", serde_json::to_string_pretty(&to_json())?);
    } else {
        print!("{}", render());
    }
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_every_call_with_who_serves_it() {
        let t = render();
        let rows = t.lines().filter(|l| {
            l.get(..4).is_some_and(|n| n.trim().parse::<u16>().is_ok()) && l.get(4..6) == Some("  ")
        });
        assert_eq!(rows.count(), TABLE.len());
        assert!(t.contains("   0  read(fd, out[arg2], len)"), "{t}");
        assert!(t.lines().any(|l| l.starts_with("   0  read(") && l.ends_with(" monitor")));
        assert!(t.lines().any(|l| l.starts_with("   9  mmap(") && l.ends_with(" libos")));
        assert!(t.lines().any(|l| l.starts_with("  56  clone(") && l.contains(" libos: threads")));
        assert!(t.lines().any(|l| l.starts_with("  57  fork(") && l.ends_with(" not served: ENOSYS")));
        assert!(t.lines().any(|l| l.starts_with("  30  shmat(") && l.ends_with(" monitor")), "{t}");
        assert!(t.lines().any(|l| l.starts_with("  64  semget(") && l.ends_with(" monitor")), "{t}");
        assert!(t
            .lines()
            .any(|l| l.starts_with(" 228  clock_gettime(") && l.ends_with(" libos, or the monitor")));
        assert!(t
            .lines()
            .any(|l| l.starts_with(" 231  exit_group(int)")
                && l.ends_with(" libos, always (ends the program)")));
        assert!(t.lines().any(|l| l.starts_with("  15  rt_sigreturn(")
            && l.ends_with(" libos, always (returns from a handler)")));
        assert!(t.contains("43 served by the libos, 146 by the monitor"), "{t}");
    }
}
