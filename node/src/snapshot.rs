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
use gateway_config::{CompactString, Config, ConfigErrors, PathHandling, Protocol, SourceFile};
use gateway_router::Router;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Everything the data plane needs for one config version.
pub struct CompiledConfig {
    /// The config itself, for the admin API (the request path reads
    /// `routes` and `service_paths` instead). Kept whole until the snapshot
    /// is live, then packed (see [`KeptConfig`]).
    pub kept: KeptConfig,
    /// Per `Config::routes` index: what the proxy reads of the route.
    pub routes: Box<[RouteRuntime]>,
    /// Per `Config::services` index: the service's `path`.
    pub service_paths: Box<[Option<CompactString>]>,
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
    /// The config has no services and no routes.
    empty: bool,
}

/// What the request path reads of a route (16 bytes; a `Route` is 200).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRuntime {
    pub service: Option<u32>,
    pub https_redirect_status_code: u16,
    pub strip_path: bool,
    pub preserve_host: bool,
    pub path_handling: PathHandling,
    /// `protocols` has `http` or `grpc`: plain-text requests are served,
    /// not redirected.
    pub plain_allowed: bool,
}

impl RouteRuntime {
    fn of(r: &gateway_config::Route) -> RouteRuntime {
        RouteRuntime {
            service: r.service.map(|s| s as u32),
            https_redirect_status_code: r.https_redirect_status_code,
            strip_path: r.strip_path,
            preserve_host: r.preserve_host,
            path_handling: r.path_handling,
            plain_allowed: r
                .protocols
                .iter()
                .any(|p| matches!(p, Protocol::Http | Protocol::Grpc)),
        }
    }
}

/// A snapshot's config, for the admin API and `GET /config`.
///
/// The request path never reads it. Once the snapshot is live, [`pack`]
/// replaces the parsed config by its normalized text (`to_declarative`),
/// zstd-compressed: at 10,000 routes the parsed `Config` is about 4 MB of
/// heap and the packed text 40 kB (docs/benchmarks.md, "Session 7").
/// A reader gets the config back through [`gateway_config::parse_normalized`],
/// the same decoder replicated versions go through. Each read of a packed
/// config decodes it; the admin API holds a decoded copy for a while
/// (`admin::RecentConfig`) so that a burst of reads decodes once.
///
/// [`pack`]: KeptConfig::pack
pub struct KeptConfig {
    state: parking_lot::Mutex<Kept>,
}

enum Kept {
    Whole(Arc<Config>),
    /// zstd of the normalized JSON text.
    Packed(Arc<[u8]>),
}

/// A packed config could not be read back (a bug: the text was written by
/// `to_declarative` of a valid config).
#[derive(Debug, thiserror::Error)]
pub enum KeptConfigError {
    #[error("kept configuration could not be decompressed: {0}")]
    Decompress(std::io::Error),
    #[error("kept configuration is not valid JSON: {0}")]
    Json(serde_json::Error),
    #[error("kept configuration no longer parses: {0}")]
    Parse(ConfigErrors),
}

/// How long a snapshot stays live before its config is packed.
const PACK_AFTER: Duration = Duration::from_secs(1);

/// zstd level for kept configs: level 3 packs an 11 MB normalized config
/// in about 50 ms (gateway-raft's `packed`), off the request path.
const KEPT_ZSTD_LEVEL: i32 = 3;

impl KeptConfig {
    fn whole(config: Config) -> KeptConfig {
        KeptConfig {
            state: parking_lot::Mutex::new(Kept::Whole(Arc::new(config))),
        }
    }

