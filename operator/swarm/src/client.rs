//! One swarm's Engine API, as the engine uses it: HTTP/1.1 over the engine's unix
//! socket (or TCP), every request to a `/v1.41/` path — API 1.41 is Docker 20.10's,
//! the oldest engine Drover drives, and newer engines answer it too. Specs go out as
//! rendered and come back as the engine wrote them (see `types`): a generated client
//! would put them through its own models, and the one we tried (bollard) dropped
//! `Healthcheck` (its models spell it `HealthCheck`) and has no `PreviousSpec`.

use std::collections::BTreeMap;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use crate::render::MANAGED_BY;
use crate::types::{Named, Node, Service, Task, is_ours};

/// The Engine API version Drover speaks.
pub const API_VERSION: &str = "v1.41";

/// How long one request may take.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How often an update that lost a race with another writer is tried again.
const CONFLICT_RETRIES: usize = 5;

/// Why a request to a swarm failed.
#[derive(Debug, thiserror::Error)]
pub enum SwarmError {
    #[error("swarm {cluster}: cannot reach the Engine API at {endpoint}: {why}")]
    Unreachable {
        cluster: String,
        endpoint: String,
        why: String,
    },
    #[error("swarm {cluster}: the engine at {endpoint} is not a swarm manager ({state})")]
    NotAManager {
        cluster: String,
        endpoint: String,
        state: String,
    },
    #[error("swarm {cluster}: {what}: {why}")]
    Request {
        cluster: String,
        what: String,
        status: u16,
        why: String,
    },
    #[error(
        "swarm {cluster}: {kind} {name} exists and Drover did not create it (no `{}` label): remove or rename it, or rename Drover's",
        MANAGED_BY.0
    )]
    NotOurs {
        cluster: String,
        kind: &'static str,
        name: String,
    },
}

impl SwarmError {
    /// The engine said the object does not exist.
    pub fn not_found(&self) -> bool {
        matches!(self, SwarmError::Request { status: 404, .. })
    }

    /// The object changed since it was read (`update out of sequence`).
    fn out_of_sequence(&self) -> bool {
        matches!(self, SwarmError::Request { why, .. } if why.contains("out of sequence"))
    }
}

/// Where the Engine API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Address {
    Unix(std::path::PathBuf),
    Tcp(String),
}

/// A connection to one swarm's manager (one HTTP connection per request: the engine
/// is local or near, and a pass makes a handful).
#[derive(Debug, Clone)]
pub struct Swarm {
    /// The Cluster's name.
    pub name: String,
    pub endpoint: String,
    address: Address,
}

/// The endpoint a cluster's `endpoint` (or, unset, `$DOCKER_HOST`) names.
pub fn endpoint_of(endpoint: Option<&str>) -> String {
    endpoint
        .map(str::to_owned)
        .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned())
}

/// `?filters=` selecting Drover's objects (and `extra` pairs).
fn filters(pairs: &[(&str, String)]) -> String {
    let mut map: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (k, v) in pairs {
        map.entry(k).or_default().push(v.clone());
    }
    let text = serde_json::to_string(&map).unwrap_or_default();
    format!("filters={}", utf8_percent_encode(&text, NON_ALPHANUMERIC))
}

/// Networks or secrets as the engine lists them: the id under `id`, the name and
/// labels in what `body` picks (the object itself, or its `Spec`).
fn named(list: &Value, id: &str, body: impl Fn(&Value) -> &Value) -> Vec<Named> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    list.as_array()
        .into_iter()
        .flatten()
        .map(|item| Named {
            id: text(&item[id]),
            name: text(&body(item)["Name"]),
            labels: body(item)["Labels"].clone(),
        })
        .collect()
}

fn ours() -> (&'static str, String) {
    ("label", format!("{}={}", MANAGED_BY.0, MANAGED_BY.1))
}

