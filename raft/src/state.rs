//! The config store's state and how each command changes it. Pure: no IO, so
//! the durable state machine (`store`) and the tests share it.
//!
//! Rules:
//! - `ApplyConfig` records a new version (id = the commit id, or
//!   `admin-<index>` for an admin proposal). In `following` mode it becomes
//!   active. In `pinned` mode a Git version is recorded but not served until
//!   `Resume`; an admin proposal is an explicit operator action, so it is
//!   served and returns the store to `following`.
//! - `Rollback{to}` serves an earlier version whose full config is still kept
//!   and pins the store to it.
//! - `Resume` returns to `following` and serves the newest version.
//! - `RejectCommit` records a commit that failed validation; nothing served
//!   changes.
//! - Only the newest `keep_configs` versions keep their full config; older
//!   ones keep their metadata (id, hash, source) only. `keep_configs` is
//!   replicated state (`SetKeepConfigs`), never a node-local setting, so
//!   every node prunes the same versions and a rollback succeeds or fails
//!   alike everywhere.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::types::{Audit, Command, ConfigSource, SourceKind};

/// Default number of full configs kept.
pub const DEFAULT_KEEP_CONFIGS: usize = 100;
/// How many rejected commits are remembered.
pub const KEEP_REJECTED: usize = 100;
/// How many rollback/resume events are remembered.
pub const KEEP_EVENTS: usize = 100;

/// A rollback or resume, for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorEvent {
    pub index: u64,
    /// `rollback` or `resume`.
    pub kind: String,
    /// The version served after it.
    pub version: String,
    pub audit: Audit,
}

/// One config version in the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// Commit id, or `admin-<index>`.
    pub id: String,
    /// Raft log index of the entry that recorded it.
    pub index: u64,
    pub hash: String,
    pub source: ConfigSource,
    /// The normalized declarative config (JSON), or `None` once pruned.
    pub config: Option<Arc<str>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Following,
    /// Serving `to` after a rollback; new Git versions are recorded only.
    Pinned { to: String },
}

impl Mode {
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Following => "following",
            Mode::Pinned { .. } => "pinned",
        }
    }
    pub fn pinned_to(&self) -> &str {
        match self {
            Mode::Following => "",
            Mode::Pinned { to } => to,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedCommit {
    pub commit: String,
    pub errors: Vec<String>,
    pub index: u64,
}

/// Everything but the versions: small, rewritten on every apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateMeta {
    /// Index (key into `versions`) of the version served.
    pub active: Option<u64>,
    /// Index of the newest version recorded.
    pub latest: Option<u64>,
    pub mode: Mode,
    pub rejected: Vec<RejectedCommit>,
    pub keep_configs: usize,
    /// The last Git commit processed (applied or rejected): where the
    /// leader's Git loop continues from, whoever leads.
    #[serde(default)]
    pub last_git_commit: String,
    /// Rollbacks and resumes, oldest first.
    #[serde(default)]
    pub events: Vec<OperatorEvent>,
}

impl Default for StateMeta {
    fn default() -> Self {
        StateMeta {
            active: None,
            latest: None,
            mode: Mode::Following,
            rejected: Vec::new(),
            keep_configs: DEFAULT_KEEP_CONFIGS,
            last_git_commit: String::new(),
            events: Vec::new(),
        }
    }
}

/// The result of applying one entry, returned to the proposer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ApplyOutcome {
    /// Whether the command took effect.
    pub ok: bool,
    /// Why not, when `ok` is false.
    pub error: String,
    /// The active version id after the entry.
    pub active_version: String,
    pub active_hash: String,
    /// Whether the served config changed.
    pub changed: bool,
}

/// What changed on disk when a command applied, so the store writes only that.
#[derive(Debug, Default)]
pub struct Changes {
    /// Version records to (re)write.
    pub upserted: Vec<u64>,
    /// Whether the active config changed (the node must swap its live config).
    pub active_changed: bool,
}

/// The config store state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ConfigState {
    pub versions: BTreeMap<u64, VersionRecord>,
    pub meta: StateMeta,
}

impl ConfigState {
    pub fn new(keep_configs: usize) -> Self {
        ConfigState {
            versions: BTreeMap::new(),
            meta: StateMeta {
                keep_configs: keep_configs.max(1),
                ..StateMeta::default()
            },
        }
    }

    pub fn active(&self) -> Option<&VersionRecord> {
        self.meta.active.and_then(|i| self.versions.get(&i))
    }

    pub fn latest(&self) -> Option<&VersionRecord> {
        self.meta.latest.and_then(|i| self.versions.get(&i))
    }

