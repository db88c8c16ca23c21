//! Attach rules: who may be attached, and which tools each rule leaves open.

use super::glob::ExePattern;

/// Tools that write into a target: each places code patches (`int3` bytes,
/// trampolines, kernel uprobes) or a watch. Observe-only refuses exactly
/// these; every other tool only reads.
pub const PATCHING_TOOLS: &[&str] = &["set_snapshot", "set_logpoint", "set_metric", "set_watch"];

/// Whether `tool` writes into a target (see [`PATCHING_TOOLS`]).
pub fn patches_target(tool: &str) -> bool {
    PATCHING_TOOLS.contains(&tool)
}

/// A process by its user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UidMatch {
    /// This uid.
    Uid(u32),
    /// Whatever user liveprobe runs as.
    Own,
}

/// One rule: it matches a process when every field it has matches.
#[derive(Debug, Clone, Default)]
pub struct Rule {
    /// How answers and audit lines name it.
    pub name: String,
    /// Where it came from: a flag or a line of the policy file.
    pub origin: String,
    pub uid: Option<UidMatch>,
    pub pid: Option<i32>,
    pub exe: Option<ExePattern>,
    /// For allow rules: what may be done to the processes it allows.
    pub limits: ToolLimits,
}

/// What a rule leaves open.
#[derive(Debug, Clone, Default)]
pub struct ToolLimits {
    /// Only these tools (names, or the classes `read` and `probe`); `None`:
    /// all.
    pub only: Option<Vec<String>>,
    /// Never these (names or classes).
    pub deny: Vec<String>,
    /// Refuse every tool that writes into the target.
    pub observe_only: bool,
}

impl ToolLimits {
    /// Why `tool` is not open, or `None`.
    fn refusal(&self, tool: &str) -> Option<String> {
        if self.observe_only && patches_target(tool) {
            return Some(format!(
                "it is observe-only, and {tool} writes into the target"
            ));
        }
        if let Some(entry) = self.deny.iter().find(|e| names_tool(e, tool)) {
            return Some(format!("it denies {entry}"));
        }
        match &self.only {
            Some(only) if !only.iter().any(|e| names_tool(e, tool)) => {
                Some(format!("it allows only {}", only.join(", ")))
            }
            _ => None,
        }
    }
}

/// Whether a limit entry (a tool name or a class) covers `tool`.
fn names_tool(entry: &str, tool: &str) -> bool {
    match entry {
        "read" => !patches_target(tool),
        "probe" => patches_target(tool),
        name => name == tool,
    }
}

/// What is known of a process when a rule is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessFacts {
    pub pid: i32,
    /// Real, effective and saved uid.
    pub uids: Option<[u32; 3]>,
    pub exe: Option<String>,
}

impl ProcessFacts {
    /// Reads the uids of `pid` from `/proc` (reading /proc/PID/status does
    /// not touch the process).
    pub fn of(pid: i32, exe: Option<&str>) -> ProcessFacts {
        let uids = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|status| parse_uids(&status));
        ProcessFacts {
            pid,
            uids,
            exe: exe.map(str::to_string),
        }
    }

    /// The one uid a process runs as, when its real, effective and saved
    /// uids agree. A set-uid program between two users is no one's: only a
    /// pid rule can allow it.
    fn single_uid(&self) -> Option<u32> {
        self.uids
            .filter(|[r, e, s]| r == e && e == s)
            .map(|[r, _, _]| r)
    }
}

fn parse_uids(status: &str) -> Option<[u32; 3]> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    let mut ids = line["Uid:".len()..]
        .split_whitespace()
        .map(|f| f.parse::<u32>().ok());
    Some([ids.next()??, ids.next()??, ids.next()??])
}

/// Who liveprobe is, for the rules that are about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub pid: i32,
    pub parent: i32,
    pub uid: u32,
}

impl Identity {
    /// This liveprobe (its process; its tracer tasks are recognised by
    /// `is_me`).
    pub fn current() -> Identity {
        Identity {
            pid: crate::own_tasks::liveprobe_pid(),
            // SAFETY: getppid and getuid cannot fail and touch no memory.
            parent: unsafe { libc::getppid() },
            uid: unsafe { libc::getuid() },
        }
    }

    /// Whether `pid` is this liveprobe: its process or one of its tracer
    /// tasks (processes of their own that share its memory and own its
    /// ptrace attachments).
    pub fn is_me(&self, pid: i32) -> bool {
        pid == self.pid || crate::own_tasks::is_tracer_task(pid)
    }
}

