//! A hyper 1.x HTTP/1 server on tokio's multi-thread runtime, as its
//! examples write one: the connection handling, parsing and scheduling are
//! the registry crates'; this file is only the glue and one small handler.
//! Prints `ready <pid>` and `port <n>`, serves 127.0.0.1 until stdin says
//! `quit` or closes.

use std::convert::Infallible;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;

async fn handle_request(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path();
    let method = req.method();
    let (status, body) = match (method, path) {
        (&Method::GET, "/") => (StatusCode::OK, "hello\n".to_string()),
        (&Method::GET, p) if p.starts_with("/echo/") => (StatusCode::OK, format!("{}\n", &p[6..])),
        _ => (
            StatusCode::NOT_FOUND,
            format!("no route for {method} {path}\n"),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    Ok(response)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("ready {}", std::process::id());
    println!("port {}", listener.local_addr()?.port());
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                tokio::task::spawn(async move {
                    let served = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service_fn(handle_request))
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
