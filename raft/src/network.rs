//! Raft over tonic: the client side (`Network`, one `PeerClient` per peer)
//! and the server side (`RaftService`). openraft's messages ride as JSON in
//! the protobuf payloads (see `proto/raft.proto`).

use std::sync::Arc;
use std::time::Duration;

use gateway_proto::raft::raft_client::RaftClient;
use gateway_proto::raft::raft_server::{self, RaftServer};
use gateway_proto::raft::{RaftReply, RaftRequest};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::types::{Node, NodeId, Raft, TypeConfig};

/// Largest gRPC message a node accepts or sends (a 5 MB config plus JSON
/// overhead fits with room to spare).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// How a node dials its peers: the same for Raft, forwarding and gatewayctl.
#[derive(Clone)]
pub struct Dialer {
    tls: Option<ClientTlsConfig>,
    connect_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("bad peer address {addr:?}: {detail}")]
pub struct DialError {
    pub addr: String,
    pub detail: String,
}

impl Dialer {
    /// `tls`: the cluster CA and this node's (or client's) certificate.
    pub fn new(tls: Option<ClientTlsConfig>) -> Self {
        Dialer {
            tls,
            connect_timeout: Duration::from_millis(500),
        }
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// A lazily connected channel to `addr` (`host:port`); it reconnects by
    /// itself after a peer restarts.
    pub fn channel(&self, addr: &str) -> Result<Channel, DialError> {
        let bad = |detail: String| DialError {
            addr: addr.to_string(),
            detail,
        };
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| bad(e.to_string()))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5));
        if let Some(tls) = &self.tls {
            let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            endpoint = endpoint
                .tls_config(tls.clone().domain_name(host))
                .map_err(|e| bad(e.to_string()))?;
        }
        Ok(endpoint.connect_lazy())
    }
}

/// Creates one `PeerClient` per peer for openraft.
#[derive(Clone)]
pub struct Network {
    region: String,
    dialer: Dialer,
}