impl Swarm {
    /// A client for `endpoint` (`unix:///path`, `tcp://host:port`); nothing is sent yet.
    pub fn connect(cluster: &str, endpoint: &str) -> Result<Swarm, SwarmError> {
        let address = if let Some(path) = endpoint.strip_prefix("unix://") {
            Address::Unix(path.into())
        } else if let Some(host) = endpoint
            .strip_prefix("tcp://")
            .or_else(|| endpoint.strip_prefix("http://"))
        {
            Address::Tcp(host.trim_end_matches('/').to_owned())
        } else {
            return Err(SwarmError::Unreachable {
                cluster: cluster.to_owned(),
                endpoint: endpoint.to_owned(),
                why: "Drover speaks `unix://` and `tcp://` endpoints".into(),
            });
        };
        Ok(Swarm {
            name: cluster.to_owned(),
            endpoint: endpoint.to_owned(),
            address,
        })
    }

    fn unreachable(&self, why: impl ToString) -> SwarmError {
        SwarmError::Unreachable {
            cluster: self.name.clone(),
            endpoint: self.endpoint.clone(),
            why: why.to_string(),
        }
    }

    /// Sends one request; the response's head (its body still to read).
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Response<Incoming>, SwarmError> {
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let request = Request::builder()
            .method(method)
            .uri(format!("/{API_VERSION}{path}"))
            .header("host", "docker")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|e| self.unreachable(e))?;
        macro_rules! over {
            ($stream:expr) => {{
                let io = TokioIo::new($stream.map_err(|e| self.unreachable(e))?);
                let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
                    .await
                    .map_err(|e| self.unreachable(e))?;
                tokio::spawn(connection);
                sender
                    .send_request(request)
                    .await
                    .map_err(|e| self.unreachable(e))
            }};
        }
        match &self.address {
            Address::Unix(path) => over!(tokio::net::UnixStream::connect(path).await),
            Address::Tcp(host) => over!(tokio::net::TcpStream::connect(host).await),
        }
    }

    /// One request and its JSON answer (`null` for an empty one); `what` names it in
    /// errors.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Value, SwarmError> {
        let exchange = async {
            let response = self.send(method, path, body).await?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| self.unreachable(e))?
                .to_bytes();
            Ok::<_, SwarmError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| {
                self.unreachable(format!("{what}: no answer in {}s", TIMEOUT.as_secs()))
            })??;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        let why = value["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_owned());
        Err(SwarmError::Request {
            cluster: self.name.clone(),
            what: what.to_owned(),
            status: status.as_u16(),
            why,
        })
    }

    fn parse<T: serde::de::DeserializeOwned>(
        &self,
        value: Value,
        what: &str,
    ) -> Result<T, SwarmError> {
        serde_json::from_value(value).map_err(|e| SwarmError::Request {
            cluster: self.name.clone(),
            what: what.to_owned(),
            status: StatusCode::OK.as_u16(),
            why: format!("unexpected answer: {e}"),
        })
    }

    /// Checks that the endpoint answers and is a manager of an active swarm.
    pub async fn ready(&self) -> Result<(), SwarmError> {
        let info = self
            .call(Method::GET, "/info", None, "reading the engine's info")
            .await?;
        let swarm = &info["Swarm"];
        let state = swarm["LocalNodeState"].as_str().unwrap_or_default();
        if state == "active" && swarm["ControlAvailable"] == true {
            return Ok(());
        }
        Err(SwarmError::NotAManager {
            cluster: self.name.clone(),
            endpoint: self.endpoint.clone(),
            state: if state == "active" {
                "a worker: point `endpoint` at a manager".to_owned()
            } else {
                format!("swarm state `{state}`: run `docker swarm init`")
            },
        })
    }

    /// Every service Drover made (by its label), with its tasks' counts.
    pub async fn services(&self) -> Result<Vec<Service>, SwarmError> {
        let path = format!("/services?status=true&{}", filters(&[ours()]));
        let list = self
            .call(Method::GET, &path, None, "listing services")
            .await?;
        self.parse(list, "listing services")
    }

    /// The service named `name`, whoever made it.
    pub async fn service(&self, name: &str) -> Result<Option<Service>, SwarmError> {
        let what = format!("reading service {name}");
        let path = format!(
            "/services?status=true&{}",
            filters(&[("name", name.to_owned())])
        );
        let list: Vec<Service> =
            self.parse(self.call(Method::GET, &path, None, &what).await?, &what)?;
        // The name filter matches prefixes.
        Ok(list.into_iter().find(|s| s.name() == name))
    }

    pub async fn create_service(&self, spec: &Value) -> Result<(), SwarmError> {
        let what = format!(
            "creating service {}",
            spec["Name"].as_str().unwrap_or_default()
        );
        self.call(Method::POST, "/services/create", Some(spec), &what)
            .await?;
        Ok(())
    }

    /// Writes service `name` as `change` makes its spec from the live one, at the
    /// version read with it (`query` added to the request); a write that lost a race
    /// with another writer reads the service again and tries again. `false`: there is
    /// no such service.
    async fn write_service(
        &self,
        name: &str,
        what: &str,
        query: &str,
        change: impl Fn(&Service) -> Value,
    ) -> Result<bool, SwarmError> {
        for attempt in 0.. {
            let Some(live) = self.service(name).await? else {
                return Ok(false);
            };
            let spec = change(&live);
            let path = format!(
                "/services/{}/update?version={}{query}",
                live.id, live.version.index
            );
            match self.call(Method::POST, &path, Some(&spec), what).await {
                Ok(_) => return Ok(true),
                Err(e) if e.out_of_sequence() && attempt < CONFLICT_RETRIES => continue,
                Err(e) => return Err(e),
            }
        }
        unreachable!("the loop returns")
    }

    /// Updates service `name` to `spec` (created if it is gone), or (with `rollback`)
    /// returns it to its previous spec with its rollback settings (`docker service
    /// rollback`; the engine ignores the spec sent then).
    pub async fn update_service(
        &self,
        name: &str,
        spec: &Value,
        rollback: bool,
    ) -> Result<(), SwarmError> {
        let what = format!("updating service {name}");
        let query = if rollback { "&rollback=previous" } else { "" };
        let written = self
            .write_service(name, &what, query, |live| {
                let mut spec = spec.clone();
                // `docker service update --force` counts up; going back down would
                // replace every task again.
                spec["TaskTemplate"]["ForceUpdate"] =
                    live.spec["TaskTemplate"]["ForceUpdate"].clone();
                spec
            })
            .await?;
        if written {
            Ok(())
        } else {
            self.create_service(spec).await
        }
    }

    /// Replaces every task of `name` with the same spec (`docker service update --force`).
    pub async fn force_update(&self, name: &str) -> Result<(), SwarmError> {
        let what = format!("redeploying service {name}");
        let written = self
            .write_service(name, &what, "", |live| {
                let mut spec = live.spec.clone();
                let count = spec["TaskTemplate"]["ForceUpdate"].as_u64().unwrap_or(0);
                spec["TaskTemplate"]["ForceUpdate"] = json!(count + 1);
                spec
            })
            .await?;
        if written {
            return Ok(());
        }
        Err(SwarmError::Request {
            cluster: self.name.clone(),
            what,
            status: 404,
            why: "no such service".into(),
        })
    }

    pub async fn remove_service(&self, id_or_name: &str) -> Result<(), SwarmError> {
        let what = format!("removing service {id_or_name}");
        self.call(
            Method::DELETE,
            &format!("/services/{id_or_name}"),
            None,
            &what,
        )
        .await
        .map(drop)
    }

    /// Every task of the swarm (Drover's services' and others').
    pub async fn tasks(&self) -> Result<Vec<Task>, SwarmError> {
        let list = self
            .call(Method::GET, "/tasks", None, "listing tasks")
            .await?;
        self.parse(list, "listing tasks")
    }

    /// Drover's networks.
    pub async fn networks(&self) -> Result<Vec<Named>, SwarmError> {
        let path = format!("/networks?{}", filters(&[ours()]));
        let list = self
            .call(Method::GET, &path, None, "listing networks")
            .await?;
        Ok(named(&list, "Id", |n| n))
    }

    /// Creates a network unless one of its name exists (Drover's, else refused);
    /// returns its id.
    pub async fn ensure_network(&self, spec: &Value) -> Result<String, SwarmError> {
        let name = spec["Name"].as_str().unwrap_or_default().to_owned();
        let what = format!("creating network {name}");
        let path = format!("/networks?{}", filters(&[("name", name.clone())]));
        let list = self.call(Method::GET, &path, None, &what).await?;
        if let Some(found) = list
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["Name"] == name.as_str())
        {
            if !is_ours(&found["Labels"]) {
                return Err(SwarmError::NotOurs {
                    cluster: self.name.clone(),
                    kind: "network",
                    name,
                });
            }
            return Ok(found["Id"].as_str().unwrap_or_default().to_owned());
        }
        let created = self
            .call(Method::POST, "/networks/create", Some(spec), &what)
            .await?;
        Ok(created["Id"].as_str().unwrap_or_default().to_owned())
    }

    pub async fn remove_network(&self, id: &str) -> Result<(), SwarmError> {
        let what = format!("removing network {id}");
        self.call(Method::DELETE, &format!("/networks/{id}"), None, &what)
            .await
            .map(drop)
    }

    /// Drover's secrets (names and labels: the engine never returns their data).
    pub async fn secrets(&self) -> Result<Vec<Named>, SwarmError> {
        self.secrets_where(&[ours()]).await
    }

    async fn secrets_where(&self, pairs: &[(&str, String)]) -> Result<Vec<Named>, SwarmError> {
        let path = format!("/secrets?{}", filters(pairs));
        let list = self
            .call(Method::GET, &path, None, "listing secrets")
            .await?;
        Ok(named(&list, "ID", |s| &s["Spec"]))
    }

    /// Creates secret `name` with `data` unless it exists; returns its id. Its name
    /// says its content, so one of Drover's that exists holds the same; one Drover did
    /// not create is refused.
    pub async fn ensure_secret(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
        data: &[u8],
    ) -> Result<String, SwarmError> {
        use base64::Engine as _;
        let found = self.secrets_where(&[("name", name.to_owned())]).await?;
        if let Some(secret) = found.into_iter().find(|s| s.name == name) {
            if !is_ours(&secret.labels) {
                return Err(SwarmError::NotOurs {
                    cluster: self.name.clone(),
                    kind: "secret",
                    name: name.to_owned(),
                });
            }
            return Ok(secret.id);
        }
        let spec = json!({
            "Name": name,
            "Labels": labels,
            "Data": base64::engine::general_purpose::STANDARD.encode(data),
        });
        let what = format!("creating secret {name}");
        let created = self
            .call(Method::POST, "/secrets/create", Some(&spec), &what)
            .await?;
        Ok(created["ID"].as_str().unwrap_or_default().to_owned())
    }

    pub async fn remove_secret(&self, id: &str) -> Result<(), SwarmError> {
        let what = format!("removing secret {id}");
        self.call(Method::DELETE, &format!("/secrets/{id}"), None, &what)
            .await
            .map(drop)
    }

    pub async fn nodes(&self) -> Result<Vec<Node>, SwarmError> {
        let list = self
            .call(Method::GET, "/nodes", None, "listing nodes")
            .await?;
        self.parse(list, "listing nodes")
    }

    /// Writes a node's spec at `version` (the one read with it).
    pub async fn update_node(&self, node: &Node, spec: &Value) -> Result<(), SwarmError> {
        let what = format!("updating node {}", node.hostname());
        let path = format!("/nodes/{}/update?version={}", node.id, node.version.index);
        self.call(Method::POST, &path, Some(spec), &what)
            .await
            .map(drop)
    }

    /// Waits for the next event of the engine's services, containers, nodes, secrets
    /// or networks; `Err` when the stream ends (the engine went away).
    pub async fn events(&self, mut each: impl FnMut()) -> Result<(), SwarmError> {
        let types = ["service", "container", "node", "secret", "network"];
        let pairs: Vec<(&str, String)> = types.iter().map(|t| ("type", (*t).to_owned())).collect();
        let path = format!("/events?{}", filters(&pairs));
        let response = self.send(Method::GET, &path, None).await?;
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            frame.map_err(|e| self.unreachable(e))?;
            each();
        }
        Err(self.unreachable("the event stream ended"))
    }
}
