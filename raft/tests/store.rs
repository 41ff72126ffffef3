//! The durable store: what survives a restart, when the live config is
//! swapped, and how it refuses files that are not its own or not readable.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use gateway_raft::state::VersionRecord;
use gateway_raft::store::{
    open_store, ConfigSink, Identity, LogStore, NoopSink, StateMachine, DB_FILE,
};
use gateway_raft::types::Entry;
use gateway_raft::{Command, ConfigSource, Mode, OpenError, PackedConfig, SourceKind};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::{
    CommittedLeaderId, EntryPayload, LogId, Membership, RaftLogReader, RaftSnapshotBuilder, Vote,
};

fn identity(region: &str, node_id: u64) -> Identity {
    Identity {
        region: region.into(),
        node_id,
    }
}

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn normal(index: u64, cmd: Command) -> Entry {
    Entry {
        log_id: log_id(1, index),
        payload: EntryPayload::Normal(cmd),
    }
}

fn blank(index: u64) -> Entry {
    Entry {
        log_id: log_id(1, index),
        payload: EntryPayload::Blank,
    }
}

fn membership(index: u64, voters: &[u64]) -> Entry {
    let set: BTreeSet<u64> = voters.iter().copied().collect();
    Entry {
        log_id: log_id(1, index),
        payload: EntryPayload::Membership(Membership::new(vec![set], None)),
    }
}

fn git(commit: &str) -> Command {
    Command::ApplyConfig {
        config: PackedConfig::pack(&format!(
            "{{\"_format_version\":\"3.0\",\"commit\":\"{commit}\"}}"
        )),
        hash: format!("hash-{commit}"),
        source: ConfigSource {
            kind: SourceKind::Git,
            commit: commit.into(),
            ..Default::default()
        },
    }
}

fn admin() -> Command {
    Command::ApplyConfig {
        config: PackedConfig::pack("{\"_format_version\":\"3.0\"}"),
        hash: "hash-admin".into(),
        source: ConfigSource::default(),
    }
}

/// Records the id of every version it is asked to activate.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<String>>,
}

impl Recorder {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

impl ConfigSink for Recorder {
    fn activate<'a>(
        &'a self,
        version: &'a VersionRecord,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        self.calls.lock().unwrap().push(version.id.clone());
        Box::pin(async {})
    }
}

fn open(dir: &Path) -> (LogStore, StateMachine) {
    open_store(dir, &identity("eu", 1), Arc::new(NoopSink))
        .unwrap_or_else(|e| panic!("open_store: {e}"))
}

fn open_err(dir: &Path, id: &Identity) -> OpenError {
    match open_store(dir, id, Arc::new(NoopSink)) {
        Ok(_) => panic!("open_store unexpectedly succeeded"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn state_active_version_and_last_applied_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let (_log, mut sm) = open(dir.path());
        let out = sm
            .apply(vec![
                normal(1, Command::SetKeepConfigs { keep_configs: 2 }),
                membership(2, &[1, 2, 3]),
                normal(3, git("commit0001")),
                normal(4, git("commit0002")),
                normal(5, admin()),
            ])
            .await
            .unwrap();
        assert_eq!(out.len(), 5);
        assert_eq!(out[4].active_version, "admin-5");
        sm.apply(vec![
            normal(6, git("commit0003")),
            normal(
                7,
                Command::Rollback {
                    to: "admin-5".into(),
                    audit: Default::default(),
                    fetched: None,
                },
            ),
        ])
        .await
        .unwrap();
        let handle = sm.handle();
        let state = handle.state().read().clone();
        assert_eq!(state.active().unwrap().id, "admin-5");
        assert_eq!(
            state.meta.mode,
            Mode::Pinned {
                to: "admin-5".into()
            }
        );
        // keep_configs = 2 (entry 1): the oldest configs are pruned, their
        // metadata stays, and the setting itself survives the reopen below.
        assert_eq!(state.meta.keep_configs, 2);
        assert!(state.versions[&3].config.is_none());
        assert!(state.versions[&4].config.is_none());
        assert!(state.versions[&6].config.is_some());
        assert_eq!(state.versions.len(), 4);
        state
    };

    let (_log, mut sm) = open(dir.path());
    let handle = sm.handle();
    // Readable at once, before any Raft runs.
    assert_eq!(*handle.state().read(), before);
    assert_eq!(handle.active().unwrap().id, "admin-5");
    assert_eq!(handle.last_applied(), Some(log_id(1, 7)));
    assert_eq!(sm.last_applied(), Some(log_id(1, 7)));
    let (applied, mem) = sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(1, 7)));
    assert_eq!(mem.log_id(), &Some(log_id(1, 2)));
    assert_eq!(
        mem.membership(),
        &Membership::new(vec![[1, 2, 3].into()], None)
    );
}

