//! GitOps on the region leader: fetch the branch, validate each new commit
//! with the same validator as `gateway validate`, and commit it through
//! Raft as `ApplyConfig` (valid) or `RejectCommit` (invalid).
//!
//! Every node runs the loop; only the leader acts. The position in the
//! branch (`last_git_commit`) is replicated state, so a new leader carries
//! on where the old one stopped: no commit is applied twice, none skipped.
//! Fetch failures back off exponentially (from the poll interval up to
//! 5 minutes) and show as `stale_since` in status; serving is unaffected.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gateway_gitops::{CommitInfo, FetchOutcome, GitError, GitSource, Mirror, Oid};
use gateway_raft::openraft::ServerState;
use gateway_raft::types::{Audit, FetchedVersion};
use gateway_raft::{Command, ConfigSource, PackedConfig, SourceKind};
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::{unix_now, Cluster, ProposeError, WriteError};

/// Longest wait between fetches while the server keeps failing.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub struct GitOptions {
    pub source: GitSource,
    pub poll_interval: Duration,
    /// Shared secret of `POST /hooks/git` (GitHub HMAC or GitLab token).
    pub webhook_secret: Option<Vec<u8>>,
}

/// What this node's fetches have seen (status, not replicated).
#[derive(Debug, Clone, Default)]
pub struct FetchStatus {
    pub head: String,
    pub last_fetch: i64,
    pub stale_since: i64,
    pub last_error: String,
}

pub struct GitSync {
    pub opts: GitOptions,
    mirror_dir: PathBuf,
    mirror: Mutex<Option<Arc<Mirror>>>,
    wake: Notify,
    status: Mutex<FetchStatus>,
    /// Serializes sync rounds and rollbacks that read Git on this node.
    round: tokio::sync::Mutex<()>,
}

impl GitSync {
    pub fn new(opts: GitOptions, data_dir: &std::path::Path) -> Self {
        GitSync {
            opts,
            mirror_dir: data_dir.join("git-mirror"),
            mirror: Mutex::new(None),
            wake: Notify::new(),
            status: Mutex::new(FetchStatus::default()),
            round: tokio::sync::Mutex::new(()),
        }
    }

    pub fn status(&self) -> FetchStatus {
        self.status.lock().clone()
    }

