//! Region config store benchmark (issue 3): a 3-node region of real
//! `gateway run --region` processes on loopback, driven over the control
//! service (tonic gRPC on the Raft address).
//!
//! ```sh
//! cargo build --release -p gateway-node --bins --examples
//! target/release/examples/region_bench
//! ```
//!
//! `cargo run --example` does not rebuild the `gateway` binary, so build the
//! bins first. The binary is looked up next to the example
//! (`target/release/gateway`); `GATEWAY_BIN` overrides it.
//!
//! Measures:
//! 1. commit latency of config proposals sent to the leader (100 KB and
//!    5 MB configs): from sending the proposal to its reply, which the leader
//!    sends once the entry is committed and the leader serves it (finding
//!    the leader is not timed; retries after an error are);
//! 2. leader failover over repeated `kill -9`s: kill → new leader observed,
//!    and kill → first committed proposal;
//! 3. acknowledged versions missing from any node's history afterwards;
//! 4. proxy requests to the two surviving nodes during each kill window.
//!
//! Env: `SETTLE` (0; 1 = each proposal waits, untimed, until all nodes applied
//! the previous one), `SLOW_MS` (100; slower proposals are printed with
//! their wall-clock time), `SMALL_PROPOSALS` (200: with fewer than 100
//! samples the p99 is simply the maximum), `LARGE_PROPOSALS` (10), `KILLS` (20),
//! `LARGE_SERVICES` (20000), `SMALL_SERVICES` (400), `NODE_LOG` (the nodes'
//! `GATEWAY_LOG`, default `error,openraft=off`), `NODE_LOG_DIR` (append each
//! node's stderr to `<dir>/node<N>.log` instead of inheriting it).

use std::convert::Infallible;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gateway_proto::control::control_client::ControlClient;
use gateway_proto::control::{
    HistoryRequest, NodeStatus, ProposeConfigRequest, SourceFile, StatusRequest, WriteReply,
};
use gateway_raft::network::{Dialer, MAX_MESSAGE_BYTES};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tonic::transport::Channel;

mod support;
use support::{env_usize, free_port, gateway_binary, loadavg, ms, pct};

type Control = ControlClient<Channel>;
type HttpClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Empty<Bytes>,
>;

