//! The proxy: listeners, the request pipeline and its layers.
//!
//! - `server`: accept loop, h1/h2c connections, limits, graceful drain.
//! - `direct`: the direct HTTP/1.1 path (parse in place, bytes forwarded
//!   on the client connection's task) for plain requests without plugins;
//!   everything else goes to `handler`.
//! - `chunked`: finds the end of a chunked body (`h1_guard`, `direct`).
//! - `h1_guard`: watches HTTP/1 request framing on the client socket to
//!   catch `Content-Length` + `Transfer-Encoding` before hyper drops the
//!   former.
//! - `handler`: the per-request pipeline and upstream exchange.
//! - `pool`: upstream connections (keep-alive / h2c).
//! - `forward`: hop-by-hop and `X-Forwarded-*` header rules.
//! - `body`: streaming body types and limit/timeout layers.
//! - `errors`: Kong-style JSON error responses.
//! - `tls`: TLS client configuration for https/grpcs upstreams.

pub mod body;
pub mod chunked;
pub mod direct;
pub mod errors;
pub mod forward;
pub mod h1_guard;
pub mod handler;
pub mod pool;
pub mod server;
pub mod tls;

pub use handler::{ConnInfo, Proxy, ProxySettings, Stats};
