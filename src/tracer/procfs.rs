//! What /proc says about processes and threads: discovery for
//! `list_processes`, the checks made before attaching (so that refusals come
//! with a reason instead of a bare EPERM), thread names and states, and the
//! memory map. Must never: call ptrace, or hold anything open between calls.

use std::collections::HashMap;
use std::fs;
use std::sync::OnceLock;

use super::error::TraceError;
use crate::own_tasks;

/// One process as `list_processes` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessEntry {
    /// Process id.
    pub pid: i32,
    /// Short name (`/proc/PID/comm`).
    pub name: String,
    /// Executable path, if it can be read.
    pub exe: Option<String>,
    /// Command line, arguments separated by spaces.
    pub cmdline: String,
    /// Owner (user name, or the numeric uid when it has no name).
    pub user: String,
    /// Whether liveprobe could attach to it, as far as can be told without trying.
    pub attachable: bool,
    /// Why not (or a note, such as "already attached by this liveprobe").
    pub reason: Option<String>,
}

/// One thread of a process, as /proc describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadStatus {
    /// Thread id.
    pub tid: i32,
    /// Thread name (`/proc/PID/task/TID/comm`).
    pub name: String,
    /// Kernel scheduling state in words: "running", "sleeping", "disk-wait",
    /// "stopped", "tracing-stop", "zombie", "dead", "idle", ...
    pub state: String,
}

/// The parts of `/proc/PID/status` we use.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProcStatus {
    pub name: String,
    pub state: char,
    pub tgid: i32,
    pub ppid: i32,
    pub tracer_pid: i32,
    pub uid: u32,
}

fn io_error(path: &str, source: std::io::Error) -> TraceError {
    TraceError::Proc {
        path: path.to_string(),
        source,
    }
}

/// Read `/proc/PID/status` (PID may also be a thread id).
pub(crate) fn read_status(pid: i32) -> Result<ProcStatus, TraceError> {
    let path = format!("/proc/{pid}/status");
    let text = fs::read_to_string(&path).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => TraceError::NoSuchProcess { pid },
        _ => io_error(&path, error),
    })?;
    let mut status = ProcStatus::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key {
            "Name" => status.name = value.to_string(),
            "State" => status.state = value.chars().next().unwrap_or('?'),
            "Tgid" => status.tgid = value.parse().unwrap_or(0),
            "PPid" => status.ppid = value.parse().unwrap_or(0),
            "TracerPid" => status.tracer_pid = value.parse().unwrap_or(0),
            "Uid" => {
                status.uid = value
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            }
            _ => {}
        }
    }
    Ok(status)
}

/// Fields of `/proc/PID/stat` after the command name.
struct ProcStat {
    state: char,
    flags: u64,
}

fn read_stat(path: &str) -> Option<ProcStat> {
    let text = fs::read_to_string(path).ok()?;
    // The command name is in parentheses and may itself contain ')'.
    let after_name = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        flags: fields.get(6)?.parse().ok()?,
    })
}

/// Whether `pid` is a kernel thread (PF_KTHREAD; no user address space).
pub(crate) fn is_kernel_thread(pid: i32) -> bool {
    match read_stat(&format!("/proc/{pid}/stat")) {
        Some(stat) => stat.flags & libc::PF_KTHREAD as u64 != 0,
        None => false,
    }
}

/// The short name of a process or thread, or "?" if it cannot be read.
pub(crate) fn comm(pid: i32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Thread ids of a process, sorted (the leader first, as it has the lowest id).
pub(crate) fn thread_ids(pid: i32) -> Result<Vec<i32>, TraceError> {
    let path = format!("/proc/{pid}/task");
    let entries = fs::read_dir(&path).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => TraceError::NoSuchProcess { pid },
        _ => io_error(&path, error),
    })?;
    let mut tids: Vec<i32> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    Ok(tids)
}

fn state_words(state: char) -> &'static str {
    match state {
        'R' => "running",
        'S' => "sleeping",
        'D' => "disk-wait",
        'T' => "stopped",
        't' => "tracing-stop",
        'Z' => "zombie",
        'X' | 'x' => "dead",
        'I' => "idle",
        'P' => "parked",
        'W' => "waking",
        'K' => "wakekill",
        _ => "unknown",
    }
}

