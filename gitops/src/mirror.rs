//! The local bare mirror: open/create, fetch one branch, resolve revisions,
//! walk history. Reading configs out of a commit lives in `tree`.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use git2::{
    AutotagOption, Cred, CredentialType, ErrorClass, ErrorCode, FetchOptions, FetchPrune, Oid,
    RemoteCallbacks, Repository, Sort,
};
use tracing::{debug, info, warn};

use crate::source::{Scrubber, Secret, Transport};
use crate::{GitError, GitSource};

/// Name of the remote recorded in the mirror's config, for people who look
/// at the mirror with `git remote -v`. Its URL is stored redacted; fetches
/// always use the URL from the `GitSource` (so no credential is ever written
/// to disk).
pub const REMOTE_NAME: &str = "origin";

/// Most commits [`Mirror::commits_between`] returns in one call (the newest).
pub const MAX_COMMITS: usize = 100;

/// Network timeouts applied to libgit2 (git://, http(s)://, ssh://).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect timeout.
    pub connect: Duration,
    /// Timeout of each read/write on an established connection.
    pub io: Duration,
}

impl Default for Timeouts {
    /// 10 s to connect, 30 s per read or write.
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(10),
            io: Duration::from_secs(30),
        }
    }
}

static TIMEOUTS: Once = Once::new();

/// Set libgit2's process-wide network timeouts. The first call wins and
/// returns `true`; later calls (including the one [`Mirror::open`] makes with
/// [`Timeouts::default`]) do nothing and return `false`. Call it at startup
/// to use other values.
pub fn configure_timeouts(timeouts: Timeouts) -> bool {
    let mut applied = false;
    TIMEOUTS.call_once(|| {
        let ms = |d: Duration| d.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: libgit2 keeps these in plain globals that its network code
        // reads. The `Once` makes this the only write, and every network
        // operation of this crate runs after `Mirror::open`, which passes
        // through this `Once` first, so the write happens-before those reads.
        // Nothing else in the process is expected to drive libgit2 networking
        // concurrently with the first `Mirror::open`.
        unsafe {
            let a = git2::opts::set_server_connect_timeout_in_milliseconds(ms(timeouts.connect));
            let b = git2::opts::set_server_timeout_in_milliseconds(ms(timeouts.io));
            if let Err(e) = a.and(b) {
                warn!(error = %e, "could not set libgit2 network timeouts");
            }
        }
        applied = true;
    });
    applied
}

/// What one [`Mirror::fetch`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchOutcome {
    /// The branch exists; `id` is its head commit.
    Head {
        id: Oid,
        /// The mirror's head of the branch before this fetch (`None` on the
        /// first fetch or after the branch had gone missing).
        previous: Option<Oid>,
        /// `true` when `id` does not descend from `previous`: history was
        /// rewritten (force push, reset). `false` when unchanged.
        forced: bool,
    },
    /// The remote has no such branch (deleted, renamed, or never pushed).
    /// The mirror's copy of the branch is removed (its commits stay readable
    /// by id until the mirror is garbage-collected).
    BranchMissing {
        /// The mirror's head of the branch before this fetch.
        previous: Option<Oid>,
    },
}

impl FetchOutcome {
    /// The branch head, if the branch exists.
    pub fn head(&self) -> Option<Oid> {
        match self {
            FetchOutcome::Head { id, .. } => Some(*id),
            FetchOutcome::BranchMissing { .. } => None,
        }
    }

    /// True when the head differs from the previous one (or vanished).
    pub fn changed(&self) -> bool {
        match self {
            FetchOutcome::Head { id, previous, .. } => *previous != Some(*id),
            FetchOutcome::BranchMissing { previous } => previous.is_some(),
        }
    }

    /// True when history was rewritten (see [`FetchOutcome::Head::forced`]).
    pub fn forced(&self) -> bool {
        matches!(self, FetchOutcome::Head { forced: true, .. })
    }
}

