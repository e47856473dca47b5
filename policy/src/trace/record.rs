//! Trace and audit records, and their two spellings: a strace-like text line
//! and a JSON object (one per line, schema in docs/trace-schema.json).
//!
//! 64-bit register values (arguments, results, addresses, limit values) are
//! written as `"0x…"` strings in JSON, so no reader loses precision; counts
//! and nanosecond times are plain integers.

use serde_json::{json, Map, Value};

use super::decode;
use crate::{errno, names};

/// Version of the record schema (the `schema` field of `start`).
pub const SCHEMA_VERSION: u32 = 1;

/// How one call was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Served {
    /// By the libos inside the domain.
    Local,
    /// By the monitor, through the shared ring (fast path).
    Forwarded,
    /// By the monitor, after a trap (slow path: SIGSYS, `ud2`, VM exit).
    Trapped,
    /// Refused by the policy (an errno was returned).
    Denied,
    /// Refused by the policy, and the program was ended.
    Killed,
}

impl Served {
    /// The word used in traces.
    pub fn as_str(self) -> &'static str {
        match self {
            Served::Local => "local",
            Served::Forwarded => "forwarded",
            Served::Trapped => "trapped",
            Served::Denied => "denied",
            Served::Killed => "killed",
        }
    }
}

/// One system call as the monitor saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyscallRecord {
    /// The pid, as the program sees it, of the process that made the call
    /// (its main thread's id; the monitor's gate fills it in).
    pub tid: u32,
    /// Nanoseconds since the program started.
    pub time_ns: u64,
    /// Call number.
    pub nr: u64,
    /// The six argument registers.
    pub args: [u64; 6],
    /// Value returned to the program (`None` when it was killed, or for a
    /// `Local` call the policy checked before the libos served it).
    pub ret: Option<i64>,
    /// How it was served.
    pub served: Served,
    /// How long serving it took, in nanoseconds.
    pub duration_ns: u64,
    /// Address of the program's call site, when known.
    pub site: Option<u64>,
    /// For a refusal (or a complain-mode allowance): the rule, in words.
    pub rule: Option<String>,
    /// Allowed only because the policy is in complain mode.
    pub complain: bool,
    /// The path argument as the program passed it, when the service read
    /// one and a tracer wanted it, or the call was refused ([`path_text`]).
    pub path: Option<String>,
    /// The socket address of a socket call, as [`addr_text`] writes it:
    /// the address `connect`, `bind`, `sendto`/`sendmsg`/`sendmmsg` were
    /// given (the first, for `sendmmsg`), or the peer `accept`/`recvfrom`
    /// returned. Filled by the monitor's socket service when a tracer or
    /// the audit log wants it, and always for a refusal.
    pub addr: Option<String>,
    /// In a view (docs/views.md): where `path` lies on the host, escaped
    /// as `path` is (`tmpfs:SIZE/...` in a tmpfs).
    pub host_path: Option<String>,
}

impl SyscallRecord {
    /// A record with the given call and result, everything else empty.
    pub fn new(nr: u64, args: [u64; 6], ret: i64, served: Served) -> SyscallRecord {
        SyscallRecord {
            tid: 1,
            time_ns: 0,
            nr,
            args,
            ret: Some(ret),
            served,
            duration_ns: 0,
            site: None,
            rule: None,
            complain: false,
            path: None,
            addr: None,
            host_path: None,
        }
    }

    /// Whether this record belongs in the audit log.
    pub fn is_audit_event(&self) -> bool {
        matches!(self.served, Served::Denied | Served::Killed) || self.complain
    }
}

/// What the `start` record says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartInfo {
    /// The image path.
    pub image: String,
    /// Its launch measurement (96 hex digits), when computed.
    pub measurement: Option<String>,
    /// "process", "kvm" or "snp".
    pub backend: String,
    /// `sha256:…` of the policy file, when a policy is in force.
    pub policy_digest: Option<String>,
    /// "enforce" or "complain", when a policy is in force.
    pub policy_mode: Option<String>,
    /// cabinc's version.
    pub version: String,
    /// The program's argv.
    pub args: Vec<String>,
    /// Wall-clock start, nanoseconds since the Unix epoch.
    pub unix_time_ns: u64,
}