/// Name and state of one thread, or None if it is gone.
pub(crate) fn thread_status(pid: i32, tid: i32) -> Option<ThreadStatus> {
    let stat = read_stat(&format!("/proc/{pid}/task/{tid}/stat"))?;
    let name = fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
        .ok()?
        .trim_end()
        .to_string();
    Some(ThreadStatus {
        tid,
        name,
        state: state_words(stat.state).to_string(),
    })
}

/// Parent chain of liveprobe's process (parent, grandparent, ...), without
/// pid 0. From liveprobe's pid, not getpid(): checks run in the tracer task.
fn our_ancestors() -> Vec<i32> {
    let mut chain = Vec::new();
    let mut pid = own_tasks::liveprobe_pid();
    // Bounded: pid namespaces are not that deep, and a cycle must not hang us.
    for _ in 0..256 {
        match read_status(pid) {
            Ok(status) if status.ppid > 0 => {
                chain.push(status.ppid);
                pid = status.ppid;
            }
            _ => break,
        }
    }
    chain
}

/// Checks made before seizing `pid`; each refusal names its reason. Being
/// traced already is checked by the caller, which knows its own tracees.
pub(crate) fn check_attachable(pid: i32) -> Result<ProcStatus, TraceError> {
    if pid <= 0 {
        return Err(TraceError::NoSuchProcess { pid });
    }
    let status = read_status(pid)?;
    if status.tgid != pid {
        return Err(TraceError::ThreadNotProcess {
            tid: pid,
            pid: status.tgid,
        });
    }
    // liveprobe's process, or one of its tracer tasks (which share its
    // memory: seizing one would stop the tracer itself).
    if own_tasks::is_liveprobe(pid) {
        return Err(TraceError::Ourselves { pid });
    }
    if is_kernel_thread(pid) {
        return Err(TraceError::KernelThread {
            pid,
            name: status.name,
        });
    }
    if (status.state == 'Z' || status.state == 'X') && !has_live_thread(pid) {
        return Err(TraceError::Zombie { pid });
    }
    if our_ancestors().contains(&pid) {
        return Err(TraceError::Ancestor {
            pid,
            name: status.name,
        });
    }
    Ok(status)
}

/// Whether any thread of `pid` is still alive. A process whose leader has
/// exited (pthread_exit in main) shows the leader as a zombie while its other
/// threads run on: it is not a zombie process.
fn has_live_thread(pid: i32) -> bool {
    thread_ids(pid).unwrap_or_default().into_iter().any(|tid| {
        read_stat(&format!("/proc/{pid}/task/{tid}/stat"))
            .is_some_and(|stat| !matches!(stat.state, 'Z' | 'X'))
    })
}

/// The error for a process whose TracerPid is `tracer_tid`.
pub(crate) fn already_traced(pid: i32, tracer_tid: i32) -> TraceError {
    let tracer_tgid = read_status(tracer_tid)
        .map(|s| s.tgid)
        .unwrap_or(tracer_tid);
    // A target's TracerPid is a tracer task's pid; the client knows
    // liveprobe by its process's.
    if own_tasks::is_liveprobe(tracer_tgid) {
        return TraceError::AlreadyTraced {
            pid,
            tracer_pid: own_tasks::liveprobe_pid(),
            tracer_name: "another tracer inside this liveprobe process".to_string(),
        };
    }
    TraceError::AlreadyTraced {
        pid,
        tracer_pid: tracer_tgid,
        tracer_name: comm(tracer_tid),
    }
}

/// Why the kernel most likely refused PTRACE_SEIZE with EPERM, and what to do.
pub(crate) fn permission_reason(pid: i32) -> String {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let target_uid = read_status(pid).map(|s| s.uid).ok();
    let has_cap = has_cap_sys_ptrace();
    let scope = fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    if let Some(target_uid) = target_uid
        && target_uid != euid
        && !has_cap
    {
        return format!(
            "it belongs to user {} and liveprobe runs as user {}; run liveprobe as that user or as root (CAP_SYS_PTRACE)",
            user_name(target_uid),
            user_name(euid)
        );
    }
    match scope {
        Some(3) => "the kernel forbids all ptrace attaching (kernel.yama.ptrace_scope = 3); this cannot be changed without a reboot".into(),
        Some(2) if !has_cap => "only processes with CAP_SYS_PTRACE may attach (kernel.yama.ptrace_scope = 2); run liveprobe as root or grant it CAP_SYS_PTRACE".into(),
        Some(1) if !has_cap => "Yama only lets a process trace its own descendants (kernel.yama.ptrace_scope = 1); run liveprobe with CAP_SYS_PTRACE (e.g. as root), or set `sysctl kernel.yama.ptrace_scope=0`, or have the target call prctl(PR_SET_PTRACER)".into(),
        _ if !has_cap => "the kernel refused (the process may be setuid, non-dumpable, or in another user namespace); run liveprobe as root with CAP_SYS_PTRACE".into(),
        _ => "the kernel refused although liveprobe has CAP_SYS_PTRACE (a security module such as SELinux/AppArmor, a seccomp filter, or a container without SYS_PTRACE may forbid ptrace)".into(),
    }
}

