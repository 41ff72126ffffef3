//! GitOps benchmark (issue 4): a bare Git repository built with the `git`
//! CLI, served over `file://` to a 3-node region of real `gateway run
//! --region --git-url` processes on loopback.
//!
//! ```sh
//! cargo build --release -p gateway-node --bins --examples
//! target/release/examples/gitops_bench
//! ```
//!
//! `cargo run --example` does not rebuild the `gateway` binary, so build the
//! bins first. The binary is looked up next to the example
//! (`target/release/gateway`); `GATEWAY_BIN` overrides it. `git` must be on
//! the `PATH`.
//!
//! Measures:
//! 1. webhook push → all 3 nodes serving: `git push`, then a signed
//!    `POST /hooks/git` to a node's admin API (nodes in turn); each node's
//!    `GET /status` is polled every 5 ms until `cluster.active_version` is
//!    the new commit on all 3 (`--git-poll-interval 1h`);
//! 2. rollback / resume → all 3 nodes serving, through the control gRPC
//!    service (`Rollback` to the commit before the head, then `Resume`),
//!    sent to the nodes in turn;
//! 3. polling mode: a push without a webhook → all 3 nodes serving, with
//!    `--git-poll-interval 1s` (a fresh region).
//!
//! Also checks once whether a push is picked up without a webhook under the
//! 1 h poll interval (it should not be before the interval).
//!
//! Env: `PUSHES` (30), `ROLLBACKS` (20, each followed by a resume),
//! `POLL_PUSHES` (10), `POLL_INTERVAL` (`1s`), `SERVICES` (0: extra services
//! in every config besides the one whose route changes), `NODE_LOG`
//! (`GATEWAY_LOG` of the nodes, default `error,openraft=off`),
//! `NODE_LOG_DIR` (write each node's stderr to `<dir>/<phase>-node<N>.log`
//! instead of inheriting it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gateway_proto::control::control_client::ControlClient;
use gateway_proto::control::{ResumeRequest, RollbackRequest, WriteReply};
use gateway_raft::network::{Dialer, MAX_MESSAGE_BYTES};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tonic::transport::Channel;

mod support;
use support::{env_string, env_usize, free_port, gateway_binary, loadavg, ms, pct};

type Control = ControlClient<Channel>;
type HttpClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

const SECRET: &str = "gitops-bench-webhook-secret";
const WEBHOOK_BODY: &str = r#"{"ref":"refs/heads/main"}"#;
/// Give up on one sample after this long (counted as missed).
const SAMPLE_LIMIT: Duration = Duration::from_secs(30);
const WAIT: Duration = Duration::from_secs(60);
const STATUS_EVERY: Duration = Duration::from_millis(5);

/// `git` with a fixed identity and no signing; stdout, trimmed.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Bench Ops")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "Bench Ops")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

struct Repo {
    dir: tempfile::TempDir,
    bare: PathBuf,
    work: PathBuf,
}

impl Repo {
    fn new() -> Repo {
        let dir = tempfile::Builder::new()
            .prefix("gitops_bench")
            .tempdir()
            .expect("tempdir");
        let bare = dir.path().join("config.git");
        let work = dir.path().join("work");
        std::fs::create_dir_all(&bare).expect("mkdir");
        std::fs::create_dir_all(&work).expect("mkdir");
        git(&bare, &["init", "--bare", "-q", "-b", "main"]);
        git(&work, &["init", "-q", "-b", "main"]);
        git(
            &work,
            &["remote", "add", "origin", bare.to_str().expect("utf8")],
        );
        Repo { dir, bare, work }
    }

    fn url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    /// Write `gateway/kong.yml`, commit, push; the new sha.
    fn push(&self, yaml: &str, message: &str) -> String {
        let p = self.work.join("gateway/kong.yml");
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, yaml).expect("write");
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "-m", message]);
        git(&self.work, &["push", "-q", "origin", "main"]);
        git(&self.work, &["rev-parse", "HEAD"])
    }
}

/// One service whose route path is `path`, plus `extra` fixed services.
fn config(path: &str, extra: usize) -> String {
    let mut s = String::with_capacity(extra * 260 + 256);
    s.push_str("_format_version: \"3.0\"\nservices:\n");
    s.push_str(&format!(
        "  - name: bench\n    url: http://127.0.0.1:9\n    routes:\n      - name: bench\n        paths: [{path}]\n"
    ));
    for i in 0..extra {
        s.push_str(&format!(
            "  - name: inventory-catalogue-backend-{i:05}\n    url: http://127.0.0.1:9/internal/inventory/{i:05}\n    routes:\n      - name: inventory-catalogue-public-{i:05}\n        paths: [/api/v1/inventory/{i:05}/catalogue, /api/v2/inventory/{i:05}/catalogue-legacy]\n"
        ));
    }
    s
}

