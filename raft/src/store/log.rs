//! The Raft log store: log entries, vote, committed and last purged log ids.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, RaftLogReader, StorageIOError};
use redb::{ReadableDatabase, ReadableTable};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{blocking, Db, KEY_COMMITTED, KEY_LAST_PURGED, KEY_VOTE, LOG, META};
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

/// The durable Raft log. Cheap to clone; clones share the database.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Db>,
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("file", &self.db.file)
            .finish()
    }
}

impl LogStore {
    pub(crate) fn new(db: Arc<Db>) -> Self {
        LogStore { db }
    }

    /// The database file.
    pub fn file(&self) -> &std::path::Path {
        &self.db.file
    }

    async fn read_meta<T>(&self, key: &'static str) -> Result<Option<T>, String>
    where
        T: DeserializeOwned + Send + 'static,
    {
        let db = self.db.clone();
        blocking(move || {
            let txn = db
                .db
                .begin_read()
                .map_err(|e| db.err("starting a read", e))?;
            let table = txn
                .open_table(META)
                .map_err(|e| db.err("opening table meta", e))?;
            let got = table
                .get(key)
                .map_err(|e| db.err(format_args!("reading meta/{key}"), e))?;
            match got {
                Some(v) => db.decode("meta", key, v.value()).map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    async fn write_meta<T>(&self, key: &'static str, value: &T) -> Result<(), String>
    where
        T: Serialize + ?Sized,
    {
        self.write_meta_durable(key, value, true).await
    }

    /// `durable: false` skips the fsync: the write becomes durable with the
    /// next fsynced commit. Only for data openraft can do without (the
    /// committed index, an optimization it recomputes from a quorum).
    async fn write_meta_durable<T>(
        &self,
        key: &'static str,
        value: &T,
        durable: bool,
    ) -> Result<(), String>
    where
        T: Serialize + ?Sized,
    {
        let bytes = self.db.encode("meta", key, value)?;
        let db = self.db.clone();
        blocking(move || {
            let mut txn = db
                .db
                .begin_write()
                .map_err(|e| db.err("starting a write", e))?;
            if !durable {
                txn.set_durability(redb::Durability::None)
                    .map_err(|e| db.err("setting durability", e))?;
            }
            {
                let mut table = txn
                    .open_table(META)
                    .map_err(|e| db.err("opening table meta", e))?;
                table
                    .insert(key, bytes.as_slice())
                    .map_err(|e| db.err(format_args!("writing meta/{key}"), e))?;
            }
            db.commit(txn, key)
        })
        .await
    }

    async fn read_range(&self, range: (Bound<u64>, Bound<u64>)) -> Result<Vec<Entry>, String> {
        let db = self.db.clone();
        blocking(move || {
            let txn = db
                .db
                .begin_read()
                .map_err(|e| db.err("starting a read", e))?;
            let table = txn
                .open_table(LOG)
                .map_err(|e| db.err("opening table log", e))?;
            let mut out = Vec::new();
            for item in table
                .range(range)
                .map_err(|e| db.err("reading table log", e))?
            {
                let (k, v) = item.map_err(|e| db.err("reading table log", e))?;
                out.push(db.decode::<Entry>("log", k.value(), v.value())?);
            }
            Ok(out)
        })
        .await
    }
}

fn read_logs_err(e: String) -> StorageError {
    StorageIOError::read_logs(AnyError::error(e)).into()
}

fn write_logs_err(e: String) -> StorageError {
    StorageIOError::write_logs(AnyError::error(e)).into()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        self.read_range(bounds).await.map_err(read_logs_err)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self
            .read_meta::<LogId>(KEY_LAST_PURGED)
            .await
            .map_err(read_logs_err)?;
        let db = self.db.clone();
        let last: Option<Entry> = blocking(move || {
            let txn = db
                .db
                .begin_read()
                .map_err(|e| db.err("starting a read", e))?;
            let table = txn
                .open_table(LOG)
                .map_err(|e| db.err("opening table log", e))?;
            let last = table.last().map_err(|e| db.err("reading table log", e))?;
            match last {
                Some((k, v)) => db.decode("log", k.value(), v.value()).map(Some),
                None => Ok(None),
            }
        })
        .await
        .map_err(read_logs_err)?;
        let last_log_id = last.map(|e| e.log_id).or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.write_meta(KEY_VOTE, vote)
            .await
            .map_err(|e| StorageIOError::write_vote(AnyError::error(e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.read_meta(KEY_VOTE)
            .await
            .map_err(|e| StorageIOError::read_vote(AnyError::error(e)).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.write_meta_durable(KEY_COMMITTED, &committed, false)
            .await
            .map_err(write_logs_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let got: Option<Option<LogId>> =
            self.read_meta(KEY_COMMITTED).await.map_err(read_logs_err)?;
        Ok(got.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut rows = Vec::new();
        for entry in entries {
            let index = entry.log_id.index;
            match self.db.encode("log", index, &entry) {
                Ok(bytes) => rows.push((index, bytes)),
                Err(e) => {
                    callback.log_io_completed(Err(std::io::Error::other(e.clone())));
                    return Err(write_logs_err(e));
                }
            }
        }
        let db = self.db.clone();
        let written = blocking(move || {
            let txn = db
                .db
                .begin_write()
                .map_err(|e| db.err("starting a write", e))?;
            {
                let mut table = txn
                    .open_table(LOG)
                    .map_err(|e| db.err("opening table log", e))?;
                for (index, bytes) in &rows {
                    table
                        .insert(*index, bytes.as_slice())
                        .map_err(|e| db.err(format_args!("writing log/{index}"), e))?;
                }
            }
            // Immediate durability: the commit returns after the fsync.
            db.commit(txn, "log entries")
        })
        .await;
        match written {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.clone())));
                Err(write_logs_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(%log_id, "truncating raft log");
        let db = self.db.clone();
        blocking(move || {
            let txn = db
                .db
                .begin_write()
                .map_err(|e| db.err("starting a write", e))?;
            {
                let mut table = txn
                    .open_table(LOG)
                    .map_err(|e| db.err("opening table log", e))?;
                table
                    .retain_in(log_id.index.., |_, _| false)
                    .map_err(|e| db.err(format_args!("truncating log from {}", log_id.index), e))?;
            }
            db.commit(txn, "truncation")
        })
        .await
        .map_err(write_logs_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(%log_id, "purging raft log");
        let bytes = self
            .db
            .encode("meta", KEY_LAST_PURGED, &log_id)
            .map_err(write_logs_err)?;
        let db = self.db.clone();
        blocking(move || {
            let txn = db
                .db
                .begin_write()
                .map_err(|e| db.err("starting a write", e))?;
            {
                let mut meta = txn
                    .open_table(META)
                    .map_err(|e| db.err("opening table meta", e))?;
                meta.insert(KEY_LAST_PURGED, bytes.as_slice())
                    .map_err(|e| db.err("writing meta/last_purged", e))?;
                let mut table = txn
                    .open_table(LOG)
                    .map_err(|e| db.err("opening table log", e))?;
                table
                    .retain_in(..=log_id.index, |_, _| false)
                    .map_err(|e| db.err(format_args!("purging log up to {}", log_id.index), e))?;
            }
            db.commit(txn, "purge")
        })
        .await
        .map_err(write_logs_err)
    }
}
