//! MCP over streamable HTTP (`liveprobe --http ADDR:PORT`, path `/mcp`).
//!
//! rmcp's `StreamableHttpService` speaks the protocol (2025-11-25 sessions
//! and 2026-07-28 stateless requests). In front of it, one function refuses
//! what must never reach a debugger: requests without the bearer token,
//! foreign `Host`/`Origin` (DNS rebinding), bodies over 1 MiB, bodies that
//! are not JSON, sessions beyond `--max-sessions` and connections beyond
//! `--max-connections`; each with a status and a message naming the fix,
//! while every other client goes on being served.
//!
//! Each session gets its own [`LiveprobeServer`] with an [`HttpScope`]: the
//! scope numbers the session for probe ownership and, when rmcp drops the
//! session's server (closed, timed out, lost), removes the session's probes.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use super::LiveprobeServer;
use super::resources::Subscriptions;
use crate::engine::Engine;
use crate::engine::ownership::{CALLER, Caller};

/// The one path the MCP endpoint answers on.
pub const MCP_PATH: &str = "/mcp";
/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Shortest token accepted when the address is reachable from other hosts.
pub const MIN_REMOTE_TOKEN_CHARS: usize = 32;
/// A client must send its request headers within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the HTTP transport cannot start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// A refused configuration, with what to change.
    #[error("{0}")]
    Config(String),
    /// Binding, reading the TLS files or writing the token file failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HttpError {
    let what = what.into();
    move |source| HttpError::Io { what, source }
}

/// How `--http` serves.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Address and port to listen on.
    pub addr: SocketAddr,
    /// Listen on an address other hosts can reach.
    pub allow_remote: bool,
    /// Extra `Host` values accepted (`name` or `name:port`).
    pub allowed_hosts: Vec<String>,
    /// Extra browser origins accepted (`scheme://host[:port]`, or `null`).
    pub allowed_origins: Vec<String>,
    /// Most concurrent 2025-11-25 sessions.
    pub max_sessions: usize,
    /// Most concurrent TCP connections.
    pub max_connections: usize,
    /// How long a 2025-11-25 session may go without a request before it is
    /// ended, which removes its probes (a client that vanished without
    /// DELETE must not leave probes running).
    pub session_idle_timeout: Duration,
    /// Where to write a generated token (default: a new file in the temp dir).
    pub token_file: Option<PathBuf>,
    /// Serve HTTPS with this certificate chain and private key (PEM files).
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// The bearer token and, when liveprobe generated it, the file it is in.
#[derive(Debug)]
pub struct Token {
    /// The secret itself.
    pub secret: String,
    /// The file it was written to (removed at exit), when generated.
    pub file: Option<PathBuf>,
}

impl Drop for Token {
    fn drop(&mut self) {
        if let Some(file) = &self.file {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// Refuses a configuration that would expose the debugger: a non-loopback
/// address needs `--allow-remote` and a long token.
pub fn check_exposure(addr: SocketAddr, allow_remote: bool, token: &str) -> Result<(), HttpError> {
    if token.trim().is_empty() {
        return Err(HttpError::Config(
            "LIVEPROBE_TOKEN is empty: set it to a secret of at least 32 characters, or unset it and liveprobe makes one".into(),
        ));
    }
    if addr.ip().is_loopback() {
        return Ok(());
    }
    if !allow_remote {
        return Err(HttpError::Config(format!(
            "--http {addr} is reachable from other hosts, and anyone with the token can read the memory of every attachable process: \
             pass --allow-remote to mean it, or listen on 127.0.0.1"
        )));
    }
    let chars = token.chars().count();
    if chars < MIN_REMOTE_TOKEN_CHARS {
        return Err(HttpError::Config(format!(
            "LIVEPROBE_TOKEN has {chars} characters; a non-loopback address needs at least {MIN_REMOTE_TOKEN_CHARS} \
             (e.g. `openssl rand -hex 32`), or unset it and liveprobe makes one"
        )));
    }
    Ok(())
}

/// The token from `LIVEPROBE_TOKEN` (`from_env`), or a new random one
/// written with mode 0600 to `token_file` (default: a new file in the temp
/// directory) whose path is printed on stderr.
pub fn obtain_token(from_env: Option<String>, opts: &HttpOptions) -> Result<Token, HttpError> {
    if let Some(secret) = from_env {
        let secret = secret.trim().to_string();
        check_exposure(opts.addr, opts.allow_remote, &secret)?;
        return Ok(Token { secret, file: None });
    }
    let mut bytes = [0u8; 32];
    {
        use std::io::Read;
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .map_err(io_error("reading /dev/urandom for a token"))?;
    }
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    check_exposure(opts.addr, opts.allow_remote, &secret)?;
    let path = opts.token_file.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("liveprobe-{}.token", std::process::id()))
    });
    write_secret_file(&path, &secret)?;
    Ok(Token {
        secret,
        file: Some(path),
    })
}