struct Member {
    id: u64,
    raft: u16,
    proxy: u16,
    admin: u16,
    data: PathBuf,
    child: Option<Child>,
    control: Control,
}

struct Region {
    members: Vec<Member>,
    http: HttpClient,
    _dir: tempfile::TempDir,
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
    /// Start `n` nodes with `extra` arguments; `phase` names log files.
    async fn start(n: usize, extra: &[String], phase: &str) -> Region {
        let bin = gateway_binary();
        let dir = tempfile::Builder::new()
            .prefix("gitops_bench_region")
            .tempdir()
            .expect("tempdir");
        let dialer = Dialer::new(None);
        let mut members = Vec::new();
        for i in 0..n {
            let raft = free_port().await;
            let ch = dialer
                .channel(&format!("127.0.0.1:{raft}"))
                .expect("channel");
            members.push(Member {
                id: i as u64 + 1,
                raft,
                proxy: free_port().await,
                admin: free_port().await,
                data: dir.path().join(format!("node{}", i + 1)),
                child: None,
                control: ControlClient::new(ch)
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
            });
        }
        let peers = members
            .iter()
            .map(|m| format!("{}=127.0.0.1:{}", m.id, m.raft))
            .collect::<Vec<_>>()
            .join(",");
        let log = env_string("NODE_LOG", "error,openraft=off");
        let log_dir = std::env::var_os("NODE_LOG_DIR").map(PathBuf::from);
        for m in &mut members {
            let stderr = match &log_dir {
                Some(d) => {
                    std::fs::create_dir_all(d).expect("mkdir NODE_LOG_DIR");
                    let f = std::fs::File::create(d.join(format!("{phase}-node{}.log", m.id)))
                        .expect("log file");
                    Stdio::from(f)
                }
                None => Stdio::inherit(),
            };
            let child = Command::new(&bin)
                .args(["run", "--region", "eu", "--node-id", &m.id.to_string()])
                .arg("--data-dir")
                .arg(&m.data)
                .args(["--raft-listen", &format!("127.0.0.1:{}", m.raft)])
                .args(["--peers", &peers])
                .args(["--proxy-listen", &format!("127.0.0.1:{}", m.proxy)])
                .args(["--admin-listen", &format!("127.0.0.1:{}", m.admin)])
                .args(extra)
                .env("GATEWAY_LOG", &log)
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
            m.child = Some(child);
        }
        Region {
            members,
            http: hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http(),
            _dir: dir,
        }
    }

    /// `GET /status` on node `i`'s admin API.
    async fn status(&self, i: usize) -> Option<Value> {
        let req = http::Request::get(format!("http://127.0.0.1:{}/status", self.members[i].admin))
            .body(Full::new(Bytes::new()))
            .ok()?;
        let resp = tokio::time::timeout(Duration::from_secs(1), self.http.request(req))
            .await
            .ok()?
            .ok()?;
        if resp.status() != 200 {
            return None;
        }
        let body = tokio::time::timeout(Duration::from_secs(1), resp.into_body().collect())
            .await
            .ok()?
            .ok()?
            .to_bytes();
        serde_json::from_slice(&body).ok()
    }

    async fn active_version(&self, i: usize) -> Option<String> {
        let s = self.status(i).await?;
        s["cluster"]["active_version"].as_str().map(str::to_owned)
    }

    /// Poll every node every 5 ms until all serve `version`, or
    /// `SAMPLE_LIMIT` after `t0`. Times (from `t0`) when the first node and
    /// when all nodes served it; `None` when the limit passed.
    async fn wait_serving(&self, version: &str, t0: Instant) -> Option<(Duration, Duration)> {
        let n = self.members.len();
        let mut done = vec![false; n];
        let mut first = None;
        loop {
            for (i, d) in done.iter_mut().enumerate() {
                if !*d && self.active_version(i).await.as_deref() == Some(version) {
                    *d = true;
                    first.get_or_insert_with(|| t0.elapsed());
                }
            }
            if done.iter().all(|d| *d) {
                return Some((first.expect("some node served"), t0.elapsed()));
            }
            if t0.elapsed() > SAMPLE_LIMIT {
                return None;
            }
            tokio::time::sleep(STATUS_EVERY).await;
        }
    }