const WAIT: Duration = Duration::from_secs(60);
/// Per-call timeout of proposals during failover.
const FAILOVER_CALL: Duration = Duration::from_millis(300);
/// Bounds of the proxy hammer per kill window.
const HAMMER_MAX_REQUESTS: u64 = 200_000;
const HAMMER_MAX_TIME: Duration = Duration::from_secs(30);
const HAMMER_REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

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
    bin: PathBuf,
    members: Vec<Member>,
    peers: String,
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
    async fn new(n: usize) -> Region {
        let dir = tempfile::Builder::new()
            .prefix("region_bench")
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
        Region {
            bin: gateway_binary(),
            members,
            peers,
            _dir: dir,
        }
    }

    fn start(&mut self, i: usize) {
        let m = &self.members[i];
        assert!(m.child.is_none(), "node {} already running", m.id);
        let log = std::env::var("NODE_LOG").unwrap_or_else(|_| "error,openraft=off".into());
        let stderr = match std::env::var_os("NODE_LOG_DIR") {
            Some(d) => {
                let d = PathBuf::from(d);
                std::fs::create_dir_all(&d).expect("mkdir NODE_LOG_DIR");
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(d.join(format!("node{}.log", m.id)))
                    .expect("log file");
                Stdio::from(f)
            }
            None => Stdio::inherit(),
        };
        let child = Command::new(&self.bin)
            .args(["run", "--region", "eu", "--node-id", &m.id.to_string()])
            .arg("--data-dir")
            .arg(&m.data)
            .args(["--raft-listen", &format!("127.0.0.1:{}", m.raft)])
            .args(["--peers", &self.peers])
            .args(["--proxy-listen", &format!("127.0.0.1:{}", m.proxy)])
            .args(["--admin-listen", &format!("127.0.0.1:{}", m.admin)])
            .args(["--max-config-bytes", "67108864"])
            .env("GATEWAY_LOG", &log)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.bin.display()));
        self.members[i].child = Some(child);
    }

    /// `kill -9`, then reap.
    fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            c.kill().expect("kill -9");
            c.wait().expect("reap");
        }
    }

    async fn status(&self, i: usize, timeout: Duration) -> Option<NodeStatus> {
        let mut req = tonic::Request::new(StatusRequest {});
        req.set_timeout(timeout);
        let mut c = self.members[i].control.clone();
        match tokio::time::timeout(timeout, c.status(req)).await {
            Ok(Ok(r)) => Some(r.into_inner()),
            _ => None,
        }
    }

    /// Wait until all of `alive` agree on a leader among them that says it
    /// leads; its index.
    async fn wait_leader(&self, alive: &[usize]) -> usize {
        let until = Instant::now() + WAIT;
        loop {
            let mut seen = Vec::new();
            for &i in alive {
                seen.push(self.status(i, Duration::from_millis(500)).await);
            }
            let leaders: Vec<Option<u64>> = seen
                .iter()
                .map(|s| s.as_ref().and_then(|s| s.leader_id))
                .collect();
            if let Some(Some(l)) = leaders.first() {
                let idx = (*l - 1) as usize;
                let pos = alive.iter().position(|&a| a == idx);
                if leaders.iter().all(|x| *x == Some(*l)) {
                    if let Some(pos) = pos {
                        if seen[pos].as_ref().is_some_and(|s| s.role == "leader") {
                            return idx;
                        }
                    }
                }
            }
            assert!(
                Instant::now() < until,
                "no agreed leader among {alive:?}: {leaders:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn propose(&self, i: usize, yaml: &str, timeout: Duration) -> Result<WriteReply, String> {
        let mut req = tonic::Request::new(ProposeConfigRequest {
            files: vec![SourceFile {
                name: "kong.yaml".into(),
                content: yaml.as_bytes().to_vec(),
            }],
            author: "region_bench".into(),
            message: String::new(),
            forwarded: false,
        });
        req.set_timeout(timeout);
        let mut c = self.members[i].control.clone();
        match tokio::time::timeout(timeout, c.propose_config(req)).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) => Err(format!("{:?}: {}", s.code(), s.message())),
            Err(_) => Err("timeout".into()),
        }
    }

    /// Propose to the current leader; on an error, find the leader again
    /// and retry (the timed sample includes the retries). The errors seen.
    async fn propose_to_leader(
        &self,
        alive: &[usize],
        yaml: &str,
        timeout: Duration,
    ) -> (WriteReply, Vec<String>) {
        let mut errors = Vec::new();
        loop {
            let leader = self.wait_leader(alive).await;
            match self.propose(leader, yaml, timeout).await {
                Ok(r) => return (r, errors),
                Err(e) => {
                    errors.push(format!("node {}: {e}", leader + 1));
                    assert!(errors.len() < 10, "proposal keeps failing: {errors:?}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Wait until node `i` has applied as far as the leader.
    async fn wait_caught_up(&self, i: usize, alive: &[usize]) {
        let until = Instant::now() + WAIT;
        loop {
            let leader = self.wait_leader(alive).await;
            let l = self.status(leader, Duration::from_millis(500)).await;
            let n = self.status(i, Duration::from_millis(500)).await;
            if let (Some(l), Some(n)) = (l, n) {
                if l.last_applied_index.is_some() && l.last_applied_index == n.last_applied_index {
                    return;
                }
            }
            assert!(Instant::now() < until, "node {} never caught up", i + 1);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// `services` generated services (about 250 bytes each) plus the `/hammer`
/// route to the bench's upstream and a `tag`ged marker service, so every
/// proposal has a distinct hash.
fn config(services: usize, upstream: u16, tag: &str) -> String {
    let mut s = String::with_capacity(services * 260 + 512);
    s.push_str("_format_version: \"3.0\"\nservices:\n");
    s.push_str(&format!(
        "  - name: hammer\n    url: http://127.0.0.1:{upstream}\n    routes:\n      - name: hammer\n        paths: [/hammer]\n"
    ));
    s.push_str(&format!(
        "  - name: marker-{tag}\n    url: http://127.0.0.1:{upstream}\n    routes:\n      - name: marker-{tag}\n        paths: [/marker/{tag}]\n"
    ));
    for i in 0..services {
        s.push_str(&format!(
            "  - name: inventory-catalogue-backend-{i:05}\n    url: http://127.0.0.1:9/internal/inventory/{i:05}\n    routes:\n      - name: inventory-catalogue-public-{i:05}\n        paths: [/api/v1/inventory/{i:05}/catalogue, /api/v2/inventory/{i:05}/catalogue-legacy]\n"
        ));
    }
    s
}

/// An upstream answering 200 to everything.
async fn upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    port
}

#[derive(Default, Clone, Copy)]
struct Hammer {
    ok: u64,
    failed: u64,
}

/// GET `/hammer` alternately on `ports` until `stop`, one request in
/// flight, 1 ms apart; bounded in count and time.
async fn hammer(
    client: HttpClient,
    ports: [u16; 2],
    stop: Arc<AtomicBool>,
    errors: Arc<parking_lot::Mutex<Vec<String>>>,
) -> Hammer {
    let mut h = Hammer::default();
    let start = Instant::now();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed)
        && n < HAMMER_MAX_REQUESTS
        && start.elapsed() < HAMMER_MAX_TIME
    {
        let port = ports[(n % 2) as usize];
        n += 1;
        let req = http::Request::get(format!("http://127.0.0.1:{port}/hammer"))
            .body(Empty::new())
            .expect("request");
        let res = tokio::time::timeout(HAMMER_REQUEST_TIMEOUT, async {
            let resp = client.request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            resp.into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(status)
        })
        .await;
        match res {
            Ok(Ok(s)) if s == 200 => h.ok += 1,
            other => {
                h.failed += 1;
                let mut e = errors.lock();
                if e.len() < 10 {
                    e.push(format!("port {port}: {other:?}"));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    h
}

fn row(name: &str, samples: &mut [Duration]) {
    samples.sort();
    if samples.is_empty() {
        println!("| {name} | 0 | - | - | - |");
        return;
    }
    println!(
        "| {name} | {} | {} | {} | {} |",
        samples.len(),
        ms(pct(samples, 0.50)),
        ms(pct(samples, 0.99)),
        ms(*samples.last().expect("non-empty")),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let small_n = env_usize("SMALL_PROPOSALS", 200);
    let large_n = env_usize("LARGE_PROPOSALS", 10);
    let kills = env_usize("KILLS", 20);
    let small_services = env_usize("SMALL_SERVICES", 400);
    let large_services = env_usize("LARGE_SERVICES", 20_000);
    // SETTLE=1: wait (untimed) until all nodes applied a proposal before
    // sending the next. Default 0: back to back, so the followers are still
    // applying the previous config while the leader parses the next one (on
    // this 2-core machine, they share its cores).
    let settle = env_usize("SETTLE", 0) == 1;
    // Proposals slower than this are printed with their time (SLOW_MS).
    let slow = Duration::from_millis(env_usize("SLOW_MS", 100) as u64);

    eprintln!("load average at start: {}", loadavg());
    let up = upstream().await;
    let mut region = Region::new(3).await;
    let all = [0usize, 1, 2];
    for i in all {
        region.start(i);
    }
    let t = Instant::now();
    let mut leader = region.wait_leader(&all).await;
    eprintln!(
        "region up, leader node {} ({} ms)",
        leader + 1,
        t.elapsed().as_millis()
    );

    // Every acknowledged write: (node it was sent to, reply).
    let mut acks: Vec<WriteReply> = Vec::new();

    // 1. Commit latency, proposals sent to the leader.
    let mut latency = Vec::new();
    let mut retries: Vec<(&str, usize, String)> = Vec::new();
    for (label, services, count, timeout) in [
        ("100KB", small_services, small_n, Duration::from_secs(30)),
        ("5MB", large_services, large_n, Duration::from_secs(120)),
    ] {
        let size = config(services, up, "warmup-xxxx").len();
        eprintln!(
            "{label}: {services} services, {size} bytes ({:.2} MiB)",
            size as f64 / 1048576.0
        );
        // Warm-up (not timed): connects the channel, first large apply.
        let (r, _) = region
            .propose_to_leader(
                &all,
                &config(services, up, &format!("warm-{label}")),
                timeout,
            )
            .await;
        acks.push(r);
        let mut samples = Vec::new();
        let mut last_hash = String::new();
        for k in 0..count {
            let yaml = config(services, up, &format!("{label}-{k:04}"));
            // The client knows the leader (as `gatewayctl` and a node
            // forwarding a write do); finding it is not part of the sample,
            // but any retry after an error is.
            let leader = region.wait_leader(&all).await;
            let t = Instant::now();
            let (r, errs) = match region.propose(leader, &yaml, timeout).await {
                Ok(r) => (r, Vec::new()),
                Err(e) => {
                    let (r, mut errs) = region.propose_to_leader(&all, &yaml, timeout).await;
                    errs.insert(0, format!("node {}: {e}", leader + 1));
                    (r, errs)
                }
            };
            let took = t.elapsed();
            samples.push(took);
            if took > slow {
                // With NODE_LOG=info and NODE_LOG_DIR, the node logs around
                // this time tell where it went.
                eprintln!(
                    "{label} proposal {k}: slow, {} ms (to node {}, answered at unix time {:.3})",
                    took.as_millis(),
                    leader + 1,
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64())
                );
            }
            for e in errs {
                eprintln!("{label} proposal {k}: retried after: {e}");
                retries.push((label, k, e));
            }
            assert!(
                r.changed && r.configuration_hash != last_hash,
                "hash changed"
            );
            last_hash = r.configuration_hash.clone();
            acks.push(r);
            if settle {
                // Untimed: every node has applied this one before the next
                // is sent, so each sample starts from an idle region.
                for i in all {
                    region.wait_caught_up(i, &all).await;
                }
            }
        }
        eprintln!("{label} done; load average {}", loadavg());
        latency.push((label, size, samples));
    }
    for i in all {
        region.wait_caught_up(i, &all).await;
    }

    // 2 + 4. Failover over `kills` rounds, hammering the survivors' proxies.
    let tag0 = "failover-start".to_string();
    leader = region.wait_leader(&all).await;
    acks.push(
        region
            .propose(leader, &config(0, up, &tag0), Duration::from_secs(30))
            .await
            .expect("small config"),
    );
    for i in all {
        region.wait_caught_up(i, &all).await;
    }
    let http: HttpClient =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
    for i in all {
        let port = region.members[i].proxy;
        let until = Instant::now() + WAIT;
        loop {
            let req = http::Request::get(format!("http://127.0.0.1:{port}/hammer"))
                .body(Empty::new())
                .expect("request");
            if let Ok(r) = http.request(req).await {
                let ok = r.status() == 200;
                let _ = r.into_body().collect().await;
                if ok {
                    break;
                }
            }
            assert!(
                Instant::now() < until,
                "node {} never served /hammer",
                i + 1
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    let mut to_leader = Vec::new();
    let mut to_commit = Vec::new();
    let mut total = Hammer::default();
    let mut attempts_failed = 0u64;
    let errors = Arc::new(parking_lot::Mutex::new(Vec::new()));
    for round in 0..kills {
        leader = region.wait_leader(&all).await;
        let old_term = region
            .status(leader, Duration::from_secs(1))
            .await
            .map(|s| s.term)
            .unwrap_or(0);
        let survivors: Vec<usize> = all.iter().copied().filter(|&i| i != leader).collect();
        let ports = [
            region.members[survivors[0]].proxy,
            region.members[survivors[1]].proxy,
        ];
        let stop = Arc::new(AtomicBool::new(false));
        let hammering = tokio::spawn(hammer(http.clone(), ports, stop.clone(), errors.clone()));
        tokio::time::sleep(Duration::from_millis(20)).await;

        region.kill9(leader);
        let t0 = Instant::now();
        let region_ref = &region;
        let survivors_ref = &survivors;
        let watch_leader = async move {
            loop {
                for &i in survivors_ref {
                    if let Some(s) = region_ref.status(i, Duration::from_millis(100)).await {
                        if s.role == "leader" && s.term > old_term {
                            return t0.elapsed();
                        }
                    }
                }
                assert!(t0.elapsed() < WAIT, "no new leader after kill {round}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let commit = async move {
            let mut k = 0usize;
            loop {
                let target = survivors_ref[k % 2];
                let yaml = config(0, up, &format!("kill{round:02}-try{k:04}"));
                k += 1;
                match region_ref.propose(target, &yaml, FAILOVER_CALL).await {
                    Ok(r) => return (t0.elapsed(), r, k - 1),
                    Err(_) => {
                        assert!(t0.elapsed() < WAIT, "no commit after kill {round}");
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
        };
        let (elected, (committed, reply, failed)) = tokio::join!(watch_leader, commit);
        stop.store(true, Ordering::Relaxed);
        let h = hammering.await.expect("hammer task");
        total.ok += h.ok;
        total.failed += h.failed;
        attempts_failed += failed as u64;
        acks.push(reply);
        to_leader.push(elected);
        to_commit.push(committed);
        eprintln!(
            "kill {round:2}: node {} killed; new leader {} ms, first commit {} ms ({failed} failed attempts); proxy ok {} failed {}",
            leader + 1,
            elected.as_millis(),
            committed.as_millis(),
            h.ok,
            h.failed
        );

        region.start(leader);
        region.wait_caught_up(leader, &all).await;
    }

    // 3. Acknowledged versions missing from any node's history.
    for i in all {
        region.wait_caught_up(i, &all).await;
    }
    let mut missing = 0usize;
    let mut history_sizes = Vec::new();
    for i in all {
        let mut c = region.members[i].control.clone();
        let h = c
            .history(HistoryRequest { limit: 0 })
            .await
            .expect("history")
            .into_inner();
        history_sizes.push(h.versions.len());
        for a in &acks {
            let found = h.versions.iter().any(|v| {
                v.id == a.active_version && v.hash == a.configuration_hash && v.index == a.index
            });
            if !found {
                missing += 1;
                eprintln!(
                    "node {}: acknowledged {} (index {}, {}) missing",
                    i + 1,
                    a.active_version,
                    a.index,
                    a.configuration_hash
                );
            }
        }
    }

    println!();
    println!("## Region config store bench (3 nodes, loopback)");
    println!();
    println!("| measurement | n | p50 (ms) | p99 (ms) | max (ms) |");
    println!("|---|---:|---:|---:|---:|");
    for (label, size, samples) in &mut latency {
        row(
            &format!(
                "commit latency, {label} config ({size} bytes), to leader, {}",
                if settle { "settled" } else { "back to back" }
            ),
            samples,
        );
    }
    row("failover: kill -9 → new leader observed", &mut to_leader);
    row(
        "failover: kill -9 → first committed proposal",
        &mut to_commit,
    );
    println!();
    println!(
        "failed proposal attempts during failovers ({} ms per-call timeout): {attempts_failed}",
        FAILOVER_CALL.as_millis()
    );
    println!(
        "commit-latency proposals that had to be retried (leader changed or error): {}",
        retries.len()
    );
    for (label, k, e) in &retries {
        println!("  {label} #{k}: {e}");
    }
    println!(
        "acknowledged writes: {}; missing from some node's history: {missing} (history sizes {history_sizes:?})",
        acks.len()
    );
    println!(
        "proxy requests to survivors during kill windows: {} ok, {} failed",
        total.ok, total.failed
    );
    for e in errors.lock().iter() {
        println!("  proxy failure: {e}");
    }
    println!("load average at end: {}", loadavg());
}