/// One commit, as shown in history and in the Raft log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    /// Full 40-hex commit id.
    pub id: String,
    /// Full id of the first parent; empty for a root commit.
    pub parent: String,
    /// Author as `Name <email>`.
    pub author: String,
    /// Full commit message, trailing whitespace removed.
    pub message: String,
    /// Author time, seconds since the Unix epoch.
    pub time: i64,
}

impl CommitInfo {
    /// The first 7 hex digits of the id.
    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(7)]
    }

    /// First line of the message.
    pub fn summary(&self) -> &str {
        self.message.lines().next().unwrap_or("")
    }

    pub(crate) fn from_commit(c: &git2::Commit<'_>) -> CommitInfo {
        let author = c.author();
        let name = String::from_utf8_lossy(author.name_bytes());
        let email = String::from_utf8_lossy(author.email_bytes());
        CommitInfo {
            id: c.id().to_string(),
            parent: c.parent_id(0).map(|p| p.to_string()).unwrap_or_default(),
            author: format!("{name} <{email}>"),
            message: String::from_utf8_lossy(c.message_bytes())
                .trim_end()
                .to_string(),
            time: author.when().seconds(),
        }
    }
}

/// The commits [`Mirror::commits_between`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRange {
    /// Oldest first; the last one is `to` (empty when `from == to`).
    pub commits: Vec<CommitInfo>,
    /// `from` is not an ancestor of `to` (force push / reset, or `from` is
    /// no longer in the mirror): `commits` holds only `to`, and the commits
    /// between the two histories are not listed.
    pub rewritten: bool,
    /// More than [`MAX_COMMITS`] commits were between `from` and `to`: only
    /// the newest [`MAX_COMMITS`] are listed.
    pub truncated: bool,
}

