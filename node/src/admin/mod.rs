//! The admin API (default `127.0.0.1:8001`), in Kong's shapes where Kong has
//! them. Read-only entity listings, status, readiness, and DB-less
//! `GET/POST /config`.
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/` | version, node id, hostname, plugins available |
//! | GET | `/status` | connection counters, `configuration_hash`, memory |
//! | GET | `/status/ready` | 200 once a non-empty config is active, else 503 |
//! | GET | `/services[/{id or name}[/routes or /plugins]]` | entities |
//! | GET | `/routes[/{id or name}[/plugins]]` | entities |
//! | GET | `/upstreams[/{id or name}[/targets or /health]]` | entities, health |
//! | GET | `/consumers[/{id or username}]`, `/plugins[/{id}]` | entities |
//! | GET | `/config` | `{"config": "<the active declarative config>"}` |
//! | POST | `/config` | 201 applied; 400 with all errors (old config kept); 304 with `?check_hash=1` when unchanged |

mod entities;

use crate::proxy::body::{full, ProxyBody};
use crate::proxy::handler::Stats;
use crate::snapshot::{Applied, ApplyError, CompiledConfig, KeptConfigError, LiveConfig};
use bytes::Bytes;
use gateway_config::SourceFile;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::cluster::Cluster;

/// Who this node is, for `GET /`.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub node_id: String,
    pub hostname: String,
}

/// Shared state of the admin API.
pub struct Admin {
    pub live: Arc<LiveConfig>,
    pub stats: Arc<Stats>,
    pub node: NodeInfo,
    /// Largest accepted `POST /config` body.
    pub max_config_bytes: usize,
    /// Set in cluster mode: `POST /config` proposes through Raft and
    /// `/status` reports the node's place in its region.
    pub cluster: Option<Arc<Cluster>>,
    /// The config decoded for the last entity read, held briefly.
    pub recent_config: RecentConfig,
}

/// How long a config decoded for the admin API is held after its last use.
/// A tool that walks every entity (services, routes, plugins, ... one
/// `GET` each) then decodes once, not once per call.
const HOLD_DECODED_CONFIG: std::time::Duration = std::time::Duration::from_secs(10);

/// A config the admin API decoded from a packed snapshot
/// ([`crate::snapshot::KeptConfig`]), held for [`HOLD_DECODED_CONFIG`]
/// after its last use, then dropped and its memory given back.
#[derive(Default)]
pub struct RecentConfig(Arc<parking_lot::Mutex<Option<HeldConfig>>>);

struct HeldConfig {
    hash: String,
    config: Arc<gateway_config::Config>,
    used: tokio::time::Instant,
}

impl RecentConfig {
    /// The held config if it is the one with `hash`.
    fn get(&self, hash: &str) -> Option<Arc<gateway_config::Config>> {
        let mut slot = self.0.lock();
        let held = slot.as_mut().filter(|h| h.hash == hash)?;
        held.used = tokio::time::Instant::now();
        Some(held.config.clone())
    }

    /// Hold `config`; starts the task that drops it once unused for
    /// [`HOLD_DECODED_CONFIG`].
    fn hold(&self, hash: &str, config: Arc<gateway_config::Config>) {
        let mut slot = self.0.lock();
        let start_expiry = slot.is_none();
        *slot = Some(HeldConfig {
            hash: hash.to_string(),
            config,
            used: tokio::time::Instant::now(),
        });
        if !start_expiry {
            return;
        }
        let held = self.0.clone();
        tokio::spawn(async move {
            loop {
                let left = match &*held.lock() {
                    Some(h) => HOLD_DECODED_CONFIG.saturating_sub(h.used.elapsed()),
                    None => return,
                };
                if left.is_zero() {
                    let expired = held.lock().take();
                    drop(expired);
                    crate::snapshot::release_freed_memory_soon();
                    return;
                }
                tokio::time::sleep(left).await;
            }
        });
    }
}

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

impl Admin {
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<ProxyBody> {
        let path = req.uri().path().trim_end_matches('/').to_owned();
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let method = req.method().clone();
        match (method, segments.as_slice()) {
            (Method::GET, []) => self.root(),
            (Method::GET, ["status"]) => self.status(),
            (Method::GET, ["metrics"]) => self.metrics(),
            (Method::GET, ["status", "ready"]) => self.ready(),
            (Method::GET, ["config"]) => self.get_config().await,
            (Method::POST, ["config"]) => self.post_config(req).await,
            (Method::POST, ["hooks", "git"]) => self.git_webhook(req).await,
            (Method::GET, [kind, rest @ ..]) if entities::is_collection(kind) => {
                let snap = self.live.current();
                let Some(config) = self.kept_config(&snap).await else {
                    return unreadable_config();
                };
                let resp = match entities::get(&snap, &config, kind, rest) {
                    Some(text) => json_text_response(StatusCode::OK, text),
                    None => message(StatusCode::NOT_FOUND, "Not found"),
                };
                // A listing of 10,000 routes still frees its entities' JSON
                // values one by one; give the freed memory back.
                crate::snapshot::release_freed_memory_soon();
                resp
            }
            (_, [kind, ..])
                if entities::is_collection(kind) || *kind == "config" || *kind == "status" =>
            {
                message(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
            }
            _ => message(StatusCode::NOT_FOUND, "Not found"),
        }
    }

    fn root(&self) -> Response<ProxyBody> {
        let plugins: Vec<&str> = self.live.plugin_registry().names().collect();
        json_response(
            StatusCode::OK,
            &json!({
                "version": VERSION,
                "tagline": "Welcome to the gateway",
                "node_id": self.node.node_id,
                "hostname": self.node.hostname,
                "plugins": { "available_on_server": plugins },
                "configuration": { "database": "off", "role": "traditional" },
            }),
        )
    }

    fn status(&self) -> Response<ProxyBody> {
        let snap = self.live.current();
        let s = &self.stats;
        json_response(
            StatusCode::OK,
            &json!({
                "configuration_hash": snap.hash,
                "server": {
                    "connections_accepted": s.connections_accepted.load(Ordering::Relaxed),
                    "connections_active": s.connections_active.load(Ordering::Relaxed),
                    "connections_handled": s.connections_handled.load(Ordering::Relaxed),
                    "total_requests": s.total_requests.load(Ordering::Relaxed),
                },
                "memory": { "rss_bytes": rss_bytes() },
                "database": { "reachable": true },
                "cluster": self.cluster.as_ref().map(|c| cluster_status(&c.status())),
            }),
        )
    }

    /// Prometheus text exposition: counters, the served config, and in
    /// cluster mode Raft and Git state (`gateway_git_stale_seconds` > 0
    /// while fetches fail).
    fn metrics(&self) -> Response<ProxyBody> {
        use std::fmt::Write;
        let snap = self.live.current();
        let st = &self.stats;
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        metric(
            "gateway_requests_total",
            "counter",
            "Requests received by the proxy.",
            st.total_requests.load(Ordering::Relaxed).to_string(),
        );
        metric(
            "gateway_connections_active",
            "gauge",
            "Open client connections.",
            st.connections_active.load(Ordering::Relaxed).to_string(),
        );
        metric(
            "gateway_config_ready",
            "gauge",
            "1 when a non-empty config is served.",
            u8::from(!snap.is_empty()).to_string(),
        );
        let _ = writeln!(
            out,
            "# HELP gateway_config_info The served config.\n# TYPE gateway_config_info gauge\ngateway_config_info{{configuration_hash=\"{}\"}} 1",
            snap.hash
        );
        if let Some(c) = &self.cluster {
            let s = c.status();
            let now = crate::cluster::unix_now();
            let mut metric = |name: &str, kind: &str, help: &str, value: String| {
                let _ = writeln!(
                    out,
                    "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
                );
            };
            metric(
                "gateway_raft_term",
                "gauge",
                "Current Raft term.",
                s.term.to_string(),
            );
            metric(
                "gateway_raft_is_leader",
                "gauge",
                "1 on the region leader.",
                u8::from(s.role == "leader").to_string(),
            );
            metric(
                "gateway_raft_last_applied_index",
                "gauge",
                "Last Raft log index applied on this node.",
                s.last_applied_index.unwrap_or(0).to_string(),
            );
            metric(
                "gateway_config_pending_versions",
                "gauge",
                "Versions fetched while pinned.",
                s.pending.to_string(),
            );
            metric(
                "gateway_config_pinned",
                "gauge",
                "1 while the region is pinned by a rollback.",
                u8::from(s.mode == "pinned").to_string(),
            );
            if let Some(g) = &s.git {
                metric(
                    "gateway_git_last_fetch_timestamp_seconds",
                    "gauge",
                    "Unix time of this node's last successful fetch (leader only; 0 = never).",
                    g.last_fetch.to_string(),
                );
                metric(
                    "gateway_git_stale_seconds",
                    "gauge",
                    "Seconds since fetches started failing (0 = fresh).",
                    if g.stale_since == 0 {
                        "0".into()
                    } else {
                        (now - g.stale_since).max(1).to_string()
                    },
                );
            }
        }
        let mut resp = Response::new(full(Bytes::from(out)));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        resp
    }

    fn ready(&self) -> Response<ProxyBody> {
        if self.live.current().is_empty() {
            message(
                StatusCode::SERVICE_UNAVAILABLE,
                "no configuration available (empty configuration present)",
            )
        } else {
            message(StatusCode::OK, "ready")
        }
    }

    /// The snapshot's config, decoded off the async workers when it is
    /// packed (tens of ms at 10,000 routes).
    async fn kept_config(&self, snap: &Arc<CompiledConfig>) -> Option<Arc<gateway_config::Config>> {
        if let Some(config) = self.recent_config.get(&snap.hash) {
            return Some(config);
        }
        let (snap2, live) = (snap.clone(), self.live.clone());
        let decoded =
            tokio::task::spawn_blocking(move || snap2.kept.config(live.plugin_registry())).await;
        let config = Self::kept_or_log(decoded)?;
        self.recent_config.hold(&snap.hash, config.clone());
        Some(config)
    }

    /// The snapshot's config in its normalized form (`to_declarative`).
    async fn kept_declarative(&self, snap: &Arc<CompiledConfig>) -> Option<Value> {
        let snap = snap.clone();
        Self::kept_or_log(tokio::task::spawn_blocking(move || snap.kept.declarative()).await)
    }

    /// The value, or `None` after logging why the kept config could not be
    /// read (answer with [`unreadable_config`]).
    fn kept_or_log<T>(r: Result<Result<T, KeptConfigError>, tokio::task::JoinError>) -> Option<T> {
        let err = match r {
            Ok(Ok(v)) => return Some(v),
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        tracing::error!(error = %err, "reading the active configuration failed");
        None
    }

    async fn get_config(&self) -> Response<ProxyBody> {
        let snap = self.live.current();
        let Some(declarative) = self.kept_declarative(&snap).await else {
            return unreadable_config();
        };
        let text = serde_json::to_string_pretty(&declarative).unwrap_or_default();
        drop(declarative);
        let resp = json_response(
            StatusCode::OK,
            &json!({ "config": text, "configuration_hash": snap.hash }),
        );
        crate::snapshot::release_freed_memory_soon();
        resp
    }

    async fn post_config(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        let check_hash = req.uri().query().is_some_and(|q| {
            q.split('&')
                .any(|kv| kv == "check_hash=1" || kv == "check_hash=true")
        });
        let text = match read_config_body(req, self.max_config_bytes).await {
            Ok(t) => t,
            Err((status, msg)) => return message(status, &msg),
        };
        let files = [SourceFile {
            name: "config".into(),
            text,
        }];
        let config = match self.live.parse(&files) {
            Ok(c) => c,
            Err(errors) => return invalid_config(&errors),
        };
        if let Some(cluster) = &self.cluster {
            return self.propose(cluster, config, &files, check_hash).await;
        }
        // `apply` hashes once and reports an unchanged config itself.
        match self.live.apply(config).await {
            Ok(Applied::Unchanged { .. }) if check_hash => {
                let mut resp = Response::new(full(Bytes::new()));
                *resp.status_mut() = StatusCode::NOT_MODIFIED;
                resp
            }
            Ok(Applied::Swapped { hash } | Applied::Unchanged { hash }) => {
                let snap = self.live.current();
                let Some(mut body) = self.kept_declarative(&snap).await else {
                    return unreadable_config();
                };
                if let Value::Object(m) = &mut body {
                    m.insert("configuration_hash".into(), Value::String(hash));
                }
                let resp = json_response(StatusCode::CREATED, &body);
                drop(body);
                crate::snapshot::release_freed_memory_soon();
                resp
            }
            Err(ApplyError::Invalid(errors)) => invalid_config(&errors),
            Err(ApplyError::Compile(msg)) => message(StatusCode::BAD_REQUEST, &msg),
        }
    }
}

/// Largest webhook body read (GitHub caps payloads at 25 MB; push events
/// are far smaller, and the body is only needed for the signature).
const MAX_WEBHOOK_BYTES: usize = 4 * 1024 * 1024;

impl Admin {
    /// `POST /hooks/git`: a GitHub or GitLab push webhook. Verified against
    /// the webhook secret; then the leader fetches at once.
    async fn git_webhook(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        let Some((cluster, git)) = self
            .cluster
            .as_ref()
            .and_then(|c| c.git.as_ref().map(|g| (c, g)))
        else {
            return message(
                StatusCode::NOT_FOUND,
                "GitOps is not configured on this node (--git-url)",
            );
        };
        let Some(secret) = git.opts.webhook_secret.clone() else {
            return message(
                StatusCode::FORBIDDEN,
                "no webhook secret is configured (--webhook-secret-file); unsigned webhooks are refused",
            );
        };
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (github, gitlab) = (header("x-hub-signature-256"), header("x-gitlab-token"));
        let body = match Limited::new(req.into_body(), MAX_WEBHOOK_BYTES)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => return message(StatusCode::PAYLOAD_TOO_LARGE, "webhook body too large"),
        };
        let verified = if github.is_some() {
            gateway_gitops::verify_github(&secret, &body, github.as_deref())
        } else {
            gateway_gitops::verify_gitlab(&secret, gitlab.as_deref())
        };
        if !verified {
            tracing::warn!("git webhook refused: bad or missing signature");
            return message(StatusCode::UNAUTHORIZED, "invalid webhook signature");
        }
        match cluster.trigger_sync().await {
            Ok(leader) => json_response(
                StatusCode::ACCEPTED,
                &json!({ "message": "fetch scheduled", "leader_id": leader }),
            ),
            Err(status) => message(StatusCode::SERVICE_UNAVAILABLE, status.message()),
        }
    }

    /// Cluster mode: the config (already validated here) is committed
    /// through Raft; the answer comes once it is committed and applied.
    async fn propose(
        &self,
        cluster: &Cluster,
        config: gateway_config::Config,
        files: &[SourceFile],
        check_hash: bool,
    ) -> Response<ProxyBody> {
        let hash = config.hash();
        if check_hash && hash == self.live.current().hash {
            let mut resp = Response::new(full(Bytes::new()));
            *resp.status_mut() = StatusCode::NOT_MODIFIED;
            return resp;
        }
        match cluster
            .propose_files(files, "admin", "POST /config", false)
            .await
        {
            Ok(reply) => {
                let mut body = config.to_declarative();
                if let Value::Object(m) = &mut body {
                    m.insert("configuration_hash".into(), Value::String(hash));
                    m.insert("version".into(), Value::String(reply.active_version));
                    m.insert("raft_index".into(), json!(reply.index));
                }
                json_response(StatusCode::CREATED, &body)
            }
            Err(status) => {
                let code = match status.code() {
                    tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
                    tonic::Code::ResourceExhausted => StatusCode::PAYLOAD_TOO_LARGE,
                    tonic::Code::FailedPrecondition => StatusCode::CONFLICT,
                    tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => {
                        StatusCode::SERVICE_UNAVAILABLE
                    }
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                };
                message(code, status.message())
            }
        }
    }
}

/// The cluster part of `GET /status`.
fn cluster_status(s: &gateway_proto::control::NodeStatus) -> Value {
    json!({
        "region": s.region,
        "node_id": s.node_id,
        "role": s.role,
        "term": s.term,
        "leader_id": s.leader_id,
        "leader_addr": s.leader_addr,
        "last_log_index": s.last_log_index,
        "last_applied_index": s.last_applied_index,
        "active_version": s.active_version,
        "mode": s.mode,
        "pinned_to": s.pinned_to,
        "local_error": s.local_error,
        "raft_addr": s.raft_addr,
        "active_subject": s.active_subject,
        "ready": s.ready,
        "pending": s.pending,
        "git": s.git.as_ref().map(|g| json!({
            "url": g.url,
            "branch": g.branch,
            "head": g.head,
            "last_fetch": g.last_fetch,
            "stale_since": g.stale_since,
            "last_error": g.last_error,
            "last_commit": g.last_commit,
        })),
        "snapshot_index": s.snapshot_index,
        "purged_index": s.purged_index,
        "members": s.members.iter().map(|m| json!({"id": m.id, "addr": m.addr, "voter": m.voter})).collect::<Vec<_>>(),
    })
}

/// Kong DB-less error shape, plus our located error list.
fn invalid_config(errors: &gateway_config::ConfigErrors) -> Response<ProxyBody> {
    let located: Vec<Value> = errors
        .0
        .iter()
        .map(|e| {
            json!({
                "file": e.file, "line": e.line, "column": e.column,
                "path": e.path, "message": e.message,
            })
        })
        .collect();
    let flattened: Vec<String> = errors.0.iter().map(|e| e.to_string()).collect();
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({
            "code": 14,
            "name": "invalid declarative configuration",
            "message": format!("declarative config is invalid: {}", flattened.join("; ")),
            "flattened_errors": flattened,
            "errors": located,
        }),
    )
}

/// The config text of a `POST /config` body: multipart or urlencoded
/// `config` field (Kong's `curl -F config=@kong.yml`), a JSON object
/// `{"config": ...}`, or the declarative config itself (YAML or JSON).
async fn read_config_body(
    req: Request<Incoming>,
    limit: usize,
) -> Result<String, (StatusCode, String)> {
    // The multipart boundary is case-sensitive: keep the original text.
    let content_type_raw = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let content_type = content_type_raw.to_ascii_lowercase();
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("configuration exceeds {limit} bytes"),
        )
    };
    if content_type.starts_with("multipart/form-data") {
        let boundary = multer::parse_boundary(&content_type_raw)
            .map_err(|e| (StatusCode::BAD_REQUEST, format!("multipart body: {e}")))?;
        let stream = Limited::new(req.into_body(), limit).into_data_stream();
        let mut mp = multer::Multipart::new(stream, boundary);
        while let Some(field) = mp
            .next_field()
            .await
            .map_err(|e| (StatusCode::BAD_REQUEST, format!("multipart body: {e}")))?
        {
            if field.name() == Some("config") {
                return field.text().await.map_err(|e| {
                    (
                        StatusCode::BAD_REQUEST,
                        format!("multipart field config: {e}"),
                    )
                });
            }
        }
        return Err((
            StatusCode::BAD_REQUEST,
            "multipart body has no `config` field".into(),
        ));
    }
    let bytes = Limited::new(req.into_body(), limit)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                too_large()
            } else {
                (StatusCode::BAD_REQUEST, format!("reading body: {e}"))
            }
        })?
        .to_bytes();
    let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
        (
            StatusCode::BAD_REQUEST,
            "configuration is not valid UTF-8".to_owned(),
        )
    })?;
    if content_type.starts_with("application/x-www-form-urlencoded") {
        return form_urlencoded_config(&text).ok_or_else(|| {
            (
                StatusCode::BAD_REQUEST,
                "form body has no `config` field".into(),
            )
        });
    }
    if content_type.starts_with("application/json") {
        if let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(&text) {
            if obj.len() == 1 {
                match obj.get("config") {
                    Some(Value::String(s)) => return Ok(s.clone()),
                    Some(v @ Value::Object(_)) => return Ok(v.to_string()),
                    _ => {}
                }
            }
        }
    }
    Ok(text)
}

fn form_urlencoded_config(body: &str) -> Option<String> {
    body.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == "config").then(|| percent_decode_form(v))
    })
}

fn percent_decode_form(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

pub(crate) fn json_response(status: StatusCode, v: &Value) -> Response<ProxyBody> {
    json_text_response(status, v.to_string())
}

/// A response with `text`, which is JSON.
fn json_text_response(status: StatusCode, text: String) -> Response<ProxyBody> {
    let mut resp = Response::new(full(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

/// 500: the live config could not be read back (logged where it failed).
fn unreadable_config() -> Response<ProxyBody> {
    message(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the active configuration could not be read (see the node's log)",
    )
}

fn message(status: StatusCode, msg: &str) -> Response<ProxyBody> {
    json_response(status, &json!({ "message": msg }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_decoded_config_is_held_while_used_and_dropped_after_the_hold() {
        let recent = RecentConfig::default();
        let config = Arc::new(gateway_config::Config::default());
        let weak = Arc::downgrade(&config);
        recent.hold("h1", config);
        assert!(recent.get("h2").is_none(), "another snapshot's config");
        // Used again before the hold ends: held on, counted from the use.
        tokio::time::sleep(HOLD_DECODED_CONFIG - std::time::Duration::from_secs(1)).await;
        let again = recent.get("h1").expect("held");
        drop(again);
        tokio::time::sleep(HOLD_DECODED_CONFIG - std::time::Duration::from_secs(1)).await;
        assert!(
            weak.upgrade().is_some(),
            "still within the hold of its last use"
        );
        // Unused for the whole hold: dropped, and its memory freed.
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        assert!(recent.get("h1").is_none());
        assert!(weak.upgrade().is_none(), "nothing else may keep it");
    }

    #[test]
    fn form_decoding() {
        assert_eq!(
            form_urlencoded_config("a=1&config=x%3A+1%0A").as_deref(),
            Some("x: 1\n")
        );
        assert_eq!(form_urlencoded_config("a=1"), None);
        assert_eq!(percent_decode_form("%zz%4"), "%zz%4");
    }
}
