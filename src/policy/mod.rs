//! The box owner's rules: which processes may be attached, which names are
//! secret, and what every tool call leaves in the audit trail.
//!
//! It decides; it never touches a process.

use std::path::PathBuf;

/// What the owner of the machine allows.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// When set, only executables whose path contains one of these may be attached.
    pub allowed_exes: Vec<String>,
    /// Name parts whose values are redacted, in addition to the built-in list.
    pub secret_names: Vec<String>,
    /// Types whose every value is redacted (`--redact-type`).
    pub secret_types: Vec<String>,
    /// Drop the built-in list: only `secret_names` are redacted.
    pub no_default_secrets: bool,
    /// Where to append one JSON line per tool call; `None`: the log on stderr only.
    pub audit_log: Option<PathBuf>,
    /// Milliseconds per second one probe may hold target threads before it
    /// is throttled; `None`: 250.
    pub hit_budget_ms_per_s: Option<u64>,
    /// How probes reach their hits unless a request says otherwise.
    pub probe_engine: EngineChoice,
    /// Size of the kernel ring buffer of uprobe-engine hits, in MiB; `None`: 16.
    pub ring_buffer_mb: Option<u32>,
}

impl Policy {
    /// Handler time one probe may spend per second before it is throttled.
    pub fn hit_budget(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.hit_budget_ms_per_s.unwrap_or(250).clamp(1, 1000))
    }

    /// Why `pid` (running `exe`) may not be attached, or `None` when it may.
    pub fn refusal(&self, pid: i32, exe: Option<&str>) -> Option<String> {
        if self.allowed_exes.is_empty() {
            return None;
        }
        match exe {
            Some(exe) if self.allowed_exes.iter().any(|a| exe.contains(a.as_str())) => None,
            Some(exe) => Some(format!(
                "{exe} is not in the allowed list ({}); start liveprobe with --allow-exe to add it",
                self.allowed_exes.join(", ")
            )),
            None => Some(format!(
                "the executable of process {pid} cannot be read, and only listed executables may be attached"
            )),
        }
    }
}

impl Policy {
    /// Appends one JSON line for a tool call to the audit log, when one is
    /// configured. A log that cannot be written is reported on stderr, never
    /// to the client: the call itself already happened.
    pub fn audit(&self, tool: &str, elapsed_ms: f64, error: Option<&str>) {
        let Some(path) = &self.audit_log else {
            return;
        };
        let line = serde_json::json!({
            "time_unix_ms": std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            "tool": tool,
            "ok": error.is_none(),
            "error": error,
            "elapsed_ms": elapsed_ms,
            "server_pid": std::process::id(),
        });
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| {
                use std::io::Write;
                writeln!(f, "{line}")
            });
        if let Err(e) = written {
            tracing::warn!("cannot append to the audit log {}: {e}", path.display());
        }
    }
}

/// Which engine a client asks for.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Deserialize,
    schemars::JsonSchema,
    clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum EngineChoice {
    /// `uprobe` where the kernel allows it and the capture can be planned,
    /// else `ptrace`.
    #[default]
    Auto,
    /// Only `uprobe`; refuse the probe if that is not possible.
    Uprobe,
    /// Only `ptrace`.
    Ptrace,
}
