//! A hyper 1.x HTTP/1 server on tokio's multi-thread runtime, as its
//! examples write one: the connection handling, parsing and scheduling are
//! the registry crates'; this file is only the glue and one small handler.
//! Prints `ready <pid>` and `port <n>`, serves 127.0.0.1 until stdin says
//! `quit` or closes.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;

/// State shared by every request, as servers keep it (axum's `State`,
/// actix's `Data`): behind an `Arc`.
struct AppState {
    name: String,
    requests: AtomicU64,
}

async fn handle_request(
    state: Arc<AppState>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let seen = state.requests.fetch_add(1, Ordering::Relaxed) + 1;
    let path = req.uri().path();
    let method = req.method();
    let (status, body) = match (method, path) {
        (&Method::GET, "/") => (StatusCode::OK, format!("hello from {}\n", state.name)),
        (&Method::GET, p) if p.starts_with("/echo/") => (StatusCode::OK, format!("{}\n", &p[6..])),
        _ => (
            StatusCode::NOT_FOUND,
            format!("no route for {method} {path}\n"),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response
        .headers_mut()
        .insert("x-request-number", seen.into());
    *response.status_mut() = status;
    Ok(response)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let state = Arc::new(AppState {
        name: "liveprobe-real".to_string(),
        requests: AtomicU64::new(0),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("ready {}", std::process::id());
    println!("port {}", listener.local_addr()?.port());
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                let state = state.clone();
                tokio::task::spawn(async move {
                    let service = service_fn(move |req| handle_request(state.clone(), req));
                    let served = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    if let Err(err) = served {
                        eprintln!("connection: {err}");
                    }
                });
            }
            line = stdin.next_line() => match line? {
                Some(l) if l.trim() != "quit" => continue,
                _ => return Ok(()),
            },
        }
    }
}
