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
use liveprobe::policy::Policy;
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
    /// Only processes whose executable path contains one of these may be
    /// attached (repeatable). Default: any process we may ptrace.
    #[arg(long = "allow-exe", value_name = "SUBSTRING")]
    allow_exe: Vec<String>,
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
    /// Append one JSON line per tool call to this file.
    #[arg(long, value_name = "FILE")]
    audit_log: Option<PathBuf>,
    /// Log filter for stderr (e.g. `info`, `liveprobe=debug`). Also RUST_LOG.
    #[arg(long, default_value = "warn")]
    log: String,
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
    let policy = Arc::new(Policy {
        allowed_exes: cli.allow_exe,
        secret_names: cli.redact_names,
        secret_types: cli.redact_types,
        no_default_secrets: cli.no_default_redactions,
        audit_log: cli.audit_log,
        hit_budget_ms_per_s: cli.probe_budget_ms,
        probe_engine: cli.probe_engine,
        ring_buffer_mb: cli.ring_buffer_mb,
    });
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
    let code = runtime.block_on(run_stdio(engine.clone(), probe_update_rx));
    // A blocked stdin read must not keep us alive after cleanup (rust-sdk #220).
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    code
}

/// Serves until the client goes away or a signal asks us to stop, then
/// releases every target.
async fn run_stdio(
    engine: Arc<Engine>,
    probe_updates: tokio::sync::mpsc::UnboundedReceiver<u64>,
) -> std::process::ExitCode {
    use tokio::signal::unix::{SignalKind, signal};
    let subscriptions = Arc::new(Subscriptions::default());
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
