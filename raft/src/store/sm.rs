//! The durable state machine: the config store state, last applied log id
//! and membership, and the snapshot.

use std::collections::BTreeSet;
use std::io::Cursor;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, RaftSnapshotBuilder, StorageIOError};
use parking_lot::RwLock;
use redb::ReadableDatabase;
use serde::{Deserialize, Serialize};

use super::{
    blocking, ConfigSink, Db, Loaded, KEY_LAST_APPLIED, KEY_LAST_MEMBERSHIP, KEY_SNAPSHOT_DATA,
    KEY_SNAPSHOT_META, KEY_STATE_META, SM_META, SNAPSHOT, VERSIONS,
};
use crate::state::{ApplyOutcome, ConfigState, VersionRecord};
use crate::types::{
    Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};

/// Last applied log id and membership.
#[derive(Debug, Clone, Default)]
struct Applied {
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
}

/// The in-memory state, shared with [`StateHandle`]s. Only committed state is
/// ever published here.
struct Shared {
    state: Arc<RwLock<ConfigState>>,
    applied: RwLock<Applied>,
}

/// A cloneable read handle on the state machine's memory. The node keeps one
/// after moving the [`StateMachine`] into openraft. It reflects only what is
/// durably committed.
#[derive(Clone)]
pub struct StateHandle {
    shared: Arc<Shared>,
}

impl StateHandle {
    /// The config store state. Read it; do not write it (the state machine
    /// owns it).
    pub fn state(&self) -> Arc<RwLock<ConfigState>> {
        self.shared.state.clone()
    }

    /// The log id of the last applied entry.
    pub fn last_applied(&self) -> Option<LogId> {
        self.shared.applied.read().last_applied
    }

    /// The last applied membership.
    pub fn last_membership(&self) -> StoredMembership {
        self.shared.applied.read().last_membership.clone()
    }

    /// A copy of the active version, if any.
    pub fn active(&self) -> Option<VersionRecord> {
        self.shared.state.read().active().cloned()
    }
}

impl std::fmt::Debug for StateHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateHandle")
            .field("last_applied", &self.last_applied())
            .finish()
    }
}

/// The durable state machine. Also its own snapshot builder (a clone).
#[derive(Clone)]
pub struct StateMachine {
    db: Arc<Db>,
    shared: Arc<Shared>,
    sink: Arc<dyn ConfigSink>,
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine")
            .field("file", &self.db.file)
            .field("last_applied", &self.last_applied())
            .finish()
    }
}

/// The snapshot data, as written.
#[derive(Serialize)]
struct SnapshotRef<'a> {
    last_applied: &'a Option<LogId>,
    last_membership: &'a StoredMembership,
    state: &'a ConfigState,
}

/// The snapshot data, as read.
#[derive(Deserialize)]
struct SnapshotData {
    #[allow(dead_code)]
    last_applied: Option<LogId>,
    #[allow(dead_code)]
    last_membership: StoredMembership,
    state: ConfigState,
}

/// Everything a state machine write puts in one transaction.
struct SmWrite {
    /// Version records to write (`None`: delete the record).
    versions: Vec<(u64, Option<Vec<u8>>)>,
    /// Clear the versions table first (snapshot install).
    replace_versions: bool,
    state_meta: Vec<u8>,
    last_applied: Vec<u8>,
    last_membership: Vec<u8>,
    snapshot: Option<(Vec<u8>, Vec<u8>)>,
}

impl StateMachine {
    pub(crate) fn new(db: Arc<Db>, loaded: Loaded, sink: Arc<dyn ConfigSink>) -> Self {
        let shared = Arc::new(Shared {
            state: Arc::new(RwLock::new(loaded.state)),
            applied: RwLock::new(Applied {
                last_applied: loaded.last_applied,
                last_membership: loaded.last_membership,
            }),
        });
        StateMachine { db, shared, sink }
    }

    /// A read handle on the state, to keep after moving this into openraft.
    pub fn handle(&self) -> StateHandle {
        StateHandle {
            shared: self.shared.clone(),
        }
    }

    /// The config store state (see [`StateHandle::state`]).
    pub fn state(&self) -> Arc<RwLock<ConfigState>> {
        self.shared.state.clone()
    }

    /// The log id of the last applied entry.
    pub fn last_applied(&self) -> Option<LogId> {
        self.shared.applied.read().last_applied
    }

    /// The database file.
    pub fn file(&self) -> &std::path::Path {
        &self.db.file
    }

    fn encode_meta(&self, state: &ConfigState, applied: &Applied) -> Result<SmWrite, String> {
        Ok(SmWrite {
            versions: Vec::new(),
            replace_versions: false,
            state_meta: self.db.encode("sm_meta", KEY_STATE_META, &state.meta)?,
            last_applied: self
                .db
                .encode("sm_meta", KEY_LAST_APPLIED, &applied.last_applied)?,
            last_membership: self.db.encode(
                "sm_meta",
                KEY_LAST_MEMBERSHIP,
                &applied.last_membership,
            )?,
            snapshot: None,
        })
    }