/// Creates `path` (never over an existing file or through a symlink) with
/// mode 0600 and `secret` in it.
fn write_secret_file(path: &Path, secret: &str) -> Result<(), HttpError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io_error(format!(
            "creating the token file {} (remove it, or choose another with --token-file)",
            path.display()
        )))?;
    file.write_all(secret.as_bytes())
        .and_then(|_| file.write_all(b"\n"))
        .map_err(io_error(format!(
            "writing the token file {}",
            path.display()
        )))
}

/// A TLS acceptor from a PEM certificate chain and a PEM private key.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, HttpError> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| {
            HttpError::Config(format!(
                "--tls-cert {}: {e}; give a PEM file with the certificate chain",
                cert.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(HttpError::Config(format!(
            "--tls-cert {} holds no certificate; give a PEM file with the certificate chain",
            cert.display()
        )));
    }
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        HttpError::Config(format!(
            "--tls-key {}: {e}; give a PEM file with the private key (PKCS#8, PKCS#1 or SEC1)",
            key.display()
        ))
    })?;
    // ring: a small pure build. rustls 0.23.48 deprecates it for lacking
    // post-quantum key exchange; aws-lc-rs has it but is a large C build.
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, private_key))
        .map_err(|e| {
            HttpError::Config(format!(
                "--tls-cert {} with --tls-key {}: {e}",
                cert.display(),
                key.display()
            ))
        })?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// One session (or one stateless request) served by one
/// [`LiveprobeServer`]: dropped with it, which ends the session's probes.
pub struct HttpScope {
    id: u64,
    ended: tokio::sync::mpsc::UnboundedSender<u64>,
}

impl Drop for HttpScope {
    fn drop(&mut self) {
        // The removal is async; the cleanup task does it.
        let _ = self.ended.send(self.id);
    }
}

impl LiveprobeServer {
    /// This server, serving one HTTP session or stateless request.
    /// The HTTP scope (session or stateless request) this instance serves;
    /// `None` over stdio.
    pub(crate) fn http_scope_id(&self) -> Option<u64> {
        self.http_scope.as_ref().map(|scope| scope.id)
    }

    pub fn with_http_scope(mut self, scope: HttpScope) -> LiveprobeServer {
        self.http_scope = Some(Arc::new(scope));
        self
    }

    /// Who a request comes from: nobody in particular over stdio; over
    /// HTTP, the session when the request carries `Mcp-Session-Id`, else the
    /// token (a 2026-07-28 stateless request).
    pub(crate) fn caller(&self, context: &RequestContext<RoleServer>) -> Option<Caller> {
        let scope = self.http_scope.as_ref()?;
        let in_session = context
            .extensions
            .get::<http::request::Parts>()
            .is_some_and(|parts| parts.headers.contains_key("mcp-session-id"));
        Some(if in_session {
            Caller::Session(scope.id)
        } else {
            Caller::Token
        })
    }
}

/// Runs `work` as `caller` (see `engine::ownership`), or as is over stdio.
pub(crate) async fn as_caller<F: Future>(caller: Option<Caller>, work: F) -> F::Output {
    match caller {
        Some(caller) => CALLER.scope(caller, work).await,
        None => work.await,
    }
}

