//! The one error type of this crate.
//!
//! Every message is safe to log and to show to a user: URLs are redacted
//! (`source::redact_url`) and the token text is scrubbed out of any message
//! that comes back from libgit2 before it is stored here.

use std::path::PathBuf;

/// Everything that can go wrong talking to Git or reading a commit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GitError {
    /// The `GitSource` settings are unusable (bad region name, empty url...).
    #[error("invalid git source settings: {0}")]
    Settings(String),

    /// The token file could not be read (or is empty).
    #[error("git token file {}: {message}", path.display())]
    Token { path: PathBuf, message: String },

    /// The local bare mirror could not be created, opened or updated.
    #[error("git mirror at {}: {message}", dir.display())]
    Mirror { dir: PathBuf, message: String },

    /// The server rejected our credentials, or asked for credentials we do
    /// not have. `url` is redacted.
    #[error("fetch from {url}: authentication failed: {message}")]
    Auth { url: String, message: String },

    /// Network or protocol failure while fetching (refused, timed out, bad
    /// repository path...). `url` is redacted.
    #[error("fetch `{branch}` from {url}: {message}")]
    Fetch {
        url: String,
        branch: String,
        message: String,
    },

    /// The commit has no `*.yaml`/`*.yml` file under the config root (and
    /// none in this region's overlay).
    #[error("no config files (*.yaml, *.yml) under `{path}` in commit {commit}")]
    NoConfigFiles { path: String, commit: String },

    /// The config files of one commit are too large together, or too many.
    #[error("config files under `{path}` in commit {commit} are too large: {what}")]
    TooLarge {
        path: String,
        commit: String,
        what: String,
    },

    /// A config file is not valid UTF-8 (or its name is not).
    #[error("{file}: not valid UTF-8 (commit {commit})")]
    NotUtf8 { file: String, commit: String },

    /// A config file is a symlink; symlinks are not followed.
    #[error("{file}: is a symlink; config files must be regular files (commit {commit})")]
    Symlink { file: String, commit: String },

    /// A revision string did not name a commit in the mirror.
    #[error("cannot resolve revision `{rev}`: {message}")]
    UnknownRev { rev: String, message: String },

    /// A commit id given by the caller is not in the mirror, or the object
    /// store failed while reading it.
    #[error("commit {commit}: {message}")]
    Commit { commit: String, message: String },
}

impl GitError {
    /// True for credential problems (rotate the token / key), as opposed to
    /// network or repository problems.
    pub fn is_auth(&self) -> bool {
        matches!(self, GitError::Auth { .. } | GitError::Token { .. })
    }
}
