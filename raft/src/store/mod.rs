//! Durable Raft storage: the log store and the state machine share one redb
//! file, `<data-dir>/raft.redb`.
//!
//! Every write transaction uses redb's default durability (`Immediate`): the
//! file is fsynced when the commit returns, and nothing is acknowledged to
//! openraft before that.
//!
//! Tables:
//! - `log`: log index → JSON of the openraft `Entry`.
//! - `meta`: `vote`, `committed`, `last_purged` (JSON), and `identity` (the
//!   region and node id the file belongs to).
//! - `versions`: version index → JSON of a [`VersionRecord`].
//! - `sm_meta`: `state_meta` ([`StateMeta`](crate::state::StateMeta)),
//!   `last_applied`, `last_membership` (JSON).
//! - `snapshot`: `meta` (JSON `SnapshotMeta`) and `data` (the snapshot bytes).
//!
//! An existing file is never deleted, truncated or recreated: when it cannot
//! be read, [`open_store`] fails and says so.

mod log;
mod sm;

use std::collections::BTreeMap;
use std::fmt::Display;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use redb::{Database, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use log::LogStore;
pub use sm::{StateHandle, StateMachine};

use crate::state::{ConfigState, StateMeta, VersionRecord};
use crate::types::{LogId, StoredMembership};

/// Name of the database file under the data directory.
pub const DB_FILE: &str = "raft.redb";

pub(crate) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub(crate) const VERSIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("versions");
pub(crate) const SM_META: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_meta");
pub(crate) const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");

pub(crate) const KEY_VOTE: &str = "vote";
pub(crate) const KEY_COMMITTED: &str = "committed";
pub(crate) const KEY_LAST_PURGED: &str = "last_purged";
pub(crate) const KEY_IDENTITY: &str = "identity";
pub(crate) const KEY_STATE_META: &str = "state_meta";
pub(crate) const KEY_LAST_APPLIED: &str = "last_applied";
pub(crate) const KEY_LAST_MEMBERSHIP: &str = "last_membership";
pub(crate) const KEY_SNAPSHOT_META: &str = "meta";
pub(crate) const KEY_SNAPSHOT_DATA: &str = "data";

/// Which region and node a data directory belongs to. Recorded on first
/// open and checked on every later open, so a node never starts on another
/// node's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub region: String,
    pub node_id: u64,
}

/// Why the store could not be opened. Nothing on disk is changed when one of
/// these is returned.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The data directory or file could not be created or accessed.
    #[error("cannot use {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file belongs to another region or node.
    #[error(
        "data directory {} belongs to region {stored_region:?} node {stored_node_id}, not region \
         {region:?} node {node_id}; point --data-dir at this node's own directory",
        file.display()
    )]
    IdentityMismatch {
        file: PathBuf,
        stored_region: String,
        stored_node_id: u64,
        region: String,
        node_id: u64,
    },
    /// Another process (or another store in this process) has the file open.
    #[error(
        "{} is already open (by another process, or another store in this process): {detail}",
        file.display()
    )]
    InUse { file: PathBuf, detail: String },
    /// redb could not open or read the file.
    #[error(
        "{} is not a readable raft store: {detail}. The file was not reset or changed; restore it \
         from a backup, or remove this node from the region and add it back with an empty data \
         directory",
        file.display()
    )]
    Corrupt { file: PathBuf, detail: String },
    /// A stored record could not be decoded.
    #[error(
        "{}: record {table}/{key} cannot be decoded: {detail}. The file was not reset or changed",
        file.display()
    )]
    Record {
        file: PathBuf,
        table: &'static str,
        key: String,
        detail: String,
    },
}

/// Receives the newly active config version. Called by the state machine
/// after the apply batch (or snapshot install) that changed it is durably
/// committed, once per batch.
pub trait ConfigSink: Send + Sync + 'static {
    fn activate<'a>(
        &'a self,
        version: &'a VersionRecord,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}

/// A sink that does nothing (tests, tools).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopSink;

impl ConfigSink for NoopSink {
    fn activate<'a>(
        &'a self,
        _version: &'a VersionRecord,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async {})
    }
}

/// The database shared by the log store and the state machine.
pub(crate) struct Db {
    pub(crate) db: Database,
    pub(crate) file: PathBuf,
}

/// A write transaction whose commit (with its fsync) takes longer than this
/// is logged as a warning: a slow disk delays every config commit, and the
/// warning is how an operator tells it from a slow network or a busy CPU
/// (etcd warns about slow fdatasync for the same reason).
pub const SLOW_COMMIT: std::time::Duration = std::time::Duration::from_millis(20);

