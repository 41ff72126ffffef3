//! Cluster mode: this node as a member of its region's Raft group.
//!
//! Layout:
//! - `mod.rs` ([`Cluster`]): opens the durable store, serves the config
//!   found on disk at once, starts openraft and the gRPC server (Raft +
//!   control service on `--raft-listen`), bootstraps the group, and turns
//!   proposals into committed entries (forwarding to the leader).
//! - [`control`]: the tonic control service `gatewayctl` and peers call.
//! - [`sink`]: applies the active version to the node's `LiveConfig`.
//! - [`gitsync`]: GitOps on the leader: fetch, validate, propose commits.

#[cfg(feature = "broken-apply-before-commit")]
mod broken;
pub mod control;
pub mod gitsync;
pub mod sink;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gateway_config::SourceFile;
use gateway_proto::control::control_client::ControlClient;
use gateway_proto::control::{self as pb};
use gateway_raft::network::{Dialer, Network, RaftService, VoteGuard, MAX_MESSAGE_BYTES};
use gateway_raft::openraft::error::{ClientWriteError, RaftError};
use gateway_raft::openraft::{BasicNode, ServerState, SnapshotPolicy};
use gateway_raft::packed::MAX_PACKED_BYTES;
use gateway_raft::{
    open_store, Command, ConfigSource, Identity, NodeId, PackedConfig, Raft, SourceKind,
    StateHandle,
};
use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tonic::transport::{Certificate, ClientTlsConfig, Identity as TlsIdentity, ServerTlsConfig};

use crate::certs::ClusterTlsPem;
use crate::snapshot::LiveConfig;

/// Everything a node needs to join its region's Raft group.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub region: String,
    pub node_id: NodeId,
    pub data_dir: PathBuf,
    /// Where the Raft + control gRPC server listens.
    pub raft_listen: SocketAddr,
    /// Every voter of the region at bootstrap, this node included: id → host:port.
    pub peers: BTreeMap<NodeId, String>,
    /// Full configs the region keeps in its history. Replicated state: this
    /// node proposes it while it leads and the region's value differs.
    pub keep_configs: usize,
    /// Take a snapshot (and compact the log) after this many entries.
    pub snapshot_logs: u64,
    pub tls: Option<ClusterTlsPem>,
    pub allow_insecure_cluster: bool,
    /// Largest config (sum of file sizes) a proposal may carry.
    pub max_config_bytes: usize,
    /// Largest packed (compressed) config one entry may carry.
    pub max_entry_bytes: usize,
    pub heartbeat_ms: u64,
    pub election_timeout_ms: (u64, u64),
    /// How long a write waits to be committed before answering 503.
    pub write_timeout: Duration,
    /// GitOps: the region's config comes from this repository.
    pub git: Option<gitsync::GitOptions>,
}

