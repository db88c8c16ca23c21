//! The box owner's rules: which processes may be attached and what may be
//! done to them (`rules`, `glob`, the `--policy` file in `file`), which names
//! are secret, and what every tool call leaves in the audit trail (`audit`).
//!
//! It decides; it never touches a process (it reads `/proc/PID/status`,
//! `/proc/PID/stat` and `/proc/PID/exe`, which does not).

pub mod audit;
pub mod file;
pub mod glob;
pub mod rules;

pub use audit::{AuditError, AuditLog};
pub use rules::{AttachRules, Identity, ProcessFacts, Rule, Verdict};

/// When process `pid` started (clock ticks after boot, `/proc/PID/stat`
/// field 22): with the pid, what tells one process from a later one that
/// reuses its pid. `None` when there is no such process.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    start_time_of_stat(&stat)
}

/// Field 22 of a `/proc/PID/stat` line. The command name (field 2) is in
/// parentheses and may hold spaces and parentheses itself: fields are
/// counted after its last `)`.
fn start_time_of_stat(stat: &str) -> Option<u64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    // After the name come field 3 (state) onwards: field 22 is the 20th.
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// What the owner of the machine allows.
#[derive(Debug, Default)]
pub struct Policy {
    /// Which processes may be attached and what may be done to them.
    pub attach: AttachRules,
    /// Name parts whose values are redacted, in addition to the built-in list.
    pub secret_names: Vec<String>,
    /// Types whose every value is redacted (`--redact-type`).
    pub secret_types: Vec<String>,
    /// Drop the built-in list: only `secret_names` are redacted.
    pub no_default_secrets: bool,
    /// Where one JSON line per tool call and probe state change goes;
    /// `None`: the log on stderr only.
    pub audit: Option<AuditLog>,
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

    /// Why `pid` (running `exe`) may not be attached, naming the rule that
    /// refuses it, or `None` when it may.
    pub fn refusal(&self, pid: i32, exe: Option<&str>) -> Option<String> {
        // Refused all the same (nothing is known of it), with the words that
        // help.
        if pid <= 0 || !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            return Some(format!(
                "there is no process {pid}: list_processes shows the running ones"
            ));
        }
        match self
            .attach
            .judge(&ProcessFacts::of(pid, exe), &Identity::current())
        {
            Verdict::Allowed(_) => None,
            Verdict::Refused { rule, reason } => Some(format!("refused by rule {rule}: {reason}")),
        }
    }

    /// Why `tool` may not run (on `pid`, when it names one), naming the rule,
    /// or `None` when it may.
    pub fn tool_refusal(&self, tool: &str, pid: Option<i32>) -> Option<String> {
        let me = Identity::current();
        match pid {
            Some(pid) => {
                let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
                    .ok()
                    .map(|p| p.display().to_string());
                // Checked here too (the engine checks again), so an attach
                // the policy refuses is audited as refused.
                if tool == "attach" {
                    return self
                        .refusal(pid, exe.as_deref())
                        .map(|why| format!("process {pid} may not be attached: {why}"));
                }
                self.attach
                    .tool_refusal(tool, &ProcessFacts::of(pid, exe.as_deref()), &me)
            }
            // Without a pid only the global observe-only applies.
            None => self.attach.global_tool_refusal(tool),
        }
    }

    /// Appends `record` to the audit log; `Ok` when there is none.
    pub fn audit(&self, record: serde_json::Value) -> Result<(), AuditError> {
        match &self.audit {
            Some(log) => log.write(record),
            None => Ok(()),
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

#[cfg(test)]
mod start_time_tests {
    use super::*;

    #[test]
    fn the_start_time_is_field_22_even_when_the_name_has_parentheses() {
        let line = "4242 (we) ird (name)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    987654 12345678 100 18446744073709551615";
        assert_eq!(start_time_of_stat(line), Some(987654));
        assert_eq!(start_time_of_stat("12 (short) S 1 2"), None);
    }

    #[test]
    fn this_process_has_a_start_time_that_stays() {
        let me = std::process::id() as i32;
        let first = process_start_time(me);
        assert!(first.is_some());
        assert_eq!(process_start_time(me), first);
        assert_eq!(process_start_time(i32::MAX), None);
    }
}
