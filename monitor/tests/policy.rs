//! Policy tests at the `decide()` level: file checks with line:column,
//! generated probes for every allow entry and rule, precedence, the OCI
//! import of Docker's default profile, generation from a trace, and the
//! denial message.

use std::path::{Path, PathBuf};

use cabin_tests::SharedBuf;

use cabin_policy::{
    self as policy, explain, generate, names, oci, probe, render, Action, Decision, DenialReporter, Mode,
    Policy,
};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

fn nr(name: &str) -> u64 {
    names::number(name).unwrap_or_else(|| panic!("{name} is not a system call"))
}

fn test_policy() -> Policy {
    match Policy::load(&data("test-policy.toml")) {
        Ok(p) => p,
        Err(e) => panic!("test policy does not check: {e} {:?}", e.help()),
    }
}

#[test]
fn test_policy_parses_with_every_section() {
    let p = test_policy();
    assert_eq!(p.mode, Mode::Enforce);
    assert_eq!(p.default, Action::Deny(38));
    assert_eq!(p.deny_errno, 1);
    assert_eq!(p.rules.len(), 8);
    assert_eq!(p.paths.read, vec![PathBuf::from("/usr/share/zoneinfo"), PathBuf::from("data")]);
    assert_eq!(p.limits.memory, Some(256 << 20));
    assert_eq!(p.limits.open_files, Some(64));
    assert_eq!(p.limits.cpu_time, Some(std::time::Duration::from_secs(10)));
    assert_eq!((p.network.connect.len(), p.network.listen.len()), (3, 2));
    assert!(p.network.connect_allowed(&"[::ffff:10.9.8.7]:443".parse().expect("address")));
    assert_eq!(p.network.resolver(), Some("127.0.0.53:53".parse().expect("address")));
    assert_eq!(p.limits.wall_time, Some(std::time::Duration::from_secs(60)));
    assert_eq!(p.limits.bytes_written, Some(1 << 30));
    assert_eq!(p.limits.file_size, Some(1 << 20));
    assert_eq!(
        p.env.resolve(|k| (k == "TERM").then(|| "xterm".to_string())),
        vec!["LANG=C", "TERM=xterm", "TZ=UTC"]
    );
    assert!(p.digest.starts_with("sha256:") && p.digest.len() == 7 + 64);
    // mmap is denied and `kill` has argument rules: the libos serves both
    // inside the domain, so it has the monitor decide them (nothing to warn).
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let check = p.compile().check_local();
    for n in ["mmap", "kill", "getpid"] {
        assert!(check.contains(nr(n)), "{n} is checked by the monitor");
    }
    // brk is allowed (through @memory), read is forwarded: neither is checked.
    assert!(!check.contains(nr("brk")) && !check.contains(nr("read")));
    // exit_group is allowed: exit always is, whatever the default says.
    assert!(!check.contains(60) && !check.contains(231));
    assert!(p.compile().decide(60, &[0; 6]).serves());
}

#[test]
fn every_allow_rule_is_probed_both_ways() {
    let p = test_policy();
    let c = p.compile();
    let probes = probe::probes(&p);
    let mut allowed = 0;
    let mut refused = 0;
    for pr in &probes {
        let d = c.decide(pr.nr, &pr.args);
        assert_eq!(
            d.serves(),
            pr.allowed,
            "{}: {} {:x?} decided {d:?}",
            pr.what,
            names::display(pr.nr),
            pr.args
        );
        if pr.allowed {
            allowed += 1;
        } else {
            refused += 1;
        }
    }
    // Every allow-list call and every conditional allow rule has both kinds of probe.
    for e in &p.allow {
        for n in e.entry.numbers() {
            if p.rules.iter().any(|r| r.nr == n) {
                continue;
            }
            let mine: Vec<_> =
                probes.iter().filter(|pr| pr.what.contains(&format!(": {}", names::display(n)))).collect();
            assert!(mine.iter().any(|pr| pr.nr == n), "no allowed probe for {}", names::display(n));
            assert!(mine.iter().any(|pr| !pr.allowed), "no refused probe for {}", names::display(n));
        }
    }
    for r in p.rules.iter().filter(|r| r.action == Action::Allow && !r.conds.is_empty()) {
        let tag = format!("rule at line {} ", r.loc.line);
        assert!(
            probes.iter().any(|pr| pr.what.starts_with(&tag) && pr.allowed),
            "no allowed probe for {tag}"
        );
        assert!(
            probes.iter().any(|pr| pr.what.starts_with(&tag) && !pr.allowed),
            "no refused probe for {tag}"
        );
    }
    assert!(allowed > 40 && refused > 40, "{allowed} allowed, {refused} refused probes");
}

