//! openraft's own storage test suite against the redb-backed store.

use std::sync::Arc;

use gateway_raft::store::{open_store, Identity, LogStore, NoopSink, StateMachine};
use gateway_raft::TypeConfig;
use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use tempfile::TempDir;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let identity = Identity {
            region: "test".into(),
            node_id: 0,
        };
        let (log, sm) = open_store(dir.path(), &identity, Arc::new(NoopSink))
            .unwrap_or_else(|e| panic!("open_store: {e}"));
        Ok((dir, log, sm))
    }
}

/// The suite builds its own tokio runtimes, so this is a plain test.
#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).unwrap_or_else(|e| panic!("storage suite failed: {e}"));
}