    /// Signed `POST /hooks/git` to node `i`; the status code.
    async fn webhook(&self, i: usize) -> u16 {
        let sig = gateway_gitops::sign_github(SECRET.as_bytes(), WEBHOOK_BODY.as_bytes());
        let req = http::Request::post(format!(
            "http://127.0.0.1:{}/hooks/git",
            self.members[i].admin
        ))
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-hub-signature-256", sig)
        .body(Full::new(Bytes::from_static(WEBHOOK_BODY.as_bytes())))
        .expect("request");
        match self.http.request(req).await {
            Ok(r) => {
                let s = r.status().as_u16();
                let _ = r.into_body().collect().await;
                s
            }
            Err(e) => panic!("webhook to node {}: {e}", i + 1),
        }
    }

    async fn rollback(&self, i: usize, to: &str) -> Result<WriteReply, tonic::Status> {
        let mut c = self.members[i].control.clone();
        let mut req = tonic::Request::new(RollbackRequest {
            to: to.into(),
            by: "gitops_bench".into(),
            reason: "bench".into(),
        });
        req.set_timeout(Duration::from_secs(10));
        c.rollback(req).await.map(|r| r.into_inner())
    }

    async fn resume(&self, i: usize) -> Result<WriteReply, tonic::Status> {
        let mut c = self.members[i].control.clone();
        let mut req = tonic::Request::new(ResumeRequest {
            by: "gitops_bench".into(),
            reason: "bench".into(),
        });
        req.set_timeout(Duration::from_secs(10));
        c.resume(req).await.map(|r| r.into_inner())
    }