#[test]
fn precedence_and_errnos() {
    let c = test_policy().compile();
    let z = [0u64; 6];
    assert_eq!(c.decide(nr("read"), &z), Decision::Allow);
    assert_eq!(c.decide(nr("exit"), &z), Decision::Allow, "by number 60");
    assert_eq!(c.decide(nr("clock_gettime"), &z), Decision::Allow, "@time");
    assert_eq!(c.decide(nr("munmap"), &z), Decision::Allow, "@memory");
    // mmap is in @memory (allow) and in deny: deny wins, with deny-errno.
    assert_eq!(c.decide(nr("mmap"), &z), Decision::Deny(1));
    assert_eq!(c.decide(nr("socket"), &z), Decision::Deny(1), "@network in deny");
    assert_eq!(c.decide(nr("execve"), &z), Decision::Kill);
    assert_eq!(c.decide(nr("ptrace"), &z), Decision::Kill);
    assert_eq!(c.decide(nr("getdents64"), &z), Decision::Deny(38), "default ENOSYS");
    assert_eq!(c.decide(511, &z), Decision::Deny(38));
    assert_eq!(c.decide(0x4000_0000, &z), Decision::Deny(38), "x32 numbers get the default");
    assert_eq!(c.decide(u64::MAX, &z), Decision::Deny(38));
    // Rules.
    let o_wronly = [(-100i64) as u64, 0x1000, 1, 0, 0, 0];
    let o_rdonly_cloexec = [(-100i64) as u64, 0x1000, 0o2000000, 0, 0, 0];
    assert_eq!(c.decide(nr("openat"), &o_rdonly_cloexec), Decision::Allow);
    assert_eq!(c.decide(nr("openat"), &o_wronly), Decision::Deny(38));
    assert_eq!(c.decide(nr("ioctl"), &[1, 0x5401, 0, 0, 0, 0]), Decision::Allow);
    assert_eq!(c.decide(nr("ioctl"), &[1, 0x5413, 0, 0, 0, 0]), Decision::Allow);
    assert_eq!(c.decide(nr("ioctl"), &[1, 0x5402, 0, 0, 0, 0]), Decision::Deny(38));
    assert_eq!(c.decide(nr("fcntl"), &[3, 8, 0, 0, 0, 0]), Decision::Deny(13), "EACCES rule");
    assert_eq!(c.decide(nr("fcntl"), &[3, 1, 0, 0, 0, 0]), Decision::Allow);
    assert_eq!(c.decide(nr("getrandom"), &[0, 256, 0, 0, 0, 0]), Decision::Allow);
    assert_eq!(c.decide(nr("getrandom"), &[0, 257, 0, 0, 0, 0]), Decision::Deny(38));
    assert_eq!(c.decide(nr("getrandom"), &[0, 16, 1, 0, 0, 0]), Decision::Deny(38));
    // Verdicts name the rule.
    let v = c.verdict(nr("openat"), &o_wronly);
    assert!(v.no_rule_matched);
    let v = c.verdict(nr("socket"), &z);
    assert_eq!(v.origin.describe(), "`deny` entry `@network` (line 12)");
}

#[test]
fn complain_mode_allows_and_says_what_it_would_do() {
    let text = std::fs::read_to_string(data("test-policy.toml")).expect("read test policy");
    let text = text.replace("mode = \"enforce\"", "mode = \"complain\"");
    let c = Policy::parse("complain.toml", &text).expect("parses").compile();
    assert_eq!(c.decide(nr("execve"), &[0; 6]), Decision::Complain(Action::Kill));
    assert_eq!(c.decide(nr("socket"), &[0; 6]), Decision::Complain(Action::Deny(1)));
    assert_eq!(c.decide(nr("read"), &[0; 6]), Decision::Allow);
    assert!(c.decide(nr("execve"), &[0; 6]).serves());
}

fn parse_err(text: &str) -> (usize, usize, String, Option<String>) {
    match Policy::parse("p.toml", text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => {
            let (l, c) = e.position().expect("has a position");
            (l, c, e.to_string(), e.help().map(str::to_string))
        }
    }
}