/// How the program ended, for the `exit` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitInfo {
    /// The exit status `cabinc run` returns.
    pub exit_code: i32,
    /// "exited", "signal", "killed" (by the policy), "limit" or "protocol-violation".
    pub reason: String,
    /// One line with details, when there is more to say.
    pub message: Option<String>,
    /// Nanoseconds since start.
    pub time_ns: u64,
}

/// Which limit was hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// `[limits] memory`.
    Memory,
    /// `[limits] open-files`.
    OpenFiles,
    /// `[limits] cpu-time` (nanoseconds).
    CpuTime,
    /// `[limits] wall-time` (nanoseconds).
    WallTime,
    /// `[limits] bytes-written`.
    BytesWritten,
    /// `[limits] file-size`.
    FileSize,
    /// `[limits] processes` (docs/processes.md).
    Processes,
}

impl LimitKind {
    /// The key in the policy file.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Memory => "memory",
            LimitKind::OpenFiles => "open-files",
            LimitKind::CpuTime => "cpu-time",
            LimitKind::WallTime => "wall-time",
            LimitKind::BytesWritten => "bytes-written",
            LimitKind::FileSize => "file-size",
            LimitKind::Processes => "processes",
        }
    }
}

/// A limit was reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitHit {
    /// Nanoseconds since start.
    pub time_ns: u64,
    /// Which limit.
    pub limit: LimitKind,
    /// The value the program reached or asked for.
    pub value: u64,
    /// The limit.
    pub max: u64,
    /// What the monitor did ("stopped the program", "returned EFBIG", …).
    pub action: String,
}

/// Bytes of a program path a record carries; the rest is cut off and
/// counted (`...(+N bytes)`), so a record stays small whatever the program
/// passes (a path may be up to 4095 bytes).
pub const PATH_FIELD_MAX: usize = 256;

/// A program path as record text, unambiguous and printable: valid UTF-8
/// is kept, a backslash is doubled, control characters and bytes that are
/// not UTF-8 are written `\xNN`; past [`PATH_FIELD_MAX`] bytes it is cut
/// and `...(+N bytes)` appended.
pub fn path_text(p: &[u8]) -> String {
    let cut = p.len().min(PATH_FIELD_MAX);
    let mut out = String::with_capacity(cut + 8);
    for chunk in p[..cut].utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    if p.len() > cut {
        out.push_str(&format!("...(+{} bytes)", p.len() - cut));
    }
    out
}

/// A socket address as a trace records it ([`addr_text`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceAddr {
    /// `AF_INET` / `AF_INET6`, as the program gave it (not normalised).
    Inet(std::net::SocketAddr),
    /// `AF_UNIX`, a named socket: the path as the program gave it.
    Unix(Vec<u8>),
    /// `AF_UNIX`, abstract: the name after the leading NUL.
    Abstract(Vec<u8>),
    /// `AF_UNIX` with no name (autobind, or an unnamed peer).
    Unnamed,
    /// Any other family, by number.
    Family(u16),
}

/// The text of a socket address in a record: `127.0.0.1:80`, `[::1]:80`
/// (`[fe80::1%2]:80` with a scope id), `unix:/run/a.sock`, `unix:@name`
/// (abstract), `unix:` (unnamed), `family:16`. Unix names are escaped and
/// bounded as [`path_text`] does.
pub fn addr_text(a: &TraceAddr) -> String {
    match a {
        TraceAddr::Inet(sa) => sa.to_string(),
        TraceAddr::Unix(p) => format!("unix:{}", path_text(p)),
        TraceAddr::Abstract(n) => format!("unix:@{}", path_text(n)),
        TraceAddr::Unnamed => "unix:".into(),
        TraceAddr::Family(f) => format!("family:{f}"),
    }
}

