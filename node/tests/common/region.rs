//! A region of real `gateway run --region` processes on loopback, for the
//! cluster and GitOps tests.

use super::*;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const GATEWAY: &str = env!("CARGO_BIN_EXE_gateway");
pub const GATEWAYCTL: &str = env!("CARGO_BIN_EXE_gatewayctl");
pub const WAIT: Duration = Duration::from_secs(30);

/// Cluster tests start several processes each; run them one at a time so
/// elections are not starved of CPU on a 2-core machine.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Member {
    pub id: u64,
    pub raft: u16,
    pub proxy: u16,
    pub admin: u16,
    pub data: PathBuf,
    pub child: Option<Child>,
}

pub struct Region {
    pub name: String,
    pub members: Vec<Member>,
    pub peers: String,
    pub extra: Vec<String>,
    pub _dir: tempfile::TempDir,
}

impl Drop for Region {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

impl Region {
    /// Allocate ports and data dirs for `n` nodes; start none.
    pub async fn new(name: &str, n: usize, extra: &[&str]) -> Region {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut members = Vec::new();
        for i in 0..n {
            members.push(Member {
                id: i as u64 + 1,
                raft: server_port().await,
                proxy: server_port().await,
                admin: server_port().await,
                data: dir.path().join(format!("node{}", i + 1)),
                child: None,
            });
        }
        let peers = members
            .iter()
            .map(|m| format!("{}=127.0.0.1:{}", m.id, m.raft))
            .collect::<Vec<_>>()
            .join(",");
        Region {
            name: name.into(),
            members,
            peers,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            _dir: dir,
        }
    }

    pub async fn start_all(n: usize, extra: &[&str]) -> Region {
        let mut r = Region::new("eu", n, extra).await;
        for i in 0..n {
            r.start(i);
        }
        r.wait_leader(&(0..n).collect::<Vec<_>>()).await;
        r
    }

    pub fn command(&self, i: usize) -> Command {
        let m = &self.members[i];
        let mut cmd = Command::new(GATEWAY);
        cmd.args([
            "run",
            "--region",
            &self.name,
            "--node-id",
            &m.id.to_string(),
        ])
        .arg("--data-dir")
        .arg(&m.data)
        .args(["--raft-listen", &format!("127.0.0.1:{}", m.raft)])
        .args(["--peers", &self.peers])
        .args(["--proxy-listen", &format!("127.0.0.1:{}", m.proxy)])
        .args(["--admin-listen", &format!("127.0.0.1:{}", m.admin)])
        .args(&self.extra)
        .env("GATEWAY_LOG", "error,openraft=off")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
        cmd
    }

    pub fn start(&mut self, i: usize) {
        self.start_with(i, &[]);
    }

    /// Start node `i` with flags of its own after the region's `extra`.
    pub fn start_with(&mut self, i: usize, own: &[&str]) {
        assert!(
            self.members[i].child.is_none(),
            "node {} already running",
            i + 1
        );
        let child = self.command(i).args(own).spawn().expect("spawn gateway");
        self.members[i].child = Some(child);
    }

    /// `kill -9`: no shutdown path runs.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            c.kill().expect("kill -9");
            c.wait().expect("reap");
        }
    }

    pub fn admin(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].admin)
    }

    pub fn proxy(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].proxy)
    }

    pub fn raft(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.members[i].raft)
    }

    pub async fn status(&self, i: usize) -> Option<Value> {
        let got = try_get(&format!("{}/status", self.admin(i))).await?;
        serde_json::from_slice(&got).ok()
    }

    /// Wait until all of `alive` agree on one leader among them; its index.
    pub async fn wait_leader(&self, alive: &[usize]) -> usize {
        let until = tokio::time::Instant::now() + WAIT;
        loop {
            let mut leaders = Vec::new();
            for &i in alive {
                let l = self
                    .status(i)
                    .await
                    .and_then(|s| s["cluster"]["leader_id"].as_u64());
                leaders.push(l);
            }
            if let Some(Some(l)) = leaders.first() {
                let idx = (*l - 1) as usize;
                if leaders.iter().all(|x| *x == Some(*l)) && alive.contains(&idx) {
                    let role = self.status(idx).await.map(|s| s["cluster"]["role"].clone());
                    if role == Some(Value::from("leader")) {
                        return idx;
                    }
                }
            }
            assert!(
                tokio::time::Instant::now() < until,
                "no agreed leader among {alive:?}: {leaders:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `POST /config` on node `i`, retried (at most 20 times, 10 s) while
    /// it answers 503: an election under CPU pressure is a retryable
    /// condition for any client, not what these tests check.
    pub async fn post_config(&self, i: usize, yaml: &str) -> Got {
        let until = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut attempts = 0;
        loop {
            let got = post(
                &format!("{}/config", self.admin(i)),
                "text/yaml",
                yaml.to_string(),
            )
            .await;
            attempts += 1;
            if got.status != 503 || attempts >= 20 || tokio::time::Instant::now() >= until {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Wait until node `i` serves `hash`.
    pub async fn wait_serving(&self, i: usize, hash: &str) {
        let ok = eventually(WAIT, || async move {
            self.status(i)
                .await
                .is_some_and(|s| s["configuration_hash"] == hash)
        })
        .await;
        assert!(
            ok,
            "node {} never served {hash}: {:?}",
            i + 1,
            self.status(i).await
        );
    }
}

/// GET that tolerates a node that is not up (yet).
pub async fn try_get(url: &str) -> Option<Vec<u8>> {
    let req = http::Request::get(url).body(full("")).ok()?;
    let resp = tokio::time::timeout(Duration::from_secs(2), client().request(req))
        .await
        .ok()?
        .ok()?;
    if resp.status() != 200 {
        return None;
    }
    let got = read(resp).await;
    Some(got.body.to_vec())
}

pub fn config(port: u16, path: &str) -> String {
    format!(
        "_format_version: \"3.0\"\nservices:\n  - name: svc\n    url: http://127.0.0.1:{port}\n    routes:\n      - name: r\n        paths: [{path}]\n"
    )
}

pub fn hash_of(got: &Got) -> String {
    assert_eq!(
        got.status,
        201,
        "POST /config: {}",
        String::from_utf8_lossy(&got.body)
    );
    let v: Value = serde_json::from_slice(&got.body).expect("json");
    v["configuration_hash"].as_str().expect("hash").to_string()
}

/// `gatewayctl -o json history --limit 0` of node `i`, or what gatewayctl
/// said when it failed.
pub fn history_json(region: &Region, i: usize) -> Result<Value, String> {
    let (ok, out) = ctl(&[
        "--server",
        &region.raft(i),
        "-o",
        "json",
        "history",
        "--limit",
        "0",
    ]);
    if !ok {
        return Err(out);
    }
    serde_json::from_str(&out).map_err(|e| format!("history json: {e}: {out}"))
}

pub fn ctl(args: &[&str]) -> (bool, String) {
    let out = Command::new(GATEWAYCTL)
        .args(args)
        .output()
        .expect("run gatewayctl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