/// A rule no backend could enforce is an error of the file, with the reason:
/// exit and exit_group are always served (a program can always end itself).
#[test]
fn refusing_exit_is_rejected_with_the_reason() {
    let (line, col, msg, help) = parse_err("version = 1\n[syscalls]\ndeny = [\"read\", \"exit_group\"]\n");
    assert_eq!((line, col), (3, 17));
    assert!(msg.contains("`deny` cannot refuse exit_group") && msg.contains("always end itself"), "{msg}");
    assert_eq!(help.as_deref(), Some("remove exit_group from `deny`"));
    let (line, _, msg, help) = parse_err("version = 1\n[syscalls]\nkill = [\"@process\"]\n");
    assert_eq!(line, 3);
    assert!(msg.contains("`@process` in `kill` includes exit and exit_group"), "{msg}");
    assert!(help.is_some_and(|h| h.contains("by name")));
    let (line, _, msg, _) = parse_err(
        "version = 1\n[[rule]]\nsyscall = \"exit\"\naction = \"kill\"\narg = 0\nop = \"ne\"\nvalue = 0\n",
    );
    assert_eq!(line, 2);
    assert!(msg.contains("a [[rule]] cannot refuse exit"), "{msg}");
    // The default and an allow rule are fine: exit stays allowed.
    let p = Policy::parse("p.toml", "version = 1\n[default]\naction = \"kill\"\n").expect("checks");
    assert!(p.compile().decide(nr("exit_group"), &[0; 6]).serves());
    assert_eq!(p.compile().decide(nr("getpid"), &[0; 6]), Decision::Kill);
}

#[test]
fn unknown_keys_and_bad_values_point_at_line_and_column() {
    let (l, c, msg, help) =
        parse_err("version = 1\n\n[syscalls]\nallow = [\"read\"]\n  alow = [\"write\"]\n");
    assert_eq!((l, c), (5, 3), "{msg}");
    assert!(msg.starts_with("p.toml:5:3: unknown field `alow`"), "{msg}");
    assert!(help.is_some());

    let (l, c, msg, _) = parse_err("version = 1\nmodee = \"enforce\"\n");
    assert_eq!((l, c), (2, 1), "{msg}");

    let (l, c, msg, _) = parse_err("version = 1\n[[rule]]\nsyscall = \"openat\"\nargs = 2\n");
    assert_eq!((l, c), (4, 1), "{msg}");

    let (l, c, msg, help) = parse_err("version = 1\n[syscalls]\nallow = [\"read\", \"opnat\"]\n");
    assert_eq!((l, c), (3, 18), "{msg}");
    assert!(msg.contains("unknown x86-64 system call `opnat`"), "{msg}");
    assert_eq!(help.as_deref(), Some("did you mean `openat`?"));

    let (l, c, msg, help) = parse_err("version = 1\n[syscalls]\ndeny = [\"@netwrok\"]\n");
    assert_eq!((l, c), (3, 9), "{msg}");
    assert!(help.unwrap_or_default().contains("@network"));

    let (l, c, msg, _) = parse_err("version = 1\n[default]\nerrno = \"EPREM\"\n");
    assert_eq!((l, c), (3, 9), "{msg}");

    let (l, c, msg, _) =
        parse_err("version = 1\n[[rule]]\nsyscall = \"read\"\narg = 7\nop = \"eq\"\nvalue = 1\n");
    assert_eq!((l, c), (4, 7), "{msg}");

    let (l, _, msg, _) =
        parse_err("version = 1\n[[rule]]\nsyscall = \"read\"\narg = 1\nop = \"between\"\nvalue = 1\n");
    assert_eq!(l, 5, "{msg}");

    let (l, c, msg, _) = parse_err("version = 1\n[limits]\nmemory = \"lots\"\n");
    assert_eq!((l, c), (3, 10), "{msg}");

    let (l, c, msg, _) = parse_err("version = 2\n");
    assert_eq!((l, c), (1, 11), "{msg}");
    assert!(msg.contains("unsupported policy version 2"));

    let (l, c, msg, help) = parse_err("[syscalls]\nallow = []\n");
    assert_eq!((l, c), (1, 1), "{msg}");
    assert!(help.unwrap_or_default().contains("version = 1"));

    let (l, _, msg, _) = parse_err("version = 1\n[syscalls\n");
    assert_eq!(l, 2, "{msg}");
}

