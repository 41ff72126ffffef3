//! The Raft type configuration and the replicated commands.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::packed::PackedConfig;
use crate::state::ApplyOutcome;

openraft::declare_raft_types!(
    /// Type configuration of a region's Raft group.
    pub TypeConfig:
        D = Command,
        R = ApplyOutcome,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type NodeId = u64;
pub type Node = openraft::BasicNode;
pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;

/// Where a config version came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ConfigSource {
    /// `git` or `admin`.
    pub kind: SourceKind,
    /// Git commit id (empty for admin proposals).
    pub commit: String,
    /// Parent commit id (git only).
    pub parent: String,
    pub author: String,
    pub message: String,
    /// Unix seconds: commit time (git) or proposal time (admin).
    pub time: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Git,
    #[default]
    Admin,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Git => "git",
            SourceKind::Admin => "admin",
        }
    }
}

/// Who asked for an operator action, when, and why (kept in the history).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Audit {
    pub by: String,
    pub reason: String,
    /// Unix seconds.
    pub time: i64,
}

/// A config read from Git for a rollback target outside the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchedVersion {
    pub config: PackedConfig,
    pub hash: String,
    pub source: ConfigSource,
}

/// One replicated command: the application data of a Raft entry.
/// Membership changes are openraft's own entries and are not listed here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// A validated, normalized config (Kong declarative JSON) and its source.
    /// The proposer validated it; every node compiles it on apply.
    ApplyConfig {
        /// Normalized declarative config (JSON text), packed.
        config: PackedConfig,
        /// `Config::hash()` of the config, computed by the proposer.
        hash: String,
        source: ConfigSource,
    },
    /// Serve an earlier version and stop following new ones (pinned mode).
    /// `to` names a version in the history, or, with `fetched`, a Git
    /// commit whose config was read and validated again by the leader
    /// because the history no longer holds it.
    Rollback {
        to: String,
        #[serde(default)]
        audit: Audit,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fetched: Option<FetchedVersion>,
    },
    /// Leave pinned mode: serve the newest version again.
    Resume {
        #[serde(default)]
        audit: Audit,
    },
    /// A Git commit that failed validation: recorded, never served.
    RejectCommit { commit: String, errors: Vec<String> },
    /// How many full configs the region keeps (older versions keep their
    /// metadata only). Replicated so every node prunes the same versions:
    /// a rollback must succeed or fail alike on every node. The leader
    /// proposes it when its `--keep-configs` differs from the region's.
    SetKeepConfigs { keep_configs: u64 },
}

impl Command {
    /// The hash of the config an `ApplyConfig` carries.
    pub fn config_hash(&self) -> Option<&str> {
        match self {
            Command::ApplyConfig { hash, .. } => Some(hash),
            _ => None,
        }
    }

    /// Short name for logs (never the config itself).
    pub fn kind(&self) -> &'static str {
        match self {
            Command::ApplyConfig { .. } => "apply_config",
            Command::Rollback { .. } => "rollback",
            Command::Resume { .. } => "resume",
            Command::RejectCommit { .. } => "reject_commit",
            Command::SetKeepConfigs { .. } => "set_keep_configs",
        }
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::ApplyConfig { hash, source, .. } => {
                write!(
                    f,
                    "apply_config(hash={hash}, source={}",
                    source.kind.as_str()
                )?;
                if !source.commit.is_empty() {
                    write!(f, ", commit={}", source.commit)?;
                }
                write!(f, ")")
            }
            Command::Rollback { to, .. } => write!(f, "rollback(to={to})"),
            Command::Resume { .. } => write!(f, "resume"),
            Command::RejectCommit { commit, .. } => write!(f, "reject_commit({commit})"),
            Command::SetKeepConfigs { keep_configs } => {
                write!(f, "set_keep_configs({keep_configs})")
            }
        }
    }
}
