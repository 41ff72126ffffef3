//! Protobuf definitions and generated tonic code for a gateway region.
//!
//! Layout:
//! - `proto/raft.proto` → [`raft`]: node-to-node Raft RPCs (vote, append
//!   entries, chunked snapshot install). openraft's messages ride as JSON
//!   payloads.
//! - `proto/control.proto` → [`control`]: the control service used by
//!   `gatewayctl` and the admin API (status, history, propose, rollback,
//!   resume, membership).
//!
//! `build.rs` compiles both with protox, so no system `protoc` is needed.

/// Raft RPCs between the nodes of one region.
pub mod raft {
    tonic::include_proto!("gateway.raft.v1");
}

/// The node's control service.
pub mod control {
    tonic::include_proto!("gateway.control.v1");
}
