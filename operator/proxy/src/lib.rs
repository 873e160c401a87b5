//! The local engine's HTTP reverse proxy.
//!
//! A [`Table`] says which routes exist and which instances back each service; the
//! proxy matches a request's host (exact, or `*.domain`) and the longest path prefix
//! (whole segments: `/api` matches `/api/x`, not `/apix`), picks a ready instance
//! (round-robin or least-connections, optionally sticky by cookie), and forwards the
//! request over HTTP/1.1 keep-alive connections (each client connection keeps its own to the
//! instances it uses, so requests never queue on a shared pool), adding `X-Forwarded-*`.
//! [`Proxy::update`] swaps the table atomically: requests in flight finish against
//! the instance they started on, new ones see the new table.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};

use drover_model::service::{Balancing, SessionAffinity};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

pub mod link;
pub mod process;
pub mod traffic;

use traffic::{RouteTraffic, Traffic};

/// What the proxy answers with: its own short text, or an instance's body (not boxed:
/// one allocation less per request).
enum Body {
    Text(Full<Bytes>),
    Instance(Tracked),
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Body::Text(full) => Pin::new(full)
                .poll_frame(cx)
                .map_err(|never| match never {}),
            Body::Instance(tracked) => Pin::new(tracked).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Text(full) => full.is_end_stream(),
            Body::Instance(tracked) => tracked.is_end_stream(),
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            Body::Text(full) => full.size_hint(),
            Body::Instance(tracked) => tracked.size_hint(),
        }
    }
}

/// One instance of a service.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Backend {
    /// Stable id (used in affinity cookies).
    pub id: String,
    pub addr: SocketAddr,
    /// Passing its readiness probe: only ready instances get traffic.
    pub ready: bool,
}

/// One route to a service.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    /// The address new connections to instances come from: one of the active proxy
    /// address pool's (domain notes §7). `None`: whatever the kernel picks.
    pub source: Option<IpAddr>,
    /// A demoted pool's address whose open connections may still be used until the
    /// instant given (its drain timeout); after it, they are closed and replaced.
    pub draining_source: Option<(IpAddr, std::time::Instant)>,
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
        self.route_index(host, path).map(|i| &self.routes[i])
    }

    fn route_index(&self, host: &str, path: &str) -> Option<usize> {
        let specificity = |r: &Route| match &r.host {
            Some(h) if h.starts_with("*.") => 1,
            Some(_) => 2,
            None => 0,
        };
        self.routes
            .iter()
            .enumerate()
            .filter(|(_, r)| host_matches(r.host.as_deref(), host) && path_matches(&r.path, path))
            .max_by_key(|(_, r)| (specificity(r), r.path.trim_end_matches('/').len()))
            .map(|(i, _)| i)
    }
}

/// The proxy: the current table, compiled for fast lookups, and balancing state that
/// outlives table versions.
pub struct Proxy {
    current: RwLock<Arc<Compiled>>,
    /// Bumped on each update, so connections re-read the table only when it changed.
    version: AtomicU64,
    /// Round-robin positions by service.
    next: Mutex<HashMap<String, Arc<AtomicUsize>>>,
    /// Requests in flight per instance address (least-connections, draining).
    in_flight: Mutex<HashMap<SocketAddr, Arc<AtomicUsize>>>,
    /// Requests forwarded, responses and latencies per service since start (the
    /// autoscaler's request rate, the metrics).
    traffic: Mutex<HashMap<String, Arc<RouteTraffic>>>,
    /// Requests no route matched.
    unrouted: AtomicU64,
    /// Client connections open now.
    connections: AtomicU64,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field(
                "routes",
                &self
                    .current
                    .read()
                    .map(|t| t.table.routes.len())
                    .unwrap_or(0),
            )
            .finish()
    }
}

/// A ready instance, with everything a request to it needs resolved in advance.
struct Target {
    id: String,
    addr: SocketAddr,
    in_flight: Arc<AtomicUsize>,
    /// `Set-Cookie` for affinity, when the route has it.
    cookie: Option<HeaderValue>,
}

struct CompiledRoute {
    ready: Vec<Target>,
    next: Arc<AtomicUsize>,
    traffic: Arc<RouteTraffic>,
}

