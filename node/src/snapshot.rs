//! The data plane's view of the config: one immutable, fully compiled
//! snapshot behind an atomic pointer.
//!
//! **Architecture invariant:** the request path only ever does
//! `LiveConfig::current()` (a lock-free `arc-swap` load) and reads the
//! snapshot it got; it never waits on parsing, Git, Raft or the network.
//! A new config is parsed, validated and compiled off the request path, then
//! swapped in whole; in-flight requests finish on the snapshot they started
//! with. Startup is a reload from empty: `LiveConfig::new` starts with the
//! empty config and the first real config goes through the same `apply`.

use crate::plugins::{PluginChains, PluginRegistry};
use crate::upstream::{Balancers, UpstreamManager};
use arc_swap::ArcSwap;
use gateway_config::{Config, ConfigErrors, SourceFile};
use gateway_router::Router;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Everything the data plane needs for one config version.
pub struct CompiledConfig {
    pub config: Arc<Config>,
    /// `Config::hash()`, Kong's `configuration_hash`.
    pub hash: String,
    pub router: Router,
    /// `router` was built from the routes of enabled services only; entry
    /// `i` is the `Config::routes` index of the router's route `i`.
    pub router_routes: Vec<gateway_config::RouteIdx>,
    pub balancers: Balancers,
    pub plugins: PluginChains,
    /// Per service: precomputed values the proxy needs on every request.
    /// Services with equal values share one entry.
    pub services: Vec<Arc<ServiceRuntime>>,
    pub loaded_at: SystemTime,
}

/// Per-service values derived once per config.
pub struct ServiceRuntime {
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub retries: u32,
    pub wire: crate::proxy::pool::Wire,
    /// `host[:port]` for the `Host` header when not preserving the client's.
    pub host_header: Option<http::HeaderValue>,
    /// TLS settings for https/grpcs services.
    pub tls: Option<Arc<crate::proxy::tls::UpstreamTls>>,
}

/// Identity of a [`ServiceRuntime`]'s values, for sharing equal ones. TLS
/// settings compare by pointer: equal settings already share one `Arc`.
#[derive(PartialEq, Eq, Hash)]
struct RuntimeKey {
    timeouts: [Duration; 3],
    retries: u32,
    wire: crate::proxy::pool::Wire,
    host_header: Option<http::HeaderValue>,
    tls: Option<usize>,
}

impl RuntimeKey {
    fn of(rt: &ServiceRuntime) -> Self {
        RuntimeKey {
            timeouts: [rt.connect_timeout, rt.read_timeout, rt.write_timeout],
            retries: rt.retries,
            wire: rt.wire,
            host_header: rt.host_header.clone(),
            tls: rt.tls.as_ref().map(|t| Arc::as_ptr(t) as usize),
        }
    }
}

impl CompiledConfig {
    /// True when the config serves nothing (the initial state).
    pub fn is_empty(&self) -> bool {
        self.config.services.is_empty() && self.config.routes.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("invalid configuration:\n{0}")]
    Invalid(#[from] ConfigErrors),
    #[error("configuration failed to compile: {0}")]
    Compile(String),
}

/// Result of applying a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The new config is live.
    Swapped { hash: String },
    /// The config equals the live one; nothing changed.
    Unchanged { hash: String },
}

/// The live config of a node and the machinery to replace it.
pub struct LiveConfig {
    current: ArcSwap<CompiledConfig>,
    upstreams: Arc<UpstreamManager>,
    plugins: PluginRegistry,
    /// Serializes writers (reload from SIGHUP, admin, and later Raft) so two
    /// compiles never race to swap. Readers never touch it.
    apply_lock: tokio::sync::Mutex<()>,
    /// A config this node parsed from source while proposing it, kept with
    /// its hash so that applying the replicated version of it does not parse
    /// the normalized text again (see [`LiveConfig::apply_version`]).
    prepared: parking_lot::Mutex<Option<(String, Config)>>,
}