type Body = BoxBody<Bytes, Infallible>;

/// Everything the front function needs, shared by every connection.
struct Front {
    mcp: StreamableHttpService<LiveprobeServer, LocalSessionManager>,
    sessions: Arc<LocalSessionManager>,
    token: String,
    hosts: Vec<Authority>,
    origins: Vec<String>,
    max_sessions: usize,
    /// Held while a new session is checked against the cap and created, so
    /// two at once cannot both take the last place.
    session_admission: tokio::sync::Mutex<()>,
}

/// A `Host` value, or an accepted one (`port: None` accepts any port).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Authority {
    host: String,
    port: Option<u16>,
}

impl Authority {
    fn parse(text: &str) -> Option<Authority> {
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        let parsed: http::uri::Authority = text.parse().ok()?;
        Some(Authority {
            host: parsed
                .host()
                .trim_matches(|c| c == '[' || c == ']')
                .to_ascii_lowercase(),
            port: parsed.port_u16(),
        })
    }

    fn accepts(&self, asked: &Authority) -> bool {
        self.host == asked.host && (self.port.is_none() || self.port == asked.port)
    }
}

/// `Host` values accepted: the bound address, its loopback names when it is
/// loopback, and `--allowed-host`.
fn accepted_hosts(addr: SocketAddr, extra: &[String]) -> Result<Vec<Authority>, HttpError> {
    let port = Some(addr.port());
    let mut hosts = vec![Authority {
        host: addr.ip().to_string(),
        port,
    }];
    if addr.ip().is_loopback() || addr.ip().is_unspecified() {
        for name in ["localhost", "127.0.0.1", "::1"] {
            hosts.push(Authority {
                host: name.into(),
                port,
            });
        }
    }
    for text in extra {
        hosts.push(Authority::parse(text).ok_or_else(|| {
            HttpError::Config(format!(
                "--allowed-host {text:?} is not a host name or host:port"
            ))
        })?);
    }
    Ok(hosts)
}

/// An origin as `scheme://host:port` with the default port filled in, so
/// that equal origins compare equal; `None` when it is not one.
fn normalize_origin(text: &str) -> Option<String> {
    let text = text.trim();
    if text == "null" {
        return Some("null".into());
    }
    let uri: http::Uri = text.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let authority = uri.authority()?;
    let port = authority.port_u16().or(match scheme.as_str() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    })?;
    let host = authority.host().to_ascii_lowercase();
    Some(format!("{scheme}://{host}:{port}"))
}

/// Browser origins accepted: pages served from the bound address itself
/// (and its loopback names), and `--allowed-origin`.
fn accepted_origins(
    addr: SocketAddr,
    hosts: &[Authority],
    extra: &[String],
) -> Result<Vec<String>, HttpError> {
    let mut origins = Vec::new();
    for host in hosts
        .iter()
        .take(if addr.ip().is_loopback() { 4 } else { 1 })
    {
        let shown = if host.host.contains(':') {
            format!("[{}]", host.host)
        } else {
            host.host.clone()
        };
        for scheme in ["http", "https"] {
            if let Some(o) = normalize_origin(&format!("{scheme}://{shown}:{}", addr.port())) {
                origins.push(o);
            }
        }
    }
    for text in extra {
        origins.push(normalize_origin(text).ok_or_else(|| {
            HttpError::Config(format!(
                "--allowed-origin {text:?} is not an origin: write scheme://host[:port], e.g. https://agent.example.com"
            ))
        })?);
    }
    Ok(origins)
}

/// A refusal: the status, and a JSON-RPC error body whose message says what
/// to do (clients show the message).
fn refuse(
    status: StatusCode,
    code: i64,
    message: String,
    id: Option<serde_json::Value>,
) -> Response<Body> {
    tracing::info!(%status, %message, "HTTP request refused");
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id.unwrap_or(serde_json::Value::Null),
        "error": { "code": code, "message": message },
    });
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"liveprobe\""),
        );
    }
    response
}