/// Reads back [`addr_text`]'s output (unix names stay escaped text: a
/// name cut by [`path_text`] or holding `\xNN` escapes is returned as
/// written). `None` for anything else.
pub fn parse_addr_text(t: &str) -> Option<TraceAddr> {
    if let Some(rest) = t.strip_prefix("unix:") {
        return Some(if rest.is_empty() {
            TraceAddr::Unnamed
        } else if let Some(name) = rest.strip_prefix('@') {
            TraceAddr::Abstract(name.as_bytes().to_vec())
        } else {
            TraceAddr::Unix(rest.as_bytes().to_vec())
        });
    }
    if let Some(f) = t.strip_prefix("family:") {
        return f.parse().ok().map(TraceAddr::Family);
    }
    t.parse().ok().map(TraceAddr::Inet)
}

/// `"0x…"`.
pub fn hex(v: u64) -> Value {
    Value::String(format!("{v:#x}"))
}

/// The JSON object of a syscall record.
pub fn syscall_json(seq: u64, r: &SyscallRecord) -> Value {
    let mut m = Map::new();
    m.insert("type".into(), json!("syscall"));
    m.insert("seq".into(), json!(seq));
    m.insert("tid".into(), json!(r.tid));
    m.insert("t_ns".into(), json!(r.time_ns));
    m.insert("nr".into(), json!(r.nr));
    m.insert("name".into(), json!(names::display(r.nr)));
    m.insert("args".into(), Value::Array(r.args.iter().map(|&a| hex(a)).collect()));
    if let Some(ret) = r.ret {
        m.insert("ret".into(), hex(ret as u64));
        if (-4095..0).contains(&ret) {
            m.insert("errno".into(), json!(errno::name_or_number(-ret as i32)));
        }
    }
    m.insert("served".into(), json!(r.served.as_str()));
    m.insert("dur_ns".into(), json!(r.duration_ns));
    if let Some(s) = r.site {
        m.insert("site".into(), hex(s));
    }
    if let Some(rule) = &r.rule {
        m.insert("rule".into(), json!(rule));
    }
    if r.complain {
        m.insert("complain".into(), json!(true));
    }
    if let Some(p) = &r.path {
        m.insert("path".into(), json!(p));
    }
    if let Some(a) = &r.addr {
        m.insert("addr".into(), json!(a));
    }
    if let Some(h) = &r.host_path {
        m.insert("host_path".into(), json!(h));
    }
    Value::Object(m)
}

/// The JSON object of the `start` record.
pub fn start_json(s: &StartInfo) -> Value {
    json!({
        "type": "start",
        "schema": SCHEMA_VERSION,
        "version": s.version,
        "image": s.image,
        "measurement": s.measurement,
        "backend": s.backend,
        "policy_digest": s.policy_digest,
        "policy_mode": s.policy_mode,
        "args": s.args,
        "unix_time_ns": s.unix_time_ns,
    })
}

/// The JSON object of a `limit` record.
pub fn limit_json(l: &LimitHit) -> Value {
    json!({
        "type": "limit",
        "t_ns": l.time_ns,
        "limit": l.limit.as_str(),
        "value": hex(l.value),
        "max": hex(l.max),
        "action": l.action,
    })
}

/// The JSON object of a `violation` record.
pub fn violation_json(time_ns: u64, message: &str) -> Value {
    json!({ "type": "violation", "t_ns": time_ns, "message": message })
}

