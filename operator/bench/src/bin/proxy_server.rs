//! For benches/proxy.sh: a backend HTTP server, or Drover's proxy in front of one —
//! separate processes, so that the proxy under test never shares its threads with the
//! backend (nginx does not either). Prints `backend PORT` or `proxy PORT`, then runs
//! until killed.
//!
//!   proxy_server backend
//!   proxy_server proxy BACKEND_PORT

use std::collections::HashMap;
use std::convert::Infallible;

use drover_model::service::{Balancing, SessionAffinity};
use drover_proxy::{Backend, Proxy, Route, Table};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

#[tokio::main(worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["backend"] => backend().await,
        ["proxy", port] => proxy(port.parse()?).await,
        _ => anyhow::bail!("usage: proxy_server backend | proxy_server proxy BACKEND_PORT"),
    }
}

/// Answers a small fixed body, like a health or API endpoint.
async fn backend() -> anyhow::Result<()> {
    let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("backend {}", backend.local_addr()?.port());
    {
        loop {
            let Ok((stream, _)) = backend.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(|_: Request<hyper::body::Incoming>| async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                            b"hello from the backend\n",
                        ))))
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }
}

async fn proxy(backend_port: u16) -> anyhow::Result<()> {
    let backend_addr = std::net::SocketAddr::from(([127, 0, 0, 1], backend_port));
    let proxy = Proxy::new();
    proxy.update(Table {
        routes: vec![Route {
            host: None,
            path: "/".into(),
            service: "web".into(),
            balancing: Balancing::RoundRobin,
            affinity: SessionAffinity::None,
        }],
        backends: HashMap::from([(
            "web".to_owned(),
            vec![Backend {
                id: "web-0".into(),
                addr: backend_addr,
                ready: true,
            }],
        )]),
        ..Table::default()
    });
    let listeners = Proxy::bind(([127, 0, 0, 1], 0).into(), 2)?;
    println!("proxy {}", listeners[0].local_addr()?.port());
    for thread in proxy.serve_on_threads(listeners)? {
        let _ = thread.join();
    }
    Ok(())
}
