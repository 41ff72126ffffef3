//! A region as operators run it: separate `gateway run --region` processes
//! talking Raft over real tonic connections on loopback. Faults are real:
//! `kill -9`, restarts on the same data directory, nodes left offline past
//! log compaction, and peers without a certificate from the cluster CA.

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::region::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_and_survive_a_leader_kill() {
    let _serial = SERIAL.lock().await;
    let up = echo_upstream("svc").await;
    let mut region = Region::start_all(3, &[]).await;
    let leader = region.wait_leader(&[0, 1, 2]).await;
    let follower = (leader + 1) % 3;

    // Proposed on a follower: forwarded, committed, served everywhere.
    let h1 = hash_of(
        &region
            .post_config(follower, &config(up.addr.port(), "/one"))
            .await,
    );
    for i in 0..3 {
        region.wait_serving(i, &h1).await;
        assert_eq!(get(&format!("{}/one", region.proxy(i))).await.status, 200);
    }

    region.kill9(leader);
    let alive: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let new_leader = region.wait_leader(&alive).await;
    assert_ne!(new_leader, leader);
    let h2 = hash_of(
        &region
            .post_config(alive[0], &config(up.addr.port(), "/two"))
            .await,
    );
    for &i in &alive {
        region.wait_serving(i, &h2).await;
        assert_eq!(get(&format!("{}/two", region.proxy(i))).await.status, 200);
    }

    // The killed node comes back and catches up.
    region.start(leader);
    region.wait_serving(leader, &h2).await;
    let s = region.status(leader).await.expect("status");
    assert_eq!(
        s["cluster"]["term"],
        region.status(new_leader).await.expect("status")["cluster"]["term"]
    );

    // gatewayctl sees the history from any node.
    let (ok, out) = ctl(&["--server", &region.raft(leader), "history"]);
    assert!(ok, "{out}");
    assert_eq!(
        out.lines().filter(|l| l.contains("admin-")).count(),
        2,
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_serves_from_disk_before_any_peer_and_the_region_recovers() {
    let _serial = SERIAL.lock().await;
    let up = echo_upstream("svc").await;
    let mut region = Region::start_all(3, &[]).await;
    let h1 = hash_of(
        &region
            .post_config(0, &config(up.addr.port(), "/disk"))
            .await,
    );
    for i in 0..3 {
        region.wait_serving(i, &h1).await;
    }
    // The whole region goes down hard.
    for i in 0..3 {
        region.kill9(i);
    }
    // One node alone: no quorum, no leader, but it serves from disk.
    region.start(2);
    let ready = eventually(WAIT, || async {
        try_get(&format!("{}/status/ready", region.admin(2)))
            .await
            .is_some()
    })
    .await;
    assert!(ready, "node 3 ready from disk");
    let s = region.status(2).await.expect("status");
    assert_eq!(s["configuration_hash"], h1.as_str());
    assert_ne!(s["cluster"]["role"], "leader", "alone, it cannot lead: {s}");
    assert_eq!(get(&format!("{}/disk", region.proxy(2))).await.status, 200);
    // A write without quorum fails cleanly (503), nothing changes.
    let got = tokio::time::timeout(
        Duration::from_secs(20),
        region.post_config(2, &config(up.addr.port(), "/nope")),
    )
    .await
    .expect("answered without hanging");
    assert_eq!(got.status, 503, "{}", String::from_utf8_lossy(&got.body));
    assert_eq!(get(&format!("{}/disk", region.proxy(2))).await.status, 200);

    // The rest of the region returns: the last committed config is there
    // and the next one commits.
    region.start(0);
    region.start(1);
    region.wait_leader(&[0, 1, 2]).await;
    for i in 0..3 {
        region.wait_serving(i, &h1).await;
    }
    let h2 = hash_of(
        &region
            .post_config(1, &config(up.addr.port(), "/after"))
            .await,
    );
    for i in 0..3 {
        region.wait_serving(i, &h2).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_offline_past_compaction_catches_up_by_snapshot() {
    let _serial = SERIAL.lock().await;
    let up = echo_upstream("svc").await;
    let mut region = Region::start_all(3, &["--snapshot-logs", "3"]).await;
    let leader = region.wait_leader(&[0, 1, 2]).await;
    let offline = (leader + 1) % 3;
    let h0 = hash_of(
        &region
            .post_config(leader, &config(up.addr.port(), "/v0"))
            .await,
    );
    region.wait_serving(offline, &h0).await;
    let offline_index = region.status(offline).await.expect("status")["cluster"]["last_log_index"]
        .as_u64()
        .expect("index");
    region.kill9(offline);
    let mut last = String::new();
    for v in 1..=8 {
        last = hash_of(
            &region
                .post_config(leader, &config(up.addr.port(), &format!("/v{v}")))
                .await,
        );
    }
    // The leader compacted past what the offline node has.
    let purged = eventually(WAIT, || async {
        region
            .status(leader)
            .await
            .and_then(|s| s["cluster"]["purged_index"].as_u64())
            .is_some_and(|p| p > offline_index)
    })
    .await;
    assert!(
        purged,
        "leader purged its log past {offline_index}: {:?}",
        region.status(leader).await
    );
    region.start(offline);
    region.wait_serving(offline, &last).await;
    let s = region.status(offline).await.expect("status");
    assert!(
        s["cluster"]["snapshot_index"]
            .as_u64()
            .is_some_and(|i| i > offline_index),
        "caught up through a snapshot: {s}"
    );
    assert_eq!(
        get(&format!("{}/v8", region.proxy(offline))).await.status,
        200
    );
}

/// A node whose data dir was lost must not vote until it has caught up:
/// otherwise it helps elect a peer that lacks a config it had acknowledged,
/// and that committed config is lost. Setup: C is down while X commits on
/// the leader A and on B; then A and B die, B's disk is wiped, and B and C
/// come back. C must not win an election with B's vote; once A returns,
/// every node serves X.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_lost_its_data_does_not_vote_until_caught_up() {
    let _serial = SERIAL.lock().await;
    let up = echo_upstream("svc").await;
    let mut region = Region::start_all(3, &[]).await;
    let a = region.wait_leader(&[0, 1, 2]).await;
    let (b, c) = ((a + 1) % 3, (a + 2) % 3);
    let h0 = hash_of(&region.post_config(a, &config(up.addr.port(), "/v0")).await);
    region.wait_serving(c, &h0).await;

    region.kill9(c);
    let x = hash_of(&region.post_config(a, &config(up.addr.port(), "/x")).await);
    region.wait_serving(b, &x).await;
    region.kill9(a);
    region.kill9(b);
    std::fs::remove_dir_all(&region.members[b].data).expect("wipe b's data dir");

    region.start(b);
    region.start(c);
    // Let C stand at least twice (it asks B for its vote each time).
    let role_term = |s: Option<serde_json::Value>| {
        s.map(|s| {
            (
                s["cluster"]["role"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                s["cluster"]["term"].as_u64().unwrap_or(0),
            )
        })
    };
    let answered = eventually(WAIT, || async { region.status(c).await.is_some() }).await;
    assert!(answered, "c never answered /status");
    let first_term = role_term(region.status(c).await).map_or(0, |(_, t)| t);
    let stood_twice = eventually(WAIT, || async {
        let rc = role_term(region.status(c).await);
        let rb = role_term(region.status(b).await);
        let leader = [&rb, &rc]
            .iter()
            .any(|r| r.as_ref().is_some_and(|(role, _)| role == "leader"));
        leader || rc.is_some_and(|(_, t)| t >= first_term + 2)
    })
    .await;
    assert!(stood_twice, "c never stood for election");
    for i in [b, c] {
        let s = region.status(i).await.expect("status");
        assert_ne!(
            s["cluster"]["role"],
            "leader",
            "node {} led with the wiped node's vote: {s}",
            i + 1
        );
    }
    assert!(
        region.status(c).await.expect("status")["configuration_hash"] != x,
        "c never had x"
    );

    region.start(a);
    for i in 0..3 {
        region.wait_serving(i, &x).await;
    }
    let h2 = hash_of(&region.post_config(b, &config(up.addr.port(), "/v2")).await);
    for i in 0..3 {
        region.wait_serving(i, &h2).await;
    }
}

/// A leader cut off from its majority still believes it leads (openraft
/// 0.9 does not step down); a write sent to it is answered 503 after
/// `--write-timeout-ms` instead of hanging, and the node keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_to_a_leader_without_majority_times_out_with_503() {
    let _serial = SERIAL.lock().await;
    let up = echo_upstream("svc").await;
    let mut region = Region::start_all(3, &["--write-timeout-ms", "1000"]).await;
    let leader = region.wait_leader(&[0, 1, 2]).await;
    let h = hash_of(
        &region
            .post_config(leader, &config(up.addr.port(), "/v1"))
            .await,
    );
    region.wait_serving(leader, &h).await;
    for i in (0..3).filter(|&i| i != leader) {
        region.kill9(i);
    }
    let got = tokio::time::timeout(
        Duration::from_secs(20),
        post(
            &format!("{}/config", region.admin(leader)),
            "text/yaml",
            config(up.addr.port(), "/v2"),
        ),
    )
    .await
    .expect("the write hung past its timeout");
    let body = String::from_utf8_lossy(&got.body);
    assert_eq!(got.status, 503, "{body}");
    assert!(body.contains("not committed within 1s"), "{body}");
    assert_eq!(
        get(&format!("{}/v1", region.proxy(leader))).await.status,
        200
    );
    assert_eq!(
        get(&format!("{}/v2", region.proxy(leader))).await.status,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_tolerate_two_failures() {
    let _serial = SERIAL.lock().await;
    let up = echo_upstream("svc").await;
    let mut region = Region::start_all(5, &[]).await;
    let leader = region.wait_leader(&[0, 1, 2, 3, 4]).await;
    let other = (leader + 1) % 5;
    region.kill9(leader);
    region.kill9(other);
    let alive: Vec<usize> = (0..5).filter(|i| *i != leader && *i != other).collect();
    region.wait_leader(&alive).await;
    let h = hash_of(
        &region
            .post_config(alive[0], &config(up.addr.port(), "/five"))
            .await,
    );
    for &i in &alive {
        region.wait_serving(i, &h).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_proposals_are_rejected_before_the_log() {
    let _serial = SERIAL.lock().await;
    let up = echo_upstream("svc").await;
    let region = Region::start_all(
        3,
        &["--max-config-bytes", "2000", "--max-entry-bytes", "800"],
    )
    .await;
    let h = hash_of(
        &region
            .post_config(1, &config(up.addr.port(), "/good"))
            .await,
    );
    region.wait_serving(0, &h).await;
    let before = region.status(0).await.expect("status")["cluster"]["last_log_index"].clone();

    let bad = "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://127.0.0.1:1\n    routes:\n      - name: r\n        paths: [\"~/(\"]\n";
    let got = region.post_config(1, bad).await;
    assert_eq!(got.status, 400);
    let body = String::from_utf8_lossy(&got.body);
    assert!(
        body.contains("paths[0]") && body.contains(":7:"),
        "located error: {body}"
    );

    let big = format!("{}# {}\n", config(up.addr.port(), "/big"), "x".repeat(3000));
    let got = region.post_config(2, &big).await;
    assert_eq!(got.status, 413, "{}", String::from_utf8_lossy(&got.body));
    assert!(
        String::from_utf8_lossy(&got.body).contains("2000"),
        "the limit is named"
    );

    // Under --max-config-bytes, but it packs (zstd) over --max-entry-bytes:
    // names that do not compress.
    let mut spread = String::from("_format_version: \"3.0\"\nservices:\n");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..21 {
        let (name, a, b) = (next(), next(), next());
        spread.push_str(&format!(
            "  - name: s{name:016x}\n    url: http://127.0.0.1:9/{a:016x}{b:016x}\n"
        ));
    }
    assert!(spread.len() < 2000, "{}", spread.len());
    let got = region.post_config(2, &spread).await;
    let body = String::from_utf8_lossy(&got.body);
    assert_eq!(got.status, 413, "{body}");
    assert!(
        body.contains("800-byte") && body.contains("--max-entry-bytes"),
        "the entry limit is named: {body}"
    );

    let (ok, out) = ctl(&["--server", &region.raft(0), "rollback", "deadbeefcafe"]);
    assert!(!ok && out.contains("no version"), "{out}");

    // None of them reached the log; the good config still serves.
    let after = region.status(0).await.expect("status")["cluster"]["last_log_index"].clone();
    assert_eq!(before, after);
    assert_eq!(get(&format!("{}/good", region.proxy(0))).await.status, 200);
}

/// A config of a megabyte (2.3 MB once normalized) commits with the default
/// 100 ms heartbeat: openraft gives one AppendEntries a heartbeat to be
/// sent and fsynced, which the escaped JSON text did not fit (retried
/// forever); the packed (zstd) entry does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_megabyte_config_commits_with_default_timing() {
    let _serial = SERIAL.lock().await;
    let up = echo_upstream("svc").await;
    let region = Region::start_all(3, &[]).await;
    let mut yaml = config(up.addr.port(), "/big");
    for i in 0..5200 {
        yaml.push_str(&format!(
            "  - name: inventory-backend-{i:05}\n    url: http://127.0.0.1:9/internal/{i:05}\n    routes:\n      - name: inventory-public-{i:05}\n        paths: [/api/v1/inventory/{i:05}, /api/v2/inventory/{i:05}/legacy]\n"
        ));
    }
    assert!(yaml.len() > 1_000_000, "{}", yaml.len());
    let got = tokio::time::timeout(Duration::from_secs(120), region.post_config(1, &yaml))
        .await
        .expect("the 1 MB proposal was never answered (AppendEntries retried forever?)");
    let h = hash_of(&got);
    for i in 0..3 {
        region.wait_serving(i, &h).await;
    }
    assert_eq!(get(&format!("{}/big", region.proxy(2))).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_pins_and_resume_follows_again() {
    let _serial = SERIAL.lock().await;
    let up = echo_upstream("svc").await;
    let region = Region::start_all(3, &[]).await;
    let h1 = hash_of(
        &region
            .post_config(0, &config(up.addr.port(), "/first"))
            .await,
    );
    let h2 = hash_of(
        &region
            .post_config(0, &config(up.addr.port(), "/second"))
            .await,
    );
    region.wait_serving(2, &h2).await;
    let s = region.status(2).await.expect("status");
    let v2 = s["cluster"]["active_version"]
        .as_str()
        .expect("version")
        .to_string();
    let v1 = format!(
        "admin-{}",
        v2.trim_start_matches("admin-").parse::<u64>().expect("n") - 1
    );

    let (ok, out) = ctl(&["--server", &region.raft(2), "rollback", &v1]);
    assert!(ok, "{out}");
    for i in 0..3 {
        region.wait_serving(i, &h1).await;
        assert_eq!(
            region.status(i).await.expect("s")["cluster"]["mode"],
            "pinned"
        );
    }
    assert_eq!(get(&format!("{}/first", region.proxy(1))).await.status, 200);
    assert_eq!(
        get(&format!("{}/second", region.proxy(1))).await.status,
        404
    );

    let (ok, out) = ctl(&["--server", &region.raft(1), "resume"]);
    assert!(ok, "{out}");
    for i in 0..3 {
        region.wait_serving(i, &h2).await;
    }
    let (ok, out) = ctl(&["--server", &region.raft(0), "status"]);
    assert!(ok, "{out}");
    assert_eq!(
        out.lines()
            .filter(|l| l.contains(&h2) && l.contains("following"))
            .count(),
        3,
        "{out}"
    );
}

/// `gatewayctl -o json history` of node `i`: the region's retention and,
/// newest first, whether each version still has its full config.
fn retention(region: &Region, i: usize) -> Option<(u64, Vec<(String, bool)>)> {
    let v = history_json(region, i).ok()?;
    let kept = v["versions"]
        .as_array()?
        .iter()
        .map(|v| {
            (
                v["id"].as_str().unwrap_or_default().to_string(),
                v["config_kept"].as_bool().unwrap_or_default(),
            )
        })
        .collect();
    Some((v["keep_configs"].as_u64()?, kept))
}

/// Wait until node `i` reports the region keeps `want` full configs; its
/// history then.
async fn wait_keep_configs(region: &Region, i: usize, want: u64) -> (u64, Vec<(String, bool)>) {
    let mut got = None;
    let settled = eventually(WAIT, || {
        got = retention(region, i);
        let ok = got.as_ref().is_some_and(|(k, _)| *k == want);
        async move { ok }
    })
    .await;
    assert!(settled, "node {}: {got:?}, want keep_configs {want}", i + 1);
    got.expect("history")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_configs_is_the_leaders_and_every_node_prunes_the_same_versions() {
    let _serial = SERIAL.lock().await;
    let up = echo_upstream("svc").await;
    let mut region = Region::new("eu", 3, &[]).await;
    // Every node asks for a different retention; the region keeps one.
    let keep = [2u64, 3, 4];
    for (i, k) in keep.iter().enumerate() {
        region.start_with(i, &["--keep-configs", &k.to_string()]);
    }
    let all = [0usize, 1, 2];
    let leader = region.wait_leader(&all).await;
    let mut last = String::new();
    for k in 0..5 {
        let got = region
            .post_config(leader, &config(up.addr.port(), &format!("/v{k}")))
            .await;
        last = hash_of(&got);
    }
    for i in all {
        region.wait_serving(i, &last).await;
    }
    // Same retention and the same pruned versions on every node: the
    // leader's, whatever each node's own flag says.
    let want = keep[leader];
    let mut seen = Vec::new();
    for i in all {
        let (_, versions) = wait_keep_configs(&region, i, want).await;
        assert_eq!(versions.len(), 5, "node {}: {versions:?}", i + 1);
        let kept = versions.iter().filter(|(_, kept)| *kept).count() as u64;
        assert_eq!(kept, want, "node {}: {versions:?}", i + 1);
        seen.push(versions);
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:?}");
    // A rollback to a pruned version is refused, whichever node is asked.
    let (pruned, _) = seen[0].last().expect("oldest").clone();
    for i in all {
        let (ok, out) = ctl(&["--server", &region.raft(i), "rollback", &pruned]);
        assert!(!ok && out.contains("pruned"), "node {}: {out}", i + 1);
    }

    // A new leader proposes its own value, and every survivor takes it.
    region.kill9(leader);
    let rest: Vec<usize> = all.iter().copied().filter(|&i| i != leader).collect();
    let next = region.wait_leader(&rest).await;
    let want = keep[next];
    for &i in &rest {
        wait_keep_configs(&region, i, want).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_of_another_region_is_refused() {
    let _serial = SERIAL.lock().await;
    let mut region = Region::new("eu", 1, &[]).await;
    region.start(0);
    region.wait_leader(&[0]).await;
    region.kill9(0);
    region.name = "us".into();
    let out = region
        .command(0)
        .stderr(Stdio::piped())
        .output()
        .expect("run");
    region.name = "eu".into();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let file = region.members[0].data.join("raft.redb");
    assert!(
        err.contains(&file.display().to_string()) && err.contains("eu"),
        "{err}"
    );

    // A corrupted store is an error naming the file, never a silent reset.
    std::fs::write(&file, b"this is not a redb file").expect("write");
    let out = region
        .command(0)
        .stderr(Stdio::piped())
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&file.display().to_string()), "{err}");
    assert_eq!(
        std::fs::read(&file).expect("read"),
        b"this is not a redb file"
    );
}

#[test]
fn plaintext_cluster_on_a_public_address_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(GATEWAY)
        .args([
            "run",
            "--region",
            "eu",
            "--node-id",
            "1",
            "--raft-listen",
            "0.0.0.0:0",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "--proxy-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--allow-insecure-cluster") && err.contains("0.0.0.0"),
        "{err}"
    );
}

fn certs(dir: &Path, args: &[&str]) {
    let (ok, out) = ctl(&[&["certs"], args, &["--dir", dir.to_str().expect("utf8")]].concat());
    assert!(ok, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_region_refuses_clients_and_peers_without_a_cluster_certificate() {
    let _serial = SERIAL.lock().await;
    let up = echo_upstream("svc").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca");
    let other = dir.path().join("other");
    certs(&ca, &["init"]);
    for n in ["gw-1", "gw-2", "gw-3"] {
        certs(&ca, &["issue", "--node", n]);
    }
    certs(&ca, &["issue", "--client", "ops"]);
    certs(&other, &["init"]);
    certs(&other, &["issue", "--client", "ops"]);
    certs(&other, &["issue", "--node", "gw-4"]);

    let mut region = Region::new("eu", 3, &[]).await;
    for i in 0..3 {
        let m = &region.members[i];
        let name = format!("gw-{}", m.id);
        let mut cmd = region.command(i);
        cmd.arg("--tls-ca").arg(ca.join("ca.pem"));
        cmd.arg("--tls-cert").arg(ca.join(format!("{name}.pem")));
        cmd.arg("--tls-key").arg(ca.join(format!("{name}.key")));
        region.members[i].child = Some(cmd.spawn().expect("spawn"));
    }
    region.wait_leader(&[0, 1, 2]).await;
    let h = hash_of(&region.post_config(1, &config(up.addr.port(), "/tls")).await);
    for i in 0..3 {
        region.wait_serving(i, &h).await;
    }
    let server = region.raft(0);
    let with = |d: &Path| {
        vec![
            "--tls-ca".to_string(),
            ca.join("ca.pem").display().to_string(),
            "--tls-cert".to_string(),
            d.join("ops.pem").display().to_string(),
            "--tls-key".to_string(),
            d.join("ops.key").display().to_string(),
        ]
    };
    let args = |extra: Vec<String>| {
        let mut a = vec!["--server".to_string(), server.clone()];
        a.extend(extra);
        a.push("status".into());
        a
    };
    let run = |a: Vec<String>| ctl(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let (ok, out) = run(args(with(&ca)));
    assert!(
        ok && out.contains("leader"),
        "client with a cluster cert: {out}"
    );
    let (ok, out) = run(args(vec![]));
    assert!(!ok, "plaintext client refused: {out}");
    let (ok, out) = run(args(with(&other)));
    assert!(!ok, "client with another CA's cert refused: {out}");

    // A would-be peer holding a node certificate from another CA is
    // refused at the handshake, on the Raft port like any other caller.
    let (ok, out) = run(args(vec![
        "--tls-ca".into(),
        other.join("ca.pem").display().to_string(),
        "--tls-cert".into(),
        other.join("gw-4.pem").display().to_string(),
        "--tls-key".into(),
        other.join("gw-4.key").display().to_string(),
    ]));
    assert!(!ok, "peer with another CA's node cert refused: {out}");
    let h2 = hash_of(
        &region
            .post_config(0, &config(up.addr.port(), "/still"))
            .await,
    );
    for i in 0..3 {
        region.wait_serving(i, &h2).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_add_joins_a_learner_then_promotes_it_and_remove_drops_it() {
    let _serial = SERIAL.lock().await;
    let up = echo_upstream("svc").await;
    // Four slots; the region starts with nodes 1-3 only.
    let mut region = Region::new("eu", 4, &[]).await;
    let three = region
        .peers
        .rsplit_once(',')
        .expect("4 peers")
        .0
        .to_string();
    let all = region.peers.clone();
    region.peers = three;
    for i in 0..3 {
        region.start(i);
    }
    region.wait_leader(&[0, 1, 2]).await;
    let h = hash_of(
        &region
            .post_config(0, &config(up.addr.port(), "/join"))
            .await,
    );
    // Node 4 lists every node: it is not the lowest id, so it waits.
    region.peers = all;
    region.start(3);
    let (ok, out) = ctl(&[
        "--server",
        &region.raft(1),
        "members",
        "add",
        &format!("4={}", region.raft(3)),
    ]);
    assert!(ok, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with('4') && l.contains("voter")),
        "{out}"
    );
    region.wait_serving(3, &h).await;
    assert_eq!(get(&format!("{}/join", region.proxy(3))).await.status, 200);
    let s = region.status(3).await.expect("status");
    assert_eq!(
        s["cluster"]["members"].as_array().map(|m| m.len()),
        Some(4),
        "{s}"
    );

    let (ok, out) = ctl(&["--server", &region.raft(2), "members", "remove", "4"]);
    assert!(ok, "{out}");
    assert!(!out.lines().any(|l| l.starts_with('4')), "{out}");
    let (ok, out) = ctl(&["--server", &region.raft(0), "members", "list"]);
    assert!(ok && out.lines().count() == 3, "{out}");
}

#[test]
fn gatewayctl_validate_uses_the_nodes_validator_offline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("kong.yml");
    std::fs::write(
        &bad,
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://x:1\n    routes:\n      - name: r\n        paths: [\"~/(\"]\n",
    )
    .expect("write");
    let (ok, out) = ctl(&["validate", bad.to_str().expect("utf8")]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("kong.yml:7:17: services[0].routes[0].paths[0]: invalid regex"),
        "{out}"
    );
    let good = dir.path().join("good.yml");
    std::fs::write(&good, config(9, "/ok")).expect("write");
    let (ok, out) = ctl(&["validate", good.to_str().expect("utf8")]);
    assert!(ok && out.starts_with("ok: 1 services, 1 routes"), "{out}");
}
