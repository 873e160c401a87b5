//! The local engine's HTTP reverse proxy.
//!
//! A [`Table`] says which routes exist and which instances back each service; the
//! proxy matches a request's host (exact, or `*.domain`) and the longest path prefix
//! (whole segments: `/api` matches `/api/x`, not `/apix`), picks a ready instance
//! (round-robin or least-connections, optionally sticky by cookie), and forwards the
//! request over pooled HTTP/1.1 keep-alive connections, adding `X-Forwarded-*`.
//! [`Proxy::update`] swaps the table atomically: requests in flight finish against
//! the instance they started on, new ones see the new table.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use drover_model::service::{Balancing, SessionAffinity};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

type Body = BoxBody<Bytes, hyper::Error>;

/// One instance of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Stable id (used in affinity cookies).
    pub id: String,
    pub addr: SocketAddr,
    /// Passing its readiness probe: only ready instances get traffic.
    pub ready: bool,
}

/// One route to a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Exact host, `*.domain`, or any host when `None`.
    pub host: Option<String>,
    /// Path prefix, starting with `/`.
    pub path: String,
    pub service: String,
    pub balancing: Balancing,
    pub affinity: SessionAffinity,
}

/// Everything the proxy routes by.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    pub routes: Vec<Route>,
    /// Instances by service.
    pub backends: HashMap<String, Vec<Backend>>,
}

/// Does `host` (without port) match the route's host pattern?
fn host_matches(pattern: Option<&str>, host: &str) -> bool {
    match pattern {
        None => true,
        Some(p) => match p.strip_prefix("*.") {
            Some(domain) => {
                host.len() > domain.len() + 1
                    && host.ends_with(domain)
                    && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
            }
            None => p.eq_ignore_ascii_case(host),
        },
    }
}

/// Does `path` start with `prefix` on a segment boundary?
fn path_matches(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty()
        || (path.starts_with(prefix)
            && matches!(
                path.as_bytes().get(prefix.len()),
                None | Some(b'/') | Some(b'?')
            ))
}

impl Table {
    /// The route for a request: host match first (an exact host beats a wildcard, which
    /// beats any host), then the longest path prefix.
    pub fn route(&self, host: &str, path: &str) -> Option<&Route> {
        let specificity = |r: &Route| match &r.host {
            Some(h) if h.starts_with("*.") => 1,
            Some(_) => 2,
            None => 0,
        };
        self.routes
            .iter()
            .filter(|r| host_matches(r.host.as_deref(), host) && path_matches(&r.path, path))
            .max_by_key(|r| (specificity(r), r.path.trim_end_matches('/').len()))
    }
}

/// The proxy: a routing table, balancing state and a connection pool.
pub struct Proxy {
    table: RwLock<Arc<Table>>,
    client: Client<HttpConnector, Incoming>,
    /// Round-robin position per service.
    next: RwLock<HashMap<String, Arc<AtomicUsize>>>,
    /// Requests in flight per instance address (least-connections).
    in_flight: RwLock<HashMap<SocketAddr, Arc<AtomicUsize>>>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field(
                "routes",
                &self.table.read().map(|t| t.routes.len()).unwrap_or(0),
            )
            .finish()
    }
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Headers that belong to one connection and are not forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn cookie_name(service: &str) -> String {
    format!("drover-affinity-{service}")
}

fn affinity_cookie<'a>(request: &'a Request<Incoming>, service: &str) -> Option<&'a str> {
    let name = cookie_name(service);
    request
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

