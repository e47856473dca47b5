//! System V semaphores and message queues private to the confined tree
//! (issue 14, docs/processes.md, "System V IPC"): `semget`, `semop`,
//! `semtimedop`, `semctl`, `msgget`, `msgsnd`, `msgrcv`, `msgctl`, served
//! by the monitor from this table. No host SysV object is ever created,
//! looked up or named: a key is a number in the tree's own key space, so a
//! host object with the same key is not seen (and cannot be reached), and
//! the tree's objects vanish with the run.
//!
//! Pure bookkeeping on copied values: the caller ([`crate::tree::Tree`])
//! copies the program's arguments once, calls a `try_*` operation under
//! the table's lock, and blocks outside it when told to ([`Step::Block`]),
//! trying again when the table changes. Every input is program-chosen:
//! nothing here panics on one, and the table is bounded ([`MAX_SETS`],
//! [`MAX_SEMS`], [`MAX_QUEUES`], [`MSGMNB`] bytes per queue).

use std::collections::BTreeMap;

/// Most semaphore sets the tree may hold (`semget` past it: `ENOSPC`).
pub const MAX_SETS: usize = 128;
/// Most semaphores in one set (Linux's `SEMMSL`).
pub const MAX_SEMS: usize = 250;
/// Most operations in one `semop` (Linux's `SEMOPM`; more: `E2BIG`).
pub const MAX_SEMOPS: usize = 500;
/// Largest semaphore value (Linux's `SEMVMX`).
pub const SEMVMX: i32 = 32767;
/// Most message queues the tree may hold (`msgget` past it: `ENOSPC`).
pub const MAX_QUEUES: usize = 64;
/// Largest message (Linux's `MSGMAX`).
pub const MSGMAX: usize = 8192;
/// Default and largest byte capacity of a queue (Linux's `MSGMNB`; raising
/// `msg_qbytes` above it is `EPERM`, as for a process without
/// `CAP_SYS_RESOURCE`). The tree holds at most `MAX_QUEUES * MSGMNB` bytes
/// of messages (1 MiB).
pub const MSGMNB: usize = 16384;

const IPC_PRIVATE: i32 = 0;
const IPC_CREAT: u32 = 0o1000;
const IPC_EXCL: u32 = 0o2000;
/// `IPC_NOWAIT` (also `semop`'s per-operation flag).
pub const IPC_NOWAIT: u32 = 0o4000;
/// `SEM_UNDO`.
pub const SEM_UNDO: i16 = 0x1000;
/// `MSG_NOERROR`.
pub const MSG_NOERROR: u32 = 0o10000;
/// `MSG_EXCEPT`.
pub const MSG_EXCEPT: u32 = 0o20000;
/// `MSG_COPY`.
pub const MSG_COPY: u32 = 0o40000;

/// `semctl`/`msgctl` commands.
pub const IPC_RMID: i32 = 0;
/// See [`IPC_RMID`].
pub const IPC_SET: i32 = 1;
/// See [`IPC_RMID`].
pub const IPC_STAT: i32 = 2;
const GETPID: i32 = 11;
const GETVAL: i32 = 12;
const GETALL: i32 = 13;
const GETNCNT: i32 = 14;
const GETZCNT: i32 = 15;
const SETVAL: i32 = 16;
const SETALL: i32 = 17;

/// `sizeof(struct semid64_ds)` on x86-64.
pub const SEMID_DS: usize = 104;
/// `sizeof(struct msqid64_ds)` on x86-64.
pub const MSQID_DS: usize = 120;

/// What an operation asks of its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<T> {
    /// Done: the value (or `-errno`).
    Done(T),
    /// It must wait for the table to change (no `IPC_NOWAIT`), then try
    /// again.
    Block,
}

/// One `struct sembuf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SemOp {
    /// `sem_num`.
    pub num: u16,
    /// `sem_op`.
    pub op: i16,
    /// `sem_flg` (`IPC_NOWAIT`, `SEM_UNDO`).
    pub flags: i16,
}

