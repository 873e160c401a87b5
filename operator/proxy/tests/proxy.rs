//! The proxy with real HTTP on 127.0.0.1: real backends (small hyper servers that say
//! who they are and what they received) and a real client.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use drover_model::service::{Balancing, SessionAffinity};
use drover_proxy::{Backend, Proxy, Route, Table};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// A backend named `name`: answers `name path x-forwarded-…`; `/slow` takes 600 ms.
async fn backend(name: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: Request<hyper::body::Incoming>| async move {
                        if request.uri().path() == "/slow" {
                            tokio::time::sleep(Duration::from_millis(600)).await;
                        }
                        let header = |n: &str| {
                            request
                                .headers()
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-")
                                .to_owned()
                        };
                        let body = format!(
                            "{name} {} xff={} xfh={} xfp={}",
                            request.uri().path(),
                            header("x-forwarded-for"),
                            header("x-forwarded-host"),
                            header("x-forwarded-proto")
                        );
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn start_proxy(proxy: Arc<Proxy>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(proxy.serve(listener));
    addr
}

struct Reply {
    status: u16,
    body: String,
    set_cookie: Option<String>,
}

async fn get(proxy: SocketAddr, host: &str, path: &str, cookie: Option<&str>) -> Reply {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut request = Request::get(format!("http://{proxy}{path}")).header("host", host);
    if let Some(c) = cookie {
        request = request.header("cookie", c);
    }
    let response = client
        .request(request.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let set_cookie = response
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    Reply {
        status,
        body,
        set_cookie,
    }
}

fn route(
    host: &str,
    path: &str,
    service: &str,
    balancing: Balancing,
    affinity: SessionAffinity,
) -> Route {
    Route {
        host: Some(host.to_owned()),
        path: path.to_owned(),
        service: service.to_owned(),
        balancing,
        affinity,
    }
}

/// The table most tests use: `shop.localhost/` to service `web` on these instances.
fn web(
    balancing: Balancing,
    affinity: SessionAffinity,
    list: &[(&str, SocketAddr, bool)],
) -> Table {
    Table {
        routes: vec![route("shop.localhost", "/", "web", balancing, affinity)],
        backends: HashMap::from([("web".to_owned(), backends(list))]),
        ..Table::default()
    }
}

fn backends(list: &[(&str, SocketAddr, bool)]) -> Vec<Backend> {
    list.iter()
        .map(|(id, addr, ready)| Backend {
            id: (*id).to_owned(),
            addr: *addr,
            ready: *ready,
        })
        .collect()
}

#[tokio::test]
async fn requests_go_only_to_ready_instances_and_spread_round_robin() {
    let (a, b, c) = (backend("a").await, backend("b").await, backend("c").await);
    let proxy = Proxy::new();
    proxy.update(web(
        Balancing::RoundRobin,
        SessionAffinity::None,
        &[("a", a, true), ("b", b, true), ("c", c, false)],
    ));
    let addr = start_proxy(proxy.clone()).await;
    let mut seen = HashMap::new();
    for _ in 0..10 {
        let reply = get(addr, "shop.localhost", "/", None).await;
        assert_eq!(reply.status, 200);
        *seen
            .entry(reply.body.split(' ').next().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    assert_eq!(seen.get("a"), Some(&5));
    assert_eq!(seen.get("b"), Some(&5));
    assert_eq!(
        seen.get("c"),
        None,
        "an instance that is not ready gets nothing"
    );
}

#[tokio::test]
async fn unknown_routes_get_404_and_services_without_ready_instances_503() {
    let a = backend("a").await;
    let proxy = Proxy::new();
    proxy.update(Table {
        routes: vec![
            route(
                "shop.localhost",
                "/",
                "web",
                Balancing::RoundRobin,
                SessionAffinity::None,
            ),
            route(
                "shop.localhost",
                "/api",
                "api",
                Balancing::RoundRobin,
                SessionAffinity::None,
            ),
        ],
        backends: HashMap::from([
            ("web".to_owned(), backends(&[("a", a, true)])),
            ("api".to_owned(), backends(&[("x", a, false)])),
        ]),
        ..Table::default()
    });
    let addr = start_proxy(proxy).await;
    let reply = get(addr, "other.localhost", "/", None).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (404, "no route for other.localhost/\n")
    );
    let reply = get(addr, "shop.localhost:8080", "/api/orders", None).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (503, "no ready instance of service api\n")
    );
    let reply = get(addr, "shop.localhost", "/apix", None).await;
    assert_eq!(reply.status, 200, "/apix is not under /api");
}

#[tokio::test]
async fn forwarded_headers_tell_the_instance_who_asked() {
    let a = backend("a").await;
    let proxy = Proxy::new();
    proxy.update(web(
        Balancing::RoundRobin,
        SessionAffinity::None,
        &[("a", a, true)],
    ));
    let addr = start_proxy(proxy).await;
    let reply = get(addr, "shop.localhost", "/cart", None).await;
    assert_eq!(
        reply.body,
        "a /cart xff=127.0.0.1 xfh=shop.localhost xfp=http"
    );
}

#[tokio::test]
async fn cookie_affinity_keeps_a_client_on_its_instance() {
    let (a, b) = (backend("a").await, backend("b").await);
    let proxy = Proxy::new();
    proxy.update(web(
        Balancing::RoundRobin,
        SessionAffinity::Cookie,
        &[("a", a, true), ("b", b, true)],
    ));
    let addr = start_proxy(proxy).await;
    let first = get(addr, "shop.localhost", "/", None).await;
    let cookie = first.set_cookie.expect("an affinity cookie");
    let pair = cookie.split(';').next().unwrap().to_owned();
    let instance = first.body.split(' ').next().unwrap().to_owned();
    for _ in 0..6 {
        let reply = get(addr, "shop.localhost", "/", Some(&pair)).await;
        assert_eq!(reply.body.split(' ').next().unwrap(), instance);
    }
}

#[tokio::test]
async fn least_connections_avoids_the_busy_instance() {
    let (a, b) = (backend("a").await, backend("b").await);
    let proxy = Proxy::new();
    proxy.update(web(
        Balancing::LeastConnections,
        SessionAffinity::None,
        &[("a", a, true), ("b", b, true)],
    ));
    let addr = start_proxy(proxy).await;
    // Occupy one instance with a slow request, then the fast ones go to the other.
    let slow = tokio::spawn(async move { get(addr, "shop.localhost", "/slow", None).await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    for _ in 0..4 {
        let reply = get(addr, "shop.localhost", "/", None).await;
        assert!(
            !slow.is_finished(),
            "the slow request ended too early for this test to mean anything"
        );
        // The slow one went to `a` (both idle, ties broken by order); the rest avoid it.
        assert_eq!(reply.body.split(' ').next().unwrap(), "b");
    }
    assert_eq!(slow.await.unwrap().body.split(' ').next().unwrap(), "a");
}

#[tokio::test]
async fn reconfiguring_does_not_drop_a_request_in_flight() {
    let (a, b) = (backend("a").await, backend("b").await);
    let proxy = Proxy::new();
    let table = |list: Vec<Backend>| Table {
        routes: vec![route(
            "shop.localhost",
            "/",
            "web",
            Balancing::RoundRobin,
            SessionAffinity::None,
        )],
        backends: HashMap::from([("web".to_owned(), list)]),
        ..Table::default()
    };
    proxy.update(table(backends(&[("a", a, true)])));
    let addr = start_proxy(proxy.clone()).await;
    let in_flight = tokio::spawn(async move { get(addr, "shop.localhost", "/slow", None).await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    // `a` is replaced by `b` while a request to it is still running.
    proxy.update(table(backends(&[("b", b, true)])));
    assert_eq!(
        get(addr, "shop.localhost", "/", None)
            .await
            .body
            .split(' ')
            .next(),
        Some("b")
    );
    let finished = in_flight.await.unwrap();
    assert_eq!(
        (finished.status, finished.body.split(' ').next()),
        (200, Some("a"))
    );
}

#[tokio::test]
async fn an_instance_that_does_not_answer_gives_502() {
    let gone = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = Proxy::new();
    proxy.update(web(
        Balancing::RoundRobin,
        SessionAffinity::None,
        &[("a", gone, true)],
    ));
    let addr = start_proxy(proxy).await;
    let reply = get(addr, "shop.localhost", "/", None).await;
    assert_eq!(reply.status, 502);
    assert!(
        reply
            .body
            .starts_with("instance a of service web did not answer"),
        "{}",
        reply.body
    );
}

/// A backend that answers with the address the connection came from.
async fn peer_backend() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, peer) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |_: Request<hyper::body::Incoming>| async move {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(
                            peer.ip().to_string(),
                        ))))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn connections_to_instances_come_from_the_active_address_pool() {
    let backend = peer_backend().await;
    let proxy = Proxy::new();
    let table = |source: &str| Table {
        source: Some(source.parse().unwrap()),
        ..web(
            Balancing::RoundRobin,
            SessionAffinity::None,
            &[("a", backend, true)],
        )
    };
    proxy.update(table("127.0.30.1"));
    let addr = start_proxy(proxy.clone()).await;
    assert_eq!(
        get(addr, "shop.localhost", "/", None).await.body,
        "127.0.30.1"
    );
    // The backup pool is promoted: new connections use it.
    proxy.update(Table {
        draining_source: Some((
            "127.0.30.1".parse().unwrap(),
            std::time::Instant::now() + Duration::from_secs(5),
        )),
        ..table("127.0.31.1")
    });
    assert_eq!(
        get(addr, "shop.localhost", "/", None).await.body,
        "127.0.31.1"
    );
}
