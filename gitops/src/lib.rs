//! # gateway-gitops: Git as the config source
//!
//! Used by the region leader (fetch, read, propose) and by `gatewayctl`
//! (history, rollback targets). It does Git IO only; validation is
//! `gateway_config::parse` over the files this crate returns.
//!
//! Layout:
//! - `source`: [`GitSource`] settings (URL, branch, config root, region,
//!   token/key), credential loading and [`redact_url`]. Credentials never
//!   appear in `Debug`, logs or errors.
//! - `mirror`: [`Mirror`], a bare repository on local disk following one
//!   branch: `open`, `fetch` (forced refspecs, prune, timeouts, credential
//!   callback) -> [`FetchOutcome`], `resolve` a revision, and
//!   `commits_between` two commits (first-parent, oldest first, capped).
//! - `tree`: `Mirror::read_config`, the config files of a commit read from
//!   its tree without a checkout; the module docs define the directory
//!   layout (base `gateway/*.yaml`, overlay `gateway/regions/<region>/`) and
//!   how files merge.
//! - `webhook`: GitHub/GitLab webhook verification (pure functions).
//! - `error`: [`GitError`], the crate's single error type.
//!
//! Blocking: every `Mirror` call blocks on disk or network IO; async callers
//! use `spawn_blocking`. Network timeouts are process-wide in libgit2: see
//! [`configure_timeouts`].
//!
//! Authentication by transport:
//! - `file://`, plain paths, `git://`: none.
//! - `http(s)://`: basic auth with username [`GitSource::token_username`]
//!   (default `x-access-token`, which GitHub accepts for app and personal
//!   tokens; use `oauth2` for GitLab) and the token read from
//!   [`GitSource::token_file`] on every fetch, else from `$GATEWAY_GIT_TOKEN`.
//! - `ssh://` / `user@host:path`: [`GitSource::ssh_key`] (no passphrase),
//!   else the ssh agent. The host key must be in `~/.ssh/known_hosts`
//!   (libgit2 checks it and fails on unknown hosts).

mod error;
mod mirror;
mod source;
pub mod tree;
pub mod webhook;

pub use error::GitError;
pub use git2::Oid;
pub use mirror::{
    configure_timeouts, CommitInfo, CommitRange, FetchOutcome, Mirror, Timeouts, MAX_COMMITS,
    REMOTE_NAME,
};
pub use source::{redact_url, GitSource, DEFAULT_TOKEN_USERNAME, TOKEN_ENV};
pub use tree::{MAX_CONFIG_BYTES, MAX_CONFIG_FILES};
pub use webhook::{sign_github, verify_github, verify_gitlab};

#[cfg(test)]
mod tests {
    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn mirror_is_send_and_sync() {
        assert_send_sync::<crate::Mirror>();
        assert_send_sync::<crate::GitError>();
    }
}