    /// The leader's index once all nodes agree on it.
    async fn wait_leader(&self) -> usize {
        let until = Instant::now() + WAIT;
        loop {
            let mut leaders = Vec::new();
            for i in 0..self.members.len() {
                leaders.push(
                    self.status(i)
                        .await
                        .and_then(|s| s["cluster"]["leader_id"].as_u64()),
                );
            }
            if let Some(Some(l)) = leaders.first() {
                if leaders.iter().all(|x| *x == Some(*l)) {
                    return (*l - 1) as usize;
                }
            }
            assert!(Instant::now() < until, "no agreed leader: {leaders:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

struct Series {
    name: String,
    first: Vec<Duration>,
    all: Vec<Duration>,
    missed: usize,
    load: String,
}

impl Series {
    fn new(name: &str) -> Series {
        Series {
            name: name.into(),
            first: Vec::new(),
            all: Vec::new(),
            missed: 0,
            load: String::new(),
        }
    }

    fn add(&mut self, got: Option<(Duration, Duration)>) {
        match got {
            Some((f, a)) => {
                self.first.push(f);
                self.all.push(a);
            }
            None => self.missed += 1,
        }
    }

    fn print(&mut self) {
        self.first.sort();
        self.all.sort();
        if self.all.is_empty() {
            println!(
                "| {} | 0 | - | - | - | - | {} | {} |",
                self.name, self.missed, self.load
            );
            return;
        }
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            self.name,
            self.all.len(),
            ms(pct(&self.first, 0.50)),
            ms(pct(&self.all, 0.50)),
            ms(pct(&self.all, 0.99)),
            ms(*self.all.last().expect("non-empty")),
            self.missed,
            self.load,
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let pushes = env_usize("PUSHES", 30);
    let rollbacks = env_usize("ROLLBACKS", 20);
    let poll_pushes = env_usize("POLL_PUSHES", 10);
    let poll_interval = env_string("POLL_INTERVAL", "1s");
    let services = env_usize("SERVICES", 0);
    eprintln!("load average at start: {}", loadavg());

    // 1 + 2: webhook mode (poll interval 1 h).
    let repo = Repo::new();
    let size = config("/p0000", services).len();
    eprintln!("config: {} extra services, {size} bytes", services);
    let c0 = repo.push(&config("/w-initial", services), "initial");
    let secret = repo.dir.path().join("webhook-secret");
    std::fs::write(&secret, SECRET).expect("write secret");
    let extra: Vec<String> = [
        "--git-url",
        &repo.url(),
        "--git-poll-interval",
        "1h",
        "--webhook-secret-file",
        secret.to_str().expect("utf8"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let t = Instant::now();
    let region = Region::start(3, &extra, "webhook").await;
    region
        .wait_serving(&c0, Instant::now())
        .await
        .expect("initial commit served everywhere");
    let leader = region.wait_leader().await;
    eprintln!(
        "region up and serving the initial commit in {} ms, leader node {}",
        t.elapsed().as_millis(),
        leader + 1
    );

    // Warm-up (not timed).
    let w = repo.push(&config("/w-warmup", services), "warm-up");
    assert_eq!(region.webhook(0).await, 202, "webhook accepted");
    region
        .wait_serving(&w, Instant::now())
        .await
        .expect("warm-up commit served");

    let mut webhook = Series::new("webhook push → all 3 serving (poll 1h)");
    let mut commits = vec![c0, w];
    for k in 0..pushes {
        let sha = repo.push(
            &config(&format!("/p{k:04}"), services),
            &format!("push {k}"),
        );
        let t0 = Instant::now();
        let node = k % 3;
        let code = region.webhook(node).await;
        assert_eq!(code, 202, "webhook to node {}", node + 1);
        let got = region.wait_serving(&sha, t0).await;
        if got.is_none() {
            eprintln!("push {k}: {sha} not served everywhere within {SAMPLE_LIMIT:?}");
        }
        webhook.add(got);
        commits.push(sha);
    }
    webhook.load = loadavg();
    eprintln!("webhook pushes done; load {}", webhook.load);

    // Control: a push with no webhook under the 1 h poll interval.
    let quiet = repo.push(&config("/no-webhook", services), "no webhook");
    let t0 = Instant::now();
    let mut quiet_series = Series::new("push without webhook → all 3 serving (poll 1h)");
    let got = region.wait_serving(&quiet, t0).await;
    quiet_series.add(got);
    quiet_series.load = loadavg();
    let quiet_picked = got.map(|(_, a)| a);
    match quiet_picked {
        Some(d) => eprintln!(
            "push without webhook (poll 1h) served everywhere after {} ms",
            d.as_millis()
        ),
        None => {
            eprintln!(
                "push without webhook (poll 1h) not picked up within {SAMPLE_LIMIT:?}; sending the webhook"
            );
            assert_eq!(region.webhook(0).await, 202);
            region
                .wait_serving(&quiet, Instant::now())
                .await
                .expect("served after webhook");
        }
    }
    commits.push(quiet.clone());

    // 2. Rollback to the commit before the head, then resume; nodes in turn.
    let head = quiet;
    let target = commits[commits.len() - 2].clone();
    let mut rb = Series::new("rollback (gRPC Rollback) → all 3 serving");
    let mut rs = Series::new("resume (gRPC Resume) → all 3 serving");
    for k in 0..rollbacks {
        let node = k % 3;
        let t0 = Instant::now();
        let r = region
            .rollback(node, &target)
            .await
            .unwrap_or_else(|e| panic!("rollback {k} via node {}: {e}", node + 1));
        assert_eq!(r.active_version, target, "rollback reply");
        rb.add(region.wait_serving(&target, t0).await);

        let node = (k + 1) % 3;
        let t0 = Instant::now();
        let r = region
            .resume(node)
            .await
            .unwrap_or_else(|e| panic!("resume {k} via node {}: {e}", node + 1));
        assert_eq!(r.active_version, head, "resume reply");
        rs.add(region.wait_serving(&head, t0).await);
    }
    rb.load = loadavg();
    rs.load = rb.load.clone();
    eprintln!("rollbacks done; load {}", rb.load);
    drop(region);

    // 3. Polling mode: a fresh region on a new repo, no webhook.
    let repo = Repo::new();
    let p0 = repo.push(&config("/poll-initial", services), "initial");
    let extra: Vec<String> = [
        "--git-url",
        &repo.url(),
        "--git-poll-interval",
        &poll_interval,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let region = Region::start(3, &extra, "poll").await;
    region
        .wait_serving(&p0, Instant::now())
        .await
        .expect("initial commit served everywhere (poll mode)");
    let mut poll = Series::new(&format!(
        "push, no webhook → all 3 serving (poll {poll_interval})"
    ));
    for k in 0..poll_pushes {
        let sha = repo.push(
            &config(&format!("/q{k:04}"), services),
            &format!("poll {k}"),
        );
        let t0 = Instant::now();
        let got = region.wait_serving(&sha, t0).await;
        if got.is_none() {
            eprintln!("poll push {k}: {sha} not served everywhere within {SAMPLE_LIMIT:?}");
        }
        poll.add(got);
    }
    poll.load = loadavg();
    drop(region);

    println!();
    println!("## GitOps bench (3 nodes, loopback, file:// remote, config {size} bytes)");
    println!();
    println!(
        "| measurement | n | first node p50 (ms) | all p50 (ms) | all p99 (ms) | all max (ms) | missed (> {} s) | load (1/5/15 min, at end) |",
        SAMPLE_LIMIT.as_secs()
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    webhook.print();
    rb.print();
    rs.print();
    poll.print();
    quiet_series.print();
    println!();
    println!("load average at end: {}", loadavg());
}