    /// Replace the parsed config by its packed normalized text. Blocking
    /// (serializes and compresses): run it off the async workers.
    pub fn pack(&self) {
        let config = match self.current() {
            Kept::Whole(c) => c,
            Kept::Packed(_) => return,
        };
        let started = std::time::Instant::now();
        let packed = serde_json::to_vec(&config.to_declarative())
            .map_err(std::io::Error::other)
            .and_then(|text| zstd::bulk::compress(&text, KEPT_ZSTD_LEVEL));
        match packed {
            Ok(zstd) => {
                tracing::debug!(
                    packed_bytes = zstd.len(),
                    took_ms = started.elapsed().as_secs_f64() * 1000.0,
                    "live configuration packed"
                );
                *self.state.lock() = Kept::Packed(zstd.into());
            }
            // The config stays whole: more memory, nothing lost.
            Err(e) => tracing::warn!(error = %e, "could not pack the live configuration"),
        }
    }

    /// What is kept now (a reference count, not a copy): the work on it
    /// happens outside the lock.
    fn current(&self) -> Kept {
        match &*self.state.lock() {
            Kept::Whole(c) => Kept::Whole(c.clone()),
            Kept::Packed(z) => Kept::Packed(z.clone()),
        }
    }

    /// Whether [`KeptConfig::pack`] has run.
    pub fn is_packed(&self) -> bool {
        matches!(&*self.state.lock(), Kept::Packed(_))
    }

    fn packed_text(zstd: &[u8]) -> Result<Vec<u8>, KeptConfigError> {
        zstd::stream::decode_all(zstd).map_err(KeptConfigError::Decompress)
    }

    /// The config; a packed one is decoded (about as long as applying a
    /// replicated version).
    pub fn config(
        &self,
        plugins: &dyn gateway_config::PluginCatalog,
    ) -> Result<Arc<Config>, KeptConfigError> {
        let zstd = match self.current() {
            Kept::Whole(c) => return Ok(c),
            Kept::Packed(z) => z,
        };
        let text = String::from_utf8(Self::packed_text(&zstd)?).map_err(|e| {
            KeptConfigError::Decompress(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
        })?;
        gateway_config::parse_normalized("kept configuration", &text, plugins)
            .map(Arc::new)
            .map_err(KeptConfigError::Parse)
    }

    /// The config's normalized form (`Config::to_declarative`), read from
    /// the packed text without parsing the config.
    pub fn declarative(&self) -> Result<serde_json::Value, KeptConfigError> {
        match self.current() {
            Kept::Whole(c) => Ok(c.to_declarative()),
            Kept::Packed(zstd) => {
                serde_json::from_slice(&Self::packed_text(&zstd)?).map_err(KeptConfigError::Json)
            }
        }
    }
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
        self.empty
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
    /// A config this node parsed from source and compiled while proposing
    /// it, kept so that applying the replicated version of it neither parses
    /// the normalized text nor compiles again (see
    /// [`LiveConfig::apply_version`]).
    prepared: parking_lot::Mutex<Option<Prepared>>,
}

/// See `LiveConfig::prepared`.
struct Prepared {
    hash: String,
    config: Config,
    parts: CompiledParts,
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
        let empty = compile(empty, hash, &upstreams, &plugins, None)?;
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
        self.apply_compiled(config, hash, None).await
    }

