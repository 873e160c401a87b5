//! Step 4 of a pass: the proxy's listeners, routing tables and address pools.

use drover_model::cluster::PoolRole;
use drover_proxy::{Backend, Route};

use super::*;

impl LocalEngine {
    /// Step 4: listeners and routing tables.
    pub(super) fn route(&self, inner: &mut Inner, live: &Live) -> Result<(), LocalError> {
        let records = inner.state.instances()?;
        for (cluster, spec) in live.local_clusters() {
            let local = spec.local.as_ref().expect("local clusters have nodes");
            let (active, draining) = self.pools(inner, cluster, &local.proxy.address_pools)?;
            let settled = self.reports_settled(inner, spec);
            for (index, listener) in local.proxy.listeners.iter().enumerate() {
                let key = (cluster.clone(), listener.name.clone());
                // Each listener takes one address of the pool, in order.
                let n = index as u32 + 1;
                let dead = inner.proxies.get_mut(&key).is_some_and(|l| !l.link.alive());
                if dead {
                    tracing::warn!(
                        "proxy {cluster}/{} exited: starting it again",
                        listener.name
                    );
                    inner.proxies.remove(&key);
                }
                if !inner.proxies.contains_key(&key) {
                    let listening = self.listen(cluster, listener)?;
                    tracing::info!(
                        "proxy {cluster}/{}: http://{}",
                        listener.name,
                        listening.addr
                    );
                    inner.proxies.insert(key.clone(), listening);
                }
                if !settled {
                    continue;
                }
                let mut table = Table::default();
                for env in live.environments_on(cluster) {
                    for ((e, name), service) in &live.services {
                        if e != env {
                            continue;
                        }
                        for route in &service.routes {
                            if route.listener.as_ref().is_some_and(|l| *l != listener.name) {
                                continue;
                            }
                            let port = route
                                .port
                                .clone()
                                .or_else(|| service.ports.first().map(|p| p.name.clone()))
                                .unwrap_or_else(|| "default".into());
                            let backend_key = format!("{env}/{name}:{port}");
                            table.routes.push(Route {
                                host: route.host.clone(),
                                path: route.path.clone(),
                                service: backend_key.clone(),
                                balancing: route.balancing,
                                affinity: route.session_affinity,
                            });
                            let backends = records
                                .iter()
                                .filter(|r| r.environment == *env && r.service == *name)
                                .flat_map(|r| {
                                    // The instance on its assigned spec and, during a
                                    // start-first update, the one it replaces.
                                    let previous = r
                                        .previous
                                        .as_deref()
                                        .and_then(|p| serde_json::from_str::<Assignment>(p).ok())
                                        .map(|a| a.spec_hash);
                                    let node = inner.nodes.get(&r.node);
                                    // During a start-first update the old instance takes
                                    // the traffic while it is ready: the new one gets it
                                    // only once proven (then the old one goes), so a bad
                                    // release never serves a request.
                                    let old_ready = previous.as_ref().is_some_and(|hash| {
                                        node.and_then(|n| {
                                            n.reports.get(&(r.id.clone(), hash.clone()))
                                        })
                                        .is_some_and(|rep| rep.ready)
                                    });
                                    let current = (!old_ready).then(|| r.spec_hash.clone());
                                    [current, previous]
                                        .into_iter()
                                        .flatten()
                                        .filter_map(|hash| {
                                            let node = node?;
                                            let report =
                                                node.reports.get(&(r.id.clone(), hash.clone()))?;
                                            let port = *report.ports.get(&port)?;
                                            Some(Backend {
                                                id: if hash == r.spec_hash {
                                                    r.id.clone()
                                                } else {
                                                    format!("{}@{hash}", r.id)
                                                },
                                                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                                                ready: report.ready && node.up,
                                            })
                                        })
                                        .collect::<Vec<_>>()
                                })
                                .collect();
                            table.backends.insert(backend_key, backends);
                        }
                    }
                }
                table.source = active.as_ref().and_then(|p| p.address(n));
                table.draining_source = draining
                    .as_ref()
                    .and_then(|(p, until)| Some((p.address(n)?, *until)));
                let listening = inner.proxies.get_mut(&key).expect("inserted above");
                if listening.table != table {
                    match listening.link.update(&table) {
                        Ok(()) => listening.table = table,
                        Err(e) => tracing::error!(
                            "proxy {cluster}/{}: cannot write its table: {e}",
                            listener.name
                        ),
                    }
                }
            }
        }
        Ok(())
    }