    /// Find a version by full id, or by a unique prefix of at least 7
    /// characters. Newest first when an id was recorded twice (the same
    /// commit re-applied).
    pub fn resolve(&self, id: &str) -> Result<&VersionRecord, String> {
        if id.is_empty() {
            return Err("empty version id".into());
        }
        if let Some(v) = self.versions.values().rev().find(|v| v.id == id) {
            return Ok(v);
        }
        if id.len() < 7 {
            return Err(format!(
                "no version {id:?} (give a full id or at least 7 characters)"
            ));
        }
        let mut found: Option<&VersionRecord> = None;
        for v in self.versions.values().rev() {
            if v.id.starts_with(id) {
                match found {
                    Some(f) if f.id != v.id => {
                        return Err(format!(
                            "version prefix {id:?} is ambiguous ({} and {})",
                            f.id, v.id
                        ))
                    }
                    Some(_) => {}
                    None => found = Some(v),
                }
            }
        }
        found.ok_or_else(|| format!("no version {id:?} in the history"))
    }

    /// Check a command against the state before proposing it, so a command
    /// that cannot take effect never enters the log.
    pub fn check(&self, cmd: &Command) -> Result<(), String> {
        match cmd {
            Command::Rollback {
                fetched: Some(_), ..
            } => Ok(()),
            Command::Rollback { to, .. } => {
                let v = self.resolve(to)?;
                if v.config.is_none() {
                    return Err(format!(
                        "version {} is older than the {} kept configs; its config was pruned",
                        v.id, self.meta.keep_configs
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Apply one command recorded at log `index`.
    pub fn apply(&mut self, index: u64, cmd: &Command) -> (ApplyOutcome, Changes) {
        let before = self.meta.active;
        let mut changes = Changes::default();
        // The config an entry carries, unpacked once.
        let mut unpacked = match cmd {
            Command::ApplyConfig { config, .. }
            | Command::Rollback {
                fetched: Some(crate::types::FetchedVersion { config, .. }),
                ..
            } => Some(config.unpack().map_err(|e| e.to_string())),
            _ => None,
        };
        let result: Result<(), String> = match cmd {
            Command::ApplyConfig { source, .. }
                if source.kind == SourceKind::Git
                    && !source.commit.is_empty()
                    && source.commit == self.meta.last_git_commit =>
            {
                // The same commit proposed twice (a leader change while it
                // was in flight): recorded once.
                Ok(())
            }
            Command::RejectCommit { commit, .. }
                if !commit.is_empty() && *commit == self.meta.last_git_commit =>
            {
                Ok(())
            }
            // Every node reads the same bytes, so every node refuses.
            _ if matches!(unpacked, Some(Err(_))) => Err(format!(
                "the entry's config cannot be read: {}",
                unpacked.take().and_then(Result::err).unwrap_or_default()
            )),
            Command::ApplyConfig {
                config: _,
                hash,
                source,
            } => {
                let config = unpacked.take().and_then(Result::ok).unwrap_or_default();
                if source.kind == SourceKind::Git {
                    self.meta.last_git_commit = source.commit.clone();
                }
                let id = match source.kind {
                    SourceKind::Git if !source.commit.is_empty() => source.commit.clone(),
                    _ => format!("admin-{index}"),
                };
                self.versions.insert(
                    index,
                    VersionRecord {
                        id,
                        index,
                        hash: hash.clone(),
                        source: source.clone(),
                        config: Some(Arc::from(config)),
                    },
                );
                changes.upserted.push(index);
                self.meta.latest = Some(index);
                let serve = match (&self.meta.mode, source.kind) {
                    (Mode::Following, _) => true,
                    (Mode::Pinned { .. }, SourceKind::Admin) => {
                        self.meta.mode = Mode::Following;
                        true
                    }
                    (Mode::Pinned { .. }, SourceKind::Git) => false,
                };
                if serve {
                    self.meta.active = Some(index);
                }
                self.prune(&mut changes);
                Ok(())
            }
            Command::Rollback {
                to,
                audit,
                fetched: Some(f),
            } => {
                let config = unpacked.take().and_then(Result::ok).unwrap_or_default();
                let id = if f.source.commit.is_empty() {
                    to.clone()
                } else {
                    f.source.commit.clone()
                };
                self.versions.insert(
                    index,
                    VersionRecord {
                        id: id.clone(),
                        index,
                        hash: f.hash.clone(),
                        source: f.source.clone(),
                        config: Some(Arc::from(config)),
                    },
                );
                changes.upserted.push(index);
                self.meta.active = Some(index);
                self.meta.mode = Mode::Pinned { to: id.clone() };
                self.record_event(index, "rollback", &id, audit);
                self.prune(&mut changes);
                Ok(())
            }
            Command::Rollback {
                to,
                audit,
                fetched: None,
            } => match self.check(cmd) {
                Ok(()) => {
                    let v = self.resolve(to).expect("checked");
                    let (idx, id) = (v.index, v.id.clone());
                    self.meta.active = Some(idx);
                    self.meta.mode = Mode::Pinned { to: id.clone() };
                    self.record_event(index, "rollback", &id, audit);
                    Ok(())
                }
                Err(e) => Err(e),
            },
            Command::Resume { audit } => {
                self.meta.mode = Mode::Following;
                self.meta.active = self.meta.latest;
                let id = self.active().map(|v| v.id.clone()).unwrap_or_default();
                self.record_event(index, "resume", &id, audit);
                Ok(())
            }
            Command::SetKeepConfigs { keep_configs } => {
                self.meta.keep_configs =
                    usize::try_from(*keep_configs).unwrap_or(usize::MAX).max(1);
                self.prune(&mut changes);
                Ok(())
            }
            Command::RejectCommit { commit, errors } => {
                self.meta.last_git_commit = commit.clone();
                self.meta.rejected.push(RejectedCommit {
                    commit: commit.clone(),
                    errors: errors.clone(),
                    index,
                });
                let excess = self.meta.rejected.len().saturating_sub(KEEP_REJECTED);
                self.meta.rejected.drain(..excess);
                Ok(())
            }
        };
        changes.active_changed = self.meta.active != before;
        let active = self.active();
        let outcome = ApplyOutcome {
            ok: result.is_ok(),
            error: result.err().unwrap_or_default(),
            active_version: active.map(|v| v.id.clone()).unwrap_or_default(),
            active_hash: active.map(|v| v.hash.clone()).unwrap_or_default(),
            changed: changes.active_changed,
        };
        (outcome, changes)
    }

    /// Versions recorded after the active one while pinned: fetched and
    /// validated, waiting for `Resume`. Oldest first.
    pub fn pending(&self) -> Vec<&VersionRecord> {
        match (&self.meta.mode, self.meta.active) {
            (Mode::Pinned { .. }, Some(active)) => self
                .versions
                .range(active + 1..)
                .map(|(_, v)| v)
                .filter(|v| v.source.kind == SourceKind::Git)
                .collect(),
            _ => Vec::new(),
        }
    }

    fn record_event(&mut self, index: u64, kind: &str, version: &str, audit: &Audit) {
        self.meta.events.push(OperatorEvent {
            index,
            kind: kind.into(),
            version: version.into(),
            audit: audit.clone(),
        });
        let excess = self.meta.events.len().saturating_sub(KEEP_EVENTS);
        self.meta.events.drain(..excess);
    }

    /// Drop the full config of versions beyond the newest `keep_configs`,
    /// never the active one.
    fn prune(&mut self, changes: &mut Changes) {
        let keep = self.meta.keep_configs.max(1);
        let active = self.meta.active;
        let mut kept = 0usize;
        for (idx, v) in self.versions.iter_mut().rev() {
            if v.config.is_none() {
                continue;
            }
            kept += 1;
            if kept > keep && Some(*idx) != active {
                v.config = None;
                changes.upserted.push(*idx);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packed::PackedConfig;

    fn git(commit: &str, hash: &str) -> Command {
        Command::ApplyConfig {
            config: PackedConfig::pack(&format!(
                "{{\"_format_version\":\"3.0\",\"c\":\"{commit}\"}}"
            )),
            hash: hash.into(),
            source: ConfigSource {
                kind: SourceKind::Git,
                commit: commit.into(),
                ..Default::default()
            },
        }
    }

    fn rollback(to: &str) -> Command {
        Command::Rollback {
            to: to.into(),
            audit: Audit {
                by: "ops".into(),
                reason: "bad push".into(),
                time: 1,
            },
            fetched: None,
        }
    }

    fn admin(hash: &str) -> Command {
        Command::ApplyConfig {
            config: PackedConfig::pack("{}"),
            hash: hash.into(),
            source: ConfigSource::default(),
        }
    }

    #[test]
    fn an_entry_whose_config_cannot_be_unpacked_changes_nothing() {
        let mut s = ConfigState::new(10);
        s.apply(1, &git("aaaaaaa1", "h1"));
        let corrupt: PackedConfig =
            serde_json::from_str("\"zstd+b64:AAAA\"").unwrap_or_else(|e| panic!("{e}"));
        let (o, c) = s.apply(
            2,
            &Command::ApplyConfig {
                config: corrupt,
                hash: "h2".into(),
                source: ConfigSource::default(),
            },
        );
        assert!(!o.ok && !o.changed && !c.active_changed);
        assert!(o.error.contains("cannot be read"), "{}", o.error);
        assert_eq!(s.active().map(|v| v.hash.as_str()), Some("h1"));
        assert_eq!(s.versions.len(), 1);
    }

    #[test]
    fn set_keep_configs_prunes_at_once_and_every_later_apply_uses_it() {
        let mut s = ConfigState::new(DEFAULT_KEEP_CONFIGS);
        for i in 1..=4u64 {
            s.apply(i, &git(&format!("commit{i:04}"), &format!("h{i}")));
        }
        assert!(s.versions.values().all(|v| v.config.is_some()));
        let (o, c) = s.apply(5, &Command::SetKeepConfigs { keep_configs: 2 });
        assert!(o.ok && !o.changed, "{}", o.error);
        assert_eq!(s.meta.keep_configs, 2);
        // The two oldest lost their config, and are written back.
        assert_eq!(c.upserted, vec![2, 1]);
        assert!(s.versions[&1].config.is_none() && s.versions[&2].config.is_none());
        assert!(s.versions[&3].config.is_some() && s.versions[&4].config.is_some());
        // A rollback to a pruned version is refused, by check and by apply.
        assert!(s.check(&rollback("commit0001")).is_err());
        let (o, _) = s.apply(6, &rollback("commit0001"));
        assert!(!o.ok && o.error.contains("pruned"), "{}", o.error);
        s.apply(7, &git("commit0007", "h7"));
        assert!(s.versions[&3].config.is_none());
        // 0 is read as 1: the active config is always kept.
        s.apply(8, &Command::SetKeepConfigs { keep_configs: 0 });
        assert_eq!(s.meta.keep_configs, 1);
        assert_eq!(
            s.versions.values().filter(|v| v.config.is_some()).count(),
            1
        );
        assert!(s.active().unwrap().config.is_some());
    }

    #[test]
    fn following_serves_each_new_version() {
        let mut s = ConfigState::new(10);
        let (o, c) = s.apply(1, &git("aaaaaaa1", "h1"));
        assert!(o.ok && o.changed && c.active_changed);
        assert_eq!(o.active_version, "aaaaaaa1");
        let (o, _) = s.apply(2, &admin("h2"));
        assert_eq!(o.active_version, "admin-2");
        assert_eq!(s.active().unwrap().hash, "h2");
    }

    #[test]
    fn rollback_pins_and_resume_follows_latest() {
        let mut s = ConfigState::new(10);
        s.apply(1, &git("aaaaaaa1", "h1"));
        s.apply(2, &git("bbbbbbb2", "h2"));
        let (o, _) = s.apply(3, &rollback("aaaaaaa"));
        assert!(o.ok, "{}", o.error);
        assert_eq!(o.active_version, "aaaaaaa1");
        assert_eq!(
            s.meta.mode,
            Mode::Pinned {
                to: "aaaaaaa1".into()
            }
        );
        // A new git commit is recorded but not served while pinned.
        let (o, _) = s.apply(4, &git("ccccccc3", "h3"));
        assert!(o.ok && !o.changed);
        assert_eq!(s.active().unwrap().id, "aaaaaaa1");
        assert_eq!(s.latest().unwrap().id, "ccccccc3");
        let (o, _) = s.apply(
            5,
            &Command::Resume {
                audit: Audit::default(),
            },
        );
        assert!(o.ok && o.changed);
        assert_eq!(o.active_version, "ccccccc3");
        assert_eq!(s.meta.mode, Mode::Following);
    }

    #[test]
    fn admin_proposal_while_pinned_is_served_and_unpins() {
        let mut s = ConfigState::new(10);
        s.apply(1, &git("aaaaaaa1", "h1"));
        s.apply(2, &git("bbbbbbb2", "h2"));
        s.apply(3, &rollback("aaaaaaa1"));
        let (o, _) = s.apply(4, &admin("h9"));
        assert_eq!(o.active_version, "admin-4");
        assert_eq!(s.meta.mode, Mode::Following);
    }

    #[test]
    fn rollback_to_unknown_or_ambiguous_or_short_is_refused() {
        let mut s = ConfigState::new(10);
        s.apply(1, &git("abcdef01", "h1"));
        s.apply(2, &git("abcdef02", "h2"));
        assert!(s
            .check(&rollback("abcdef0"))
            .unwrap_err()
            .contains("ambiguous"));
        assert!(s
            .check(&rollback("abc"))
            .unwrap_err()
            .contains("at least 7"));
        assert!(s
            .check(&rollback("fffffffff"))
            .unwrap_err()
            .contains("no version"));
        let (o, _) = s.apply(3, &rollback("zzzzzzzz"));
        assert!(!o.ok);
        assert_eq!(
            o.active_version, "abcdef02",
            "a failed rollback changes nothing"
        );
    }

    #[test]
    fn only_newest_configs_are_kept_and_pruned_ones_cannot_be_rolled_back_to() {
        let mut s = ConfigState::new(2);
        for i in 1..=5u64 {
            s.apply(i, &git(&format!("commit{i:02}"), &format!("h{i}")));
        }
        let kept: Vec<_> = s
            .versions
            .values()
            .filter(|v| v.config.is_some())
            .map(|v| v.index)
            .collect();
        assert_eq!(kept, vec![4, 5]);
        assert_eq!(s.versions.len(), 5, "metadata of pruned versions stays");
        let err = s.check(&rollback("commit01")).unwrap_err();
        assert!(err.contains("pruned"), "{err}");
    }

    #[test]
    fn pinned_active_version_is_never_pruned() {
        let mut s = ConfigState::new(2);
        s.apply(1, &git("commit01", "h1"));
        s.apply(2, &git("commit02", "h2"));
        s.apply(3, &rollback("commit01"));
        for i in 4..=8u64 {
            s.apply(i, &git(&format!("commit{i:02}"), &format!("h{i}")));
        }
        assert!(s.active().unwrap().config.is_some());
        assert_eq!(s.active().unwrap().id, "commit01");
    }

    #[test]
    fn rejected_commits_are_recorded_and_change_nothing_served() {
        let mut s = ConfigState::new(10);
        s.apply(1, &git("aaaaaaa1", "h1"));
        let (o, c) = s.apply(
            2,
            &Command::RejectCommit {
                commit: "bad0001".into(),
                errors: vec!["kong.yml:1:1: x".into()],
            },
        );
        assert!(o.ok && !c.active_changed);
        assert_eq!(s.meta.rejected.len(), 1);
        assert_eq!(o.active_version, "aaaaaaa1");
    }

    #[test]
    fn a_git_commit_proposed_twice_is_recorded_once() {
        let mut s = ConfigState::new(10);
        s.apply(1, &git("aaaaaaa1", "h1"));
        let (o, c) = s.apply(2, &git("aaaaaaa1", "h1"));
        assert!(o.ok && !c.active_changed);
        assert_eq!(s.versions.len(), 1);
        assert_eq!(s.meta.last_git_commit, "aaaaaaa1");
        s.apply(
            3,
            &Command::RejectCommit {
                commit: "bbbbbbb2".into(),
                errors: vec![],
            },
        );
        s.apply(
            4,
            &Command::RejectCommit {
                commit: "bbbbbbb2".into(),
                errors: vec![],
            },
        );
        assert_eq!(s.meta.rejected.len(), 1);
        assert_eq!(s.meta.last_git_commit, "bbbbbbb2");
    }

    #[test]
    fn rollback_to_a_fetched_commit_pins_it_and_is_audited() {
        let mut s = ConfigState::new(10);
        s.apply(1, &git("ccccccc3", "h3"));
        let cmd = Command::Rollback {
            to: "HEAD~5".into(),
            audit: Audit {
                by: "ops".into(),
                reason: "outage".into(),
                time: 7,
            },
            fetched: Some(crate::types::FetchedVersion {
                config: PackedConfig::pack("{}"),
                hash: "h0".into(),
                source: ConfigSource {
                    kind: SourceKind::Git,
                    commit: "0000aaa0".into(),
                    ..Default::default()
                },
            }),
        };
        let (o, _) = s.apply(2, &cmd);
        assert!(o.ok && o.changed);
        assert_eq!(o.active_version, "0000aaa0");
        assert_eq!(
            s.meta.mode,
            Mode::Pinned {
                to: "0000aaa0".into()
            }
        );
        assert_eq!(
            s.meta.last_git_commit, "ccccccc3",
            "the branch position is unchanged"
        );
        assert_eq!(s.meta.events.len(), 1);
        assert_eq!(s.meta.events[0].audit.reason, "outage");
        // A push while pinned is pending.
        s.apply(3, &git("ddddddd4", "h4"));
        let pending: Vec<_> = s.pending().iter().map(|v| v.id.clone()).collect();
        assert_eq!(pending, vec!["ddddddd4"]);
        s.apply(
            4,
            &Command::Resume {
                audit: Audit::default(),
            },
        );
        assert!(s.pending().is_empty());
        assert_eq!(s.active().unwrap().id, "ddddddd4");
        assert_eq!(s.meta.events.len(), 2);
    }
}