impl ClusterOptions {
    pub fn new(region: &str, node_id: NodeId, data_dir: PathBuf, raft_listen: SocketAddr) -> Self {
        ClusterOptions {
            region: region.into(),
            node_id,
            data_dir,
            raft_listen,
            peers: BTreeMap::new(),
            keep_configs: gateway_raft::state::DEFAULT_KEEP_CONFIGS,
            snapshot_logs: 1000,
            tls: None,
            allow_insecure_cluster: false,
            max_config_bytes: 16 * 1024 * 1024,
            max_entry_bytes: MAX_PACKED_BYTES,
            heartbeat_ms: 100,
            election_timeout_ms: (200, 400),
            write_timeout: Duration::from_secs(30),
            git: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Store(#[from] gateway_raft::OpenError),
    #[error("invalid raft settings: {0}")]
    RaftConfig(String),
    #[error("cannot listen on {addr} (raft/control): {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "refusing to serve Raft and the control service in plaintext on {0}, which is not a loopback address: \
         give --tls-ca/--tls-cert/--tls-key (see `gatewayctl certs`) or --allow-insecure-cluster"
    )]
    Insecure(SocketAddr),
    #[error("--peers must list this node ({0}); it lists {1}")]
    NotInPeers(NodeId, String),
    #[error("cluster TLS: {0}")]
    Tls(String),
    #[error("raft: {0}")]
    Raft(String),
}

/// Why a proposal did not commit.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    #[error("invalid configuration:\n{0}")]
    Invalid(gateway_config::ConfigErrors),
    /// Valid, but it would fail to apply (see `snapshot::check_compiles`).
    #[error("{0}")]
    DoesNotCompile(crate::snapshot::ApplyError),
    #[error("configuration is {size} bytes, over the limit of {limit} bytes (--max-config-bytes)")]
    TooLarge { size: usize, limit: usize },
    #[error(
        "configuration compresses to {packed} bytes, over the {limit}-byte limit of one replicated entry \
         (a follower must store an entry within one heartbeat): raise --max-entry-bytes together with --heartbeat-ms"
    )]
    TooLargeToReplicate { packed: usize, limit: usize },
    #[error(
        "not committed within {0:?}: this node leads but cannot reach a majority of its region \
         (partitioned?), or the region is overloaded. The write may still commit later; \
         check `gatewayctl history` before retrying"
    )]
    NotCommittedInTime(Duration),
    #[error("{0}")]
    Rejected(String),
    #[error(
        "no leader in region {0}: the region has no quorum; every node keeps serving its last applied config"
    )]
    NoLeader(String),
    #[error("forwarding to leader {leader} at {addr}: {detail}")]
    Forward {
        leader: NodeId,
        addr: String,
        detail: String,
    },
    #[error("raft: {0}")]
    Raft(String),
}

impl ProposeError {
    pub fn to_status(&self) -> tonic::Status {
        match self {
            ProposeError::Invalid(_)
            | ProposeError::DoesNotCompile(_)
            | ProposeError::Rejected(_) => tonic::Status::invalid_argument(self.to_string()),
            ProposeError::TooLarge { .. } | ProposeError::TooLargeToReplicate { .. } => {
                tonic::Status::resource_exhausted(self.to_string())
            }
            ProposeError::NoLeader(_)
            | ProposeError::Forward { .. }
            | ProposeError::NotCommittedInTime(_) => tonic::Status::unavailable(self.to_string()),
            ProposeError::Raft(_) => tonic::Status::internal(self.to_string()),
        }
    }
}

/// A running cluster member.
pub struct Cluster {
    pub raft: Raft,
    pub opts: ClusterOptions,
    pub live: Arc<LiveConfig>,
    state: StateHandle,
    dialer: Dialer,
    local_error: Arc<Mutex<String>>,
    pub raft_addr: SocketAddr,
    pub git: Option<Arc<gitsync::GitSync>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Ends the process if the Raft core stops unasked (see `start`).
    raft_watchdog: Mutex<Option<JoinHandle<()>>>,
}