    /// Tracks a cluster's proxy address pools (domain notes §7): the active one gives
    /// proxies their addresses; when a backup is promoted, the demoted pool drains —
    /// its open connections live on for its drain timeout — then is ready again.
    /// Returns the active pool and, while one drains, the draining pool and its end.
    #[allow(clippy::type_complexity)]
    pub(super) fn pools(
        &self,
        inner: &mut Inner,
        cluster: &str,
        pools: &[AddressPool],
    ) -> Result<(Option<AddressPool>, Option<(AddressPool, Instant)>), LocalError> {
        let mut draining = None;
        inner
            .pools
            .retain(|(c, name), _| c != cluster || pools.iter().any(|p| p.name == *name));
        for pool in pools {
            let key = (cluster.to_owned(), pool.name.clone());
            let active = pool.role == PoolRole::Active;
            let live = inner.pools.entry(key).or_insert_with(|| PoolLive {
                was_active: active,
                draining_until: None,
                spec: pool.clone(),
            });
            if live.was_active && !active {
                let until = Instant::now() + pool.drain_timeout.to_std();
                live.draining_until = Some(until);
                let text = format!(
                    "address pool {} of cluster {cluster} is no longer active: its connections drain for {}",
                    pool.name, pool.drain_timeout
                );
                inner
                    .state
                    .event("", &format!("cluster/{cluster}"), "PoolDemoted", &text)?;
                tracing::info!("{text}");
            }
            if active {
                live.draining_until = None;
            }
            if let Some(until) = live.draining_until {
                if Instant::now() < until {
                    draining = Some((live.spec.clone(), until));
                } else {
                    live.draining_until = None;
                }
            }
            live.was_active = active;
            live.spec = pool.clone();
        }
        let active = pools.iter().find(|p| p.role == PoolRole::Active).cloned();
        Ok((active, draining))
    }

    /// A listener's proxy process: adopted when one runs from before (a restarted
    /// control plane), else started.
    pub(super) fn listen(
        &self,
        cluster: &str,
        listener: &drover_model::cluster::Listener,
    ) -> Result<Listening, LocalError> {
        let wanted = format!("{}:{}", listener.address, listener.port);
        let listen_error = |source| LocalError::Listen {
            address: wanted.clone(),
            listener: format!("{cluster}/{}", listener.name),
            source,
        };
        let wanted_addr: SocketAddr = wanted.parse().map_err(|_| {
            listen_error(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not an IP address and port",
            ))
        })?;
        let dir = self.config.state.proxy_dir(cluster, &listener.name);
        let (link, addr) = crate::proxies::ProxyLink::open(
            self.config.proxies,
            &self.config.drover,
            &dir,
            wanted_addr,
        )
        .map_err(listen_error)?;
        Ok(Listening {
            link,
            addr,
            table: Table::default(),
        })
    }

    /// Stops every proxy process (when `up` stops).
    pub fn stop_proxies(&self) {
        let mut inner = self.lock();
        for listening in inner.proxies.values_mut() {
            listening.link.stop();
        }
        inner.proxies.clear();
    }

    /// Whether every node of a cluster has reported since this engine started (or
    /// its heartbeat timeout has passed): until then a table would call ready
    /// instances not ready, so the proxy keeps the one it has.
    fn reports_settled(&self, inner: &Inner, spec: &drover_model::ClusterSpec) -> bool {
        let Some(local) = &spec.local else {
            return true;
        };
        let timeout = local.heartbeat_timeout.to_std();
        self.started.elapsed() > timeout
            || local.nodes.iter().all(|n| {
                inner
                    .nodes
                    .get(&n.name)
                    .is_some_and(|l| l.last_seen.is_some())
            })
    }
}