impl Rule {
    fn matches(&self, p: &ProcessFacts, me: &Identity) -> bool {
        let uid_ok = match self.uid {
            None => true,
            Some(UidMatch::Uid(u)) => p.single_uid() == Some(u),
            Some(UidMatch::Own) => p.single_uid() == Some(me.uid),
        };
        let exe_ok = match &self.exe {
            None => true,
            Some(pattern) => p.exe.as_deref().is_some_and(|e| pattern.matches(e)),
        };
        uid_ok && exe_ok && self.pid.is_none_or(|pid| pid == p.pid)
    }

    /// `name (origin)`, how refusals cite a rule.
    pub fn cited(&self) -> String {
        if self.origin.is_empty() || self.origin == self.name {
            format!("\"{}\"", self.name)
        } else {
            format!("\"{}\" ({})", self.name, self.origin)
        }
    }
}

/// The attach rules in force.
#[derive(Debug, Clone, Default)]
pub struct AttachRules {
    /// A process matching one of these may be attached. Empty: the default
    /// rule, processes of liveprobe's own user.
    pub allow: Vec<Rule>,
    /// A process matching one of these may never be attached; deny wins
    /// over allow.
    pub deny: Vec<Rule>,
    /// Every process is observe-only (`--observe-only`, or `observe_only`
    /// at the top of the policy file).
    pub observe_only: bool,
    /// Where the global observe-only came from.
    pub observe_only_origin: String,
}

/// The name of the rule used when no allow rule is given.
pub const DEFAULT_RULE: &str = "default: liveprobe's own user only";

/// May a process be attached, and under which rule.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Yes, by this rule (its limits apply to every tool on the process).
    Allowed(Rule),
    /// No: the rule that refused it and why.
    Refused { rule: String, reason: String },
}

impl AttachRules {
    /// The verdict on `p` for a liveprobe that is `me`.
    pub fn judge(&self, p: &ProcessFacts, me: &Identity) -> Verdict {
        if me.is_me(p.pid) {
            return Verdict::Refused {
                rule: "never liveprobe itself".into(),
                reason: "it is this liveprobe".into(),
            };
        }
        if p.pid == me.parent {
            return Verdict::Refused {
                rule: "never liveprobe's parent".into(),
                reason: "it started this liveprobe (an MCP client or its shell)".into(),
            };
        }
        if let Some(rule) = self.deny.iter().find(|r| r.matches(p, me)) {
            return Verdict::Refused {
                rule: rule.cited(),
                reason: "it matches this deny rule; deny rules win over allow rules".into(),
            };
        }
        if self.allow.is_empty() {
            let own = Rule {
                name: DEFAULT_RULE.into(),
                uid: Some(UidMatch::Own),
                ..Rule::default()
            };
            if own.matches(p, me) {
                return Verdict::Allowed(own);
            }
            let runs_as = match p.uids {
                Some([r, e, s]) if r == e && e == s => format!("uid {r}"),
                Some([r, e, s]) => format!("real/effective/saved uids {r}/{e}/{s}"),
                None => "an unknown user (its /proc status cannot be read)".into(),
            };
            let hint = match p.single_uid() {
                Some(u) => format!("--allow-uid {u}"),
                None => format!("--allow-pid {}", p.pid),
            };
            return Verdict::Refused {
                rule: format!("\"{DEFAULT_RULE}\""),
                reason: format!(
                    "it runs as {runs_as} and liveprobe as uid {}; start liveprobe with {hint}, \
                     or give a --policy file with an [[allow]] rule for it",
                    me.uid
                ),
            };
        }
        if let Some(rule) = self.allow.iter().find(|r| r.matches(p, me)) {
            return Verdict::Allowed(rule.clone());
        }
        let listed: Vec<String> = self.allow.iter().map(Rule::cited).collect();
        Verdict::Refused {
            rule: "allow list".into(),
            reason: format!(
                "no allow rule matches it (uid {}, executable {}); the rules are: {}. Add one with \
                 --allow-uid, --allow-pid, --allow-exe or the --policy file",
                p.single_uid()
                    .map(|u| u.to_string())
                    .unwrap_or_else(|| "unknown".into()),
                p.exe.as_deref().unwrap_or("unreadable"),
                listed.join("; ")
            ),
        }
    }

    /// Why `tool` may not run on `p`, naming the rule, or `None`.
    pub fn tool_refusal(&self, tool: &str, p: &ProcessFacts, me: &Identity) -> Option<String> {
        if let Some(why) = self.global_tool_refusal(tool) {
            return Some(why);
        }
        if let Verdict::Refused { .. } = self.judge(p, me) {
            // Attaching says why; other tools find the process not attached.
            return None;
        }
        // Every allow rule that matches limits the process, not only the
        // first: a rule given as a flag cannot lift a file's limits.
        self.allow
            .iter()
            .filter(|r| r.matches(p, me))
            .find_map(|rule| {
                rule.limits.refusal(tool).map(|why| {
                    format!(
                        "{tool} is refused on process {} by rule {}: {why}",
                        p.pid,
                        rule.cited()
                    )
                })
            })
    }