impl SemOp {
    /// Parses `n` packed `struct sembuf`s (6 bytes each).
    pub fn parse(b: &[u8]) -> Vec<SemOp> {
        b.chunks_exact(6)
            .map(|c| SemOp {
                num: u16::from_le_bytes([c[0], c[1]]),
                op: i16::from_le_bytes([c[2], c[3]]),
                flags: i16::from_le_bytes([c[4], c[5]]),
            })
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Perm {
    key: i32,
    uid: u32,
    gid: u32,
    mode: u32,
    seq: u16,
}

#[derive(Debug, Clone)]
struct Sem {
    val: i32,
    /// The last process that changed it (`GETPID`).
    pid: u32,
}

#[derive(Debug, Clone)]
struct SemSet {
    perm: Perm,
    sems: Vec<Sem>,
    otime: i64,
    ctime: i64,
}

#[derive(Debug, Clone)]
struct Queue {
    perm: Perm,
    msgs: std::collections::VecDeque<(i64, Vec<u8>)>,
    bytes: usize,
    qbytes: usize,
    stime: i64,
    rtime: i64,
    ctime: i64,
    lspid: u32,
    lrpid: u32,
}

/// The tree's SysV objects.
#[derive(Debug, Default)]
pub struct Ipc {
    sets: BTreeMap<i32, SemSet>,
    queues: BTreeMap<i32, Queue>,
    /// `SEM_UNDO` adjustments: (pid, semid, semnum) → what its end adds.
    undo: BTreeMap<(u32, i32, u16), i32>,
    /// Counts ids handed out (the id's sequence part).
    seq: u16,
    /// Processes blocked in a semop, per (semid, semnum), waiting for a
    /// value increase (`GETNCNT`) or zero (`GETZCNT`).
    waiting: BTreeMap<(i32, u16, bool), u32>,
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Ids as Linux forms them: a slot below 32768 and a sequence number above
/// it, so a removed id is not soon handed out again.
fn new_id<T>(map: &BTreeMap<i32, T>, seq: &mut u16, max: usize) -> Option<i32> {
    let used: std::collections::BTreeSet<i32> = map.keys().map(|id| id & 0x7fff).collect();
    let slot = (0..max as i32).find(|s| !used.contains(s))?;
    *seq = seq.wrapping_add(1) & 0x7fff;
    Some((i32::from(*seq) << 15) | slot)
}

fn perm_bytes(p: &Perm) -> [u8; 48] {
    let mut b = [0u8; 48];
    b[0..4].copy_from_slice(&p.key.to_le_bytes());
    b[4..8].copy_from_slice(&p.uid.to_le_bytes());
    b[8..12].copy_from_slice(&p.gid.to_le_bytes());
    b[12..16].copy_from_slice(&p.uid.to_le_bytes());
    b[16..20].copy_from_slice(&p.gid.to_le_bytes());
    b[20..24].copy_from_slice(&p.mode.to_le_bytes());
    b[24..26].copy_from_slice(&p.seq.to_le_bytes());
    b
}

fn put(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn word(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

fn neg(e: i32) -> i64 {
    -i64::from(e)
}

impl Ipc {
    /// `semget(key, nsems, flags)` by a process of user `uid`/`gid`.
    pub fn semget(&mut self, key: i32, nsems: i32, flags: u32, uid: u32, gid: u32) -> i64 {
        if key != IPC_PRIVATE {
            if let Some((&id, s)) = self.sets.iter().find(|(_, s)| s.perm.key == key) {
                if flags & IPC_CREAT != 0 && flags & IPC_EXCL != 0 {
                    return neg(libc::EEXIST);
                }
                if nsems < 0 || nsems as usize > s.sems.len() {
                    return neg(libc::EINVAL);
                }
                return i64::from(id);
            }
            if flags & IPC_CREAT == 0 {
                return neg(libc::ENOENT);
            }
        }
        if nsems <= 0 || nsems as usize > MAX_SEMS {
            return neg(libc::EINVAL);
        }
        let Some(id) = new_id(&self.sets, &mut self.seq, MAX_SETS) else { return neg(libc::ENOSPC) };
        let perm = Perm { key, uid, gid, mode: flags & 0o777, seq: (id >> 15) as u16 };
        let sems = vec![Sem { val: 0, pid: 0 }; nsems as usize];
        self.sets.insert(id, SemSet { perm, sems, otime: 0, ctime: now() });
        i64::from(id)
    }

    /// `semop`: all of `ops` at once, or none. `Block` when one would
    /// have to wait and has no `IPC_NOWAIT`; `Done(0)` applied (with the
    /// `SEM_UNDO` adjustments recorded for `pid`).
    pub fn try_semop(&mut self, pid: u32, id: i32, ops: &[SemOp]) -> Step<i64> {
        if ops.is_empty() {
            return Step::Done(neg(libc::EINVAL));
        }
        if ops.len() > MAX_SEMOPS {
            return Step::Done(neg(libc::E2BIG));
        }
        if id < 0 {
            return Step::Done(neg(libc::EINVAL));
        }
        let Some(set) = self.sets.get_mut(&id) else { return Step::Done(neg(libc::EINVAL)) };
        if ops.iter().any(|o| usize::from(o.num) >= set.sems.len()) {
            return Step::Done(neg(libc::EFBIG));
        }
        let mut vals: Vec<i32> = set.sems.iter().map(|s| s.val).collect();
        for o in ops {
            let v = &mut vals[usize::from(o.num)];
            let op = i32::from(o.op);
            let blocked = if op > 0 {
                if *v + op > SEMVMX {
                    return Step::Done(neg(libc::ERANGE));
                }
                *v += op;
                false
            } else if op < 0 {
                if *v + op < 0 {
                    true
                } else {
                    *v += op;
                    false
                }
            } else {
                *v != 0
            };
            if blocked {
                return if o.flags as u32 & IPC_NOWAIT != 0 {
                    Step::Done(neg(libc::EAGAIN))
                } else {
                    Step::Block
                };
            }
        }
        for (s, v) in set.sems.iter_mut().zip(&vals) {
            s.val = *v;
        }
        for o in ops {
            set.sems[usize::from(o.num)].pid = pid;
            if o.flags & SEM_UNDO != 0 && o.op != 0 {
                let adj = self.undo.entry((pid, id, o.num)).or_insert(0);
                *adj = adj.saturating_sub(i32::from(o.op));
            }
        }
        set.otime = now();
        Step::Done(0)
    }

    /// A process blocks in (or stops waiting in) a `semop` of `ops`:
    /// what `GETNCNT`/`GETZCNT` count.
    pub fn semop_waiting(&mut self, id: i32, ops: &[SemOp], add: bool) {
        for o in ops {
            let k = (id, o.num, o.op == 0);
            let n = self.waiting.entry(k).or_insert(0);
            *n = if add { n.saturating_add(1) } else { n.saturating_sub(1) };
            if *n == 0 {
                self.waiting.remove(&k);
            }
        }
    }

    /// Whether semaphore set `id` exists (a blocked `semop` whose set was
    /// removed ends with `EIDRM`).
    pub fn has_set(&self, id: i32) -> bool {
        self.sets.contains_key(&id)
    }

    /// Whether queue `id` exists (see [`Ipc::has_set`]).
    pub fn has_queue(&self, id: i32) -> bool {
        self.queues.contains_key(&id)
    }

    /// `semctl(id, num, cmd, arg)`: the answer and, for commands that
    /// write the program's memory, the bytes to write at `arg`
    /// (`IPC_STAT`, `GETALL`); `set`: the bytes `IPC_SET`/`SETALL` read
    /// (the caller copied them from `arg`: [`Ipc::semctl_reads`] says how
    /// many).
    pub fn semctl(&mut self, pid: u32, id: i32, num: i32, cmd: i32, arg: u64, set: &[u8]) -> (i64, Vec<u8>) {
        let none = Vec::new();
        let Some(s) = self.sets.get_mut(&id).filter(|_| id >= 0) else { return (neg(libc::EINVAL), none) };
        let n = s.sems.len();
        let sem = |num: i32| usize::try_from(num).ok().filter(|&i| i < n);
        match cmd {
            IPC_RMID => {
                self.sets.remove(&id);
                self.undo.retain(|&(_, sid, _), _| sid != id);
                (0, none)
            }
            IPC_STAT => {
                let mut b = vec![0u8; SEMID_DS];
                b[..48].copy_from_slice(&perm_bytes(&s.perm));
                put(&mut b, 48, s.otime as u64);
                put(&mut b, 64, s.ctime as u64);
                put(&mut b, 80, n as u64);
                (0, b)
            }
            IPC_SET => {
                if set.len() < 48 {
                    return (neg(libc::EFAULT), none);
                }
                s.perm.uid = u32::from_le_bytes([set[4], set[5], set[6], set[7]]);
                s.perm.gid = u32::from_le_bytes([set[8], set[9], set[10], set[11]]);
                s.perm.mode = u32::from_le_bytes([set[20], set[21], set[22], set[23]]) & 0o777;
                s.ctime = now();
                (0, none)
            }
            GETVAL => sem(num).map_or((neg(libc::EINVAL), none), |i| (i64::from(s.sems[i].val), Vec::new())),
            GETPID => sem(num).map_or((neg(libc::EINVAL), none), |i| (i64::from(s.sems[i].pid), Vec::new())),
            GETNCNT | GETZCNT => match sem(num) {
                None => (neg(libc::EINVAL), none),
                Some(i) => {
                    let k = (id, i as u16, cmd == GETZCNT);
                    (i64::from(self.waiting.get(&k).copied().unwrap_or(0)), none)
                }
            },
            GETALL => {
                let b: Vec<u8> = s.sems.iter().flat_map(|x| (x.val as u16).to_le_bytes()).collect();
                (0, b)
            }
            SETVAL => {
                let Some(i) = sem(num) else { return (neg(libc::EINVAL), none) };
                let v = arg as u32 as i32;
                if !(0..=SEMVMX).contains(&v) {
                    return (neg(libc::ERANGE), none);
                }
                s.sems[i].val = v;
                s.sems[i].pid = pid;
                s.ctime = now();
                // Linux clears every process's adjustment of that semaphore.
                self.undo.retain(|&(_, sid, sn), _| !(sid == id && usize::from(sn) == i));
                (0, none)
            }
            SETALL => {
                if set.len() < 2 * n {
                    return (neg(libc::EFAULT), none);
                }
                let vals: Vec<i32> = set
                    .chunks_exact(2)
                    .take(n)
                    .map(|c| i32::from(u16::from_le_bytes([c[0], c[1]])))
                    .collect();
                if vals.iter().any(|&v| v > SEMVMX) {
                    return (neg(libc::ERANGE), none);
                }
                for (x, v) in s.sems.iter_mut().zip(vals) {
                    x.val = v;
                    x.pid = pid;
                }
                s.ctime = now();
                self.undo.retain(|&(_, sid, _), _| sid != id);
                (0, none)
            }
            _ => (neg(libc::EINVAL), none),
        }
    }

    /// How many bytes `semctl(id, _, cmd, arg)` reads from `arg` (`IPC_SET`:
    /// the perm part of a `semid64_ds`; `SETALL`: one `u16` per semaphore).
    pub fn semctl_reads(&self, id: i32, cmd: i32) -> usize {
        match cmd {
            IPC_SET => 48,
            SETALL => self.sets.get(&id).map_or(0, |s| 2 * s.sems.len()),
            _ => 0,
        }
    }

    /// `msgget(key, flags)`.
    pub fn msgget(&mut self, key: i32, flags: u32, uid: u32, gid: u32) -> i64 {
        if key != IPC_PRIVATE {
            if let Some((&id, _)) = self.queues.iter().find(|(_, q)| q.perm.key == key) {
                if flags & IPC_CREAT != 0 && flags & IPC_EXCL != 0 {
                    return neg(libc::EEXIST);
                }
                return i64::from(id);
            }
            if flags & IPC_CREAT == 0 {
                return neg(libc::ENOENT);
            }
        }
        let Some(id) = new_id(&self.queues, &mut self.seq, MAX_QUEUES) else { return neg(libc::ENOSPC) };
        let perm = Perm { key, uid, gid, mode: flags & 0o777, seq: (id >> 15) as u16 };
        self.queues.insert(
            id,
            Queue {
                perm,
                msgs: Default::default(),
                bytes: 0,
                qbytes: MSGMNB,
                stime: 0,
                rtime: 0,
                ctime: now(),
                lspid: 0,
                lrpid: 0,
            },
        );
        i64::from(id)
    }

    /// `msgsnd` of a message of type `mtype` with `text` (already checked
    /// against [`MSGMAX`] and copied).
    pub fn try_msgsnd(&mut self, pid: u32, id: i32, mtype: i64, text: &[u8], flags: u32) -> Step<i64> {
        let Some(q) = self.queues.get_mut(&id).filter(|_| id >= 0) else {
            return Step::Done(neg(libc::EINVAL));
        };
        if mtype < 1 {
            return Step::Done(neg(libc::EINVAL));
        }
        // Room for its bytes, and a message count bounded as Linux's is
        // (at most qbytes messages: a flood of empty messages).
        if q.bytes + text.len() > q.qbytes || q.msgs.len() + 1 > q.qbytes {
            return if flags & IPC_NOWAIT != 0 { Step::Done(neg(libc::EAGAIN)) } else { Step::Block };
        }
        q.bytes += text.len();
        q.msgs.push_back((mtype, text.to_vec()));
        q.lspid = pid;
        q.stime = now();
        Step::Done(0)
    }

    /// `msgrcv` of at most `size` bytes, selecting by `typ` and `flags`:
    /// the message's type and text (truncated with `MSG_NOERROR`).
    pub fn try_msgrcv(
        &mut self,
        pid: u32,
        id: i32,
        size: usize,
        typ: i64,
        flags: u32,
    ) -> Step<Result<(i64, Vec<u8>), i32>> {
        let Some(q) = self.queues.get_mut(&id).filter(|_| id >= 0) else {
            return Step::Done(Err(libc::EINVAL));
        };
        if flags & MSG_COPY != 0 {
            return Step::Done(Err(libc::EINVAL));
        }
        let except = flags & MSG_EXCEPT != 0;
        let found = if typ == 0 {
            (!q.msgs.is_empty()).then_some(0)
        } else if typ > 0 {
            q.msgs.iter().position(|(t, _)| (*t == typ) != except)
        } else {
            let bound = typ.checked_neg().unwrap_or(i64::MAX);
            q.msgs
                .iter()
                .enumerate()
                .filter(|(_, (t, _))| *t <= bound)
                .min_by_key(|(i, (t, _))| (*t, *i))
                .map(|(i, _)| i)
        };
        let Some(i) = found else {
            return if flags & IPC_NOWAIT != 0 { Step::Done(Err(libc::ENOMSG)) } else { Step::Block };
        };
        if q.msgs[i].1.len() > size && flags & MSG_NOERROR == 0 {
            return Step::Done(Err(libc::E2BIG));
        }
        let Some((t, mut text)) = q.msgs.remove(i) else { return Step::Done(Err(libc::EINVAL)) };
        q.bytes -= text.len();
        text.truncate(size);
        q.lrpid = pid;
        q.rtime = now();
        Step::Done(Ok((t, text)))
    }

    /// `msgctl(id, cmd, _)`: the answer and the bytes `IPC_STAT` writes;
    /// `set`: the `msqid64_ds` `IPC_SET` read ([`MSQID_DS`] bytes).
    pub fn msgctl(&mut self, id: i32, cmd: i32, set: &[u8]) -> (i64, Vec<u8>) {
        let none = Vec::new();
        let Some(q) = self.queues.get_mut(&id).filter(|_| id >= 0) else { return (neg(libc::EINVAL), none) };
        match cmd {
            IPC_RMID => {
                self.queues.remove(&id);
                (0, none)
            }
            IPC_STAT => {
                let mut b = vec![0u8; MSQID_DS];
                b[..48].copy_from_slice(&perm_bytes(&q.perm));
                put(&mut b, 48, q.stime as u64);
                put(&mut b, 56, q.rtime as u64);
                put(&mut b, 64, q.ctime as u64);
                put(&mut b, 72, q.bytes as u64);
                put(&mut b, 80, q.msgs.len() as u64);
                put(&mut b, 88, q.qbytes as u64);
                b[96..100].copy_from_slice(&q.lspid.to_le_bytes());
                b[100..104].copy_from_slice(&q.lrpid.to_le_bytes());
                (0, b)
            }
            IPC_SET => {
                if set.len() < MSQID_DS {
                    return (neg(libc::EFAULT), none);
                }
                let qbytes = word(set, 88);
                if qbytes > MSGMNB as u64 {
                    return (neg(libc::EPERM), none);
                }
                q.qbytes = qbytes as usize;
                q.perm.uid = u32::from_le_bytes([set[4], set[5], set[6], set[7]]);
                q.perm.gid = u32::from_le_bytes([set[8], set[9], set[10], set[11]]);
                q.perm.mode = u32::from_le_bytes([set[20], set[21], set[22], set[23]]) & 0o777;
                q.ctime = now();
                (0, none)
            }
            _ => (neg(libc::EINVAL), none),
        }
    }

    /// Process `pid` ended: its `SEM_UNDO` adjustments are applied (each
    /// value clamped to 0..=[`SEMVMX`], as Linux does). Whether anything
    /// changed (blocked operations should look again).
    pub fn exited(&mut self, pid: u32) -> bool {
        let mine: Vec<((u32, i32, u16), i32)> =
            self.undo.range((pid, i32::MIN, 0)..=(pid, i32::MAX, u16::MAX)).map(|(k, v)| (*k, *v)).collect();
        for ((_, id, num), adj) in &mine {
            self.undo.remove(&(pid, *id, *num));
            if let Some(s) = self.sets.get_mut(id).and_then(|s| s.sems.get_mut(usize::from(*num))) {
                s.val = s.val.saturating_add(*adj).clamp(0, SEMVMX);
                s.pid = pid;
            }
        }
        !mine.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(num: u16, op: i16, flags: i16) -> SemOp {
        SemOp { num, op, flags }
    }

    #[test]
    fn keys_are_the_trees_and_private_is_always_new() {
        let mut t = Ipc::default();
        let a = t.semget(42, 2, IPC_CREAT | 0o600, 0, 0);
        assert!(a >= 0);
        assert_eq!(t.semget(42, 1, 0, 0, 0), a, "found by key");
        assert_eq!(t.semget(42, 3, 0, 0, 0), neg(libc::EINVAL), "more semaphores than it has");
        assert_eq!(t.semget(42, 2, IPC_CREAT | IPC_EXCL, 0, 0), neg(libc::EEXIST));
        assert_eq!(t.semget(43, 1, 0, 0, 0), neg(libc::ENOENT));
        let p = t.semget(IPC_PRIVATE, 1, 0, 0, 0);
        assert!(p >= 0 && p != a && t.semget(IPC_PRIVATE, 1, 0, 0, 0) != p);
        assert_eq!(t.semget(1, 0, IPC_CREAT, 0, 0), neg(libc::EINVAL));
        assert_eq!(t.semget(1, MAX_SEMS as i32 + 1, IPC_CREAT, 0, 0), neg(libc::EINVAL));
    }

    #[test]
    fn semop_is_all_or_nothing_and_undo_is_applied_at_exit() {
        let mut t = Ipc::default();
        let id = t.semget(0, 2, 0, 0, 0) as i32;
        assert_eq!(t.try_semop(7, id, &[op(0, 1, 0), op(1, -1, 0)]), Step::Block);
        assert_eq!(t.semctl(7, id, 0, GETVAL, 0, &[]).0, 0, "nothing applied");
        assert_eq!(t.try_semop(7, id, &[op(1, -1, IPC_NOWAIT as i16)]), Step::Done(neg(libc::EAGAIN)));
        assert_eq!(t.try_semop(7, id, &[op(0, 2, SEM_UNDO)]), Step::Done(0));
        assert_eq!(t.semctl(8, id, 0, GETVAL, 0, &[]).0, 2);
        assert_eq!(t.semctl(8, id, 0, GETPID, 0, &[]).0, 7);
        assert_eq!(t.try_semop(8, id, &[op(0, 0, IPC_NOWAIT as i16)]), Step::Done(neg(libc::EAGAIN)));
        assert!(t.exited(7));
        assert_eq!(t.semctl(8, id, 0, GETVAL, 0, &[]).0, 0, "undone");
        assert!(!t.exited(7));
        assert_eq!(t.try_semop(7, id, &[op(2, 1, 0)]), Step::Done(neg(libc::EFBIG)));
        assert_eq!(t.try_semop(7, id, &[]), Step::Done(neg(libc::EINVAL)));
        assert_eq!(t.try_semop(7, id, &vec![op(0, 1, 0); MAX_SEMOPS + 1]), Step::Done(neg(libc::E2BIG)));
        assert_eq!(t.try_semop(7, id, &[op(0, i16::MAX, 0), op(0, 1, 0)]), Step::Done(neg(libc::ERANGE)));
        assert_eq!(t.semctl(7, id, 0, SETVAL, 40000, &[]).0, neg(libc::ERANGE));
        assert_eq!(t.semctl(7, id, 0, IPC_RMID, 0, &[]).0, 0);
        assert!(!t.has_set(id));
        assert_eq!(t.try_semop(7, id, &[op(0, 1, 0)]), Step::Done(neg(libc::EINVAL)));
    }

    #[test]
    fn messages_by_type_and_bounded() {
        let mut t = Ipc::default();
        let q = t.msgget(0, 0, 0, 0) as i32;
        assert_eq!(t.try_msgsnd(1, q, 3, b"three", 0), Step::Done(0));
        assert_eq!(t.try_msgsnd(1, q, 1, b"one", 0), Step::Done(0));
        assert_eq!(t.try_msgsnd(1, q, 0, b"", 0), Step::Done(neg(libc::EINVAL)));
        assert_eq!(t.try_msgrcv(2, q, 100, -2, 0), Step::Done(Ok((1, b"one".to_vec()))), "lowest type <= 2");
        assert_eq!(t.try_msgrcv(2, q, 2, 3, 0), Step::Done(Err(libc::E2BIG)));
        assert_eq!(t.try_msgrcv(2, q, 2, 3, MSG_NOERROR), Step::Done(Ok((3, b"th".to_vec()))));
        assert_eq!(t.try_msgrcv(2, q, 2, 0, 0), Step::Block);
        assert_eq!(t.try_msgrcv(2, q, 2, 0, IPC_NOWAIT), Step::Done(Err(libc::ENOMSG)));
        let big = vec![0u8; MSGMAX];
        let mut sent = 0;
        while t.try_msgsnd(1, q, 1, &big, IPC_NOWAIT) == Step::Done(0) {
            sent += 1;
        }
        assert_eq!(sent, MSGMNB / MSGMAX, "the queue's bytes are bounded");
        assert_eq!(t.try_msgsnd(1, q, 1, &big, 0), Step::Block);
        for _ in 0..MAX_QUEUES - 1 {
            assert!(t.msgget(0, 0, 0, 0) >= 0);
        }
        assert_eq!(t.msgget(0, 0, 0, 0), neg(libc::ENOSPC), "the tree's queues are bounded");
        assert_eq!(t.msgctl(q, IPC_RMID, &[]).0, 0);
        assert!(!t.has_queue(q));
    }
}
