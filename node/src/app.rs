//! Assembling a node: bind listeners, wire the proxy and the admin API to
//! one `LiveConfig`, and shut everything down gracefully.

use crate::admin::{Admin, NodeInfo};
use crate::cluster::Cluster;
use crate::plugins::PluginRegistry;
use crate::proxy::server::{refuse_bad_framing, serve, serve_proxy, HttpLimits, Shutdown};
use crate::proxy::{Proxy, ProxySettings, Stats};
use crate::snapshot::{ApplyError, LiveConfig};
use crate::upstream::UpstreamManager;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// Everything needed to start a node's data plane and admin API.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub proxy_listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub limits: HttpLimits,
    pub proxy: ProxySettings,
    /// How long in-flight requests may take to finish on shutdown.
    pub drain_timeout: Duration,
    pub node_id: String,
    /// Largest `POST /config` body accepted by the admin API.
    pub max_config_bytes: usize,
    /// Serve plain requests without plugins on the direct HTTP/1.1 path
    /// (`proxy::direct`); false: everything on the general path.
    pub direct_path: bool,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            proxy_listen: SocketAddr::from(([0, 0, 0, 0], 8000)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 8001)),
            limits: HttpLimits::default(),
            proxy: ProxySettings::default(),
            drain_timeout: Duration::from_secs(10),
            node_id: hostname(),
            max_config_bytes: 64 * 1024 * 1024,
            direct_path: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        addr: SocketAddr,
        what: &'static str,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] ApplyError),
}

/// A running node. Dropping it does not stop it: call `shutdown` + `wait`.
pub struct Node {
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub live: Arc<LiveConfig>,
    pub stats: Arc<Stats>,
    shutdown: Shutdown,
    tasks: JoinSet<()>,
}

impl Node {
    /// Bind the listeners and start serving `live` (already holding the
    /// config to serve, so the first request sees it).
    pub async fn start(opts: NodeOptions, live: Arc<LiveConfig>) -> Result<Node, StartError> {
        Self::start_with_cluster(opts, live, None).await
    }

    /// `start`, with the admin API wired to a cluster member (cluster mode).
    pub async fn start_with_cluster(
        opts: NodeOptions,
        live: Arc<LiveConfig>,
        cluster: Option<Arc<Cluster>>,
    ) -> Result<Node, StartError> {
        let bind = |addr: SocketAddr, what: &'static str| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { addr, what, source })
        };
        let proxy_listener = bind(opts.proxy_listen, "proxy").await?;
        let admin_listener = bind(opts.admin_listen, "admin API").await?;
        let proxy_addr = proxy_listener
            .local_addr()
            .map_err(|source| StartError::Bind {
                addr: opts.proxy_listen,
                what: "proxy",
                source,
            })?;
        let admin_addr = admin_listener
            .local_addr()
            .map_err(|source| StartError::Bind {
                addr: opts.admin_listen,
                what: "admin API",
                source,
            })?;
        let stats = Arc::new(Stats::default());
        let shutdown = Shutdown::default();
        let mut tasks = JoinSet::new();

        let proxy = Proxy::new(live.clone(), opts.proxy.clone(), stats.clone());
        tasks.spawn(serve_proxy(
            proxy_listener,
            opts.limits.clone(),
            shutdown.clone(),
            opts.drain_timeout,
            proxy,
            opts.direct_path,
        ));
        let admin = Arc::new(Admin {
            live: live.clone(),
            stats: stats.clone(),
            node: NodeInfo {
                node_id: opts.node_id.clone(),
                hostname: hostname(),
            },
            max_config_bytes: opts.max_config_bytes,
            cluster,
            recent_config: Default::default(),
        });
        tasks.spawn(serve(
            admin_listener,
            opts.limits.clone(),
            None,
            shutdown.clone(),
            opts.drain_timeout,
            move |req, conn| {
                let admin = admin.clone();
                refuse_bad_framing(req, conn, move |req| admin.handle(req))
            },
        ));
        tracing::info!(%proxy_addr, %admin_addr, "gateway node listening");
        Ok(Node {
            proxy_addr,
            admin_addr,
            live,
            stats,
            shutdown,
            tasks,
        })
    }

    /// Stop accepting connections; in-flight requests drain.
    pub fn shutdown(&self) {
        self.shutdown.trigger();
    }

    /// Wait until every listener has drained.
    pub async fn wait(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// A `LiveConfig` with this build's upstream manager and plugins.
pub fn new_live_config() -> Result<Arc<LiveConfig>, ApplyError> {
    LiveConfig::new(UpstreamManager::new(), PluginRegistry::builtin())
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}
