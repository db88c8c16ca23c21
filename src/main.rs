//! The `liveprobe` command: flags -> policy -> engine -> MCP over stdio.
//!
//! Stdout belongs to the protocol: every log line goes to stderr.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use rmcp::ServiceExt;
use tracing_subscriber::EnvFilter;

use liveprobe::engine::Engine;
use liveprobe::mcp::LiveprobeServer;
use liveprobe::mcp::resources::Subscriptions;
use liveprobe::policy::{AttachRules, AuditLog, Policy, Rule};
use liveprobe::value::Redaction;

/// Stderr for log lines, with credential-looking text hidden. A formatted
/// event arrives as one write, so a secret is never split across calls.
struct RedactingStderr {
    redaction: Arc<Redaction>,
}

impl std::io::Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let clean = self.redaction.scrub(&text);
        std::io::stderr().write_all(clean.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// liveprobe: an MCP server that lets AI agents question running native
/// processes (C, C++, Rust on Linux x86-64) without stopping them: threads,
/// symbolized stacks, source, locals, expressions and non-breaking probes.
///
/// With no subcommand it serves MCP over stdio: configure it as a stdio MCP
/// server in your client (Claude Code, VS Code, MCP Inspector). It needs the
/// right to ptrace the targets (root, CAP_SYS_PTRACE, or the same user with
/// kernel.yama.ptrace_scope = 0).
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Processes whose executable matches may be attached (repeatable). A
    /// glob (`*`, `?`, `[...]`) must match the whole path; text without them
    /// matches anywhere in the path, as this flag always did. Any --allow-*
    /// flag replaces the default rule (liveprobe's own user only).
    #[arg(long = "allow-exe", value_name = "GLOB")]
    allow_exe: Vec<String>,
    /// Processes of this user may be attached (a uid, or `self`;
    /// repeatable).
    #[arg(long = "allow-uid", value_name = "UID")]
    allow_uid: Vec<String>,
    /// This process may be attached (repeatable).
    #[arg(long = "allow-pid", value_name = "PID")]
    allow_pid: Vec<i32>,
    /// Processes whose executable matches may never be attached, whatever
    /// allows them (repeatable; globs as for --allow-exe).
    #[arg(long = "deny-exe", value_name = "GLOB")]
    deny_exe: Vec<String>,
    /// A TOML file of attach rules with per-rule tool limits (see
    /// docs/security.md). A malformed file stops start-up.
    #[arg(long = "policy", value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Refuse every tool that writes into a target (probes, watches); reads
    /// (stacks, locals, evaluate) remain.
    #[arg(long)]
    observe_only: bool,
    /// Name parts whose values are never shown, in addition to the built-in
    /// list (password, passwd, secret, token, api_key, apikey, auth,
    /// authorization, cookie, session_key, private_key, credential);
    /// matched case-insensitively as a word part. Repeatable.
    #[arg(long = "redact-name", value_name = "PART")]
    redact_names: Vec<String>,
    /// Every value of this type is never shown (repeatable): `Credentials`
    /// matches `struct Credentials`, `app::Credentials` and
    /// `Credentials<T>`; `app::Credentials` only that path. Strings that look
    /// like credentials (JWTs, `Bearer …`, vendor keys, PEM private keys,
    /// card numbers, high-entropy tokens) are always hidden.
    #[arg(long = "redact-type", value_name = "TYPE")]
    redact_types: Vec<String>,
    /// Redact only the --redact-name parts, not the built-in list.
    #[arg(long)]
    no_default_redactions: bool,
    /// Milliseconds per second one probe may hold target threads before it is
    /// throttled (1..=1000; default 250).
    #[arg(long = "probe-budget-ms", value_name = "MS")]
    probe_budget_ms: Option<u64>,
    /// How probes reach their hits: `auto` (a kernel uprobe with a BPF
    /// capture where possible, else ptrace), `uprobe` or `ptrace`. A request
    /// can ask for another.
    #[arg(long = "probe-engine", value_enum, default_value = "auto")]
    probe_engine: liveprobe::policy::EngineChoice,
    /// MiB of kernel memory for the ring that carries uprobe-engine hits to
    /// liveprobe (1..=1024, rounded up to a power of two; default 16). A
    /// bigger ring loses fewer hits of a very hot probe.
    #[arg(long = "ring-buffer-mb", value_name = "MIB")]
    ring_buffer_mb: Option<u32>,
    /// Append one JSON line per tool call and per probe state change to this
    /// file; a call whose line cannot be written is refused.
    #[arg(long, value_name = "FILE")]
    audit_log: Option<PathBuf>,
    /// Log filter for stderr (e.g. `info`, `liveprobe=debug`). Also RUST_LOG.
    #[arg(long, default_value = "warn")]
    log: String,
    #[command(flatten)]
    http: HttpArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve MCP over stdio (the default).
    Serve,
    /// Write the JSON Schemas of every tool's input and output into DIR.
    ExportSchemas {
        /// Directory to write `<tool>.input.json` and `<tool>.output.json` into.
        dir: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .or_else(|_| EnvFilter::try_new(&cli.log))
        .unwrap_or_else(|_| EnvFilter::new("warn"));
    // Log lines quote errors and arguments: they pass through the same
    // redaction as answers before they reach stderr.
    let log_redaction = Arc::new(Redaction::configured(
        cli.no_default_redactions,
        cli.redact_names.clone(),
        cli.redact_types.clone(),
    ));
    tracing_subscriber::fmt()
        .with_writer(move || RedactingStderr {
            redaction: log_redaction.clone(),
        })
        .with_ansi(false)
        .with_env_filter(filter)
        .init();

    match cli.command {
        Some(Command::ExportSchemas { ref dir }) => match liveprobe::mcp::export_schemas(dir) {
            Ok(n) => {
                eprintln!("wrote {n} schema files to {}", dir.display());
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("liveprobe: cannot write schemas to {}: {e}", dir.display());
                std::process::ExitCode::FAILURE
            }
        },
        Some(Command::Serve) | None => serve(cli),
    }
}

fn serve(cli: Cli) -> std::process::ExitCode {
    let http = cli.http.clone();
    let policy = match build_policy(&cli) {
        Ok(policy) => Arc::new(policy),
        Err(e) => {
            eprintln!("liveprobe: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("liveprobe: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let (probe_updates, probe_update_rx) = tokio::sync::mpsc::unbounded_channel();
    let engine = match Engine::new(policy, Some(probe_updates)) {
        Ok(engine) => Arc::new(engine),
        Err(e) => {
            eprintln!("liveprobe: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    install_panic_cleanup(engine.clone());
    let code = match http.http {
        Some(addr) => runtime.block_on(run_http(engine.clone(), probe_update_rx, http, addr)),
        None => runtime.block_on(run_stdio(engine.clone(), probe_update_rx)),
    };
    // A blocked stdin read must not keep us alive after cleanup (rust-sdk #220).
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    code
}

/// The policy the flags and the `--policy` file say; an error stops start-up.
fn build_policy(cli: &Cli) -> Result<Policy, String> {
    use liveprobe::policy::glob::ExePattern;
    use liveprobe::policy::rules::UidMatch;
    let mut attach = AttachRules::default();
    for text in &cli.allow_exe {
        attach.allow.push(Rule {
            name: format!("--allow-exe {text}"),
            exe: Some(ExePattern::parse(text).map_err(|e| format!("--allow-exe: {e}"))?),
            ..Rule::default()
        });
    }
    for text in &cli.allow_uid {
        let uid = match text.as_str() {
            "self" => UidMatch::Own,
            n => UidMatch::Uid(n.parse().map_err(|_| {
                format!(
                    "--allow-uid {n:?} is not a uid: give a number (see `id -u USER`) or `self`"
                )
            })?),
        };
        attach.allow.push(Rule {
            name: format!("--allow-uid {text}"),
            uid: Some(uid),
            ..Rule::default()
        });
    }
    for pid in &cli.allow_pid {
        attach.allow.push(Rule {
            name: format!("--allow-pid {pid}"),
            pid: Some(*pid),
            ..Rule::default()
        });
    }
    for text in &cli.deny_exe {
        attach.deny.push(Rule {
            name: format!("--deny-exe {text}"),
            exe: Some(ExePattern::parse(text).map_err(|e| format!("--deny-exe: {e}"))?),
            ..Rule::default()
        });
    }
    if let Some(path) = &cli.policy {
        let tools: Vec<String> = LiveprobeServer::tools()
            .iter()
            .map(|t| t.name.to_string())
            .collect();
        liveprobe::policy::file::load(path, &mut attach, &tools).map_err(|e| e.to_string())?;
    }
    if cli.observe_only {
        attach.observe_only = true;
        attach.observe_only_origin = "--observe-only".into();
    }
    let audit = match &cli.audit_log {
        Some(path) => Some(AuditLog::open(path).map_err(|e| e.to_string())?),
        None => None,
    };
    Ok(Policy {
        attach,
        secret_names: cli.redact_names.clone(),
        secret_types: cli.redact_types.clone(),
        no_default_secrets: cli.no_default_redactions,
        audit,
        hit_budget_ms_per_s: cli.probe_budget_ms,
        probe_engine: cli.probe_engine,
        ring_buffer_mb: cli.ring_buffer_mb,
    })
}

/// Serves until the client goes away or a signal asks us to stop, then
/// releases every target.
async fn run_stdio(
    engine: Arc<Engine>,
    probe_updates: tokio::sync::mpsc::UnboundedReceiver<u64>,
) -> std::process::ExitCode {
    use tokio::signal::unix::{SignalKind, signal};
    let subscriptions = Arc::new(Subscriptions::default());
    let probe_updates = liveprobe::mcp::audit::audit_probe_updates(engine.clone(), probe_updates);
    tokio::spawn(subscriptions.clone().forward(probe_updates));
    let server = LiveprobeServer::new(engine.clone(), subscriptions);
    let running = match server.serve(rmcp::transport::stdio_pipes()).await {
        Ok(running) => running,
        Err(e) => {
            tracing::error!("MCP session did not start: {e}");
            engine.detach_all().await;
            return std::process::ExitCode::FAILURE;
        }
    };
    let (mut int, mut term, mut hup) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        _ => {
            tracing::error!("cannot install signal handlers");
            engine.detach_all().await;
            return std::process::ExitCode::FAILURE;
        }
    };
    let ct = running.cancellation_token();
    let waiting = running.waiting();
    tokio::pin!(waiting);
    let why = tokio::select! {
        r = &mut waiting => format!("client gone ({r:?})"),
        _ = int.recv() => "SIGINT".to_string(),
        _ = term.recv() => "SIGTERM".to_string(),
        _ = hup.recv() => "SIGHUP".to_string(),
    };
    tracing::info!("stopping: {why}");
    ct.cancel();
    engine.detach_all().await;
    std::process::ExitCode::SUCCESS
}

/// On a panic in any thread, release every target before the process dies.
fn install_panic_cleanup(engine: Arc<Engine>) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        engine.detach_all_blocking();
    }));
}

/// `--http` and its companions: MCP over streamable HTTP instead of stdio.
#[derive(clap::Args, Debug, Clone)]
struct HttpArgs {
    /// Serve MCP over streamable HTTP on ADDR:PORT (path /mcp) instead of
    /// stdio. A bearer token is required: LIVEPROBE_TOKEN, or a random one
    /// written (mode 0600) to a token file whose path is printed on stderr.
    #[arg(long, value_name = "ADDR:PORT")]
    http: Option<std::net::SocketAddr>,
    /// Allow --http on an address other hosts can reach (not loopback); the
    /// token must then have at least 32 characters.
    #[arg(long, requires = "http")]
    allow_remote: bool,
    /// A browser origin (scheme://host[:port]) allowed to call --http, in
    /// addition to the server's own address. Repeatable.
    #[arg(long = "allowed-origin", value_name = "ORIGIN", requires = "http")]
    allowed_origins: Vec<String>,
    /// A Host header value (name or name:port) --http accepts, in addition
    /// to the address it listens on (a proxy's or a Service's name). Repeatable.
    #[arg(long = "allowed-host", value_name = "HOST", requires = "http")]
    allowed_hosts: Vec<String>,
    /// Most concurrent --http sessions (2025-11-25 clients); more are refused.
    #[arg(long, value_name = "N", default_value_t = 16, requires = "http")]
    max_sessions: usize,
    /// Most concurrent --http connections; more are answered 503 and closed.
    #[arg(long, value_name = "N", default_value_t = 64, requires = "http")]
    max_connections: usize,
    /// Seconds a 2025-11-25 --http session may stay without a request
    /// before it is ended (and its probes without keep: true removed).
    #[arg(long, value_name = "SECONDS", default_value_t = 300, requires = "http",
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    session_idle_timeout: u64,
    /// Where to write the generated token when LIVEPROBE_TOKEN is not set
    /// (default: liveprobe-PID.token in the temp directory). Must not exist.
    #[arg(long, value_name = "FILE", requires = "http")]
    token_file: Option<PathBuf>,
    /// Serve --http over TLS with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "PEM", requires_all = ["http", "tls_key"])]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires_all = ["http", "tls_cert"])]
    tls_key: Option<PathBuf>,
}

/// Serves MCP over HTTP until a signal asks us to stop, then releases every
/// target.
async fn run_http(
    engine: Arc<Engine>,
    probe_updates: tokio::sync::mpsc::UnboundedReceiver<u64>,
    args: HttpArgs,
    addr: std::net::SocketAddr,
) -> std::process::ExitCode {
    use liveprobe::mcp::http;
    use tokio::signal::unix::{SignalKind, signal};
    let opts = http::HttpOptions {
        addr,
        allow_remote: args.allow_remote,
        allowed_hosts: args.allowed_hosts,
        allowed_origins: args.allowed_origins,
        max_sessions: args.max_sessions,
        max_connections: args.max_connections,
        session_idle_timeout: std::time::Duration::from_secs(args.session_idle_timeout),
        token_file: args.token_file,
        tls: args.tls_cert.zip(args.tls_key),
    };
    let token = match http::obtain_token(std::env::var("LIVEPROBE_TOKEN").ok(), &opts) {
        Ok(token) => token,
        Err(e) => {
            eprintln!("liveprobe: {e}");
            engine.detach_all().await;
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Some(file) = &token.file {
        eprintln!(
            "liveprobe: token file {} (send its content as `Authorization: Bearer <token>`)",
            file.display()
        );
    }
    let (mut int, mut term, mut hup) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        _ => {
            eprintln!("liveprobe: cannot install signal handlers");
            return std::process::ExitCode::FAILURE;
        }
    };
    let subscriptions = Arc::new(Subscriptions::default());
    let probe_updates = liveprobe::mcp::audit::audit_probe_updates(engine.clone(), probe_updates);
    tokio::spawn(subscriptions.clone().forward(probe_updates));
    let stop = tokio_util::sync::CancellationToken::new();
    let serving = http::serve(engine.clone(), subscriptions, opts, &token, stop.clone());
    tokio::pin!(serving);
    let code = tokio::select! {
        r = &mut serving => match r {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("liveprobe: {e}");
                std::process::ExitCode::FAILURE
            }
        },
        _ = int.recv() => std::process::ExitCode::SUCCESS,
        _ = term.recv() => std::process::ExitCode::SUCCESS,
        _ = hup.recv() => std::process::ExitCode::SUCCESS,
    };
    stop.cancel();
    engine.detach_all().await;
    // The token file goes with `token`, at the end of this scope.
    code
}
