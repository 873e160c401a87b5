//! For benches/proxy.sh: a backend HTTP server and, in front of it, Drover's proxy —
//! both on loopback, in one process. Prints `backend PORT` and `proxy PORT`, then runs
//! until killed.
//!
//!   proxy_server

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
    // The backend answers a small fixed body, like a health or API endpoint.
    let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let backend_addr = backend.local_addr()?;
    tokio::spawn(async move {
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
    });
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
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("backend {}", backend_addr.port());
    println!("proxy {}", listener.local_addr()?.port());
    proxy.serve(listener).await?;
    Ok(())
}