impl LiveConfig {
    /// A node serving the empty config. Must run inside a tokio runtime.
    pub fn new(
        upstreams: Arc<UpstreamManager>,
        plugins: PluginRegistry,
    ) -> Result<Arc<Self>, ApplyError> {
        let empty = Config {
            format_version: "3.0".into(),
            ..Config::default()
        };
        let hash = empty.hash();
        let empty = compile(empty, hash, &upstreams, &plugins)?;
        Ok(Arc::new(LiveConfig {
            current: ArcSwap::from_pointee(empty),
            upstreams,
            plugins,
            apply_lock: tokio::sync::Mutex::new(()),
            prepared: parking_lot::Mutex::new(None),
        }))
    }

    /// The snapshot to serve one request with. Lock-free.
    #[inline]
    pub fn current(&self) -> Arc<CompiledConfig> {
        self.current.load_full()
    }

    pub fn plugin_registry(&self) -> &PluginRegistry {
        &self.plugins
    }

    /// Parse and validate files with this node's plugin set (no swap).
    pub fn parse(&self, files: &[SourceFile]) -> Result<Config, ConfigErrors> {
        gateway_config::parse(files, &self.plugins)
    }

    /// Compile `config` and swap it in. The one code path for startup,
    /// SIGHUP, `POST /config` and (later) Raft apply.
    pub async fn apply(&self, config: Config) -> Result<Applied, ApplyError> {
        let hash = config.hash();
        self.apply_hashed(config, hash).await
    }

    /// [`LiveConfig::apply`] for a config whose `Config::hash()` is known.
    async fn apply_hashed(&self, config: Config, hash: String) -> Result<Applied, ApplyError> {
        let _guard = self.apply_lock.lock().await;
        if self.current.load().hash == hash {
            return Ok(Applied::Unchanged { hash });
        }
        let compiled = compile(config, hash, &self.upstreams, &self.plugins)?;
        let hash = compiled.hash.clone();
        self.current.store(Arc::new(compiled));
        // Off this path: a commit's reply waits for the apply. Running a
        // little later also catches the caller's parse temporaries.
        tokio::task::spawn_blocking(release_freed_memory);
        tracing::info!(configuration_hash = %hash, "configuration applied");
        Ok(Applied::Swapped { hash })
    }

    /// Parse a normalized config this node or a peer emitted (a replicated
    /// version), validate, compile and swap. See
    /// [`gateway_config::parse_normalized`].
    pub async fn apply_normalized(&self, name: &str, text: &str) -> Result<Applied, ApplyError> {
        let config = gateway_config::parse_normalized(name, text, &self.plugins)?;
        self.apply(config).await
    }

    /// Keep `config` (just parsed from source by this node, with hash
    /// `hash`) for a coming [`LiveConfig::apply_version`] of the same hash.
    /// Only the latest prepared config is kept.
    pub fn prepare(&self, hash: String, config: Config) {
        *self.prepared.lock() = Some((hash, config));
    }

    /// Drop the prepared config if it has `hash`: its proposal failed, so
    /// no version with it may come (and if it still commits, the
    /// replicated text is parsed instead).
    pub fn forget_prepared(&self, hash: &str) {
        let mut slot = self.prepared.lock();
        if slot.as_ref().is_some_and(|(h, _)| h == hash) {
            *slot = None;
        }
    }

    /// Whether a prepared config is held.
    #[cfg(test)]
    fn has_prepared(&self) -> bool {
        self.prepared.lock().is_some()
    }

    /// Apply a replicated version: the config this node prepared when it
    /// has the version's hash (the proposer's case: no second parse), else
    /// `text` through [`LiveConfig::apply_normalized`]. The hash identifies
    /// the config's normalized form, so both give the same config.
    pub async fn apply_version(
        &self,
        name: &str,
        hash: &str,
        text: &str,
    ) -> Result<Applied, ApplyError> {
        let prepared = {
            let mut slot = self.prepared.lock();
            match slot.take() {
                Some((h, config)) if h == hash => Some(config),
                other => {
                    *slot = other;
                    None
                }
            }
        };
        match prepared {
            Some(config) => self.apply_hashed(config, hash.to_string()).await,
            None => self.apply_normalized(name, text).await,
        }
    }

    /// Parse, validate, compile and swap.
    pub async fn apply_files(&self, files: &[SourceFile]) -> Result<Applied, ApplyError> {
        let config = self.parse(files)?;
        self.apply(config).await
    }
}

