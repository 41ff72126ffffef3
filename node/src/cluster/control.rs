//! The control service (`proto/control.proto`): status, history, config
//! proposals, rollback, resume and membership. Writes on a follower are
//! forwarded once to the leader (marked with the `x-gateway-forwarded`
//! header, so two nodes that disagree about the leader never loop).

use std::collections::BTreeSet;
use std::sync::Arc;

use gateway_config::SourceFile;
use gateway_proto::control::control_server::{self, ControlServer};
use gateway_proto::control::{self as pb};
use gateway_raft::network::MAX_MESSAGE_BYTES;
use gateway_raft::openraft::{BasicNode, ChangeMembers};
use gateway_raft::{Command, NodeId};
use tonic::{Request, Response, Status};

use super::{Cluster, ProposeError, WriteError};

const FORWARDED: &str = "x-gateway-forwarded";

pub struct ControlService {
    cluster: Arc<Cluster>,
}

impl ControlService {
    pub fn new(cluster: Arc<Cluster>) -> Self {
        ControlService { cluster }
    }

    pub fn into_server(self) -> ControlServer<Self> {
        ControlServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

fn is_forwarded<T>(req: &Request<T>) -> bool {
    req.metadata().contains_key(FORWARDED)
}

fn audit(by: &str, reason: &str) -> gateway_raft::types::Audit {
    gateway_raft::types::Audit {
        by: if by.is_empty() {
            "unknown".into()
        } else {
            by.into()
        },
        reason: reason.into(),
        time: super::unix_now(),
    }
}

pub(crate) fn forwarded<T>(msg: T) -> Request<T> {
    let mut req = Request::new(msg);
    req.metadata_mut()
        .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
    req
}

/// Run a write on this node, or forward it once to the leader.
macro_rules! write_or_forward {
    ($self:ident, $forwarded:expr, $cmd:expr, $method:ident, $msg:expr) => {{
        match $self.cluster.write_local($cmd).await {
            Ok(reply) => Ok(Response::new(reply)),
            Err(WriteError::NotLeader { id, addr }) if !$forwarded => {
                let mut client = $self
                    .cluster
                    .leader_client(id, &addr)
                    .map_err(|e| e.to_status())?;
                client.$method(forwarded($msg)).await
            }
            Err(WriteError::NotLeader { id, addr }) => Err(Status::unavailable(format!(
                "leadership moved while forwarding (now node {id} at {addr}); retry"
            ))),
            Err(WriteError::Propose(e)) => Err(e.to_status()),
        }
    }};
}

#[tonic::async_trait]
impl control_server::Control for ControlService {
    async fn status(
        &self,
        _req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::NodeStatus>, Status> {
        Ok(Response::new(self.cluster.status()))
    }

    async fn history(
        &self,
        req: Request<pb::HistoryRequest>,
    ) -> Result<Response<pb::HistoryReply>, Status> {
        let limit = match req.into_inner().limit {
            0 => usize::MAX,
            n => n as usize,
        };
        let state = self.cluster.state().state();
        let state = state.read();
        let active = state.meta.active;
        let versions = state
            .versions
            .values()
            .rev()
            .take(limit)
            .map(|v| pb::Version {
                id: v.id.clone(),
                index: v.index,
                hash: v.hash.clone(),
                source: v.source.kind.as_str().into(),
                commit: v.source.commit.clone(),
                parent: v.source.parent.clone(),
                author: v.source.author.clone(),
                message: v.source.message.clone(),
                time: v.source.time,
                active: Some(v.index) == active,
                config_kept: v.config.is_some(),
            })
            .collect();
        let rejected = state
            .meta
            .rejected
            .iter()
            .rev()
            .map(|r| pb::RejectedCommit {
                commit: r.commit.clone(),
                errors: r.errors.clone(),
                index: r.index,
            })
            .collect();
        let events = state
            .meta
            .events
            .iter()
            .rev()
            .map(|e| pb::OperatorEvent {
                index: e.index,
                kind: e.kind.clone(),
                version: e.version.clone(),
                by: e.audit.by.clone(),
                reason: e.audit.reason.clone(),
                time: e.audit.time,
            })
            .collect();
        let pending = state.pending().iter().map(|v| v.id.clone()).collect();
        Ok(Response::new(pb::HistoryReply {
            versions,
            rejected,
            events,
            pending,
            mode: state.meta.mode.name().into(),
            pinned_to: state.meta.mode.pinned_to().into(),
            keep_configs: state.meta.keep_configs as u64,
        }))
    }

    async fn get_config(
        &self,
        req: Request<pb::GetConfigRequest>,
    ) -> Result<Response<pb::GetConfigReply>, Status> {
        let want = req.into_inner().version;
        let state = self.cluster.state().state();
        let state = state.read();
        let v = if want.is_empty() {
            state
                .active()
                .ok_or_else(|| Status::not_found("no config is active yet"))?
        } else {
            state.resolve(&want).map_err(Status::not_found)?
        };
        let config = v.config.as_deref().ok_or_else(|| {
            Status::not_found(format!("the config of version {} was pruned", v.id))
        })?;
        Ok(Response::new(pb::GetConfigReply {
            version: v.id.clone(),
            config: config.to_string(),
        }))
    }

    async fn propose_config(
        &self,
        req: Request<pb::ProposeConfigRequest>,
    ) -> Result<Response<pb::WriteReply>, Status> {
        let fwd = is_forwarded(&req);
        let msg = req.into_inner();
        let mut files = Vec::with_capacity(msg.files.len());
        for f in &msg.files {
            let text = String::from_utf8(f.content.clone())
                .map_err(|_| Status::invalid_argument(format!("{}: not UTF-8 text", f.name)))?;
            files.push(SourceFile {
                name: f.name.clone(),
                text,
            });
        }
        // Validated here, before anything enters the log.
        self.cluster
            .propose_files(&files, &msg.author, &msg.message, fwd || msg.forwarded)
            .await
            .map(Response::new)
    }

    async fn rollback(
        &self,
        req: Request<pb::RollbackRequest>,
    ) -> Result<Response<pb::WriteReply>, Status> {
        let fwd = is_forwarded(&req);
        let msg = req.into_inner();
        let audit = audit(&msg.by, &msg.reason);
        let Some(git) = &self.cluster.git else {
            let cmd = Command::Rollback {
                to: msg.to.clone(),
                audit,
                fetched: None,
            };
            return write_or_forward!(self, fwd, cmd, rollback, msg);
        };
        // With Git the target is resolved on the leader (the one that reads Git).
        if let Some(mut client) = self.forward_target(fwd)? {
            return client.rollback(forwarded(msg)).await;
        }
        let cmd = git
            .rollback_command(&self.cluster, &msg.to, audit)
            .await
            .map_err(|e| e.to_status())?;
        write_or_forward!(self, true, cmd, rollback, msg)
    }

    async fn resume(
        &self,
        req: Request<pb::ResumeRequest>,
    ) -> Result<Response<pb::WriteReply>, Status> {
        let fwd = is_forwarded(&req);
        let msg = req.into_inner();
        let cmd = Command::Resume {
            audit: audit(&msg.by, &msg.reason),
        };
        let reply = write_or_forward!(self, fwd, cmd, resume, msg);
        if let Some(git) = &self.cluster.git {
            git.wake();
        }
        reply
    }

    async fn trigger_sync(
        &self,
        req: Request<pb::TriggerSyncRequest>,
    ) -> Result<Response<pb::TriggerSyncReply>, Status> {
        let fwd = is_forwarded(&req);
        let Some(git) = &self.cluster.git else {
            return Err(Status::failed_precondition(
                "this region is not configured with Git (--git-url)",
            ));
        };
        if let Some(mut client) = self.forward_target(fwd)? {
            return client.trigger_sync(forwarded(req.into_inner())).await;
        }
        git.wake();
        Ok(Response::new(pb::TriggerSyncReply {
            leader_id: self.cluster.opts.node_id,
        }))
    }

    async fn members(
        &self,
        _req: Request<pb::MembersRequest>,
    ) -> Result<Response<pb::MembersReply>, Status> {
        let s = self.cluster.status();
        Ok(Response::new(pb::MembersReply {
            members: s.members,
            leader_id: s.leader_id,
        }))
    }

    async fn add_member(
        &self,
        req: Request<pb::AddMemberRequest>,
    ) -> Result<Response<pb::MembersReply>, Status> {
        let fwd = is_forwarded(&req);
        let msg = req.into_inner();
        if msg.addr.is_empty() {
            return Err(Status::invalid_argument(
                "add member: address is empty (give ID=HOST:PORT)",
            ));
        }
        if let Some(mut client) = self.forward_target(fwd)? {
            return client.add_member(forwarded(msg)).await;
        }
        let raft = &self.cluster.raft;
        // Join as a learner; `blocking` waits until it has caught up.
        raft.add_learner(
            msg.id,
            BasicNode {
                addr: msg.addr.clone(),
            },
            true,
        )
        .await
        .map_err(|e| Status::unavailable(format!("add node {} as learner: {e}", msg.id)))?;
        raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([msg.id])), false)
            .await
            .map_err(|e| Status::unavailable(format!("promote node {} to voter: {e}", msg.id)))?;
        self.members(Request::new(pb::MembersRequest {})).await
    }

    async fn remove_member(
        &self,
        req: Request<pb::RemoveMemberRequest>,
    ) -> Result<Response<pb::MembersReply>, Status> {
        let fwd = is_forwarded(&req);
        let msg = req.into_inner();
        if let Some(mut client) = self.forward_target(fwd)? {
            return client.remove_member(forwarded(msg)).await;
        }
        let s = self.cluster.status();
        if !s.members.iter().any(|m| m.id == msg.id) {
            return Err(Status::not_found(format!(
                "node {} is not a member",
                msg.id
            )));
        }
        let voters: BTreeSet<NodeId> = s.members.iter().filter(|m| m.voter).map(|m| m.id).collect();
        let change = if voters.contains(&msg.id) {
            ChangeMembers::RemoveVoters(BTreeSet::from([msg.id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([msg.id]))
        };
        self.cluster
            .raft
            .change_membership(change, false)
            .await
            .map_err(|e| Status::unavailable(format!("remove node {}: {e}", msg.id)))?;
        self.members(Request::new(pb::MembersRequest {})).await
    }
}

impl ControlService {
    /// `Some(client)` when this node is not the leader and the request may
    /// be forwarded; an error when there is no leader or it was already
    /// forwarded.
    fn forward_target(
        &self,
        already_forwarded: bool,
    ) -> Result<
        Option<gateway_proto::control::control_client::ControlClient<tonic::transport::Channel>>,
        Status,
    > {
        let s = self.cluster.status();
        match s.leader_id {
            Some(l) if l == self.cluster.opts.node_id => Ok(None),
            Some(l) if !already_forwarded && !s.leader_addr.is_empty() => self
                .cluster
                .leader_client(l, &s.leader_addr)
                .map(Some)
                .map_err(|e| e.to_status()),
            Some(l) => Err(Status::unavailable(format!(
                "leadership moved to node {l} while forwarding; retry"
            ))),
            None => Err(ProposeError::NoLeader(self.cluster.opts.region.clone()).to_status()),
        }
    }
}