impl Db {
    /// Commit `txn`, warning when it took longer than [`SLOW_COMMIT`].
    pub(crate) fn commit(&self, txn: redb::WriteTransaction, what: &str) -> Result<(), String> {
        let started = std::time::Instant::now();
        let result = txn
            .commit()
            .map_err(|e| self.err(format_args!("committing {what}"), e));
        let took = started.elapsed();
        if took > SLOW_COMMIT {
            tracing::warn!(
                file = %self.file.display(),
                what,
                took_ms = took.as_secs_f64() * 1e3,
                "slow disk: a store commit (fsync) took longer than {} ms",
                SLOW_COMMIT.as_millis()
            );
        }
        result
    }

    /// An error message naming the file and what was being done.
    pub(crate) fn err(&self, doing: impl Display, e: impl Display) -> String {
        format!("{}: {doing}: {e}", self.file.display())
    }

    pub(crate) fn encode<T: Serialize + ?Sized>(
        &self,
        table: &str,
        key: impl Display,
        value: &T,
    ) -> Result<Vec<u8>, String> {
        serde_json::to_vec(value).map_err(|e| self.err(format_args!("encoding {table}/{key}"), e))
    }

    pub(crate) fn decode<T: DeserializeOwned>(
        &self,
        table: &str,
        key: impl Display,
        bytes: &[u8],
    ) -> Result<T, String> {
        decode(bytes)
            .map_err(|e| self.err(format_args!("record {table}/{key} cannot be decoded"), e))
    }
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// Run blocking redb work off the async workers. Every caller awaits it
/// before returning, so writes stay serialized.
/// Run `f` on a blocking thread. It starts when this is called, not when
/// the returned future is first polled.
pub(crate) fn blocking<T, F>(f: F) -> impl std::future::Future<Output = Result<T, String>>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, String> + Send + 'static,
{
    let task = tokio::task::spawn_blocking(f);
    async move {
        match task.await {
            Ok(r) => r,
            Err(e) => Err(format!("storage task failed: {e}")),
        }
    }
}

/// What the state machine persisted besides the versions.
pub(crate) struct Loaded {
    pub(crate) state: ConfigState,
    pub(crate) last_applied: Option<LogId>,
    pub(crate) last_membership: StoredMembership,
}

/// Open (or create) `data_dir/raft.redb` and return the log store and the
/// state machine sharing it. The state machine's state is loaded and readable
/// (via [`StateMachine::handle`]) before Raft starts.
///
/// How many full configs are kept is replicated state (`SetKeepConfigs`):
/// a new store starts with the default, and the stored value is kept as is.
pub fn open_store(
    data_dir: &Path,
    identity: &Identity,
    sink: Arc<dyn ConfigSink>,
) -> Result<(LogStore, StateMachine), OpenError> {
    std::fs::create_dir_all(data_dir).map_err(|source| OpenError::Io {
        path: data_dir.to_path_buf(),
        source,
    })?;
    let file = data_dir.join(DB_FILE);
    let db = open_db(&file)?;
    let db = Arc::new(Db { db, file });
    let loaded = init(&db, identity)?;
    tracing::info!(
        file = %db.file.display(),
        region = %identity.region,
        node_id = identity.node_id,
        versions = loaded.state.versions.len(),
        keep_configs = loaded.state.meta.keep_configs,
        active = loaded.state.active().map(|v| v.id.as_str()).unwrap_or(""),
        last_applied = ?loaded.last_applied,
        "opened raft store"
    );
    let log = LogStore::new(db.clone());
    let sm = StateMachine::new(db, loaded, sink);
    Ok((log, sm))
}

fn open_db(file: &Path) -> Result<Database, OpenError> {
    let mut builder = redb::Builder::new();
    // Verify every page on open: a damaged file fails with an error instead
    // of being trusted (a plain open may panic on it).
    builder.set_check_integrity_on_open(true);
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| builder.create(file)));
    let err = match opened {
        Ok(Ok(db)) => return Ok(db),
        Ok(Err(e)) => e,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown panic");
            return Err(OpenError::Corrupt {
                file: file.to_path_buf(),
                detail: format!("redb failed while opening it: {msg}"),
            });
        }
    };
    use std::io::ErrorKind;
    Err(match err {
        redb::DatabaseError::DatabaseAlreadyOpen | redb::DatabaseError::LockProtocolMismatch => {
            OpenError::InUse {
                file: file.to_path_buf(),
                detail: err.to_string(),
            }
        }
        redb::DatabaseError::Storage(redb::StorageError::Io(e))
            if matches!(
                e.kind(),
                ErrorKind::NotFound
                    | ErrorKind::PermissionDenied
                    | ErrorKind::ReadOnlyFilesystem
                    | ErrorKind::StorageFull
                    | ErrorKind::OutOfMemory
            ) =>
        {
            OpenError::Io {
                path: file.to_path_buf(),
                source: e,
            }
        }
        other => OpenError::Corrupt {
            file: file.to_path_buf(),
            detail: other.to_string(),
        },
    })
}