/// A swap frees the old snapshot (unless a request still holds it) and
/// the parse's temporaries; glibc keeps freed memory in its arenas, which
/// made a 10,000-route node sit at 85 MiB RSS of which 15 MB was live.
/// Give it back to the OS. (mimalloc, when it is the allocator, returns
/// freed pages by itself.)
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu", not(feature = "mimalloc")))]
    // SAFETY: `malloc_trim` has no preconditions; it only walks glibc's
    // own arenas under their locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn compile(
    config: Config,
    hash: String,
    upstreams: &Arc<UpstreamManager>,
    plugins: &PluginRegistry,
) -> Result<CompiledConfig, ApplyError> {
    use crate::proxy::pool::Wire;
    // Routes of disabled services are not served (Kong excludes them).
    let mut router_routes: Vec<gateway_config::RouteIdx> = (0..config.routes.len())
        .filter(|&i| {
            config.routes[i]
                .service
                .is_none_or(|s| config.services[s].enabled)
        })
        .collect();
    router_routes.shrink_to_fit();
    // Usually every route is servable: build from the config's own routes
    // instead of a copy of all of them (the copy raised the load's peak).
    let router = if router_routes.len() == config.routes.len() {
        Router::build(&config.routes)
    } else {
        let servable: Vec<gateway_config::Route> = router_routes
            .iter()
            .map(|&i| config.routes[i].clone())
            .collect();
        Router::build(&servable)
    }
    .map_err(|e| ApplyError::Compile(e.to_string()))?;
    let balancers = upstreams.build(&config);
    let chains = plugins.compile(&config).map_err(ApplyError::Compile)?;
    // Services with equal TLS settings share one client configuration.
    let mut tls_configs: std::collections::HashMap<
        (bool, Vec<usize>, bool),
        Arc<crate::proxy::tls::UpstreamTls>,
    > = std::collections::HashMap::new();
    // Services with equal runtime values share one `ServiceRuntime`: a
    // table of 10,000 services usually has a handful of distinct ones, and
    // one entry is about 100 bytes.
    let mut shared: std::collections::HashMap<RuntimeKey, Arc<ServiceRuntime>> =
        std::collections::HashMap::new();
    let mut services = Vec::with_capacity(config.services.len());
    for (si, s) in config.services.iter().enumerate() {
        let tls = if s.protocol.is_tls() {
            let verify = s.tls_verify.unwrap_or(true);
            let key = (verify, s.ca_certificates.clone(), s.protocol.is_grpc());
            let tls = match tls_configs.get(&key) {
                Some(t) => t.clone(),
                None => {
                    let pems: Vec<&str> = s
                        .ca_certificates
                        .iter()
                        .map(|&c| config.ca_certificates[c].cert.as_str())
                        .collect();
                    let t = Arc::new(
                        crate::proxy::tls::upstream_tls(verify, &pems, s.protocol.is_grpc())
                            .map_err(|e| ApplyError::Compile(format!("services[{si}]: {e}")))?,
                    );
                    tls_configs.insert(key, t.clone());
                    t
                }
            };
            Some(tls)
        } else {
            None
        };
        let host_header = s
            .upstream
            .and_then(|u| config.upstreams[u].host_header.clone())
            .map(|h| h.parse::<http::HeaderValue>())
            .transpose()
            .map_err(|e| ApplyError::Compile(format!("service host header: {e}")))?;
        let rt = ServiceRuntime {
            connect_timeout: Duration::from_millis(s.connect_timeout_ms),
            read_timeout: Duration::from_millis(s.read_timeout_ms),
            write_timeout: Duration::from_millis(s.write_timeout_ms),
            retries: s.retries,
            wire: if s.protocol.is_grpc() {
                Wire::Http2
            } else {
                Wire::Http1
            },
            host_header,
            tls,
        };
        let rt = shared
            .entry(RuntimeKey::of(&rt))
            .or_insert_with(|| Arc::new(rt))
            .clone();
        services.push(rt);
    }
    Ok(CompiledConfig {
        config: Arc::new(config),
        hash,
        router,
        router_routes,
        balancers,
        plugins: chains,
        services,
        loaded_at: SystemTime::now(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(yaml: &str) -> Vec<SourceFile> {
        vec![SourceFile {
            name: "kong.yml".into(),
            text: yaml.into(),
        }]
    }

    const ONE_SERVICE: &str = "_format_version: \"3.0\"\nservices:\n  - name: a\n    url: http://127.0.0.1:9\n    routes:\n      - name: a\n        paths: [/a]\n";

    #[tokio::test]
    async fn services_with_equal_runtime_values_share_one_entry() {
        let live = LiveConfig::new(UpstreamManager::new(), PluginRegistry::builtin()).unwrap();
        let yaml = "_format_version: \"3.0\"\nservices:\n  - name: a\n    url: http://127.0.0.1:9\n  - name: b\n    url: http://127.0.0.2:9\n  - name: c\n    url: http://127.0.0.1:9\n    read_timeout: 5\n  - name: d\n    url: http://127.0.0.1:9\n    retries: 1\n  - name: e\n    url: http://127.0.0.1:9\n";
        live.apply_files(&files(yaml)).await.unwrap();
        let snap = live.current();
        let s = &snap.services;
        assert_eq!(s.len(), 5);
        assert!(Arc::ptr_eq(&s[0], &s[1]), "a and b differ only in host");
        assert!(Arc::ptr_eq(&s[0], &s[4]));
        assert!(!Arc::ptr_eq(&s[0], &s[2]));
        assert!(!Arc::ptr_eq(&s[0], &s[3]));
        assert_eq!(s[2].read_timeout, Duration::from_millis(5));
        assert_eq!(s[0].read_timeout, Duration::from_millis(60_000));
        assert_eq!((s[3].retries, s[0].retries), (1, 5));
    }

    #[tokio::test]
    async fn a_prepared_config_is_applied_without_parsing_the_replicated_text() {
        let live = LiveConfig::new(UpstreamManager::new(), PluginRegistry::builtin()).unwrap();
        let config = live.parse(&files(ONE_SERVICE)).unwrap();
        let hash = config.hash();
        live.prepare(hash.clone(), config);
        // The text is not read when the hash matches the prepared config.
        let applied = live.apply_version("v1", &hash, "not json").await.unwrap();
        assert_eq!(applied, Applied::Swapped { hash: hash.clone() });
        assert_eq!(live.current().hash, hash);
        assert_eq!(live.current().config.services.len(), 1);
    }

    #[tokio::test]
    async fn a_failed_proposal_forgets_only_its_own_prepared_config() {
        let live = LiveConfig::new(UpstreamManager::new(), PluginRegistry::builtin()).unwrap();
        let config = live.parse(&files(ONE_SERVICE)).unwrap();
        let hash = config.hash();
        live.prepare(hash.clone(), config);
        live.forget_prepared("another-proposal");
        assert!(live.has_prepared());
        live.forget_prepared(&hash);
        assert!(!live.has_prepared());
        // Should the entry commit after all, the text path applies it.
        let err = live.apply_version("v1", &hash, "not json").await;
        assert!(err.is_err(), "no prepared config may be used: {err:?}");
    }

    #[tokio::test]
    async fn another_hash_parses_the_replicated_text_and_keeps_the_prepared_one() {
        let live = LiveConfig::new(UpstreamManager::new(), PluginRegistry::builtin()).unwrap();
        let config = live.parse(&files(ONE_SERVICE)).unwrap();
        let hash = config.hash();
        let text = serde_json::to_string(&config.to_declarative()).unwrap();
        live.prepare(hash.clone(), config);
        let err = live.apply_version("v0", "other-hash", "not json").await;
        assert!(err.is_err(), "the text was parsed: {err:?}");
        assert!(live.current().is_empty());
        // The prepared config is still there for its own version.
        let applied = live.apply_version("v1", &hash, "not json").await.unwrap();
        assert_eq!(applied, Applied::Swapped { hash: hash.clone() });
        // And the text path gives the same config.
        let live2 = LiveConfig::new(UpstreamManager::new(), PluginRegistry::builtin()).unwrap();
        live2.apply_version("v1", &hash, &text).await.unwrap();
        assert_eq!(live2.current().hash, hash);
    }
}
