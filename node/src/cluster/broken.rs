//! A DELIBERATE BUG, compiled only with the test-only cargo feature
//! `broken-apply-before-commit` (off by default; never enable it in a
//! build that serves traffic).
//!
//! The leader swaps the config a write would produce into its live router
//! *before* handing the command to Raft, instead of when the entry is
//! committed and applied by the state machine. A leader cut off from its
//! region then serves a config no majority ever accepted. The chaos suite
//! (`chaos-tests`, scenario i "write to a stale leader") must catch this;
//! docs/reliability.md shows how to build and run this variant and the
//! failure lines it produces.

use gateway_raft::Command;

use super::Cluster;

/// Apply what `cmd` would serve to `cluster.live` right away (the bug).
/// Called by `Cluster::write_local` just before `raft.client_write`.
pub(super) async fn apply_before_commit(cluster: &Cluster, cmd: &Command) {
    let (name, text) = match cmd {
        Command::ApplyConfig { config, hash, .. } => (
            format!("uncommitted {hash}"),
            config.unpack().map_err(|e| e.to_string()),
        ),
        Command::Rollback {
            fetched: Some(f),
            to,
            ..
        } => (
            format!("uncommitted rollback {to}"),
            f.config.unpack().map_err(|e| e.to_string()),
        ),
        Command::Rollback { to, .. } => {
            let found = {
                let state = cluster.state.state();
                let state = state.read();
                state
                    .resolve(to)
                    .ok()
                    .and_then(|v| v.config.as_deref().map(str::to_string))
            };
            (
                format!("uncommitted rollback {to}"),
                found.ok_or_else(|| format!("no stored config for {to}")),
            )
        }
        Command::Resume { .. } | Command::RejectCommit { .. } | Command::SetKeepConfigs { .. } => {
            return
        }
    };
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "broken-apply-before-commit: no config text");
            return;
        }
    };
    // The same path the sink takes when a committed version is applied.
    match cluster.live.apply_normalized(&name, &text).await {
        Ok(applied) => tracing::error!(
            ?applied,
            "broken-apply-before-commit: serving a config before Raft committed it"
        ),
        Err(e) => tracing::error!(error = %e, "broken-apply-before-commit: apply failed"),
    }
}