    /// Why `tool` may not run on any process (global observe-only), or `None`.
    pub fn global_tool_refusal(&self, tool: &str) -> Option<String> {
        (self.observe_only && patches_target(tool)).then(|| {
            format!(
                "{tool} is refused: liveprobe is observe-only ({}), and {tool} writes into the \
                 target. Reads remain: stack_trace, read_locals, evaluate",
                self.observe_only_origin
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: Identity = Identity {
        pid: 100,
        parent: 99,
        uid: 1000,
    };

    fn process(pid: i32, uid: u32, exe: &str) -> ProcessFacts {
        ProcessFacts {
            pid,
            uids: Some([uid, uid, uid]),
            exe: Some(exe.into()),
        }
    }

    fn refused_by(v: Verdict) -> String {
        match v {
            Verdict::Refused { rule, .. } => rule,
            Verdict::Allowed(r) => panic!("allowed by {}", r.name),
        }
    }

    #[test]
    fn default_is_own_user_never_self_nor_parent() {
        let rules = AttachRules::default();
        assert!(matches!(
            rules.judge(&process(5, 1000, "/bin/x"), &ME),
            Verdict::Allowed(_)
        ));
        assert!(refused_by(rules.judge(&process(5, 65534, "/bin/x"), &ME)).contains("own user"));
        assert!(refused_by(rules.judge(&process(100, 1000, "/bin/x"), &ME)).contains("itself"));
        assert!(refused_by(rules.judge(&process(99, 1000, "/bin/x"), &ME)).contains("parent"));
        // A tracer task of liveprobe's (its own pid, liveprobe's memory).
        let task = 2_000_000_001;
        assert!(matches!(
            rules.judge(&process(task, 1000, "/bin/x"), &ME),
            Verdict::Allowed(_)
        ));
        assert!(crate::own_tasks::register_tracer_task(task));
        let verdict = refused_by(rules.judge(&process(task, 1000, "/bin/x"), &ME));
        crate::own_tasks::unregister_tracer_task(task);
        assert!(verdict.contains("itself"), "{verdict}");
        let setuid = ProcessFacts {
            pid: 5,
            uids: Some([1000, 0, 0]),
            exe: None,
        };
        assert!(matches!(rules.judge(&setuid, &ME), Verdict::Refused { .. }));
    }

    #[test]
    fn deny_wins_and_allow_rules_replace_the_default() {
        let rules = AttachRules {
            allow: vec![Rule {
                name: "nobody".into(),
                uid: Some(UidMatch::Uid(65534)),
                ..Rule::default()
            }],
            deny: vec![Rule {
                name: "no shells".into(),
                exe: ExePattern::parse("*/bash").ok(),
                ..Rule::default()
            }],
            ..AttachRules::default()
        };
        assert!(matches!(
            rules.judge(&process(5, 65534, "/bin/x"), &ME),
            Verdict::Allowed(_)
        ));
        assert!(
            refused_by(rules.judge(&process(5, 65534, "/usr/bin/bash"), &ME)).contains("no shells")
        );
        assert_eq!(
            refused_by(rules.judge(&process(5, 1000, "/bin/x"), &ME)),
            "allow list"
        );
    }

    #[test]
    fn limits_name_the_rule() {
        let rules = AttachRules {
            allow: vec![Rule {
                name: "readers".into(),
                origin: "p.toml line 3".into(),
                uid: Some(UidMatch::Own),
                limits: ToolLimits {
                    only: Some(vec!["read".into()]),
                    ..ToolLimits::default()
                },
                ..Rule::default()
            }],
            ..AttachRules::default()
        };
        let p = process(5, 1000, "/bin/x");
        assert!(rules.tool_refusal("evaluate", &p, &ME).is_none());
        // A second, unlimited rule for the same process lifts nothing.
        let mut rules = rules;
        rules.allow.insert(
            0,
            Rule {
                name: "--allow-uid 1000".into(),
                uid: Some(UidMatch::Uid(1000)),
                ..Rule::default()
            },
        );
        let why = rules
            .tool_refusal("set_snapshot", &p, &ME)
            .unwrap_or_default();
        assert!(why.contains("\"readers\" (p.toml line 3)"), "{why}");
    }

    #[test]
    fn uids_come_from_proc_status() {
        let status = "Name:\tx\nUid:\t1000\t1000\t0\t1000\nGid:\t1\t1\t1\t1\n";
        assert_eq!(parse_uids(status), Some([1000, 1000, 0]));
    }
}