    async fn write(&self, w: SmWrite) -> Result<(), String> {
        self.start_write(w).await
    }

    /// Start writing `w` in one redb transaction on a blocking thread now;
    /// the returned future waits for it (and its fsync).
    fn start_write(&self, w: SmWrite) -> impl std::future::Future<Output = Result<(), String>> {
        let db = self.db.clone();
        blocking(move || {
            let txn = db
                .db
                .begin_write()
                .map_err(|e| db.err("starting a write", e))?;
            {
                let mut versions = txn
                    .open_table(VERSIONS)
                    .map_err(|e| db.err("opening table versions", e))?;
                if w.replace_versions {
                    versions
                        .retain(|_, _| false)
                        .map_err(|e| db.err("clearing table versions", e))?;
                }
                for (index, bytes) in &w.versions {
                    match bytes {
                        Some(b) => versions
                            .insert(*index, b.as_slice())
                            .map(|_| ())
                            .map_err(|e| db.err(format_args!("writing versions/{index}"), e))?,
                        None => versions
                            .remove(*index)
                            .map(|_| ())
                            .map_err(|e| db.err(format_args!("removing versions/{index}"), e))?,
                    }
                }
                let mut meta = txn
                    .open_table(SM_META)
                    .map_err(|e| db.err("opening table sm_meta", e))?;
                for (key, bytes) in [
                    (KEY_STATE_META, &w.state_meta),
                    (KEY_LAST_APPLIED, &w.last_applied),
                    (KEY_LAST_MEMBERSHIP, &w.last_membership),
                ] {
                    meta.insert(key, bytes.as_slice())
                        .map_err(|e| db.err(format_args!("writing sm_meta/{key}"), e))?;
                }
                if let Some((snap_meta, snap_data)) = &w.snapshot {
                    let mut snap = txn
                        .open_table(SNAPSHOT)
                        .map_err(|e| db.err("opening table snapshot", e))?;
                    snap.insert(KEY_SNAPSHOT_META, snap_meta.as_slice())
                        .map_err(|e| db.err("writing snapshot/meta", e))?;
                    snap.insert(KEY_SNAPSHOT_DATA, snap_data.as_slice())
                        .map_err(|e| db.err("writing snapshot/data", e))?;
                }
            }
            // Immediate durability: the commit returns after the fsync.
            db.commit(txn, "the state machine")
        })
    }

    /// Publish committed state to readers.
    fn publish(&self, state: ConfigState, applied: Applied) {
        let mut s = self.shared.state.write();
        let mut a = self.shared.applied.write();
        *s = state;
        *a = applied;
    }
}

fn sm_write_err(e: String) -> StorageError {
    StorageIOError::write_state_machine(AnyError::error(e)).into()
}