/// Create the tables, check or record the identity, and load the state
/// machine, in one write transaction (aborted on any error).
fn init(db: &Db, identity: &Identity) -> Result<Loaded, OpenError> {
    let corrupt = |doing: &str, e: &dyn Display| OpenError::Corrupt {
        file: db.file.clone(),
        detail: format!("{doing}: {e}"),
    };
    let record = |table: &'static str, key: &dyn Display, e: &dyn Display| OpenError::Record {
        file: db.file.clone(),
        table,
        key: key.to_string(),
        detail: e.to_string(),
    };
    let txn = db
        .db
        .begin_write()
        .map_err(|e| corrupt("starting a transaction", &e))?;
    let loaded = (|| {
        let open = |name: &str, e: &dyn Display| corrupt(&format!("opening table {name}"), e);
        // Create every table so later reads find them.
        txn.open_table(LOG).map_err(|e| open("log", &e))?;
        txn.open_table(SNAPSHOT).map_err(|e| open("snapshot", &e))?;
        let mut meta = txn.open_table(META).map_err(|e| open("meta", &e))?;
        let stored = meta
            .get(KEY_IDENTITY)
            .map_err(|e| corrupt("reading meta/identity", &e))?
            .map(|v| decode::<Identity>(v.value()));
        match stored {
            Some(Err(e)) => return Err(record("meta", &KEY_IDENTITY, &e)),
            Some(Ok(stored)) if stored != *identity => {
                return Err(OpenError::IdentityMismatch {
                    file: db.file.clone(),
                    stored_region: stored.region,
                    stored_node_id: stored.node_id,
                    region: identity.region.clone(),
                    node_id: identity.node_id,
                })
            }
            Some(Ok(_)) => {}
            None => {
                let bytes =
                    serde_json::to_vec(identity).map_err(|e| corrupt("encoding identity", &e))?;
                meta.insert(KEY_IDENTITY, bytes.as_slice())
                    .map_err(|e| corrupt("writing meta/identity", &e))?;
            }
        }
        drop(meta);

        let sm_meta = txn.open_table(SM_META).map_err(|e| open("sm_meta", &e))?;
        let get = |key: &'static str| -> Result<Option<Vec<u8>>, OpenError> {
            Ok(sm_meta
                .get(key)
                .map_err(|e| corrupt(&format!("reading sm_meta/{key}"), &e))?
                .map(|v| v.value().to_vec()))
        };
        let state_meta: StateMeta = match get(KEY_STATE_META)? {
            Some(b) => decode(&b).map_err(|e| record("sm_meta", &KEY_STATE_META, &e))?,
            None => StateMeta::default(),
        };
        let last_applied: Option<LogId> = match get(KEY_LAST_APPLIED)? {
            Some(b) => decode(&b).map_err(|e| record("sm_meta", &KEY_LAST_APPLIED, &e))?,
            None => None,
        };
        let last_membership: StoredMembership = match get(KEY_LAST_MEMBERSHIP)? {
            Some(b) => decode(&b).map_err(|e| record("sm_meta", &KEY_LAST_MEMBERSHIP, &e))?,
            None => StoredMembership::default(),
        };
        drop(sm_meta);

        let versions_table = txn.open_table(VERSIONS).map_err(|e| open("versions", &e))?;
        let mut versions = BTreeMap::new();
        for item in versions_table
            .iter()
            .map_err(|e| corrupt("reading table versions", &e))?
        {
            let (k, v) = item.map_err(|e| corrupt("reading table versions", &e))?;
            let index = k.value();
            let rec: VersionRecord =
                decode(v.value()).map_err(|e| record("versions", &index, &e))?;
            versions.insert(index, rec);
        }
        Ok(Loaded {
            state: ConfigState {
                versions,
                meta: state_meta,
            },
            last_applied,
            last_membership,
        })
    })();
    match loaded {
        Ok(loaded) => {
            txn.commit().map_err(|e| corrupt("committing", &e))?;
            Ok(loaded)
        }
        Err(e) => {
            // Nothing was written that must survive; leave the file as it was.
            let _ = txn.abort();
            Err(e)
        }
    }
}