    /// [`LiveConfig::apply_hashed`], with the config's compiled parts when
    /// they are already built.
    async fn apply_compiled(
        &self,
        config: Config,
        hash: String,
        parts: Option<CompiledParts>,
    ) -> Result<Applied, ApplyError> {
        let _guard = self.apply_lock.lock().await;
        if self.current.load().hash == hash {
            return Ok(Applied::Unchanged { hash });
        }
        let compiled = compile(config, hash, &self.upstreams, &self.plugins, parts)?;
        let hash = compiled.hash.clone();
        let compiled = Arc::new(compiled);
        self.current.store(compiled.clone());
        // Off this path: a commit's reply waits for the apply. Running a
        // little later also catches the caller's parse temporaries.
        release_freed_memory_soon();
        // Pack the config once the snapshot has stayed live for a moment: a
        // burst of commits (a region applies one every ~20 ms under load)
        // then packs only its last config, not every one (about 3 ms of CPU
        // per node for a 100 KB config).
        let settled = Arc::downgrade(&compiled);
        drop(compiled);
        tokio::spawn(async move {
            tokio::time::sleep(PACK_AFTER).await;
            // Gone: replaced, and its last request has ended.
            let Some(snapshot) = settled.upgrade() else {
                return;
            };
            tokio::task::spawn_blocking(move || {
                snapshot.kept.pack();
                drop(snapshot);
                release_freed_memory();
            });
        });
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

    /// Compile `config` (just parsed from source by this node, with hash
    /// `hash`) and keep it for a coming [`LiveConfig::apply_version`] of the
    /// same hash; or say why it would fail to apply, so that it is refused
    /// before it is replicated (see [`check_compiles`]). Only the latest
    /// prepared config is kept.
    pub fn prepare(&self, hash: String, config: Config) -> Result<(), ApplyError> {
        let parts = compile_parts(&config, &self.plugins)?;
        *self.prepared.lock() = Some(Prepared {
            hash,
            config,
            parts,
        });
        Ok(())
    }

    /// Drop the prepared config if it has `hash`: its proposal failed, so
    /// no version with it may come (and if it still commits, the
    /// replicated text is parsed instead).
    pub fn forget_prepared(&self, hash: &str) {
        let mut slot = self.prepared.lock();
        if slot.as_ref().is_some_and(|p| p.hash == hash) {
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
                Some(p) if p.hash == hash => Some(p),
                other => {
                    *slot = other;
                    None
                }
            }
        };
        match prepared {
            Some(p) => self.apply_compiled(p.config, p.hash, Some(p.parts)).await,
            None => self.apply_normalized(name, text).await,
        }
    }

    /// Parse, validate, compile and swap.
    pub async fn apply_files(&self, files: &[SourceFile]) -> Result<Applied, ApplyError> {
        let config = self.parse(files)?;
        self.apply(config).await
    }
}

/// Make glibc give freed memory back at a fixed 128 KiB trim threshold.
///
/// By default glibc raises its trim threshold to twice the largest block it
/// ever freed from mmap (up to 64 MB). A config load frees multi-MB blocks,
/// so afterwards the free top of a thread's arena was never given back, and
/// `malloc_trim` does not touch that top in thread arenas: a 10,000-route
/// node kept about 5 MB of freed parse and config memory resident
/// (docs/benchmarks.md, "Session 7"). Setting the threshold also stops the
/// mmap threshold from moving (it stays at glibc's 128 KiB default). Under
/// proxy load this adds no `brk`/`madvise`/`mmap` calls (strace, same page).
/// Call it before the runtime starts; a no-op with mimalloc or off glibc.
pub fn return_freed_memory_promptly() {
    #[cfg(all(target_os = "linux", target_env = "gnu", not(feature = "mimalloc")))]
    // SAFETY: `mallopt` only sets a parameter of glibc's allocator.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 * 1024);
    }
}