fn has_cap_sys_ptrace() -> bool {
    let Ok(text) = fs::read_to_string("/proc/self/status") else {
        return false;
    };
    text.lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 19) != 0) // CAP_SYS_PTRACE = 19
}

fn user_name(uid: u32) -> String {
    static USERS: OnceLock<HashMap<u32, String>> = OnceLock::new();
    let users = USERS.get_or_init(|| {
        let text = fs::read_to_string("/etc/passwd").unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                let uid = fields.nth(1)?.parse().ok()?;
                Some((uid, name.to_string()))
            })
            .collect()
    });
    users.get(&uid).cloned().unwrap_or_else(|| uid.to_string())
}

/// The `[start, end)` ranges of `/proc/PID/maps` (empty if unreadable).
pub(crate) fn read_mappings(pid: i32) -> Vec<(u64, u64)> {
    crate::procmaps::read_maps(pid)
        .unwrap_or_default()
        .iter()
        .map(|m| (m.start, m.end))
        .collect()
}

/// Every process on the machine, optionally filtered by `query` (a
/// case-insensitive substring of pid, name, exe or command line), with
/// whether liveprobe could attach to it and why not.
pub fn list_processes(query: Option<&str>) -> Vec<ProcessEntry> {
    let query = query
        .map(str::to_lowercase)
        .filter(|q| !q.trim().is_empty());
    let ours = own_tasks::liveprobe_pid();
    let ancestors = our_ancestors();
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let may_trace_any_user = euid == 0 || has_cap_sys_ptrace();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    let mut processes = Vec::new();
    for pid in pids {
        let Ok(status) = read_status(pid) else {
            continue;
        };
        let exe = fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .map(|p| p.to_string_lossy().into_owned());
        let cmdline = fs::read(format!("/proc/{pid}/cmdline"))
            .map(|bytes| {
                let text = String::from_utf8_lossy(&bytes).replace('\0', " ");
                text.trim_end().to_string()
            })
            .unwrap_or_default();
        let name = comm(pid);
        if let Some(query) = &query {
            let haystacks = [
                pid.to_string(),
                name.to_lowercase(),
                cmdline.to_lowercase(),
                exe.clone().unwrap_or_default().to_lowercase(),
            ];
            if !haystacks.iter().any(|h| h.contains(query.as_str())) {
                continue;
            }
        }
        let reason = if pid == ours {
            Some("this is the liveprobe server itself".to_string())
        } else if own_tasks::is_tracer_task(pid) {
            Some("this is the liveprobe server's tracer task".to_string())
        } else if is_kernel_thread(pid) {
            Some("kernel thread".to_string())
        } else if (status.state == 'Z' || status.state == 'X') && !has_live_thread(pid) {
            Some("zombie: already exited".to_string())
        } else if ancestors.contains(&pid) {
            Some("an ancestor of the liveprobe server (it started us)".to_string())
        } else if !may_trace_any_user && status.uid != euid {
            Some(format!(
                "owned by user {}; liveprobe runs as {}",
                user_name(status.uid),
                user_name(euid)
            ))
        } else if status.tracer_pid != 0 {
            match already_traced(pid, status.tracer_pid) {
                TraceError::AlreadyTraced {
                    tracer_pid,
                    tracer_name,
                    ..
                } => Some(format!(
                    "already traced by {tracer_name} (pid {tracer_pid})"
                )),
                other => Some(other.to_string()),
            }
        } else {
            None
        };
        processes.push(ProcessEntry {
            pid,
            name,
            exe,
            cmdline,
            user: user_name(status.uid),
            attachable: reason.is_none(),
            reason,
        });
    }
    processes
}
