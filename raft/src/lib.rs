//! The region's replicated config store: openraft over tonic, durable on redb.
//!
//! Layout:
//! - [`types`]: the Raft type configuration and the replicated [`Command`]s.
//! - [`packed`]: a config's replicated form (zstd + base64), so multi-MB
//!   configs fit in one AppendEntries call.
//! - [`state`]: the config store state (history, active version, mode) and
//!   how each command changes it. Pure; unit tested.
//! - [`store`]: the durable log store and state machine on one redb file
//!   under `--data-dir` (fsynced before acknowledging), snapshots, and the
//!   hook that swaps the node's live config when the active version changes.
//! - [`network`]: Raft over tonic: the client per peer ([`network::Network`])
//!   and the server ([`network::RaftService`]), plus the [`network::Dialer`]
//!   shared with forwarding and `gatewayctl` (plaintext or mTLS).

pub mod network;
pub mod packed;
pub mod state;
pub mod store;
pub mod types;

pub use openraft;
pub use packed::{PackError, PackedConfig};
pub use state::{ApplyOutcome, ConfigState, Mode, VersionRecord};
pub use store::{open_store, ConfigSink, Identity, LogStore, OpenError, StateHandle, StateMachine};
pub use types::{Command, ConfigSource, NodeId, Raft, SourceKind, TypeConfig};