/// A bare Git repository on local disk mirroring one branch (and the tags)
/// of a [`GitSource`]. All reads work on commit trees: nothing is checked
/// out. `Mirror` is `Send + Sync`. Every call blocks (run them on a blocking
/// thread from async code); reads are serialized on one lock, fetches on
/// another, so reads proceed while a fetch waits on the network.
pub struct Mirror {
    /// Handle for reads (resolve, walk, read_config).
    repo: Mutex<Repository>,
    /// Serializes fetches; a fetch uses its own handle so reads are not
    /// blocked behind network IO.
    fetching: Mutex<()>,
    dir: PathBuf,
    pub(crate) source: GitSource,
    pub(crate) root: String,
    branch_ref: String,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror")
            .field("dir", &self.dir)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Mirror {
    /// Open the bare mirror at `dir`, creating it (and `dir`) if missing or
    /// empty. Records the (redacted) URL as remote `origin`, updating it if
    /// the source URL changed, and points the mirror's `HEAD` at
    /// `refs/heads/<branch>`. Does no network IO.
    pub fn open(dir: &Path, source: &GitSource) -> Result<Mirror, GitError> {
        source.validate()?;
        configure_timeouts(Timeouts::default());
        let merr = |message: String| GitError::Mirror {
            dir: dir.to_path_buf(),
            message,
        };
        let repo = match Repository::open_bare(dir) {
            Ok(repo) => repo,
            Err(open_err) => {
                let empty = match std::fs::read_dir(dir) {
                    Ok(mut entries) => entries.next().is_none(),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
                    Err(e) => return Err(merr(e.to_string())),
                };
                if !empty {
                    return Err(merr(format!(
                        "exists, is not empty and is not a bare git repository ({})",
                        open_err.message()
                    )));
                }
                std::fs::create_dir_all(dir).map_err(|e| merr(e.to_string()))?;
                info!(dir = %dir.display(), "creating git mirror");
                Repository::init_bare(dir).map_err(|e| merr(e.message().to_string()))?
            }
        };
        if !repo.is_bare() {
            return Err(merr("is not a bare repository".into()));
        }
        let shown = source.redacted_url();
        match repo.find_remote(REMOTE_NAME) {
            Ok(remote) => {
                if remote.url_bytes() != shown.as_bytes() {
                    info!(dir = %dir.display(), url = %shown, "git mirror: remote url changed");
                    repo.remote_set_url(REMOTE_NAME, &shown)
                        .map_err(|e| merr(e.message().to_string()))?;
                }
            }
            Err(e) if e.code() == ErrorCode::NotFound => {
                repo.remote_with_fetch(
                    REMOTE_NAME,
                    &shown,
                    &format!("+refs/heads/{0}:refs/heads/{0}", source.branch),
                )
                .map_err(|e| merr(e.message().to_string()))?;
            }
            Err(e) => return Err(merr(e.message().to_string())),
        }
        let branch_ref = format!("refs/heads/{}", source.branch);
        let head_ok = repo
            .find_reference("HEAD")
            .ok()
            .map(|h| h.symbolic_target_bytes() == Some(branch_ref.as_bytes()))
            .unwrap_or(false);
        if !head_ok {
            repo.reference_symbolic("HEAD", &branch_ref, true, "gateway-gitops: follow branch")
                .map_err(|e| merr(e.message().to_string()))?;
        }
        Ok(Mirror {
            repo: Mutex::new(repo),
            fetching: Mutex::new(()),
            dir: dir.to_path_buf(),
            root: source.root(),
            source: source.clone(),
            branch_ref,
        })
    }

    /// The mirror's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The settings this mirror was opened with.
    pub fn source(&self) -> &GitSource {
        &self.source
    }

    /// The mirror's current head of the branch (as of the last fetch).
    pub fn head(&self) -> Option<Oid> {
        self.lock().refname_to_id(&self.branch_ref).ok()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Repository> {
        self.repo.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fetch `refs/heads/<branch>` (into the mirror's `refs/heads/<branch>`)
    /// and all tags, with forced refspecs so rewritten history is accepted,
    /// pruning tags deleted on the remote. Credentials: the token for
    /// http(s) (basic auth as `token_username`), the key file or ssh agent
    /// for ssh, none for file and git URLs.
    pub fn fetch(&self) -> Result<FetchOutcome, GitError> {
        let src = &self.source;
        let transport = src.transport();
        let token = match transport {
            Transport::Http => src.load_token()?,
            _ => None,
        };
        let scrub = Scrubber::new(&src.url, token.as_ref());
        let shown = src.redacted_url();
        let started = Instant::now();

        let _fetching = self.fetching.lock().unwrap_or_else(|p| p.into_inner());
        let repo = Repository::open_bare(&self.dir).map_err(|e| GitError::Mirror {
            dir: self.dir.clone(),
            message: e.message().to_string(),
        })?;
        let previous = repo.refname_to_id(&self.branch_ref).ok();
        let auth = AuthState::default();
        let refspecs = [
            format!("+{0}:{0}", self.branch_ref),
            "+refs/tags/*:refs/tags/*".to_string(),
        ];
        let fetch_err = |e: git2::Error| self.fetch_error(&e, &auth, &scrub, &shown);

        let mut remote = repo.remote_anonymous(&src.url).map_err(fetch_err)?;
        let mut opts = FetchOptions::new();
        opts.remote_callbacks(callbacks(src, transport, token.as_ref(), &auth))
            .prune(FetchPrune::On)
            .download_tags(AutotagOption::None)
            .update_fetchhead(false);
        debug!(url = %shown, branch = %src.branch, "git fetch");
        remote
            .fetch(&refspecs, Some(&mut opts), Some("gateway-gitops: fetch"))
            .map_err(fetch_err)?;
        // The advertisement stays readable after the fetch disconnected.
        let advertised = remote
            .list()
            .map_err(fetch_err)?
            .iter()
            .find(|h| h.name() == self.branch_ref)
            .map(|h| h.oid());
        drop(remote);

        let Some(advertised) = advertised else {
            if let Ok(mut r) = repo.find_reference(&self.branch_ref) {
                // Prune normally removed it already; make sure.
                let _ = r.delete();
            }
            warn!(url = %shown, branch = %src.branch, previous = ?previous,
                "git fetch: branch not found on the remote");
            return Ok(FetchOutcome::BranchMissing { previous });
        };
        let id = repo
            .refname_to_id(&self.branch_ref)
            .map_err(|e| self.fetch_error(&e, &auth, &scrub, &shown))?;
        if id != advertised {
            return Err(GitError::Fetch {
                url: shown,
                branch: src.branch.clone(),
                message: format!("fetched head {id} differs from advertised {advertised}"),
            });
        }
        let forced = match previous {
            Some(p) if p != id => !repo.graph_descendant_of(id, p).unwrap_or(false),
            _ => false,
        };
        let elapsed_ms = started.elapsed().as_millis() as u64;
        if forced {
            warn!(url = %shown, branch = %src.branch, head = %id, previous = ?previous, elapsed_ms,
                "git fetch: history was rewritten (forced update)");
        } else if previous != Some(id) {
            info!(url = %shown, branch = %src.branch, head = %id, previous = ?previous, elapsed_ms,
                "git fetch: new head");
        } else {
            debug!(url = %shown, branch = %src.branch, head = %id, elapsed_ms, "git fetch: unchanged");
        }
        Ok(FetchOutcome::Head {
            id,
            previous,
            forced,
        })
    }

    fn fetch_error(
        &self,
        e: &git2::Error,
        auth: &AuthState,
        scrub: &Scrubber,
        shown: &str,
    ) -> GitError {
        let message = scrub.scrub(e.message());
        let http_denied =
            e.class() == ErrorClass::Http && (message.contains("401") || message.contains("403"));
        if let Some(reason) = auth.gave_up.borrow().clone() {
            return GitError::Auth {
                url: shown.to_string(),
                message: reason,
            };
        }
        if e.code() == ErrorCode::Auth || http_denied {
            return GitError::Auth {
                url: shown.to_string(),
                message,
            };
        }
        GitError::Fetch {
            url: shown.to_string(),
            branch: self.source.branch.clone(),
            message,
        }
    }

    /// Resolve a revision to a commit: a full or abbreviated sha, a tag,
    /// `HEAD`, `HEAD~N`/`HEAD^` (relative to the fetched branch head), the
    /// branch name with a suffix (`main~2`), or anything else libgit2's
    /// rev-parse accepts. Annotated tags are peeled to their commit.
    pub fn resolve(&self, rev: &str) -> Result<CommitInfo, GitError> {
        let unknown = |message: String| GitError::UnknownRev {
            rev: rev.to_string(),
            message,
        };
        if rev.trim().is_empty() {
            return Err(unknown("empty revision".into()));
        }
        let repo = self.lock();
        let obj = repo
            .revparse_single(rev)
            .map_err(|e| unknown(e.message().to_string()))?;
        let commit = obj
            .peel_to_commit()
            .map_err(|e| unknown(format!("does not name a commit: {}", e.message())))?;
        Ok(CommitInfo::from_commit(&commit))
    }

    /// Details of one commit by id.
    pub fn commit(&self, id: Oid) -> Result<CommitInfo, GitError> {
        let repo = self.lock();
        let c = repo.find_commit(id).map_err(|e| GitError::Commit {
            commit: id.to_string(),
            message: e.message().to_string(),
        })?;
        Ok(CommitInfo::from_commit(&c))
    }

    /// The first-parent commits after `from` up to and including `to`,
    /// oldest first, at most the newest [`MAX_COMMITS`].
    ///
    /// - `from == None`: just `to`.
    /// - `from == Some(to)`: nothing.
    /// - `from` not an ancestor of `to` (history rewritten, or `from` unknown
    ///   to the mirror): just `to`, with `rewritten` set.
    ///
    /// Commits merged in through second parents are not listed (the merge
    /// commit stands for them), matching "one commit on the branch is one
    /// config version".
    pub fn commits_between(&self, from: Option<Oid>, to: Oid) -> Result<CommitRange, GitError> {
        let repo = self.lock();
        let cerr = |id: Oid, e: git2::Error| GitError::Commit {
            commit: id.to_string(),
            message: e.message().to_string(),
        };
        let to_commit = repo.find_commit(to).map_err(|e| cerr(to, e))?;
        let only_to = |rewritten: bool| CommitRange {
            commits: vec![CommitInfo::from_commit(&to_commit)],
            rewritten,
            truncated: false,
        };
        let Some(from) = from else {
            return Ok(only_to(false));
        };
        if from == to {
            return Ok(CommitRange {
                commits: Vec::new(),
                rewritten: false,
                truncated: false,
            });
        }
        match repo.graph_descendant_of(to, from) {
            Ok(true) => {}
            Ok(false) => {
                warn!(from = %from, to = %to, "commits_between: history was rewritten");
                return Ok(only_to(true));
            }
            Err(e) => {
                warn!(from = %from, to = %to, error = %e.message(),
                    "commits_between: `from` is not in the mirror; treating history as rewritten");
                return Ok(only_to(true));
            }
        }
        let mut walk = repo.revwalk().map_err(|e| cerr(to, e))?;
        walk.set_sorting(Sort::TOPOLOGICAL)
            .map_err(|e| cerr(to, e))?;
        walk.simplify_first_parent().map_err(|e| cerr(to, e))?;
        walk.push(to).map_err(|e| cerr(to, e))?;
        walk.hide(from).map_err(|e| cerr(from, e))?;
        let mut commits = Vec::new();
        let mut truncated = false;
        for id in walk {
            let id = id.map_err(|e| cerr(to, e))?;
            if commits.len() == MAX_COMMITS {
                truncated = true;
                break;
            }
            let c = repo.find_commit(id).map_err(|e| cerr(id, e))?;
            commits.push(CommitInfo::from_commit(&c));
        }
        commits.reverse();
        Ok(CommitRange {
            commits,
            rewritten: false,
            truncated,
        })
    }
}

/// What the credentials callback did, to classify the error afterwards and
/// to stop libgit2 from retrying rejected credentials forever.
#[derive(Default)]
struct AuthState {
    token_tried: Cell<bool>,
    ssh_tried: Cell<bool>,
    gave_up: RefCell<Option<String>>,
}

impl AuthState {
    fn give_up(&self, reason: String) -> git2::Error {
        let e = git2::Error::from_str(&reason);
        *self.gave_up.borrow_mut() = Some(reason);
        e
    }
}

fn callbacks<'a>(
    src: &'a GitSource,
    transport: Transport,
    token: Option<&'a Secret>,
    auth: &'a AuthState,
) -> RemoteCallbacks<'a> {
    let mut cbs = RemoteCallbacks::new();
    cbs.credentials(move |_url, username_from_url, allowed| {
        if allowed.contains(CredentialType::USERNAME) {
            return Cred::username(username_from_url.unwrap_or("git"));
        }
        if transport == Transport::Ssh && allowed.contains(CredentialType::SSH_KEY) {
            let user = username_from_url.unwrap_or("git");
            if auth.ssh_tried.replace(true) {
                return Err(auth.give_up(match &src.ssh_key {
                    Some(k) => format!("the server rejected ssh key {}", k.display()),
                    None => "the server rejected the ssh agent's keys".to_string(),
                }));
            }
            return match &src.ssh_key {
                Some(key) => Cred::ssh_key(user, None, key, None),
                None => Cred::ssh_key_from_agent(user),
            };
        }
        if transport == Transport::Http && allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            let from = match &src.token_file {
                Some(p) => format!("token file {}", p.display()),
                None => format!("${}", crate::source::TOKEN_ENV),
            };
            return match token {
                Some(t) if !auth.token_tried.replace(true) => {
                    Cred::userpass_plaintext(&src.token_username, t.expose())
                }
                Some(_) => Err(auth.give_up(format!(
                    "the server rejected the token from {from} (user `{}`)",
                    src.token_username
                ))),
                None => Err(auth.give_up(format!(
                    "the server requires credentials and no token is configured \
                     (set token_file or ${})",
                    crate::source::TOKEN_ENV
                ))),
            };
        }
        Err(auth.give_up(format!(
            "the server asked for credentials this source cannot provide ({allowed:?})"
        )))
    });
    cbs
}