impl Cluster {
    /// Open the store and serve its active config through `live` at once,
    /// before any peer is contacted; then start Raft and the gRPC server.
    pub async fn start(
        opts: ClusterOptions,
        live: Arc<LiveConfig>,
    ) -> Result<Arc<Cluster>, ClusterError> {
        if !opts.peers.is_empty() && !opts.peers.contains_key(&opts.node_id) {
            let listed: Vec<String> = opts.peers.keys().map(|k| k.to_string()).collect();
            return Err(ClusterError::NotInPeers(opts.node_id, listed.join(",")));
        }
        if opts.tls.is_none()
            && !opts.raft_listen.ip().is_loopback()
            && !opts.allow_insecure_cluster
        {
            return Err(ClusterError::Insecure(opts.raft_listen));
        }
        let local_error = Arc::new(Mutex::new(String::new()));
        let sink = Arc::new(sink::LiveSink::new(live.clone(), local_error.clone()));
        let identity = Identity {
            region: opts.region.clone(),
            node_id: opts.node_id,
        };
        let (log_store, sm) = open_store(&opts.data_dir, &identity, sink.clone())?;
        let state = sm.handle();

        // Local-first: serve what is on disk before talking to anyone.
        let on_disk = state.state().read().active().cloned();
        if let Some(active) = on_disk {
            tracing::info!(version = %active.id, index = active.index, "serving the config from the local store");
            sink.activate_now(&active).await;
        }

        let raft_config = openraft_config(&opts)?;
        let (server_tls, client_tls) = match &opts.tls {
            Some(pem) => {
                let ca = Certificate::from_pem(&pem.ca);
                let id = TlsIdentity::from_pem(&pem.cert, &pem.key);
                (
                    Some(
                        ServerTlsConfig::new()
                            .identity(id.clone())
                            .client_ca_root(ca.clone()),
                    ),
                    Some(ClientTlsConfig::new().ca_certificate(ca).identity(id)),
                )
            }
            None => (None, None),
        };
        let dialer = Dialer::new(client_tls);
        let network = Network::new(opts.region.clone(), dialer.clone());
        let raft = Raft::new(opts.node_id, raft_config, network, log_store, sm)
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))?;

        let listener = tokio::net::TcpListener::bind(opts.raft_listen)
            .await
            .map_err(|source| ClusterError::Bind {
                addr: opts.raft_listen,
                source,
            })?;
        let raft_addr = listener.local_addr().map_err(|source| ClusterError::Bind {
            addr: opts.raft_listen,
            source,
        })?;

        let git = opts
            .git
            .clone()
            .map(|g| Arc::new(gitsync::GitSync::new(g, &opts.data_dir)));
        let cluster = Arc::new(Cluster {
            raft: raft.clone(),
            git: git.clone(),
            opts,
            live,
            state,
            dialer,
            local_error,
            raft_addr,
            tasks: Mutex::new(Vec::new()),
            raft_watchdog: Mutex::new(None),
        });
        // openraft runs its core as a task: if it panics, the process
        // would keep serving proxy traffic with frozen Raft metrics, dead
        // to its region (it would even keep reporting itself leader). Exit
        // instead, so the supervisor (the StatefulSet) restarts the node,
        // which serves from its disk at once and rejoins.
        let mut metrics = raft.metrics();
        *cluster.raft_watchdog.lock() = Some(tokio::spawn(async move {
            while metrics.changed().await.is_ok() {}
            tracing::error!(
                "the Raft core stopped without a shutdown (it panicked?): exiting with status 70 \
                 so this node is restarted; it will serve its stored config at once"
            );
            std::process::exit(70);
        }));

        let mut builder = tonic::transport::Server::builder().tcp_nodelay(true);
        if let Some(tls) = server_tls {
            builder = builder
                .tls_config(tls)
                .map_err(|e| ClusterError::Tls(e.to_string()))?;
        }
        let vote_guard = VoteGuard::pending();
        let router = builder
            .add_service(
                RaftService::new(raft.clone(), &cluster.opts.region)
                    .with_vote_guard(vote_guard.clone())
                    .into_server(),
            )
            .add_service(control::ControlService::new(cluster.clone()).into_server());
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let server = tokio::spawn(async move {
            if let Err(e) = router.serve_with_incoming(incoming).await {
                tracing::error!(error = %e, "raft/control server stopped");
            }
        });
        let guard_check = tokio::spawn(decide_vote_guard(cluster.clone(), vote_guard));
        let bootstrap = tokio::spawn(bootstrap(cluster.clone()));
        let retention = tokio::spawn(propose_keep_configs_while_leading(cluster.clone()));
        cluster
            .tasks
            .lock()
            .extend([server, guard_check, bootstrap, retention]);
        if let Some(git) = git {
            cluster
                .tasks
                .lock()
                .push(tokio::spawn(git.run(cluster.clone())));
        }
        tracing::info!(region = %cluster.opts.region, node_id = cluster.opts.node_id, %raft_addr, "raft node started");
        Ok(cluster)
    }

    pub fn state(&self) -> &StateHandle {
        &self.state
    }

    pub fn dialer(&self) -> &Dialer {
        &self.dialer
    }

    pub fn local_error(&self) -> String {
        self.local_error.lock().clone()
    }

    /// Stop Raft and the gRPC server.
    pub async fn shutdown(&self) {
        if let Some(w) = self.raft_watchdog.lock().take() {
            w.abort();
        }
        let _ = self.raft.shutdown().await;
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
    }

    /// Validate files and build the `ApplyConfig` command, without proposing.
    pub fn config_command(
        &self,
        files: &[SourceFile],
        author: &str,
        message: &str,
    ) -> Result<Command, ProposeError> {
        let size: usize = files.iter().map(|f| f.text.len()).sum();
        if size > self.opts.max_config_bytes {
            return Err(ProposeError::TooLarge {
                size,
                limit: self.opts.max_config_bytes,
            });
        }
        let config = self.live.parse(files).map_err(ProposeError::Invalid)?;
        let hash = config.hash();
        let text = serde_json::to_string(&config.to_declarative())
            .map_err(|e| ProposeError::Raft(e.to_string()))?;
        // Compile it now: what no node could apply is refused here rather
        // than replicated, and applying the committed entry on this node
        // reuses this parse and compile.
        self.live
            .prepare(hash.clone(), config)
            .map_err(ProposeError::DoesNotCompile)?;
        let config = PackedConfig::pack(&text);
        if config.packed_len() > self.opts.max_entry_bytes {
            return Err(ProposeError::TooLargeToReplicate {
                packed: config.packed_len(),
                limit: self.opts.max_entry_bytes,
            });
        }
        let time = unix_now();
        Ok(Command::ApplyConfig {
            config,
            hash,
            source: ConfigSource {
                kind: SourceKind::Admin,
                author: if author.is_empty() {
                    "admin".into()
                } else {
                    author.into()
                },
                message: message.into(),
                time,
                ..ConfigSource::default()
            },
        })
    }

    /// Propose `cmd` on this node if it leads, and wait until it is
    /// committed and applied here. `Err(NotLeader)` carries where to forward.
    pub async fn write_local(&self, cmd: Command) -> Result<pb::WriteReply, WriteError> {
        self.state
            .state()
            .read()
            .check(&cmd)
            .map_err(|e| WriteError::Propose(ProposeError::Rejected(e)))?;
        #[cfg(feature = "broken-apply-before-commit")]
        broken::apply_before_commit(self, &cmd).await;
        let written =
            tokio::time::timeout(self.opts.write_timeout, self.raft.client_write(cmd)).await;
        let Ok(written) = written else {
            return Err(WriteError::Propose(ProposeError::NotCommittedInTime(
                self.opts.write_timeout,
            )));
        };
        match written {
            Ok(resp) => {
                let out = resp.data;
                if !out.ok {
                    return Err(WriteError::Propose(ProposeError::Rejected(out.error)));
                }
                Ok(pb::WriteReply {
                    index: resp.log_id.index,
                    active_version: out.active_version,
                    configuration_hash: out.active_hash,
                    changed: out.changed,
                    message: String::new(),
                })
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                match (f.leader_id, f.leader_node) {
                    (Some(id), Some(node)) => Err(WriteError::NotLeader {
                        id,
                        addr: node.addr,
                    }),
                    _ => Err(WriteError::Propose(ProposeError::NoLeader(
                        self.opts.region.clone(),
                    ))),
                }
            }
            Err(e) => Err(WriteError::Propose(ProposeError::Raft(e.to_string()))),
        }
    }

    /// Validate `files` here, then commit them as one `ApplyConfig` entry:
    /// on this node if it leads, else forwarded once to the leader.
    /// Answers after the entry is committed and applied on the leader.
    pub async fn propose_files(
        &self,
        files: &[SourceFile],
        author: &str,
        message: &str,
        already_forwarded: bool,
    ) -> Result<pb::WriteReply, tonic::Status> {
        if let Some(git) = &self.git {
            return Err(tonic::Status::failed_precondition(format!(
                "this region takes its config from Git ({} branch {}), the source of truth: push a commit instead \
                 (POST /config and gatewayctl apply are refused in GitOps mode)",
                git.opts.source.redacted_url(),
                git.opts.source.branch
            )));
        }
        let started = std::time::Instant::now();
        let cmd =
            cpu_heavy(|| self.config_command(files, author, message)).map_err(|e| e.to_status())?;
        let validated = started.elapsed();
        let hash = cmd.config_hash().map(str::to_string);
        let result = match self.write_local(cmd).await {
            Ok(reply) => {
                tracing::info!(
                    index = reply.index,
                    hash = %reply.configuration_hash,
                    validate_ms = validated.as_secs_f64() * 1e3,
                    commit_and_apply_ms = (started.elapsed() - validated).as_secs_f64() * 1e3,
                    "proposal committed and served here"
                );
                Ok(reply)
            }
            Err(WriteError::NotLeader { id, addr }) if !already_forwarded => {
                let mut client = self.leader_client(id, &addr).map_err(|e| e.to_status())?;
                let req = pb::ProposeConfigRequest {
                    files: files
                        .iter()
                        .map(|f| pb::SourceFile {
                            name: f.name.clone(),
                            content: f.text.clone().into_bytes(),
                        })
                        .collect(),
                    author: author.into(),
                    message: message.into(),
                    forwarded: true,
                };
                client
                    .propose_config(control::forwarded(req))
                    .await
                    .map(|r| r.into_inner())
            }
            Err(WriteError::NotLeader { id, addr }) => Err(tonic::Status::unavailable(format!(
                "leadership moved while forwarding (now node {id} at {addr}); retry"
            ))),
            Err(WriteError::Propose(e)) => Err(e.to_status()),
        };
        if let (Err(_), Some(hash)) = (&result, hash) {
            // config_command kept this parse for the apply of its version;
            // the proposal failed, so do not keep it around.
            self.live.forget_prepared(&hash);
        }
        result
    }

    /// Make the leader fetch from Git now (a webhook arrived here).
    pub async fn trigger_sync(&self) -> Result<NodeId, tonic::Status> {
        let git = self.git.as_ref().ok_or_else(|| {
            tonic::Status::failed_precondition("this region is not configured with Git")
        })?;
        let s = self.status();
        match s.leader_id {
            Some(l) if l == self.opts.node_id => {
                git.wake();
                Ok(l)
            }
            Some(l) => {
                let mut client = self
                    .leader_client(l, &s.leader_addr)
                    .map_err(|e| e.to_status())?;
                let reply = client
                    .trigger_sync(control::forwarded(pb::TriggerSyncRequest {}))
                    .await?;
                Ok(reply.into_inner().leader_id)
            }
            None => Err(ProposeError::NoLeader(self.opts.region.clone()).to_status()),
        }
    }

    /// A control client to the current leader (for forwarding).
    pub fn leader_client(
        &self,
        id: NodeId,
        addr: &str,
    ) -> Result<ControlClient<tonic::transport::Channel>, ProposeError> {
        let ch = self
            .dialer
            .channel(addr)
            .map_err(|e| ProposeError::Forward {
                leader: id,
                addr: addr.into(),
                detail: e.to_string(),
            })?;
        Ok(ControlClient::new(ch)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    /// What this node serves and how it sees the region.
    pub fn status(&self) -> pb::NodeStatus {
        let m = self.raft.metrics().borrow().clone();
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        let membership = m.membership_config.membership();
        let voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
        let members: Vec<pb::Member> = membership
            .nodes()
            .map(|(id, node)| pb::Member {
                id: *id,
                addr: node.addr.clone(),
                voter: voters.contains(id),
            })
            .collect();
        let leader_addr = m
            .current_leader
            .and_then(|l| membership.get_node(&l).map(|n| n.addr.clone()))
            .unwrap_or_default();
        let state = self.state.state();
        let state = state.read();
        let snap = self.live.current();
        let git = self.git.as_ref().map(|g| {
            let f = g.status();
            pb::GitStatus {
                url: g.opts.source.redacted_url(),
                branch: g.opts.source.branch.clone(),
                head: f.head,
                last_fetch: f.last_fetch,
                stale_since: f.stale_since,
                last_error: f.last_error,
                last_commit: state.meta.last_git_commit.clone(),
            }
        });
        pb::NodeStatus {
            git,
            active_subject: state
                .active()
                .map(|v| v.source.message.lines().next().unwrap_or("").to_string())
                .unwrap_or_default(),
            ready: !snap.is_empty(),
            pending: state.pending().len() as u32,
            region: self.opts.region.clone(),
            node_id: self.opts.node_id,
            role: role.into(),
            term: m.current_term,
            leader_id: m.current_leader,
            leader_addr,
            last_log_index: m.last_log_index,
            last_applied_index: m.last_applied.map(|l| l.index),
            active_version: state.active().map(|v| v.id.clone()).unwrap_or_default(),
            configuration_hash: snap.hash.clone(),
            mode: state.meta.mode.name().into(),
            pinned_to: state.meta.mode.pinned_to().into(),
            local_error: self.local_error(),
            members,
            raft_addr: self.raft_addr.to_string(),
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
        }
    }
}

/// Run CPU-heavy work (parsing, hashing, compiling a config of up to
/// several MB) without stalling the runtime's worker threads, which also
/// carry Raft heartbeats.
pub(crate) fn cpu_heavy<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Why a local write did not happen.
#[derive(Debug)]
pub enum WriteError {
    NotLeader { id: NodeId, addr: String },
    Propose(ProposeError),
}

fn openraft_config(
    opts: &ClusterOptions,
) -> Result<Arc<gateway_raft::openraft::Config>, ClusterError> {
    let config = gateway_raft::openraft::Config {
        cluster_name: format!("gateway-{}", opts.region),
        heartbeat_interval: opts.heartbeat_ms,
        election_timeout_min: opts.election_timeout_ms.0,
        election_timeout_max: opts.election_timeout_ms.1,
        install_snapshot_timeout: 5_000,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(opts.snapshot_logs.max(1)),
        max_in_snapshot_log_to_keep: 0,
        snapshot_max_chunk_size: 1024 * 1024,
        ..Default::default()
    };
    config
        .validate()
        .map(Arc::new)
        .map_err(|e| ClusterError::RaftConfig(e.to_string()))
}

/// The status of each of `peers` that answers within 500 ms.
async fn peer_statuses(
    cluster: &Cluster,
    peers: &[(NodeId, String)],
) -> Vec<(NodeId, pb::NodeStatus)> {
    let mut out = Vec::new();
    for (id, addr) in peers {
        let Ok(ch) = cluster.dialer.channel(addr) else {
            continue;
        };
        let mut req = tonic::Request::new(pb::StatusRequest {});
        req.set_timeout(Duration::from_millis(500));
        if let Ok(s) = ControlClient::new(ch).status(req).await {
            out.push((*id, s.into_inner()));
        }
    }
    out
}

/// Decide this node's [`VoteGuard`]: a node whose store holds a Raft group
/// votes freely; one that starts empty asks its peers how far the region
/// has committed and votes only once it has applied that far.
async fn decide_vote_guard(cluster: Arc<Cluster>, guard: Arc<VoteGuard>) {
    if matches!(cluster.raft.is_initialized().await, Ok(true)) {
        guard.decide(0);
        return;
    }
    let me = cluster.opts.node_id;
    let others: Vec<(NodeId, String)> = cluster
        .opts
        .peers
        .iter()
        .filter(|(id, _)| **id != me)
        .map(|(id, addr)| (*id, addr.clone()))
        .collect();
    // Until a peer of this region answers, this node does not know whether
    // it lost data, so it keeps refusing votes (a node that reaches no peer
    // cannot help elect anyone anyway).
    let mut round = 0u32;
    let needed = loop {
        if others.is_empty() {
            break 0;
        }
        let mut answered = false;
        let mut needed = 0u64;
        for (id, s) in peer_statuses(&cluster, &others).await {
            if s.region != cluster.opts.region {
                continue;
            }
            answered = true;
            if s.members.iter().any(|m| m.id == me) {
                // A node reports what its store has applied from the moment
                // it starts (None: nothing yet, as in a new region).
                let applied = s.last_applied_index.unwrap_or(0);
                tracing::debug!(peer = id, applied, "peer's applied index");
                needed = needed.max(applied);
            }
        }
        if answered {
            break needed;
        }
        round += 1;
        if round % 25 == 1 {
            tracing::info!("started with an empty store; waiting for a peer to say how far the region has committed before voting");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if needed > 0 {
        tracing::warn!(
            needed,
            "started with an empty store while the region has committed entries (data dir lost?): \
             not voting until this node has applied up to index {needed}"
        );
    }
    guard.decide(needed);
}

/// How many full configs the region keeps is replicated state, so every
/// node prunes the same versions (and a rollback succeeds or fails alike on
/// all of them). A node's `--keep-configs` is the value it proposes while it
/// leads: whenever this node is leader and the region's value differs, it
/// commits `SetKeepConfigs`. A failed proposal is retried after a second
/// while this node still leads.
async fn propose_keep_configs_while_leading(cluster: Arc<Cluster>) {
    let want = cluster.opts.keep_configs.max(1);
    let mut metrics = cluster.raft.metrics();
    loop {
        let leading = metrics.borrow().current_leader == Some(cluster.opts.node_id);
        let have = cluster.state.state().read().meta.keep_configs;
        if leading && have != want {
            let cmd = Command::SetKeepConfigs {
                keep_configs: want as u64,
            };
            match cluster.write_local(cmd).await {
                // Checked again on the next metrics change, not at once,
                // so this loop can never spin.
                Ok(reply) => tracing::info!(
                    keep_configs = want,
                    was = have,
                    index = reply.index,
                    "the region now keeps this leader's --keep-configs full configs"
                ),
                Err(e) => {
                    let why = match e {
                        WriteError::NotLeader { id, .. } => {
                            format!("leadership moved to node {id}")
                        }
                        WriteError::Propose(e) => e.to_string(),
                    };
                    tracing::warn!(keep_configs = want, error = %why, "could not commit --keep-configs; retrying while leader");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// When no peer has an initialized group, the lowest listed id initializes
/// it with every listed peer. A node whose store is initialized never does.
async fn bootstrap(cluster: Arc<Cluster>) {
    let me = cluster.opts.node_id;
    let mut peers = cluster.opts.peers.clone();
    if peers.is_empty() {
        peers.insert(me, cluster.raft_addr.to_string());
    }
    if peers.keys().next() != Some(&me) {
        return;
    }
    let majority = peers.len() / 2 + 1;
    let mut attempt = 0u32;
    loop {
        match cluster.raft.is_initialized().await {
            Ok(true) | Err(_) => return,
            Ok(false) => {}
        }
        // Ask every other peer whether it already belongs to a group.
        let mut fresh = 1; // this node
        let mut joined = None;
        let others: Vec<(NodeId, String)> = peers
            .iter()
            .filter(|(id, _)| **id != me)
            .map(|(id, addr)| (*id, addr.clone()))
            .collect();
        for (id, s) in peer_statuses(&cluster, &others).await {
            if s.region != cluster.opts.region {
                tracing::error!(peer = id, peer_region = %s.region, "peer belongs to another region; not counting it");
            } else if s.members.is_empty() {
                fresh += 1;
            } else {
                joined = Some(id);
            }
        }
        if let Some(id) = joined {
            tracing::info!(
                peer = id,
                "a peer already belongs to an initialized group; not initializing"
            );
            return;
        }
        if fresh >= majority {
            let members: BTreeMap<NodeId, BasicNode> = peers
                .iter()
                .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
                .collect();
            match cluster.raft.initialize(members).await {
                Ok(()) => {
                    tracing::info!(voters = peers.len(), "initialized the region's raft group")
                }
                Err(e) => tracing::warn!(error = %e, "initialize"),
            }
            return;
        }
        attempt += 1;
        if attempt % 20 == 1 {
            tracing::info!(
                reachable_fresh = fresh,
                majority,
                "waiting for a majority of peers before initializing"
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