/// [`release_freed_memory`] on a blocking thread (it walks every arena).
pub(crate) fn release_freed_memory_soon() {
    tokio::task::spawn_blocking(release_freed_memory);
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

/// Check that `config` (already validated by `gateway_config::parse`) also
/// compiles: its route table, plugin chains, upstream TLS clients and header
/// values, the steps of applying it that can still fail. `gateway
/// validate` and `gatewayctl apply` run it, and a region's leader compiles
/// a config before proposing it ([`LiveConfig::prepare`]), so a config they
/// accept also applies on every node. Pure: nothing is started.
pub fn check_compiles(config: &Config, plugins: &PluginRegistry) -> Result<(), ApplyError> {
    compile_parts(config, plugins).map(drop)
}

/// What compiling a config builds that can fail.
struct CompiledParts {
    router: Router,
    router_routes: Vec<gateway_config::RouteIdx>,
    chains: PluginChains,
    services: Vec<Arc<ServiceRuntime>>,
}

/// Compile `config` into a snapshot; `parts`: its compiled parts, when
/// [`LiveConfig::prepare`] built them already.
fn compile(
    config: Config,
    hash: String,
    upstreams: &Arc<UpstreamManager>,
    plugins: &PluginRegistry,
    parts: Option<CompiledParts>,
) -> Result<CompiledConfig, ApplyError> {
    let CompiledParts {
        router,
        router_routes,
        chains,
        services,
    } = match parts {
        Some(parts) => parts,
        None => compile_parts(&config, plugins)?,
    };
    let balancers = upstreams.build(&config);
    let routes = config.routes.iter().map(RouteRuntime::of).collect();
    let service_paths = config.services.iter().map(|s| s.path.clone()).collect();
    Ok(CompiledConfig {
        empty: config.services.is_empty() && config.routes.is_empty(),
        kept: KeptConfig::whole(config),
        routes,
        service_paths,
        hash,
        router,
        router_routes,
        balancers,
        plugins: chains,
        services,
        loaded_at: SystemTime::now(),
    })
}

fn compile_parts(config: &Config, plugins: &PluginRegistry) -> Result<CompiledParts, ApplyError> {
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
    let chains = plugins.compile(config).map_err(ApplyError::Compile)?;
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
    Ok(CompiledParts {
        router,
        router_routes,
        chains,
        services,
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
        live.prepare(hash.clone(), config).expect("compiles");
        // The text is not read when the hash matches the prepared config.
        let applied = live.apply_version("v1", &hash, "not json").await.unwrap();
        assert_eq!(applied, Applied::Swapped { hash: hash.clone() });
        assert_eq!(live.current().hash, hash);
        let snap = live.current();
        let config = snap.kept.config(live.plugin_registry()).unwrap();
        assert_eq!(config.services.len(), 1);
    }

    /// A plugin whose config check accepts what its build then refuses:
    /// a config valid by every rule that still cannot be applied.
    struct BuildFails;

    impl crate::plugins::PluginFactory for BuildFails {
        fn name(&self) -> &'static str {
            "build-fails"
        }
        fn priority(&self) -> i32 {
            0
        }
        fn check(
            &self,
            config: &serde_json::Value,
        ) -> Result<serde_json::Value, crate::plugins::ConfigIssues> {
            Ok(config.clone())
        }
        fn build(
            &self,
            _config: &serde_json::Value,
        ) -> Result<Arc<dyn crate::plugins::Plugin>, String> {
            Err("cannot build".into())
        }
    }

    #[tokio::test]
    async fn a_config_that_does_not_compile_is_refused_when_prepared_and_checked() {
        let mut plugins = PluginRegistry::builtin();
        plugins.register(Box::new(BuildFails));
        let live = LiveConfig::new(UpstreamManager::new(), plugins).unwrap();
        let yaml = format!("{ONE_SERVICE}plugins:\n  - name: build-fails\n");
        let config = live.parse(&files(&yaml)).expect("valid by every rule");
        let err = check_compiles(&config, live.plugin_registry()).expect_err("does not compile");
        assert!(
            err.to_string()
                .contains(r#"plugin "build-fails": cannot build"#),
            "{err}"
        );
        // The leader's prepare refuses it, keeps nothing, and serves on.
        let hash = config.hash();
        let before = live.current().hash.clone();
        assert!(live.prepare(hash.clone(), config).is_err());
        assert!(!live.has_prepared());
        assert!(live.apply_version("v1", &hash, "not json").await.is_err());
        assert_eq!(live.current().hash, before);
        // And a config that compiles passes the same check.
        let good = live.parse(&files(ONE_SERVICE)).unwrap();
        check_compiles(&good, live.plugin_registry()).expect("compiles");
    }

    #[tokio::test]
    async fn a_failed_proposal_forgets_only_its_own_prepared_config() {
        let live = LiveConfig::new(UpstreamManager::new(), PluginRegistry::builtin()).unwrap();
        let config = live.parse(&files(ONE_SERVICE)).unwrap();
        let hash = config.hash();
        live.prepare(hash.clone(), config).expect("compiles");
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
        live.prepare(hash.clone(), config).expect("compiles");
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

    const SEVERAL_ENTITIES: &str = r#"_format_version: "3.0"
services:
  - name: a
    url: http://127.0.0.1:9/base
    retries: 2
    routes:
      - name: a
        paths: [/a, '~/r/\d+$']
        hosts: [a.example.com]
        protocols: [https]
        https_redirect_status_code: 308
        preserve_host: true
      - name: a2
        paths: [/a2]
        strip_path: false
        path_handling: v1
  - name: b
    host: backend
    routes:
      - name: b
        paths: [/b]
    plugins:
      - name: correlation-id
        config:
          header_name: X-Trace
upstreams:
  - name: backend
    targets:
      - target: 127.0.0.1:9
        weight: 50
consumers:
  - username: alice
"#;

    /// A live config that has applied `yaml`, the parsed config, and the
    /// snapshot.
    async fn live_with(yaml: &str) -> (Arc<LiveConfig>, Config, Arc<CompiledConfig>) {
        let live = LiveConfig::new(UpstreamManager::new(), PluginRegistry::builtin()).unwrap();
        let parsed = live.parse(&files(yaml)).unwrap();
        live.apply(parsed.clone()).await.unwrap();
        let snap = live.current();
        (live, parsed, snap)
    }

    #[tokio::test]
    async fn a_packed_config_reads_back_equal() {
        let (live, parsed, snap) = live_with(SEVERAL_ENTITIES).await;
        let whole = snap.kept.config(live.plugin_registry()).unwrap();
        assert_eq!(*whole, parsed);
        snap.kept.pack();
        assert!(snap.kept.is_packed());
        let first = snap.kept.config(live.plugin_registry()).unwrap();
        assert!(!Arc::ptr_eq(&first, &whole), "decoded from the packed text");
        assert_eq!(*first, parsed);
        assert_eq!(first.hash(), snap.hash);
        assert_eq!(snap.kept.declarative().unwrap(), parsed.to_declarative());
        drop((whole, first));
        // Every read decodes again, equal each time.
        let again = snap.kept.config(live.plugin_registry()).unwrap();
        assert_eq!(*again, parsed);
        assert_eq!(snap.kept.declarative().unwrap(), parsed.to_declarative());
    }

    #[tokio::test]
    async fn the_request_path_values_are_the_routes_and_services_own() {
        let (_live, parsed, snap) = live_with(SEVERAL_ENTITIES).await;
        assert_eq!(snap.routes.len(), parsed.routes.len());
        for (rt, r) in snap.routes.iter().zip(&parsed.routes) {
            assert_eq!(rt.service.map(|s| s as usize), r.service);
            assert_eq!(rt.strip_path, r.strip_path);
            assert_eq!(rt.preserve_host, r.preserve_host);
            assert_eq!(rt.path_handling, r.path_handling);
            assert_eq!(rt.https_redirect_status_code, r.https_redirect_status_code);
        }
        let a = &snap.routes[0];
        assert!(!a.plain_allowed, "route a is https only");
        assert!(snap.routes[1].plain_allowed);
        assert_eq!(a.https_redirect_status_code, 308);
        let paths: Vec<Option<&str>> = snap.service_paths.iter().map(|p| p.as_deref()).collect();
        assert_eq!(paths, [Some("/base"), None]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_swapped_in_snapshot_gets_packed_off_the_request_path() {
        let live = LiveConfig::new(UpstreamManager::new(), PluginRegistry::builtin()).unwrap();
        live.apply_files(&files(SEVERAL_ENTITIES)).await.unwrap();
        let snap = live.current();
        assert!(!snap.kept.is_packed(), "packed only after PACK_AFTER");
        // Packing runs on a blocking thread PACK_AFTER after the swap
        // (tokio's clock is paused and jumps ahead when idle): wait for it,
        // bounded in real time.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !snap.kept.is_packed() {
            assert!(
                std::time::Instant::now() < deadline,
                "the live snapshot was not packed within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(!snap.is_empty());
    }
}