#[tokio::test]
async fn log_vote_committed_and_purge_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, _sm) = open(dir.path());
        log.blocking_append((1..=5).map(blank)).await.unwrap();
        log.blocking_append([normal(6, git("commit0001"))])
            .await
            .unwrap();
        log.save_vote(&Vote::new(3, 1)).await.unwrap();
        log.save_committed(Some(log_id(1, 5))).await.unwrap();
        log.purge(log_id(1, 2)).await.unwrap();
        log.truncate(log_id(1, 6)).await.unwrap();
    }
    let (mut log, _sm) = open(dir.path());
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(3, 1)));
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(1, 5)));
    let st = log.get_log_state().await.unwrap();
    assert_eq!(st.last_purged_log_id, Some(log_id(1, 2)));
    assert_eq!(st.last_log_id, Some(log_id(1, 5)));
    let entries = log.try_get_log_entries(0..100).await.unwrap();
    let indices: Vec<u64> = entries.iter().map(|e| e.log_id.index).collect();
    assert_eq!(indices, vec![3, 4, 5]);
}

#[tokio::test]
async fn sink_sees_one_activate_per_batch_that_changed_the_active_version() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Arc::new(Recorder::default());
    let (_log, mut sm) = open_store(dir.path(), &identity("eu", 1), rec.clone()).unwrap();

    // Two new versions in one batch: one call, with the last.
    sm.apply(vec![
        normal(1, git("commit0001")),
        normal(2, git("commit0002")),
    ])
    .await
    .unwrap();
    assert_eq!(rec.calls(), vec!["commit0002"]);

    // Nothing served changes: no call.
    sm.apply(vec![
        blank(3),
        membership(4, &[1]),
        normal(
            5,
            Command::RejectCommit {
                commit: "bad0001".into(),
                errors: vec!["x".into()],
            },
        ),
    ])
    .await
    .unwrap();
    // A failed rollback changes nothing either.
    let out = sm
        .apply(vec![normal(
            6,
            Command::Rollback {
                to: "nosuchversion".into(),
                audit: Default::default(),
                fetched: None,
            },
        )])
        .await
        .unwrap();
    assert!(!out[0].ok);
    assert_eq!(rec.calls(), vec!["commit0002"]);

    // Rollback, then a git commit that is recorded but not served while pinned.
    sm.apply(vec![
        normal(
            7,
            Command::Rollback {
                to: "commit0001".into(),
                audit: Default::default(),
                fetched: None,
            },
        ),
        normal(8, git("commit0003")),
    ])
    .await
    .unwrap();
    assert_eq!(rec.calls(), vec!["commit0002", "commit0001"]);

    // Resume serves the newest.
    let out = sm
        .apply(vec![normal(
            9,
            Command::Resume {
                audit: Default::default(),
            },
        )])
        .await
        .unwrap();
    assert!(out[0].changed);
    assert_eq!(rec.calls(), vec!["commit0002", "commit0001", "commit0003"]);

    // By the time of the call the state is committed: a reopen sees it.
    drop(sm);
    drop(_log);
    let (_log, sm) = open(dir.path());
    assert_eq!(sm.handle().active().unwrap().id, "commit0003");
}

#[tokio::test]
async fn reopening_with_another_region_or_node_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    let file = dir.path().join(DB_FILE);

    let err = open_err(dir.path(), &identity("us", 1));
    assert!(matches!(err, OpenError::IdentityMismatch { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&file.display().to_string()), "{msg}");
    assert!(msg.contains("\"eu\"") && msg.contains("\"us\""), "{msg}");

    let err = open_err(dir.path(), &identity("eu", 2));
    match &err {
        OpenError::IdentityMismatch {
            stored_node_id,
            node_id,
            ..
        } => {
            assert_eq!((*stored_node_id, *node_id), (1, 2));
        }
        other => panic!("expected IdentityMismatch, got {other:?}"),
    }
    assert!(err.to_string().contains(&file.display().to_string()));

    // The refusals changed nothing: the right identity still opens.
    drop(open(dir.path()));
}