/// A table with each route's ready instances and counters resolved.
struct Compiled {
    table: Table,
    /// Parallel to `table.routes`.
    routes: Vec<CompiledRoute>,
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Body::Text(Full::new(Bytes::from(body))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Headers that belong to one connection and are not forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers; one pass over the (few) headers when there are none,
/// which is nearly always.
fn remove_hop_by_hop(headers: &mut hyper::HeaderMap) {
    if headers.keys().any(|k| HOP_BY_HOP.contains(k)) {
        for name in &HOP_BY_HOP {
            headers.remove(name);
        }
    }
}

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

/// Decrements an in-flight counter when dropped: when the response body is done, or
/// when the request is abandoned.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a client connection as open until it is dropped.
struct Open(Arc<Proxy>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its instance counted as busy until it is fully sent.
struct Tracked {
    inner: Incoming,
    _in_flight: InFlight,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// A keep-alive connection to an instance, and the source address it came from.
struct Upstream {
    addr: SocketAddr,
    source: Option<IpAddr>,
    sender: SendRequest<Incoming>,
}

/// One client connection: its view of the table and its own keep-alive connections to
/// instances. Requests on an HTTP/1.1 connection come one at a time, so these are
/// never contended, and no request waits on another connection's pool.
struct Connection {
    proxy: Arc<Proxy>,
    table: Mutex<(u64, Arc<Compiled>)>,
    /// Few entries (the instances this client reached): a list beats hashing.
    upstreams: Mutex<Vec<Upstream>>,
    /// `X-Forwarded-For` when the request has none: the client's address.
    client_ip: HeaderValue,
}

impl Connection {
    fn table(&self) -> Arc<Compiled> {
        let version = self.proxy.version.load(Ordering::Acquire);
        let mut mine = self.table.lock().expect("connection lock");
        if mine.0 != version {
            *mine = (
                version,
                self.proxy.current.read().expect("table lock").clone(),
            );
        }
        mine.1.clone()
    }

    /// Sends a request to an instance over this connection's keep-alive connection to
    /// it, opening one (from the table's source address) if there is none, it has
    /// closed, or it comes from an address pool that is no longer in use.
    async fn send(
        &self,
        table: &Table,
        addr: SocketAddr,
        request: Request<Incoming>,
    ) -> Result<Response<Incoming>, String> {
        let usable = |source: Option<IpAddr>| {
            source == table.source
                || table.draining_source.is_some_and(|(old, until)| {
                    source == Some(old) && std::time::Instant::now() < until
                })
        };
        let pooled = {
            let mut upstreams = self.upstreams.lock().expect("connection lock");
            upstreams.retain(|u| usable(u.source));
            upstreams
                .iter()
                .position(|u| u.addr == addr)
                .map(|i| upstreams.swap_remove(i))
        };
        let mut request = request;
        if let Some(mut upstream) = pooled
            && upstream.sender.ready().await.is_ok()
        {
            match upstream.sender.try_send_request(request).await {
                Ok(response) => {
                    self.upstreams
                        .lock()
                        .expect("connection lock")
                        .push(upstream);
                    return Ok(response);
                }
                // Closed before the request went out: try a fresh connection once.
                Err(mut error) => match error.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(error.into_error().to_string()),
                },
            }
        }
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }
        .map_err(|e| e.to_string())?;
        if let Some(source) = table.source {
            socket
                .bind(SocketAddr::new(source, 0))
                .map_err(|e| format!("cannot use proxy address {source}: {e}"))?;
        }
        let stream = socket.connect(addr).await.map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
            .writev(false)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        self.upstreams
            .lock()
            .expect("connection lock")
            .push(Upstream {
                addr,
                source: table.source,
                sender,
            });
        Ok(response)
    }
}

impl Proxy {
    /// A proxy with an empty table (every request gets 404).
    pub fn new() -> Arc<Proxy> {
        Arc::new(Proxy {
            current: RwLock::new(Arc::new(Compiled {
                table: Table::default(),
                routes: Vec::new(),
            })),
            version: AtomicU64::new(0),
            next: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
            traffic: Mutex::new(HashMap::new()),
            unrouted: AtomicU64::new(0),
            connections: AtomicU64::new(0),
        })
    }

    fn counter<K: std::hash::Hash + Eq + Clone, C: Default>(
        map: &Mutex<HashMap<K, Arc<C>>>,
        key: &K,
    ) -> Arc<C> {
        map.lock()
            .expect("counter lock")
            .entry(key.clone())
            .or_default()
            .clone()
    }

    /// Replaces the table. Requests already forwarded are not affected.
    pub fn update(&self, table: Table) {
        let routes = table
            .routes
            .iter()
            .map(|route| CompiledRoute {
                next: Self::counter(&self.next, &route.service),
                traffic: Self::counter(&self.traffic, &route.service),
                ready: table
                    .backends
                    .get(&route.service)
                    .into_iter()
                    .flatten()
                    .filter(|b| b.ready)
                    .map(|b| Target {
                        id: b.id.clone(),
                        addr: b.addr,
                        in_flight: Self::counter(&self.in_flight, &b.addr),
                        cookie: (route.affinity == SessionAffinity::Cookie)
                            .then(|| {
                                HeaderValue::from_str(&format!(
                                    "{}={}; Path=/; HttpOnly",
                                    cookie_name(&route.service),
                                    b.id
                                ))
                                .ok()
                            })
                            .flatten(),
                    })
                    .collect(),
            })
            .collect();
        *self.current.write().expect("table lock") = Arc::new(Compiled { table, routes });
        self.version.fetch_add(1, Ordering::Release);
    }

    /// Requests being served by the instance at `addr` right now (a removed instance
    /// is stopped once this reaches 0, or its drain timeout passes).
    pub fn in_flight(&self, addr: SocketAddr) -> usize {
        self.in_flight
            .lock()
            .expect("counter lock")
            .get(&addr)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Requests in flight per instance address (only those with some).
    pub fn in_flight_all(&self) -> std::collections::BTreeMap<SocketAddr, usize> {
        self.in_flight
            .lock()
            .expect("counter lock")
            .iter()
            .map(|(k, v)| (*k, v.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Requests forwarded to each service (`Route::service`) since the proxy started.
    pub fn served(&self) -> Vec<(String, usize)> {
        self.traffic
            .lock()
            .expect("counter lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.forwarded()))
            .collect()
    }

    /// Responses and latencies per service (`Route::service`) since the proxy started.
    pub fn traffic(&self) -> std::collections::BTreeMap<String, Traffic> {
        self.traffic
            .lock()
            .expect("counter lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.snapshot()))
            .collect()
    }

    /// Requests no route matched since the proxy started.
    pub fn unrouted(&self) -> u64 {
        self.unrouted.load(Ordering::Relaxed)
    }

    /// Client connections open now.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Picks the instance for a request, and whether to set an affinity cookie.
    fn pick<'t>(
        route: &Route,
        compiled: &'t CompiledRoute,
        request: &Request<Incoming>,
    ) -> (&'t Target, bool) {
        let ready = &compiled.ready;
        if route.affinity == SessionAffinity::Cookie
            && let Some(id) = affinity_cookie(request, &route.service)
            && let Some(t) = ready.iter().find(|t| t.id == id)
        {
            return (t, false);
        }
        let chosen = match route.balancing {
            Balancing::RoundRobin => {
                &ready[compiled.next.fetch_add(1, Ordering::Relaxed) % ready.len()]
            }
            Balancing::LeastConnections => ready
                .iter()
                .min_by_key(|t| t.in_flight.load(Ordering::Relaxed))
                .expect("at least one ready instance"),
        };
        (chosen, route.affinity == SessionAffinity::Cookie)
    }

    /// Handles one request of a connection.
    async fn handle(connection: &Connection, mut request: Request<Incoming>) -> Response<Body> {
        let compiled = connection.table();
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| request.uri().host())
            .unwrap_or("");
        let host_only = host.rsplit_once(':').map_or(host, |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        });
        let path = request.uri().path();
        let Some(index) = compiled.table.route_index(host_only, path) else {
            connection.proxy.unrouted.fetch_add(1, Ordering::Relaxed);
            return text(
                StatusCode::NOT_FOUND,
                format!("no route for {host_only}{path}\n"),
            );
        };
        let route = &compiled.table.routes[index];
        let target_route = &compiled.routes[index];
        if target_route.ready.is_empty() {
            target_route
                .traffic
                .record(StatusCode::SERVICE_UNAVAILABLE.as_u16(), None);
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("no ready instance of service {}\n", route.service),
            );
        }
        let (target, set_cookie) = Self::pick(route, target_route, &request);
        let host_value = request.headers().get(header::HOST).cloned();

        // Origin-form for the instance: only the path and query.
        if request.uri().authority().is_some() {
            let origin = request
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .parse()
                .expect("a path is a valid URI");
            *request.uri_mut() = origin;
        }
        let headers = request.headers_mut();
        remove_hop_by_hop(headers);
        headers.reserve(3);
        let forwarded_for = match headers.get("x-forwarded-for").map(|v| v.to_str()) {
            Some(Ok(earlier)) => HeaderValue::from_str(&format!(
                "{earlier}, {}",
                connection.client_ip.to_str().unwrap_or_default()
            ))
            .ok(),
            _ => Some(connection.client_ip.clone()),
        };
        if let Some(v) = forwarded_for {
            headers.insert(HeaderName::from_static("x-forwarded-for"), v);
        }
        if let Some(v) = host_value {
            headers.insert(HeaderName::from_static("x-forwarded-host"), v);
        }
        headers.insert(
            HeaderName::from_static("x-forwarded-proto"),
            HeaderValue::from_static("http"),
        );

        target_route.traffic.forward();
        target.in_flight.fetch_add(1, Ordering::Relaxed);
        let in_flight = InFlight(target.in_flight.clone());
        let sent = std::time::Instant::now();
        match connection.send(&compiled.table, target.addr, request).await {
            Ok(response) => {
                target_route
                    .traffic
                    .record(response.status().as_u16(), Some(sent.elapsed()));
                let mut response = response.map(|inner| {
                    Body::Instance(Tracked {
                        inner,
                        _in_flight: in_flight,
                    })
                });
                remove_hop_by_hop(response.headers_mut());
                if set_cookie && let Some(cookie) = &target.cookie {
                    response
                        .headers_mut()
                        .append(header::SET_COOKIE, cookie.clone());
                }
                response
            }
            Err(error) => {
                target_route
                    .traffic
                    .record(StatusCode::BAD_GATEWAY.as_u16(), None);
                text(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "instance {} of service {} did not answer: {error}\n",
                        target.id, route.service
                    ),
                )
            }
        }
    }

    /// Serves HTTP/1.1 (with keep-alive) on `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        loop {
            let (stream, client) = listener.accept().await?;
            tokio::spawn(self.clone().connection(stream, client));
        }
    }

    /// Binds `addr` (port 0: any free port) once per thread with `SO_REUSEPORT`, so the
    /// kernel spreads new connections evenly over the threads; see
    /// [`Proxy::serve_on_threads`].
    pub fn bind(addr: SocketAddr, threads: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
        use socket2::{Domain, Socket, Type};
        let mut bound = addr;
        let mut listeners = Vec::new();
        for _ in 0..threads.max(1) {
            let socket = Socket::new(Domain::for_address(bound), Type::STREAM, None)?;
            socket.set_reuse_address(true)?;
            socket.set_reuse_port(true)?;
            socket.set_nonblocking(true)?;
            socket.bind(&bound.into())?;
            socket.listen(1024)?;
            let listener: std::net::TcpListener = socket.into();
            bound = listener.local_addr()?;
            listeners.push(listener);
        }
        Ok(listeners)
    }

    /// Serves each listener on a thread of its own running a single-threaded runtime
    /// (nginx's worker model): a connection and the instance connections it uses live
    /// on one thread, so no request pays for a hop between threads.
    pub fn serve_on_threads(
        self: Arc<Self>,
        listeners: Vec<std::net::TcpListener>,
    ) -> std::io::Result<Vec<std::thread::JoinHandle<std::io::Result<()>>>> {
        let mut handles = Vec::new();
        for (i, listener) in listeners.into_iter().enumerate() {
            let proxy = self.clone();
            let handle = std::thread::Builder::new()
                .name(format!("drover-proxy-{i}"))
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    runtime.block_on(async move {
                        listener.set_nonblocking(true)?;
                        let listener = tokio::net::TcpListener::from_std(listener)?;
                        loop {
                            let (stream, client) = listener.accept().await?;
                            tokio::spawn(proxy.clone().connection(stream, client));
                        }
                    })
                })?;
            handles.push(handle);
        }
        Ok(handles)
    }

    /// Serves one client connection.
    async fn connection(self: Arc<Self>, stream: tokio::net::TcpStream, client: SocketAddr) {
        let _ = stream.set_nodelay(true);
        self.connections.fetch_add(1, Ordering::Relaxed);
        let _open = Open(self.clone());
        let connection = Arc::new(Connection {
            table: Mutex::new((
                u64::MAX,
                Arc::new(Compiled {
                    table: Table::default(),
                    routes: Vec::new(),
                }),
            )),
            proxy: self,
            upstreams: Mutex::new(Vec::new()),
            client_ip: HeaderValue::from_str(&client.ip().to_string())
                .expect("an IP address is a valid header value"),
        });
        let service = hyper::service::service_fn(move |request| {
            let connection = connection.clone();
            async move { Ok::<_, Infallible>(Proxy::handle(&connection, request).await) }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .writev(false)
            .serve_connection(TokioIo::new(stream), service)
            .await;
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
            ..Table::default()
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