impl Network {
    pub fn new(region: impl Into<String>, dialer: Dialer) -> Self {
        Network {
            region: region.into(),
            dialer,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient {
        let client = self.dialer.channel(&node.addr).map(|ch| {
            RaftClient::new(ch)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES)
        });
        PeerClient {
            target,
            addr: node.addr.clone(),
            region: self.region.clone(),
            client,
        }
    }
}

/// The Raft client for one peer.
pub struct PeerClient {
    target: NodeId,
    addr: String,
    region: String,
    client: Result<RaftClient<Channel>, DialError>,
}

#[derive(Debug, thiserror::Error)]
#[error("raft rpc to node {target} at {addr}: {detail}")]
struct RpcFailure {
    target: NodeId,
    addr: String,
    detail: String,
}

impl PeerClient {
    async fn call<Req, Resp, E>(
        &mut self,
        method: Method,
        rpc: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, Node, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let fail = |detail: String| RpcFailure {
            target: self.target,
            addr: self.addr.clone(),
            detail,
        };
        let client = match &mut self.client {
            Ok(c) => c,
            Err(e) => {
                return Err(RPCError::Unreachable(Unreachable::new(&fail(
                    e.to_string(),
                ))))
            }
        };
        let payload =
            serde_json::to_vec(rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut req = tonic::Request::new(RaftRequest {
            region: self.region.clone(),
            payload,
        });
        req.set_timeout(option.hard_ttl());
        let reply = match method {
            Method::Vote => client.vote(req).await,
            Method::AppendEntries => client.append_entries(req).await,
            Method::InstallSnapshot => client.install_snapshot(req).await,
        };
        let reply = match reply {
            Ok(r) => r.into_inner(),
            Err(status) => {
                let err = fail(format!("{}: {}", status.code(), status.message()));
                return Err(match status.code() {
                    tonic::Code::Unavailable
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Cancelled => RPCError::Unreachable(Unreachable::new(&err)),
                    _ => RPCError::Network(NetworkError::new(&err)),
                });
            }
        };
        let result: Result<Resp, RaftError<NodeId, E>> = serde_json::from_slice(&reply.payload)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

#[derive(Clone, Copy)]
enum Method {
    Vote,
    AppendEntries,
    InstallSnapshot,
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.call(Method::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(Method::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.call(Method::Vote, &rpc, &option).await
    }
}

/// Keeps a node that lost its data from voting until it has caught up.
///
/// Raft assumes a voter never forgets its log. A node whose data dir was
/// wiped (a replaced disk) restarts empty under the same id; were it to vote
/// at once, it could help elect a peer that lacks entries it had
/// acknowledged, and committed configs would be lost. So a node that starts
/// with an empty store asks its peers how far the region has committed,
/// and refuses `Vote` calls until it has applied that far (answering
/// `UNAVAILABLE`, as an unreachable node would). A region that is being
/// bootstrapped has committed nothing, so the guard lifts at once there.
#[derive(Debug, Default)]
pub struct VoteGuard {
    /// False until the startup check has decided.
    decided: std::sync::atomic::AtomicBool,
    /// Index this node must have applied before it votes (0 = none).
    needed: std::sync::atomic::AtomicU64,
}

impl VoteGuard {
    /// A guard still waiting for the startup check; votes are refused.
    pub fn pending() -> Arc<VoteGuard> {
        Arc::new(VoteGuard::default())
    }

    /// The startup check is done: vote once `index` is applied here.
    pub fn decide(&self, index: u64) {
        use std::sync::atomic::Ordering::SeqCst;
        self.needed.store(index, SeqCst);
        self.decided.store(true, SeqCst);
    }

    /// `Err` with the reason while this node must not vote.
    pub fn check(&self, raft: &Raft) -> Result<(), String> {
        use std::sync::atomic::Ordering::SeqCst;
        if !self.decided.load(SeqCst) {
            return Err(
                "this node started with an empty store and is still asking its peers \
                        how far the region has committed; not voting yet"
                    .into(),
            );
        }
        let needed = self.needed.load(SeqCst);
        if needed == 0 {
            return Ok(());
        }
        let applied = raft.metrics().borrow().last_applied.map_or(0, |l| l.index);
        if applied >= needed {
            self.needed.store(0, SeqCst);
            tracing::info!(
                applied,
                "caught up after starting with an empty store; voting again"
            );
            return Ok(());
        }
        Err(format!(
            "this node started with an empty store (lost data?) while its region had committed up to \
             index {needed}; it votes again once it has applied that far (applied: {applied})"
        ))
    }
}

/// The tonic Raft service of one node.
pub struct RaftService {
    raft: Raft,
    region: Arc<str>,
    vote_guard: Option<Arc<VoteGuard>>,
}

impl RaftService {
    pub fn new(raft: Raft, region: &str) -> Self {
        RaftService {
            raft,
            region: region.into(),
            vote_guard: None,
        }
    }

    /// Refuse votes while `guard` says so (see [`VoteGuard`]).
    pub fn with_vote_guard(mut self, guard: Arc<VoteGuard>) -> Self {
        self.vote_guard = Some(guard);
        self
    }

    pub fn into_server(self) -> RaftServer<Self> {
        RaftServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    fn decode<T: DeserializeOwned>(
        &self,
        req: tonic::Request<RaftRequest>,
    ) -> Result<T, tonic::Status> {
        let req = req.into_inner();
        if *req.region != *self.region {
            return Err(tonic::Status::permission_denied(format!(
                "this node belongs to region {:?}, the caller to region {:?}",
                self.region, req.region
            )));
        }
        serde_json::from_slice(&req.payload)
            .map_err(|e| tonic::Status::invalid_argument(format!("undecodable raft payload: {e}")))
    }
}

fn encode<T: Serialize>(v: &T) -> Result<tonic::Response<RaftReply>, tonic::Status> {
    serde_json::to_vec(v)
        .map(|payload| tonic::Response::new(RaftReply { payload }))
        .map_err(|e| tonic::Status::internal(format!("encode raft reply: {e}")))
}

#[tonic::async_trait]
impl raft_server::Raft for RaftService {
    async fn vote(
        &self,
        req: tonic::Request<RaftRequest>,
    ) -> Result<tonic::Response<RaftReply>, tonic::Status> {
        let rpc: VoteRequest<NodeId> = self.decode(req)?;
        if let Some(guard) = &self.vote_guard {
            guard
                .check(&self.raft)
                .map_err(tonic::Status::unavailable)?;
        }
        encode(&self.raft.vote(rpc).await)
    }

    async fn append_entries(
        &self,
        req: tonic::Request<RaftRequest>,
    ) -> Result<tonic::Response<RaftReply>, tonic::Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = self.decode(req)?;
        encode(&self.raft.append_entries(rpc).await)
    }

    async fn install_snapshot(
        &self,
        req: tonic::Request<RaftRequest>,
    ) -> Result<tonic::Response<RaftReply>, tonic::Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = self.decode(req)?;
        encode(&self.raft.install_snapshot(rpc).await)
    }
}