/// Deterministic pseudo-random bytes (xorshift), no extra dependency.
fn garbage(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

#[test]
fn a_garbage_file_is_reported_and_left_untouched() {
    for (len, seed) in [(100usize, 7u64), (64 * 1024, 42), (1 << 20, 99)] {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(DB_FILE);
        let bytes = garbage(len, seed);
        std::fs::write(&file, &bytes).unwrap();

        let err = open_err(dir.path(), &identity("eu", 1));
        assert!(
            matches!(err, OpenError::Corrupt { .. }),
            "len {len}: {err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains(&file.display().to_string()), "{msg}");
        assert!(msg.contains("not reset"), "{msg}");
        assert_eq!(
            std::fs::read(&file).unwrap(),
            bytes,
            "len {len}: the file was changed"
        );
    }
}

#[tokio::test]
async fn an_undecodable_record_is_an_error_naming_the_table_and_key() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_log, mut sm) = open(dir.path());
        sm.apply(vec![normal(1, git("commit0001"))]).await.unwrap();
    }
    let file = dir.path().join(DB_FILE);
    {
        let db = redb::Database::open(&file).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn
                .open_table(redb::TableDefinition::<u64, &[u8]>::new("versions"))
                .unwrap();
            t.insert(1, b"{not json".as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let err = open_err(dir.path(), &identity("eu", 1));
    match &err {
        OpenError::Record { table, key, .. } => {
            assert_eq!((*table, key.as_str()), ("versions", "1"))
        }
        other => panic!("expected Record, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&file.display().to_string()) && msg.contains("versions/1"),
        "{msg}"
    );
}

#[tokio::test]
async fn snapshot_installs_into_a_fresh_store_and_activates() {
    let dir_a = tempfile::tempdir().unwrap();
    let (_log_a, mut sm_a) = open(dir_a.path());
    sm_a.apply(vec![
        membership(1, &[1, 2]),
        normal(2, git("commit0001")),
        normal(3, git("commit0002")),
        normal(
            4,
            Command::RejectCommit {
                commit: "bad0001".into(),
                errors: vec!["e".into()],
            },
        ),
        normal(
            5,
            Command::Rollback {
                to: "commit0001".into(),
                audit: Default::default(),
                fetched: None,
            },
        ),
    ])
    .await
    .unwrap();
    let snap = sm_a
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert_eq!(snap.meta.last_log_id, Some(log_id(1, 5)));
    assert!(
        snap.meta.snapshot_id.starts_with("1-5-"),
        "{}",
        snap.meta.snapshot_id
    );
    let current = sm_a
        .get_current_snapshot()
        .await
        .unwrap()
        .expect("stored snapshot");
    assert_eq!(current.meta, snap.meta);
    assert_eq!(current.snapshot.get_ref(), snap.snapshot.get_ref());

    let dir_b = tempfile::tempdir().unwrap();
    let rec = Arc::new(Recorder::default());
    let (_log_b, mut sm_b) = open_store(dir_b.path(), &identity("eu", 2), rec.clone()).unwrap();
    assert!(sm_b.get_current_snapshot().await.unwrap().is_none());
    let mut recv = sm_b.begin_receiving_snapshot().await.unwrap();
    assert!(recv.get_ref().is_empty());
    *recv = *snap.snapshot;
    sm_b.install_snapshot(&snap.meta, recv).await.unwrap();

    let want = sm_a.state().read().clone();
    assert_eq!(*sm_b.state().read(), want);
    assert_eq!(rec.calls(), vec!["commit0001"]);
    assert_eq!(
        sm_b.applied_state().await.unwrap(),
        sm_a.applied_state().await.unwrap()
    );
    assert_eq!(
        sm_b.get_current_snapshot().await.unwrap().unwrap().meta,
        snap.meta
    );

    // Installed state is durable.
    drop(sm_b);
    drop(_log_b);
    let (_log_b, sm_b) = open_store(dir_b.path(), &identity("eu", 2), Arc::new(NoopSink)).unwrap();
    assert_eq!(*sm_b.state().read(), want);
    assert_eq!(sm_b.last_applied(), Some(log_id(1, 5)));
}

#[tokio::test]
async fn a_second_open_of_the_same_file_is_refused_not_reset() {
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm) = open(dir.path());
    sm.apply(vec![normal(1, git("commit0001"))]).await.unwrap();
    let err = open_err(dir.path(), &identity("eu", 1));
    assert!(matches!(err, OpenError::InUse { .. }), "{err:?}");
    assert_eq!(sm.handle().active().unwrap().id, "commit0001");
}