/// Compares without stopping at the first difference, so the time taken
/// does not tell how much of a guess was right.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = given.len() ^ expected.len();
    for (i, e) in expected.iter().enumerate() {
        diff |= usize::from(given.get(i).copied().unwrap_or(0) ^ e);
    }
    diff == 0
}

impl Front {
    fn check_headers(&self, headers: &HeaderMap) -> Result<(), Response<Body>> {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(Authority::parse);
        match host {
            Some(host) if self.hosts.iter().any(|a| a.accepts(&host)) => {}
            Some(host) => {
                return Err(refuse(
                    StatusCode::FORBIDDEN,
                    -32600,
                    format!(
                        "Host {}{} is not this server's address (a DNS rebinding attempt?): connect to the address liveprobe listens on, \
                         or start it with --allowed-host NAME",
                        host.host,
                        host.port.map(|p| format!(":{p}")).unwrap_or_default()
                    ),
                    None,
                ));
            }
            None => {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    -32600,
                    "the request has no valid Host header".into(),
                    None,
                ));
            }
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let given = origin.to_str().ok().and_then(normalize_origin);
            if !given.is_some_and(|o| self.origins.contains(&o)) {
                return Err(refuse(
                    StatusCode::FORBIDDEN,
                    -32600,
                    format!(
                        "Origin {} may not use this server (a web page cannot drive a debugger unless allowed): \
                         start liveprobe with --allowed-origin ORIGIN for a trusted page",
                        String::from_utf8_lossy(origin.as_bytes())
                    ),
                    None,
                ));
            }
        }
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            });
        match bearer {
            Some(given) if same_secret(given.as_bytes(), self.token.as_bytes()) => Ok(()),
            Some(_) => Err(refuse(
                StatusCode::UNAUTHORIZED,
                -32001,
                "wrong bearer token: use the value of LIVEPROBE_TOKEN, or the token file whose path liveprobe printed at start".into(),
                None,
            )),
            None => Err(refuse(
                StatusCode::UNAUTHORIZED,
                -32001,
                "no bearer token: send `Authorization: Bearer <token>` with the value of LIVEPROBE_TOKEN, \
                 or of the token file whose path liveprobe printed at start"
                    .into(),
                None,
            )),
        }
    }

    async fn serve(&self, request: Request<Incoming>) -> Response<Body> {
        if request.uri().path() != MCP_PATH {
            return refuse(
                StatusCode::NOT_FOUND,
                -32600,
                format!(
                    "no such path {}: the MCP endpoint is {MCP_PATH}",
                    request.uri().path()
                ),
                None,
            );
        }
        if let Err(refused) = self.check_headers(request.headers()) {
            return refused;
        }
        if request.method() != http::Method::POST {
            return self.mcp.handle(request).await;
        }
        let (parts, body) = request.into_parts();
        let bytes = match Limited::new(body, MAX_BODY_BYTES).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e)
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                return refuse(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    -32600,
                    format!(
                        "request body over {MAX_BODY_BYTES} bytes: send one JSON-RPC message of at most 1 MiB per request"
                    ),
                    None,
                );
            }
            Err(e) => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    -32600,
                    format!("could not read the request body: {e}"),
                    None,
                );
            }
        };
        let message: serde_json::Value = match serde_json::from_slice(&bytes) {
            Ok(m) => m,
            Err(e) => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    -32700,
                    format!(
                        "parse error: the body is not JSON ({e}); send one JSON-RPC 2.0 message"
                    ),
                    None,
                );
            }
        };
        let starts_session = !parts.headers.contains_key("mcp-session-id")
            && message.get("method").and_then(|m| m.as_str()) == Some("initialize")
            && message
                .pointer("/params/protocolVersion")
                .and_then(|v| v.as_str())
                // Sessions ended with 2026-07-28: its requests are stateless.
                .is_none_or(|v| v < "2026-07-28");
        let request = Request::from_parts(parts, Full::new(bytes));
        if !starts_session {
            return self.mcp.handle(request).await;
        }
        let _admission = self.session_admission.lock().await;
        let open = self.sessions.sessions.read().await.len();
        if open >= self.max_sessions {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                -32000,
                format!(
                    "{open} sessions are open, the most this server allows (--max-sessions {}): end one (DELETE {MCP_PATH} with its \
                     Mcp-Session-Id, or close its client) and try again",
                    self.max_sessions
                ),
                message.get("id").cloned(),
            );
        }
        self.mcp.handle(request).await
    }
}