/// The strace-like text line (no newline) of a syscall record.
pub fn syscall_text(r: &SyscallRecord) -> String {
    let name = names::display(r.nr);
    let args = decode::args(r.nr, &r.args, r.path.as_deref());
    let result = match r.ret {
        None => "?".to_string(),
        Some(v) if (-4095..0).contains(&v) => format!("-1 {}", errno::name_or_number(-v as i32)),
        Some(v) if decode::returns_address(r.nr) => format!("{:#x}", v as u64),
        Some(v) => v.to_string(),
    };
    let secs = r.time_ns / 1_000_000_000;
    let micros = (r.time_ns % 1_000_000_000) / 1000;
    let mut how = r.served.as_str().to_string();
    if r.served == Served::Local && r.ret.is_none() {
        how.push_str(" after a policy check");
    }
    if let Some(rule) = &r.rule {
        how.push_str(" by ");
        how.push_str(rule);
    }
    if r.complain {
        how.push_str(", allowed in complain mode");
    }
    let site = r.site.map(|s| format!(" @{s:#x}")).unwrap_or_default();
    let mut addr = r.addr.as_ref().map(|a| format!(" addr={a}")).unwrap_or_default();
    if let Some(h) = &r.host_path {
        addr.push_str(&format!(" host={h}"));
    }
    format!(
        "[{}] {secs}.{micros:06} {name}({args}){addr} = {result} <{how} {}>{site}",
        r.tid,
        duration(r.duration_ns)
    )
}

/// `850ns`, `12.3us`, `4.56ms`, `1.234s`.
pub fn duration(ns: u64) -> String {
    if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        format!("{:.1}us", ns as f64 / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2}ms", ns as f64 / 1e6)
    } else {
        format!("{:.3}s", ns as f64 / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_text_is_printable_unambiguous_and_bounded() {
        assert_eq!(path_text(b"/data/a b"), "/data/a b");
        assert_eq!(path_text(b"/x/\xff\xfe\\y\n"), "/x/\\xff\\xfe\\\\y\\x0a");
        assert_eq!(path_text("/caf\u{e9}".as_bytes()), "/caf\u{e9}");
        let long = vec![b'a'; 4000];
        let t = path_text(&long);
        assert_eq!(t, format!("{}...(+3744 bytes)", "a".repeat(256)));
    }

    #[test]
    fn addr_text_round_trips() {
        let cases = [
            TraceAddr::Inet("127.0.0.1:80".parse().expect("addr")),
            TraceAddr::Inet("[::ffff:10.0.0.1]:443".parse().expect("addr")),
            TraceAddr::Inet("[fe80::1%2]:80".parse().expect("addr")),
            TraceAddr::Unix(b"/run/app.sock".to_vec()),
            TraceAddr::Abstract(b"my-name".to_vec()),
            TraceAddr::Unnamed,
            TraceAddr::Family(16),
        ];
        for a in cases {
            assert_eq!(parse_addr_text(&addr_text(&a)), Some(a.clone()), "{}", addr_text(&a));
        }
        assert_eq!(addr_text(&TraceAddr::Abstract(b"a\0b".to_vec())), "unix:@a\\x00b");
        assert_eq!(parse_addr_text("example.com:80"), None);
    }

    #[test]
    fn records_carry_the_address() {
        let mut r = SyscallRecord::new(42, [3, 0x1000, 16, 0, 0, 0], -13, Served::Denied);
        r.addr = Some(addr_text(&TraceAddr::Inet("10.0.0.1:80".parse().expect("addr"))));
        assert_eq!(syscall_json(1, &r)["addr"], "10.0.0.1:80");
        assert!(syscall_text(&r).contains(" addr=10.0.0.1:80 = -1 EACCES"), "{}", syscall_text(&r));
    }

    #[test]
    fn records_in_a_view_carry_the_host_path() {
        let mut r = SyscallRecord::new(257, [0; 6], -30, Served::Denied);
        r.path = Some("/ro/f".into());
        r.host_path = Some("/srv/ro/f".into());
        assert_eq!(syscall_json(1, &r)["host_path"], "/srv/ro/f");
        assert!(syscall_text(&r).contains(" host=/srv/ro/f = -1 EROFS"), "{}", syscall_text(&r));
    }
}