#[test]
fn explain_speaks_plainly() {
    let p = test_policy();
    let text = explain::explain(&p);
    for needle in [
        "Any system call not named below is denied: it returns ENOSYS",
        "Allowed (",
        "Denied with EPERM",
        "End the program, exit status 159",
        "openat: allowed when arg2 & 0x3 == 0x0 (line 16) — read-only opens",
        "openat: otherwise denied with ENOSYS",
        "read only:      /usr/share/zoneinfo",
        "read and write: out",
        "memory:        256 MiB",
        "Environment: only LANG=C, TZ=UTC, TERM (copied from the caller when set).",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn render_round_trips() {
    let p = test_policy();
    let text = render::to_toml(&p, &["header line".to_string()]);
    let q = Policy::parse("rendered.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(q.rules.len(), p.rules.len());
    assert_eq!(q.limits, p.limits);
    assert_eq!(q.paths, p.paths);
    assert_eq!(q.env, p.env);
    let (a, b) = (p.compile(), q.compile());
    for pr in probe::probes(&p) {
        assert_eq!(a.decide(pr.nr, &pr.args), b.decide(pr.nr, &pr.args), "{}", pr.what);
    }
    for n in 0..512 {
        assert_eq!(a.decide(n, &[0; 6]), b.decide(n, &[0; 6]), "{}", names::display(n));
    }
}

#[test]
fn docker_default_profile_imports_with_a_readable_report() {
    let json = std::fs::read_to_string(data("docker-default-seccomp.json")).expect("docker profile");
    let (p, report) = oci::import("docker-default-seccomp.json", &json).expect("imports");
    let text = report.to_text();
    println!("{text}");
    assert!(text.contains("not carried over"));
    assert!(text.contains("CAP_SYS_ADMIN"), "{text}");
    assert!(text.contains("architectures"), "{text}");
    assert!(text.contains("not x86-64 system calls"), "{text}");
    assert!(text.contains("_llseek"), "{text}");
    assert!(report.allowed > 250, "{text}");

    // The result passes `policy check` (parses back) and means what Docker meant on x86-64.
    let toml_text = render::to_toml(&p, &["imported from Docker's default seccomp profile".to_string()]);
    let q = Policy::parse("imported.toml", &toml_text).unwrap_or_else(|e| panic!("{e}\n{toml_text}"));
    let c = q.compile();
    let z = [0u64; 6];
    assert_eq!(q.default, Action::Deny(1), "defaultErrnoRet 1 = EPERM");
    assert_eq!(c.decide(nr("read"), &z), Decision::Allow);
    assert_eq!(c.decide(nr("arch_prctl"), &z), Decision::Allow, "amd64-only entry kept");
    assert_eq!(c.decide(nr("mount"), &z), Decision::Deny(1), "CAP_SYS_ADMIN entry dropped");
    assert_eq!(c.decide(nr("reboot"), &z), Decision::Deny(1));
    assert_eq!(c.decide(nr("clone3"), &z), Decision::Deny(38), "errnoRet 38");
    // socket: allowed unless AF_ALG (38) or AF_VSOCK (40).
    assert_eq!(c.decide(nr("socket"), &[2, 1, 0, 0, 0, 0]), Decision::Allow);
    assert_eq!(c.decide(nr("socket"), &[39, 1, 0, 0, 0, 0]), Decision::Allow);
    assert_eq!(c.decide(nr("socket"), &[41, 1, 0, 0, 0, 0]), Decision::Allow);
    assert_eq!(c.decide(nr("socket"), &[38, 1, 0, 0, 0, 0]), Decision::Deny(1));
    assert_eq!(c.decide(nr("socket"), &[40, 1, 0, 0, 0, 0]), Decision::Deny(1));
    // personality: only the listed personas.
    assert_eq!(c.decide(nr("personality"), &[0, 0, 0, 0, 0, 0]), Decision::Allow);
    assert_eq!(c.decide(nr("personality"), &[0xffff_ffff, 0, 0, 0, 0, 0]), Decision::Allow);
    assert_eq!(c.decide(nr("personality"), &[1, 0, 0, 0, 0, 0]), Decision::Deny(1));
    // clone: no namespace flags.
    assert_eq!(c.decide(nr("clone"), &[0x11, 0, 0, 0, 0, 0]), Decision::Allow);
    assert_eq!(c.decide(nr("clone"), &[0x1000_0000, 0, 0, 0, 0, 0]), Decision::Deny(1), "CLONE_NEWUSER");
    let words = explain::explain(&q);
    assert!(words.contains("socket: allowed when arg0 < 0x26"), "{words}");
    assert!(words.contains("clone3: always denied with ENOSYS"), "{words}");
}

#[test]
fn generate_allows_exactly_the_recorded_run() {
    use cabin_monitor::trace::{Served, SyscallRecord, Tracer};
    let buf = SharedBuf::default();
    let mut t = Tracer::disabled().with_jsonl(Box::new(buf.clone()));
    type Call<'a> = (&'a str, [u64; 6], i64, Served, Option<&'a str>);
    let calls: [Call<'_>; 6] = [
        ("openat", [(-100i64) as u64, 0x1000, 0, 0, 0, 0], 3, Served::Forwarded, Some("/data/in/a.txt")),
        ("read", [3, 0x2000, 4096, 0, 0, 0], 10, Served::Forwarded, None),
        ("openat", [(-100i64) as u64, 0x1000, 0o1101, 0o644, 0, 0], 4, Served::Forwarded, Some("/out/b.txt")),
        ("write", [4, 0x2000, 10, 0, 0, 0], 10, Served::Forwarded, None),
        ("socket", [2, 1, 0, 0, 0, 0], -1, Served::Denied, None),
        ("exit_group", [0; 6], 0, Served::Forwarded, None),
    ];
    for (name, args, ret, served, path) in calls {
        let mut r = SyscallRecord::new(nr(name), args, ret, served);
        r.path = path.map(str::to_string);
        t.syscall(&r);
    }
    let jsonl = buf.text();
    let (p, report) = generate::from_trace("run.jsonl", &jsonl).expect("generates");
    assert_eq!(report.records, 6);
    assert!(report.were_refused.contains("socket"));
    let text = render::to_toml(&p, &[]);
    let q = Policy::parse("generated.toml", &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let c = q.compile();
    for (name, args, ..) in calls {
        assert_eq!(c.decide(nr(name), &args), Decision::Allow, "{name}");
    }
    for name in ["close", "mmap", "execve", "connect"] {
        assert!(!c.decide(nr(name), &[0; 6]).serves(), "{name} must not be allowed");
    }
    assert_eq!(q.allow.len(), 5);
    assert_eq!(q.paths.read, vec![PathBuf::from("/data/in")]);
    assert_eq!(q.paths.write, vec![PathBuf::from("/out")]);
}

#[test]
fn denial_is_reported_once_per_call_with_help() {
    let p = test_policy();
    let c = p.compile();
    let mut rep = DenialReporter::new();
    let args = [2, 1, 0, 0, 0, 0];
    let v = c.verdict(nr("socket"), &args);
    let m = rep.report("test-policy.toml", nr("socket"), &args, Some(0x401234), &v).expect("first time");
    let mut lines = m.lines();
    let first = lines.next().unwrap_or_default();
    assert_eq!(
        first,
        "cabin: policy denied socket (system call 41) at 0x401234: `deny` entry `@network` (line 12); it returned EPERM"
    );
    let help = lines.next().unwrap_or_default();
    assert!(help.starts_with("help: socket is refused through `@network`"), "{help}");
    assert!(rep.report("test-policy.toml", nr("socket"), &args, Some(0x401234), &v).is_none(), "only once");

    let v = c.verdict(nr("getdents64"), &[0; 6]);
    let m = rep.report("test-policy.toml", nr("getdents64"), &[0; 6], None, &v).expect("other call");
    assert!(m.contains("the default action; it returned ENOSYS"), "{m}");
    assert!(m.contains("help: add \"getdents64\" to `allow` under [syscalls] in test-policy.toml"), "{m}");

    let w = [(-100i64) as u64, 0x1000, 1, 0, 0, 0];
    let v = c.verdict(nr("openat"), &w);
    let m = rep.report("test-policy.toml", nr("openat"), &w, Some(0x1000), &v).expect("openat");
    assert!(
        m.contains(
            "no [[rule]] for openat matched its arguments (arg0=0xffffffffffffff9c arg1=0x1000 arg2=0x1"
        ),
        "{m}"
    );
    assert!(m.contains("help: add a [[rule]] for openat"), "{m}");

    let v = c.verdict(nr("execve"), &[0; 6]);
    let m = rep.report("test-policy.toml", nr("execve"), &[0; 6], None, &v).expect("execve");
    assert!(m.starts_with("cabin: policy killed the program for execve (system call 59)"), "{m}");
    assert!(m.contains("exit status 159"), "{m}");
    assert_eq!(policy::KILL_EXIT_CODE, 159);
}

#[test]
fn build_reports_refused_constant_sites() {
    let c = test_policy().compile();
    let sites = [
        (0x401000, nr("read")),
        (0x402000, nr("socket")),
        (0x401800, nr("socket")),
        (0x403000, nr("openat")),
    ];
    let f = policy::sites::refused_sites(&c, sites);
    assert_eq!(f.len(), 2, "{f:?}");
    assert_eq!(f[0].nr, nr("socket"));
    assert_eq!(f[0].sites, vec![0x401800, 0x402000]);
    assert!(f[0].always);
    let m = f[0].message("p.toml");
    assert_eq!(
        m,
        "p.toml refuses socket (system call 41), which the image makes at 2 sites (0x401800, 0x402000): \
         deny with EPERM, by `deny` entry `@network` (line 12); help: allow \"socket\" in p.toml if the \
         program needs it"
    );
    assert!(m.contains("; help: "), "{m}");
    assert_eq!(f[1].nr, nr("openat"));
    assert!(!f[1].always);
}

#[test]
fn docs_list_every_group_with_its_members() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/policy.md");
    let docs = std::fs::read_to_string(path).expect("docs/policy.md");
    for g in policy::groups::GROUPS {
        let row = format!("| `@{}` | {} | {} |", g.name, g.about, g.members.join(", "));
        assert!(docs.contains(&row), "docs/policy.md lacks or has a stale row for @{}:\n{row}", g.name);
    }
}

/// docs/syscalls.md lists exactly the calls the system-call table says the
/// libos serves inside the domain.
#[test]
fn docs_list_every_locally_served_call() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/syscalls.md");
    let docs = std::fs::read_to_string(path).expect("docs/syscalls.md");
    let section = docs
        .split("\n## ")
        .find(|s| s.starts_with("Served locally by the libos"))
        .expect("a 'Served locally by the libos' section");
    let mut listed: Vec<&str> = section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| l.split('|').nth(1))
        .flat_map(|cell| cell.split('`').skip(1).step_by(2))
        .collect();
    listed.sort_unstable();
    let mut table: Vec<&str> = cabin_abi::syscalls::served_locally().map(|s| s.name).collect();
    table.sort_unstable();
    assert_eq!(
        listed, table,
        "docs/syscalls.md and abi/src/syscalls.rs disagree on the locally served calls"
    );
}

/// docs/syscalls.md lists exactly the calls the monitor's service has a
/// handler for (the clock reads, forwarded only when the policy does not
/// plainly allow them, are listed with the local calls).
#[test]
fn docs_list_every_call_the_monitor_serves() {
    use cabin_abi::syscalls::{self, Serve};
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/syscalls.md");
    let docs = std::fs::read_to_string(path).expect("docs/syscalls.md");
    let section = docs
        .split("\n## ")
        .find(|s| s.starts_with("Served by the monitor"))
        .expect("a 'Served by the monitor' section");
    let mut listed: Vec<&str> = section
        .lines()
        .filter(|l| l.starts_with("| "))
        .filter_map(|l| l.split('|').nth(2))
        .flat_map(|cell| cell.split('`').skip(1).step_by(2))
        .filter(|w| syscalls::number(w).is_some())
        .collect();
    listed.sort_unstable();
    listed.dedup();
    // System V semaphores, queues and shared memory are served by the ring
    // worker through the process tree (outside the service table).
    const BY_THE_TREE: [&str; 12] = [
        "semget",
        "semop",
        "semtimedop",
        "semctl",
        "msgget",
        "msgsnd",
        "msgrcv",
        "msgctl",
        "shmget",
        "shmat",
        "shmdt",
        "shmctl",
    ];
    let mut served: Vec<&str> = cabin_monitor::service::served()
        .filter(|&n| syscalls::serve(n) == Serve::Forwarded)
        .filter_map(syscalls::name)
        .chain(BY_THE_TREE)
        .collect();
    served.sort_unstable();
    assert_eq!(
        listed, served,
        "docs/syscalls.md and monitor/src/service/table.rs disagree on the served calls"
    );
    for s in syscalls::TABLE.iter().filter(|s| s.serve == Serve::LocalOrForwarded) {
        assert!(cabin_monitor::service::serves(u64::from(s.nr)), "{}", s.name);
    }
}