/// Serves MCP over HTTP on `opts.addr` until `stop` is cancelled.
pub async fn serve(
    engine: Arc<Engine>,
    subscriptions: Arc<Subscriptions>,
    opts: HttpOptions,
    token: &Token,
    stop: CancellationToken,
) -> Result<(), HttpError> {
    check_exposure(opts.addr, opts.allow_remote, &token.secret)?;
    if opts.max_sessions == 0 || opts.max_connections == 0 {
        return Err(HttpError::Config(
            "--max-sessions and --max-connections must be at least 1".into(),
        ));
    }
    // Check the names before binding, then use the bound port (`:0` picks one).
    accepted_origins(
        opts.addr,
        &accepted_hosts(opts.addr, &opts.allowed_hosts)?,
        &opts.allowed_origins,
    )?;
    let listener = tokio::net::TcpListener::bind(opts.addr)
        .await
        .map_err(io_error(format!("listening on {}", opts.addr)))?;
    let bound = listener
        .local_addr()
        .map_err(io_error("reading the bound address"))?;
    let tls = match &opts.tls {
        Some((cert, key)) => Some(tls_acceptor(cert, key)?),
        None => None,
    };
    let hosts = accepted_hosts(bound, &opts.allowed_hosts)?;
    let origins = accepted_origins(bound, &hosts, &opts.allowed_origins)?;

    // Sessions (and stateless requests) that ended: their probes go.
    let (ended_tx, mut ended_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let cleanup_engine = engine.clone();
    tokio::spawn(async move {
        while let Some(session) = ended_rx.recv().await {
            let removed = cleanup_engine.end_session(session).await;
            if removed > 0 {
                tracing::info!(
                    session,
                    removed,
                    "HTTP session ended; its probes were removed"
                );
            }
        }
    });
    let next_scope = Arc::new(AtomicU64::new(1));
    let factory = move || {
        let id = next_scope.fetch_add(1, Ordering::Relaxed);
        let scope = HttpScope {
            id,
            ended: ended_tx.clone(),
        };
        // Audit lines name the transport and this server instance (one per
        // MCP session, or per stateless request).
        let origin = crate::mcp::audit::CallOrigin {
            transport: "http".into(),
            session: format!("http-{}-{id}", std::process::id()),
        };
        Ok(LiveprobeServer::new(engine.clone(), subscriptions.clone())
            .with_http_scope(scope)
            .with_origin(origin))
    };
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = Some(opts.session_idle_timeout);
    let sessions = Arc::new(sessions);
    // rmcp checks Host again (the front already did, with a clearer message);
    // Origin is the front's alone, with normalized default ports.
    let rmcp_hosts: Vec<String> = hosts
        .iter()
        .map(|a| match a.port {
            Some(p) if a.host.contains(':') => format!("[{}]:{p}", a.host),
            Some(p) => format!("{}:{p}", a.host),
            None => a.host.clone(),
        })
        .collect();
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(rmcp_hosts)
        .disable_allowed_origins()
        .with_max_request_body_bytes(MAX_BODY_BYTES)
        .with_cancellation_token(stop.child_token());
    let front = Arc::new(Front {
        mcp: StreamableHttpService::new(factory, sessions.clone(), config),
        sessions,
        token: token.secret.clone(),
        hosts,
        origins,
        max_sessions: opts.max_sessions,
        session_admission: tokio::sync::Mutex::new(()),
    });
    let connections = Arc::new(tokio::sync::Semaphore::new(opts.max_connections));
    let scheme = if tls.is_some() { "https" } else { "http" };
    eprintln!("liveprobe: serving MCP on {scheme}://{bound}{MCP_PATH}");
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, keep serving.
                    tracing::warn!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let permit = connections.clone().try_acquire_owned().ok();
        let front = front.clone();
        let max_connections = opts.max_connections;
        let stop = stop.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let result = match tls {
                None => serve_connection(stream, permit, front, max_connections, stop).await,
                Some(tls) => {
                    // The handshake is bounded like the headers.
                    match tokio::time::timeout(HEADER_READ_TIMEOUT, tls.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            serve_connection(stream, permit, front, max_connections, stop).await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, "TLS handshake: {e}");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, "HTTP connection: {e}");
            }
        });
    }
}

