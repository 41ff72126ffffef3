//! # gateway-node: one gateway node
//!
//! Layout (the life of a request follows this order):
//! - `proxy`: listeners, HTTP/1.1 + h2c connection handling, the request
//!   pipeline (route -> plugins -> balancer -> upstream -> response), header
//!   rewriting and Kong-style error responses.
//! - `snapshot`: the immutable compiled config (config + router + balancers
//!   + plugin chains) and the atomic pointer the data plane reads.
//! - `upstream`: balancers, active/passive health checks, DNS.
//! - `plugins`: the phase-based plugin trait and the built-in plugins.
//! - `admin`: the admin API (Kong's shapes).
//! - `demo`: the built-in foo/bar services behind `gateway demo`.
//! - `app`: assembles a node (listeners, proxy, admin) and shuts it down.
//! - `cluster`: cluster mode: the node as a member of its region's Raft
//!   group (store, control service, proposals, the leader's Git loop).
//! - `cli`: config file reading and `validate`, shared by both binaries.
//! - `certs`: the cluster CA and node/client certificates (mTLS).

pub mod admin;
pub mod app;
pub mod certs;
pub mod cli;
pub mod cluster;
pub mod demo;
pub mod plugins;
pub mod proxy;
pub mod snapshot;
pub mod upstream;