impl Proxy {
    /// A proxy with an empty table (every request gets 404).
    pub fn new() -> Arc<Proxy> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Arc::new(Proxy {
            table: RwLock::new(Arc::new(Table::default())),
            client: Client::builder(TokioExecutor::new()).build(connector),
            next: RwLock::new(HashMap::new()),
            in_flight: RwLock::new(HashMap::new()),
        })
    }

    /// Replaces the table. Requests already forwarded are not affected.
    pub fn update(&self, table: Table) {
        *self.table.write().expect("table lock") = Arc::new(table);
    }

    fn counter<K: std::hash::Hash + Eq + Clone>(
        map: &RwLock<HashMap<K, Arc<AtomicUsize>>>,
        key: &K,
    ) -> Arc<AtomicUsize> {
        if let Some(c) = map.read().expect("counter lock").get(key) {
            return c.clone();
        }
        map.write()
            .expect("counter lock")
            .entry(key.clone())
            .or_default()
            .clone()
    }

    /// Picks the instance for a request, and whether to set an affinity cookie.
    fn pick<'t>(
        &self,
        route: &Route,
        ready: &[&'t Backend],
        request: &Request<Incoming>,
    ) -> (&'t Backend, bool) {
        if route.affinity == SessionAffinity::Cookie
            && let Some(id) = affinity_cookie(request, &route.service)
            && let Some(b) = ready.iter().find(|b| b.id == id)
        {
            return (b, false);
        }
        let chosen = match route.balancing {
            Balancing::RoundRobin => {
                let n = Self::counter(&self.next, &route.service).fetch_add(1, Ordering::Relaxed);
                ready[n % ready.len()]
            }
            Balancing::LeastConnections => *ready
                .iter()
                .min_by_key(|b| Self::counter(&self.in_flight, &b.addr).load(Ordering::Relaxed))
                .expect("at least one ready instance"),
        };
        (chosen, route.affinity == SessionAffinity::Cookie)
    }

    /// Handles one request.
    pub async fn handle(
        &self,
        mut request: Request<Incoming>,
        client: SocketAddr,
    ) -> Response<Body> {
        let table = self.table.read().expect("table lock").clone();
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| request.uri().host())
            .unwrap_or("")
            .to_owned();
        let host_only = host.rsplit_once(':').map_or(host.as_str(), |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host.as_str()
            }
        });
        let path = request.uri().path().to_owned();
        let Some(route) = table.route(host_only, &path) else {
            return text(
                StatusCode::NOT_FOUND,
                format!("no route for {host_only}{path}\n"),
            );
        };
        let ready: Vec<&Backend> = table
            .backends
            .get(&route.service)
            .map(|b| b.iter().filter(|b| b.ready).collect())
            .unwrap_or_default();
        if ready.is_empty() {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("no ready instance of service {}\n", route.service),
            );
        }
        let (backend, set_cookie) = self.pick(route, &ready, &request);
        let (addr, id, service) = (backend.addr, backend.id.clone(), route.service.clone());

        // Rewrite the request for the instance.
        let path_and_query = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        *request.uri_mut() = format!("http://{addr}{path_and_query}")
            .parse()
            .expect("a valid URI");
        let headers = request.headers_mut();
        for name in HOP_BY_HOP {
            headers.remove(name);
        }
        let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(earlier) => format!("{earlier}, {}", client.ip()),
            None => client.ip().to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&forwarded_for) {
            headers.insert(HeaderName::from_static("x-forwarded-for"), v);
        }
        if let Ok(v) = HeaderValue::from_str(&host) {
            headers.insert(HeaderName::from_static("x-forwarded-host"), v);
        }
        headers.insert(
            HeaderName::from_static("x-forwarded-proto"),
            HeaderValue::from_static("http"),
        );

        let in_flight = Self::counter(&self.in_flight, &addr);
        in_flight.fetch_add(1, Ordering::Relaxed);
        let result = self.client.request(request).await;
        in_flight.fetch_sub(1, Ordering::Relaxed);
        match result {
            Ok(response) => {
                let mut response = response.map(|b| b.boxed());
                for name in HOP_BY_HOP {
                    response.headers_mut().remove(name);
                }
                if set_cookie
                    && let Ok(v) = HeaderValue::from_str(&format!(
                        "{}={id}; Path=/; HttpOnly",
                        cookie_name(&service)
                    ))
                {
                    response.headers_mut().append(header::SET_COOKIE, v);
                }
                response
            }
            Err(error) => text(
                StatusCode::BAD_GATEWAY,
                format!("instance {id} of service {service} did not answer: {error}\n"),
            ),
        }
    }

    /// Serves HTTP/1.1 (with keep-alive) on `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        loop {
            let (stream, client) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let proxy = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let proxy = proxy.clone();
                    async move { Ok::<_, Infallible>(proxy.handle(request, client).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(host: Option<&str>, path: &str, service: &str) -> Route {
        Route {
            host: host.map(str::to_owned),
            path: path.to_owned(),
            service: service.to_owned(),
            balancing: Balancing::RoundRobin,
            affinity: SessionAffinity::None,
        }
    }

    #[test]
    fn the_most_specific_host_and_the_longest_path_prefix_win() {
        let table = Table {
            routes: vec![
                route(None, "/", "fallback"),
                route(Some("shop.localhost"), "/", "web"),
                route(Some("shop.localhost"), "/api", "api"),
                route(Some("*.localhost"), "/", "wild"),
            ],
            backends: HashMap::new(),
        };
        let to = |host: &str, path: &str| table.route(host, path).map(|r| r.service.as_str());
        assert_eq!(to("shop.localhost", "/api/orders"), Some("api"));
        assert_eq!(to("shop.localhost", "/api"), Some("api"));
        assert_eq!(
            to("shop.localhost", "/apix"),
            Some("web"),
            "prefixes match whole segments"
        );
        assert_eq!(to("blog.localhost", "/"), Some("wild"));
        assert_eq!(
            to("localhost", "/"),
            Some("fallback"),
            "*.localhost needs a subdomain"
        );
        assert_eq!(to("example.com", "/x"), Some("fallback"));
        let empty = Table::default();
        assert_eq!(empty.route("a", "/"), None);
    }
}