/// Serves one connection (plain or TLS): through the front when it got a
/// slot (`permit`), else with one 503 that says why.
async fn serve_connection<IO>(
    stream: IO,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    front: Arc<Front>,
    max_connections: usize,
    stop: CancellationToken,
) -> Result<(), hyper::Error>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(stream);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    match permit {
        Some(_permit) => {
            let service = hyper::service::service_fn(move |request| {
                let front = front.clone();
                async move { Ok::<_, Infallible>(front.serve(request).await) }
            });
            let connection = builder.serve_connection(io, service);
            tokio::pin!(connection);
            tokio::select! {
                r = connection.as_mut() => r,
                _ = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            }
        }
        None => {
            // Over the cap: answer once, close, keep the others going.
            builder.keep_alive(false);
            let service = hyper::service::service_fn(move |_request| async move {
                let mut refused = refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    -32000,
                    format!(
                        "{max_connections} connections are open, the most this server allows (--max-connections): \
                         close idle ones or try again later"
                    ),
                    None,
                );
                refused
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                Ok::<_, Infallible>(refused)
            });
            builder.serve_connection(io, service).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_addresses_need_allow_remote_and_a_long_token() {
        let local: SocketAddr = "127.0.0.1:7000".parse().unwrap_or_else(|_| unreachable!());
        let remote: SocketAddr = "0.0.0.0:7000".parse().unwrap_or_else(|_| unreachable!());
        assert!(check_exposure(local, false, "short").is_ok());
        assert!(check_exposure(local, false, "  ").is_err());
        let refused = check_exposure(remote, false, &"x".repeat(40));
        assert!(refused.is_err_and(|e| e.to_string().contains("--allow-remote")));
        assert!(check_exposure(remote, true, &"x".repeat(31)).is_err());
        assert!(check_exposure(remote, true, &"x".repeat(32)).is_ok());
    }

    #[test]
    fn hosts_and_origins_match_the_bound_address() {
        let addr: SocketAddr = "127.0.0.1:7000".parse().unwrap_or_else(|_| unreachable!());
        let hosts = accepted_hosts(addr, &["proxy.example".into()]).unwrap_or_default();
        let ok = |h: &str| Authority::parse(h).is_some_and(|h| hosts.iter().any(|a| a.accepts(&h)));
        assert!(ok("127.0.0.1:7000"));
        assert!(ok("localhost:7000"));
        assert!(ok("[::1]:7000"));
        assert!(ok("proxy.example:443"));
        assert!(!ok("127.0.0.1:7001"));
        assert!(!ok("evil.example:7000"));
        let origins =
            accepted_origins(addr, &hosts, &["https://app.example".into()]).unwrap_or_default();
        assert!(origins.contains(&"http://localhost:7000".to_string()));
        assert!(origins.contains(&"https://app.example:443".to_string()));
        assert_eq!(
            normalize_origin("HTTPS://App.Example"),
            Some("https://app.example:443".into())
        );
        assert!(!origins.contains(&"http://evil.example:7000".to_string()));
        assert!(accepted_origins(addr, &hosts, &["not an origin".into()]).is_err());
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abd", b"abc"));
        assert!(!same_secret(b"ab", b"abc"));
        assert!(!same_secret(b"abcd", b"abc"));
        assert!(!same_secret(b"", b"abc"));
    }
}