    /// Fetch now (a webhook arrived, or leadership was just gained).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    async fn mirror(&self) -> Result<Arc<Mirror>, String> {
        if let Some(m) = self.mirror.lock().clone() {
            return Ok(m);
        }
        let (dir, source) = (self.mirror_dir.clone(), self.opts.source.clone());
        let m = tokio::task::spawn_blocking(move || Mirror::open(&dir, &source))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let m = Arc::new(m);
        *self.mirror.lock() = Some(m.clone());
        Ok(m)
    }

    /// The loop: wait for the poll interval (with jitter), a webhook or a
    /// leadership change; when leading, sync.
    pub async fn run(self: Arc<Self>, cluster: Arc<Cluster>) {
        let mut metrics = cluster.raft.metrics();
        let mut backoff = self.opts.poll_interval;
        // openraft publishes metrics on every change (log index, heartbeat
        // acks...): only a change of leadership may start a round, or the
        // leader would fetch continuously.
        let mut was_leader = false;
        let mut next = tokio::time::Instant::now();
        loop {
            let wake_now = tokio::select! {
                _ = tokio::time::sleep_until(next) => true,
                _ = self.wake.notified() => true,
                changed = metrics.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let leader = metrics.borrow().state == ServerState::Leader;
                    let became_leader = leader && !was_leader;
                    was_leader = leader;
                    became_leader
                }
            };
            if !wake_now {
                continue;
            }
            let leader = metrics.borrow().state == ServerState::Leader;
            was_leader = leader;
            if leader {
                match self.sync_once(&cluster).await {
                    Ok(()) => backoff = self.opts.poll_interval,
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in = ?backoff, "git sync failed; serving the last applied config");
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
            let wait = if self.status.lock().stale_since != 0 {
                backoff
            } else {
                jitter(self.opts.poll_interval)
            };
            next = tokio::time::Instant::now() + wait;
        }
    }

    /// One round: fetch, then propose every new commit in order.
    pub async fn sync_once(&self, cluster: &Cluster) -> Result<(), String> {
        let _round = self.round.lock().await;
        let mirror = self.mirror().await.inspect_err(|e| self.failed(e))?;
        let m = mirror.clone();
        let fetched = tokio::task::spawn_blocking(move || m.fetch())
            .await
            .map_err(|e| e.to_string())?;
        let outcome = match fetched {
            Ok(o) => o,
            Err(e) => {
                let msg = e.to_string();
                self.failed(&msg);
                return Err(msg);
            }
        };
        let head = match outcome {
            FetchOutcome::Head { id, forced, .. } => {
                if forced {
                    tracing::warn!(branch = %self.opts.source.branch, head = %id, "branch history was rewritten (force push); following the new head");
                }
                id
            }
            FetchOutcome::BranchMissing { .. } => {
                let msg = format!(
                    "branch {:?} is missing on {} (deleted?); serving the last applied config",
                    self.opts.source.branch,
                    self.opts.source.redacted_url()
                );
                self.failed(&msg);
                return Err(msg);
            }
        };
        {
            let mut s = self.status.lock();
            s.head = head.to_string();
            s.last_fetch = unix_now();
            s.stale_since = 0;
            s.last_error.clear();
        }
        // Apply everything already committed before reading our position.
        if cluster.raft.ensure_linearizable().await.is_err() {
            return Ok(()); // no longer leader
        }
        let last = cluster.state().state().read().meta.last_git_commit.clone();
        let from = if last.is_empty() {
            None
        } else {
            Oid::from_str(&last).ok()
        };
        if from == Some(head) {
            return Ok(());
        }
        let m = mirror.clone();
        let range = tokio::task::spawn_blocking(move || m.commits_between(from, head))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        if range.rewritten {
            tracing::warn!(last = %last, head = %head, "the last applied commit is not an ancestor of the branch head; applying the head only");
        }
        if range.truncated {
            tracing::warn!(
                count = range.commits.len(),
                "many new commits; only the newest are processed one by one"
            );
        }
        for commit in range.commits {
            let cmd = self.command_for(cluster, &mirror, &commit).await?;
            let kind = cmd.kind();
            let hash = cmd.config_hash().map(str::to_string);
            let written = cluster.write_local(cmd).await;
            if let (Err(_), Some(hash)) = (&written, hash) {
                // Not committed: drop the parse kept for its apply.
                cluster.live.forget_prepared(&hash);
            }
            match written {
                Ok(reply) => {
                    tracing::info!(commit = %commit.short_id(), kind, index = reply.index, subject = %commit.summary(), "git commit committed to the region")
                }
                Err(WriteError::NotLeader { .. }) => return Ok(()),
                Err(WriteError::Propose(e)) => {
                    return Err(format!("commit {}: {e}", commit.short_id()))
                }
            }
        }
        Ok(())
    }

    fn failed(&self, msg: &str) {
        let mut s = self.status.lock();
        if s.stale_since == 0 {
            s.stale_since = unix_now();
        }
        s.last_error = msg.to_string();
    }

    /// `ApplyConfig` for a valid commit, `RejectCommit` with every located
    /// error for an invalid one.
    async fn command_for(
        &self,
        cluster: &Cluster,
        mirror: &Arc<Mirror>,
        commit: &CommitInfo,
    ) -> Result<Command, String> {
        match self.read_and_validate(cluster, mirror, commit).await? {
            Ok((config, hash)) => Ok(Command::ApplyConfig {
                config,
                hash,
                source: source_of(commit),
            }),
            Err(errors) => {
                tracing::warn!(commit = %commit.short_id(), errors = errors.len(), "commit rejected: invalid config");
                Ok(Command::RejectCommit {
                    commit: commit.id.clone(),
                    errors,
                })
            }
        }
    }

    /// Outer error: Git itself failed. Inner: the commit's config is invalid.
    async fn read_and_validate(
        &self,
        cluster: &Cluster,
        mirror: &Arc<Mirror>,
        commit: &CommitInfo,
    ) -> Result<Result<(PackedConfig, String), Vec<String>>, String> {
        let oid = Oid::from_str(&commit.id).map_err(|e| e.to_string())?;
        let m = mirror.clone();
        let files = tokio::task::spawn_blocking(move || m.read_config(oid))
            .await
            .map_err(|e| e.to_string())?;
        let files = match files {
            Ok(f) => f,
            // A commit whose tree has no config, a non-UTF-8 file, too
            // large: the commit is invalid, not the server.
            Err(
                e @ (GitError::NoConfigFiles { .. }
                | GitError::TooLarge { .. }
                | GitError::NotUtf8 { .. }
                | GitError::Symlink { .. }),
            ) => return Ok(Err(vec![e.to_string()])),
            Err(e) => return Err(e.to_string()),
        };
        match super::cpu_heavy(|| cluster.config_command(&files, &commit.author, &commit.message)) {
            Ok(Command::ApplyConfig { config, hash, .. }) => Ok(Ok((config, hash))),
            Ok(_) => Err("internal: unexpected command".into()),
            Err(ProposeError::Invalid(errors)) => {
                Ok(Err(errors.0.iter().map(|e| e.to_string()).collect()))
            }
            Err(e) => Ok(Err(vec![e.to_string()])),
        }
    }

    /// Build the rollback to `rev` (a version id or prefix in the history,
    /// or any commit Git can resolve: sha, `HEAD~N`, tag). Runs on the leader.
    pub async fn rollback_command(
        &self,
        cluster: &Cluster,
        rev: &str,
        audit: Audit,
    ) -> Result<Command, ProposeError> {
        {
            let state = cluster.state().state();
            let state = state.read();
            if let Ok(v) = state.resolve(rev) {
                if v.config.is_some() {
                    return Ok(Command::Rollback {
                        to: v.id.clone(),
                        audit,
                        fetched: None,
                    });
                }
            }
        }
        let _round = self.round.lock().await;
        let mirror = self.mirror().await.map_err(ProposeError::Rejected)?;
        let (m, r) = (mirror.clone(), rev.to_string());
        let mut resolved = tokio::task::spawn_blocking(move || m.resolve(&r))
            .await
            .map_err(|e| ProposeError::Raft(e.to_string()))?;
        if resolved.is_err() {
            // Not in the mirror yet: fetch once and try again.
            let (m, r) = (mirror.clone(), rev.to_string());
            resolved = tokio::task::spawn_blocking(move || {
                let _ = m.fetch();
                m.resolve(&r)
            })
            .await
            .map_err(|e| ProposeError::Raft(e.to_string()))?;
        }
        let commit = resolved
            .map_err(|e| ProposeError::Rejected(format!("cannot roll back to {rev:?}: {e}")))?;
        {
            let state = cluster.state().state();
            let state = state.read();
            if let Some(v) = state
                .versions
                .values()
                .rev()
                .find(|v| v.id == commit.id && v.config.is_some())
            {
                return Ok(Command::Rollback {
                    to: v.id.clone(),
                    audit,
                    fetched: None,
                });
            }
        }
        match self
            .read_and_validate(cluster, &mirror, &commit)
            .await
            .map_err(ProposeError::Rejected)?
        {
            Ok((config, hash)) => Ok(Command::Rollback {
                to: commit.id.clone(),
                audit,
                fetched: Some(FetchedVersion {
                    config,
                    hash,
                    source: source_of(&commit),
                }),
            }),
            Err(errors) => Err(ProposeError::Rejected(format!(
                "cannot roll back to {} ({}): its config is invalid:\n{}",
                commit.short_id(),
                commit.summary(),
                errors.join("\n")
            ))),
        }
    }
}

fn source_of(c: &CommitInfo) -> ConfigSource {
    ConfigSource {
        kind: SourceKind::Git,
        commit: c.id.clone(),
        parent: c.parent.clone(),
        author: c.author.clone(),
        message: c.message.clone(),
        time: c.time,
    }
}

/// `d` ± 10%.
fn jitter(d: Duration) -> Duration {
    let f = 0.9 + rand::random::<f64>() * 0.2;
    d.mul_f64(f)
}

/// Parse `15s`, `500ms`, `2m`, `1h`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 15s, 500ms, 2m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?} is not a valid duration"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15s").unwrap(), Duration::from_secs(15));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..100 {
            let j = jitter(Duration::from_secs(10));
            assert!(
                j >= Duration::from_secs(9) && j <= Duration::from_secs(11),
                "{j:?}"
            );
        }
    }
}