fn outcome_unchanged(state: &ConfigState) -> ApplyOutcome {
    let active = state.active();
    ApplyOutcome {
        ok: true,
        error: String::new(),
        active_version: active.map(|v| v.id.clone()).unwrap_or_default(),
        active_hash: active.map(|v| v.hash.clone()).unwrap_or_default(),
        changed: false,
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let (data, applied) = {
            let state = self.shared.state.read();
            let applied = self.shared.applied.read().clone();
            let data = self.db.encode(
                "snapshot",
                KEY_SNAPSHOT_DATA,
                &SnapshotRef {
                    last_applied: &applied.last_applied,
                    last_membership: &applied.last_membership,
                    state: &state,
                },
            );
            (data, applied)
        };
        let data = data.map_err(|e| StorageIOError::write_snapshot(None, AnyError::error(e)))?;
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        let snapshot_id = match applied.last_applied {
            Some(l) => format!("{}-{}-{millis}", l.leader_id.term, l.index),
            None => format!("0-none-{millis}"),
        };
        let meta = SnapshotMeta {
            last_log_id: applied.last_applied,
            last_membership: applied.last_membership,
            snapshot_id,
        };
        let meta_bytes = self
            .db
            .encode("snapshot", KEY_SNAPSHOT_META, &meta)
            .map_err(|e| StorageIOError::write_snapshot(None, AnyError::error(e)))?;
        let db = self.db.clone();
        let stored = data.clone();
        blocking(move || {
            let txn = db
                .db
                .begin_write()
                .map_err(|e| db.err("starting a write", e))?;
            {
                let mut snap = txn
                    .open_table(SNAPSHOT)
                    .map_err(|e| db.err("opening table snapshot", e))?;
                snap.insert(KEY_SNAPSHOT_META, meta_bytes.as_slice())
                    .map_err(|e| db.err("writing snapshot/meta", e))?;
                snap.insert(KEY_SNAPSHOT_DATA, stored.as_slice())
                    .map_err(|e| db.err("writing snapshot/data", e))?;
            }
            db.commit(txn, "the snapshot")
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), AnyError::error(e)))?;
        tracing::info!(snapshot_id = %meta.snapshot_id, bytes = data.len(), "built snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let a = self.shared.applied.read();
        Ok((a.last_applied, a.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ApplyOutcome>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        // Work on a copy (configs are shared `Arc<str>`s, so it is cheap) and
        // publish it only once it is committed.
        let mut state = self.shared.state.read().clone();
        let mut applied = self.shared.applied.read().clone();
        let active_before = state.meta.active;
        let mut upserted = BTreeSet::new();
        let mut out = Vec::new();
        for entry in entries {
            applied.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Normal(cmd) => {
                    let (outcome, changes) = state.apply(entry.log_id.index, &cmd);
                    upserted.extend(changes.upserted);
                    tracing::info!(
                        index = entry.log_id.index,
                        command = %cmd,
                        ok = outcome.ok,
                        error = %outcome.error,
                        active = %outcome.active_version,
                        changed = outcome.changed,
                        "applied"
                    );
                    out.push(outcome);
                }
                EntryPayload::Membership(m) => {
                    applied.last_membership = StoredMembership::new(Some(entry.log_id), m);
                    out.push(outcome_unchanged(&state));
                }
                EntryPayload::Blank => out.push(outcome_unchanged(&state)),
            }
        }
        if out.is_empty() {
            return Ok(out);
        }
        let mut w = self.encode_meta(&state, &applied).map_err(sm_write_err)?;
        for index in upserted {
            let bytes = match state.versions.get(&index) {
                Some(v) => Some(self.db.encode("versions", index, v).map_err(sm_write_err)?),
                None => None,
            };
            w.versions.push((index, bytes));
        }
        // The entries are committed, so the node may serve the new version
        // while its store is being written: the compile overlaps the fsync.
        // A failed write stops the Raft core (and the process); on restart
        // the entries are applied again from the log.
        let written = self.start_write(w);
        let activate = if state.meta.active != active_before {
            state.active().cloned()
        } else {
            None
        };
        self.publish(state, applied);
        if let Some(version) = activate {
            tracing::info!(version = %version.id, hash = %version.hash, "active config version changed");
            self.sink.activate(&version).await;
        }
        written.await.map_err(sm_write_err)?;
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let read_err = |e: String| -> StorageError {
            StorageIOError::read_snapshot(Some(meta.signature()), AnyError::error(e)).into()
        };
        let write_err = |e: String| -> StorageError {
            StorageIOError::write_snapshot(Some(meta.signature()), AnyError::error(e)).into()
        };
        let data = snapshot.into_inner();
        let decoded: SnapshotData = self
            .db
            .decode("snapshot", &meta.snapshot_id, &data)
            .map_err(read_err)?;
        // The retention setting comes with the state: it is replicated.
        let state = decoded.state;
        let applied = Applied {
            last_applied: meta.last_log_id,
            last_membership: meta.last_membership.clone(),
        };
        let mut w = self.encode_meta(&state, &applied).map_err(write_err)?;
        w.replace_versions = true;
        for (index, v) in &state.versions {
            let bytes = self.db.encode("versions", index, v).map_err(write_err)?;
            w.versions.push((*index, Some(bytes)));
        }
        let meta_bytes = self
            .db
            .encode("snapshot", KEY_SNAPSHOT_META, meta)
            .map_err(write_err)?;
        w.snapshot = Some((meta_bytes, data));
        self.write(w).await.map_err(write_err)?;
        let active = state.active().cloned();
        tracing::info!(
            snapshot_id = %meta.snapshot_id,
            versions = state.versions.len(),
            active = active.as_ref().map(|v| v.id.as_str()).unwrap_or(""),
            "installed snapshot"
        );
        self.publish(state, applied);
        if let Some(version) = active {
            self.sink.activate(&version).await;
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let db = self.db.clone();
        let got: Option<(SnapshotMeta, Vec<u8>)> = blocking(move || {
            let txn = db
                .db
                .begin_read()
                .map_err(|e| db.err("starting a read", e))?;
            let table = txn
                .open_table(SNAPSHOT)
                .map_err(|e| db.err("opening table snapshot", e))?;
            let meta = table
                .get(KEY_SNAPSHOT_META)
                .map_err(|e| db.err("reading snapshot/meta", e))?;
            let Some(meta) = meta else { return Ok(None) };
            let meta: SnapshotMeta = db.decode("snapshot", KEY_SNAPSHOT_META, meta.value())?;
            let data = table
                .get(KEY_SNAPSHOT_DATA)
                .map_err(|e| db.err("reading snapshot/data", e))?
                .ok_or_else(|| db.err("reading snapshot/data", "missing"))?
                .value()
                .to_vec();
            Ok(Some((meta, data)))
        })
        .await
        .map_err(|e| -> StorageError {
            StorageIOError::read_snapshot(None, AnyError::error(e)).into()
        })?;
        Ok(got.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}
