//! Applies the store's active version to the node's live config.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use gateway_raft::{ConfigSink, VersionRecord};
use parking_lot::Mutex;

use crate::snapshot::{Applied, LiveConfig};

/// Compiles the active version and swaps it in. A version that does not
/// compile on this node (it passed validation on the proposer) leaves the
/// previous config serving and is reported in `status.local_error`.
pub struct LiveSink {
    live: Arc<LiveConfig>,
    local_error: Arc<Mutex<String>>,
}

impl LiveSink {
    pub fn new(live: Arc<LiveConfig>, local_error: Arc<Mutex<String>>) -> Self {
        LiveSink { live, local_error }
    }

    pub async fn activate_now(&self, version: &VersionRecord) {
        let Some(text) = version.config.as_deref() else {
            let msg = format!("version {} has no stored config", version.id);
            tracing::error!(version = %version.id, "active version has no stored config");
            *self.local_error.lock() = msg;
            return;
        };
        let name = format!("version {}", version.id);
        // Parse and compile off the async workers: a multi-MB config takes
        // long enough to delay heartbeats otherwise.
        let handle = tokio::runtime::Handle::current();
        let applied = match handle.runtime_flavor() {
            tokio::runtime::RuntimeFlavor::MultiThread => {
                let live = self.live.clone();
                tokio::task::block_in_place(move || {
                    handle.block_on(live.apply_version(&name, &version.hash, text))
                })
            }
            _ => self.live.apply_version(&name, &version.hash, text).await,
        };
        match applied {
            Ok(Applied::Swapped { hash }) => {
                tracing::info!(version = %version.id, index = version.index, %hash, "serving new config");
                self.local_error.lock().clear();
            }
            Ok(Applied::Unchanged { .. }) => self.local_error.lock().clear(),
            Err(e) => {
                tracing::error!(version = %version.id, error = %e, "cannot serve the active version; keeping the previous config");
                *self.local_error.lock() = format!("version {}: {e}", version.id);
            }
        }
    }
}

impl ConfigSink for LiveSink {
    fn activate<'a>(
        &'a self,
        version: &'a VersionRecord,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(self.activate_now(version))
    }
}
