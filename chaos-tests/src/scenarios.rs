//! The scenarios and the helpers they share. Every wait is bounded (by its
//! own timeout and by the global deadline); every scenario ends by healing
//! the network, continuing/restarting every node and checking that no
//! acknowledged commit was lost.

use crate::harness::*;
use crate::load::*;
use crate::{fmt_d, Chaos};
use anyhow::{bail, Result};
use rand::Rng;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::time::{sleep, Instant};

pub struct Report {
    pub name: String,
    pub faults: u32,
    pub counts: Counts,
    pub acked: usize,
    pub lost: usize,
    /// Nodes seen serving a config no majority committed (this scenario).
    pub uncommitted: usize,
    pub conv: Vec<Duration>,
    pub failures: Vec<String>,
    pub notes: Vec<String>,
    pub skipped: Option<String>,
    pub elapsed: Duration,
}

impl Report {
    fn conv_summary(&self) -> String {
        if self.conv.is_empty() {
            return "-".into();
        }
        let mut v = self.conv.clone();
        v.sort();
        format!("{}/{}", fmt_d(v[v.len() / 2]), fmt_d(v[v.len() - 1]))
    }

    pub fn print_details(&self) {
        let verdict = if self.skipped.is_some() {
            "SKIP"
        } else if self.failures.is_empty() {
            "PASS"
        } else {
            "FAIL"
        };
        println!(
            "[{verdict}] {}: faults {}, requests {}, failed-on-live {}, acked {}, lost {}, served-uncommitted {}, convergence p50/max {}, {}",
            self.name,
            self.faults,
            self.counts.sent,
            self.counts.failed_live,
            self.acked,
            self.lost,
            self.uncommitted,
            self.conv_summary(),
            fmt_d(self.elapsed)
        );
        if let Some(s) = &self.skipped {
            println!("    skipped: {s}");
        }
        for n in &self.notes {
            println!("    note: {n}");
        }
        for f in &self.failures {
            println!("    FAILURE: {f}");
        }
    }
}

pub fn print_table(reports: &[Report]) {
    println!();
    println!(
        "{:<34} {:<6} {:>6} {:>9} {:>11} {:>6} {:>5} {:>11} {:>15} {:>8}",
        "scenario",
        "result",
        "faults",
        "requests",
        "failed-live",
        "acked",
        "lost",
        "uncommitted",
        "conv p50/max",
        "time"
    );
    for r in reports {
        let verdict = if r.skipped.is_some() {
            "SKIP"
        } else if r.failures.is_empty() {
            "PASS"
        } else {
            "FAIL"
        };
        println!(
            "{:<34} {:<6} {:>6} {:>9} {:>11} {:>6} {:>5} {:>11} {:>15} {:>8}",
            r.name,
            verdict,
            r.faults,
            r.counts.sent,
            r.counts.failed_live,
            r.acked,
            r.lost,
            r.uncommitted,
            r.conv_summary(),
            fmt_d(r.elapsed)
        );
    }
}

type NodeRef = (usize, usize);

impl Chaos {
    fn left(&self, want: Duration) -> Duration {
        want.min(self.deadline.saturating_duration_since(Instant::now()))
    }

    pub fn all_nodes(&self) -> Vec<NodeRef> {
        (0..2).flat_map(|r| (0..3).map(move |i| (r, i))).collect()
    }

    /// Nodes running and not stopped.
    fn live_nodes(&self) -> Vec<NodeRef> {
        self.all_nodes()
            .into_iter()
            .filter(|&(r, i)| {
                self.regions[r].nodes[i].running() && !self.regions[r].nodes[i].stopped
            })
            .collect()
    }

    fn node_name(&self, (r, i): NodeRef) -> String {
        self.regions[r].nodes[i].name()
    }

    fn mark(&self, (r, i): NodeRef, up: bool) {
        self.load.mark(self.regions[r].nodes[i].slot, up);
    }

    pub fn start(&mut self, r: usize, i: usize) -> Result<()> {
        let (gw, url, dir) = (self.gateway.clone(), self.git_url.clone(), self.dir.clone());
        self.regions[r].start(i, &gw, &url, &dir)
    }

    fn kill(&mut self, n: NodeRef) {
        self.mark(n, false);
        self.regions[n.0].kill9(n.1);
    }

    async fn status(&self, (r, i): NodeRef) -> Option<serde_json::Value> {
        status(&self.http, &self.regions[r].nodes[i].admin_url()).await
    }

    async fn version(&self, n: NodeRef) -> Option<String> {
        self.status(n)
            .await
            .and_then(|s| s["cluster"]["active_version"].as_str().map(String::from))
    }

    /// All of `alive` (region `r`) agree on a leader among them; its index.
    pub async fn wait_leader(&self, r: usize, alive: &[usize], timeout: Duration) -> Result<usize> {
        let until = Instant::now() + self.left(timeout);
        let mut last = Vec::new();
        loop {
            last.clear();
            for &i in alive {
                let s = self.status((r, i)).await;
                last.push(s.map(|s| {
                    (
                        s["cluster"]["leader_id"].as_u64().unwrap_or(0),
                        s["cluster"]["role"].clone(),
                    )
                }));
            }
            if let Some(Some((l, _))) = last.first() {
                let l = *l;
                let idx = l.wrapping_sub(1) as usize;
                if l > 0
                    && alive.contains(&idx)
                    && last
                        .iter()
                        .all(|x| x.as_ref().is_some_and(|(y, _)| *y == l))
                {
                    let pos = alive.iter().position(|&a| a == idx).expect("in alive");
                    if last[pos].as_ref().is_some_and(|(_, role)| role == "leader") {
                        return Ok(idx);
                    }
                }
            }
            if Instant::now() >= until {
                bail!(
                    "region {}: no agreed leader among {alive:?} within {timeout:?}: {last:?}",
                    self.regions[r].name
                );
            }
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait until every node in `nodes` reports `sha` as active version.
    pub async fn wait_version(
        &self,
        nodes: &[NodeRef],
        sha: &str,
        timeout: Duration,
    ) -> Result<Duration> {
        let t0 = Instant::now();
        let until = t0 + self.left(timeout);
        let mut pending: Vec<NodeRef> = nodes.to_vec();
        loop {
            let mut still = Vec::new();
            for &n in &pending {
                if self.version(n).await.as_deref() != Some(sha) {
                    still.push(n);
                }
            }
            pending = still;
            if pending.is_empty() {
                return Ok(t0.elapsed());
            }
            if Instant::now() >= until {
                let mut got = Vec::new();
                for &n in &pending {
                    got.push(format!(
                        "{}={}",
                        self.node_name(n),
                        self.version(n)
                            .await
                            .map(|v| v.chars().take(10).collect::<String>())
                            .unwrap_or_else(|| "down".into())
                    ));
                }
                bail!(
                    "{} not served within {timeout:?} by {}",
                    &sha[..10],
                    got.join(", ")
                );
            }
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait until a (re)started node answers status and serves /live; mark it up.
    pub async fn wait_up(&self, r: usize, i: usize, timeout: Duration) -> Result<Duration> {
        let t0 = Instant::now();
        let until = t0 + self.left(timeout);
        let url = format!("{}/live", self.regions[r].nodes[i].proxy_url());
        loop {
            if self.status((r, i)).await.is_some()
                && matches!(
                    get(&self.http, &url, Duration::from_secs(1)).await,
                    Some((200, _))
                )
            {
                self.mark((r, i), true);
                return Ok(t0.elapsed());
            }
            if Instant::now() >= until {
                bail!(
                    "{} not serving /live within {timeout:?}",
                    self.node_name((r, i))
                );
            }
            sleep(Duration::from_millis(25)).await;
        }
    }

    fn next_tag(&mut self) -> String {
        self.pushes += 1;
        format!("c{}", self.pushes)
    }

    /// Commit a valid config, register it as valid, push.
    pub async fn push_valid(&mut self) -> Result<String> {
        let tag = self.next_tag();
        let sha = tokio::task::block_in_place(|| {
            self.repo.commit(&valid_config(self.upstream, &tag), &tag)
        })?;
        self.watch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .valid
            .insert(sha.clone());
        tokio::task::block_in_place(|| self.repo.push_head())?;
        self.head = sha.clone();
        self.valid_list.push(sha.clone());
        self.tags.insert(sha.clone(), tag);
        Ok(sha)
    }

    pub async fn push_invalid(&mut self) -> Result<String> {
        let tag = self.next_tag();
        let sha = tokio::task::block_in_place(|| {
            self.repo.commit(
                &invalid_config(self.upstream, &tag),
                &format!("{tag} (invalid)"),
            )
        })?;
        self.watch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .invalid
            .insert(sha.clone());
        tokio::task::block_in_place(|| self.repo.push_head())?;
        Ok(sha)
    }

    fn expected(&self, r: usize) -> String {
        self.pinned
            .get(&r)
            .cloned()
            .unwrap_or_else(|| self.head.clone())
    }

    /// Heal everything: remove rules, SIGCONT, restart, wait for leaders and
    /// for every node to serve what its region should serve.
    async fn heal_all(&mut self) -> Result<()> {
        if self.net.available.is_ok() {
            self.net.heal();
        }
        if self.daemon.0.is_none() {
            self.daemon = git_daemon(&self.repo.base, self.daemon_port)?;
        }
        for (r, i) in self.all_nodes() {
            if self.regions[r].nodes[i].stopped {
                self.regions[r].sigcont(i);
            }
            if !self.regions[r].nodes[i].running() {
                self.start(r, i)?;
            }
        }
        for (r, i) in self.all_nodes() {
            self.wait_up(r, i, Duration::from_secs(30)).await?;
        }
        for r in 0..2 {
            self.wait_leader(r, &[0, 1, 2], Duration::from_secs(30))
                .await?;
            let want = self.expected(r);
            let nodes: Vec<NodeRef> = (0..3).map(|i| (r, i)).collect();
            self.wait_version(&nodes, &want, Duration::from_secs(60))
                .await?;
        }
        Ok(())
    }

    /// No node may panic: scan what the node logs gained since the last
    /// scan for the panic message Rust prints (`thread ... panicked at`).
    /// A panicked task can leave a process up with a dead Raft core.
    fn check_panics(&mut self, rep: &mut Report) {
        for (r, i) in self.all_nodes() {
            let name = self.node_name((r, i));
            let path = self.dir.join(format!("{name}.log"));
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let from = self.log_offsets.get(&name).copied().unwrap_or(0) as usize;
            self.log_offsets.insert(name.clone(), bytes.len() as u64);
            let new = String::from_utf8_lossy(bytes.get(from..).unwrap_or_default());
            let mut lines = new.lines();
            while let Some(l) = lines.next() {
                if l.contains("panicked at") {
                    let msg = lines.next().unwrap_or("");
                    rep.failures.push(format!(
                        "{name} panicked ({}): {} {}",
                        path.display(),
                        l.trim(),
                        msg.trim()
                    ));
                }
            }
        }
    }

    /// After a failed heal: `kill -9` and restart every node of each region
    /// without an agreed leader serving what it should (a wedged node keeps
    /// a region from converging forever), then heal again.
    async fn contain(&mut self, rep: &mut Report) -> Result<()> {
        for r in 0..2 {
            let want = self.expected(r);
            let nodes: Vec<NodeRef> = (0..3).map(|i| (r, i)).collect();
            let healthy = self
                .wait_leader(r, &[0, 1, 2], Duration::from_secs(3))
                .await
                .is_ok()
                && self
                    .wait_version(&nodes, &want, Duration::from_secs(3))
                    .await
                    .is_ok();
            if healthy {
                continue;
            }
            for n in nodes {
                self.kill(n);
                self.start(n.0, n.1)?;
            }
            rep.notes.push(format!(
                "region {} did not recover: the suite restarted its 3 nodes (kill -9) so later scenarios start healthy",
                self.regions[r].name
            ));
        }
        self.heal_all().await
    }

    /// Every commit a majority reported applied must be in every node's
    /// history (nothing acknowledged lost), and so must every version any
    /// node of the region was seen serving (a node serves only committed
    /// versions: one missing from every history was never committed).
    async fn check_lost(&self, rep: &mut Report) {
        type Served = HashMap<String, HashSet<u64>>;
        let acked: Vec<(usize, HashSet<String>, Served)> = {
            let w = self.watch.lock().unwrap_or_else(|e| e.into_inner());
            (0..2)
                .map(|r| {
                    let name = &self.regions[r].name;
                    let served: Served = w
                        .seen_on
                        .iter()
                        .filter(|((reg, _), _)| reg == name)
                        .map(|((_, v), ids)| (v.clone(), ids.clone()))
                        .collect();
                    (r, w.acked.get(name).cloned().unwrap_or_default(), served)
                })
                .collect()
        };
        rep.acked = acked.iter().map(|(_, s, _)| s.len()).sum();
        for (r, set, served) in acked {
            // Served version → nodes whose history lacks it.
            let mut absent: HashMap<&String, Vec<usize>> = HashMap::new();
            let mut histories = 0;
            for i in 0..3 {
                let raft = self.regions[r].nodes[i].raft_addr();
                match history_ids(&self.gatewayctl, &raft).await {
                    Ok(ids) => {
                        histories += 1;
                        let missing: Vec<&String> =
                            set.iter().filter(|s| !ids.contains(*s)).collect();
                        if !missing.is_empty() {
                            rep.lost += missing.len();
                            rep.failures.push(format!(
                                "{}: {} acknowledged commit(s) missing from history: {:?}",
                                self.node_name((r, i)),
                                missing.len(),
                                missing.iter().map(|s| &s[..10]).collect::<Vec<_>>()
                            ));
                        }
                        for v in served.keys().filter(|v| !set.contains(*v)) {
                            if !ids.contains(v) {
                                absent.entry(v).or_default().push(i);
                            }
                        }
                    }
                    Err(e) => rep
                        .failures
                        .push(format!("{}: history: {e:#}", self.node_name((r, i)))),
                }
            }
            for (v, lacking) in absent {
                let by: Vec<String> = served[v]
                    .iter()
                    .map(|id| format!("{}-{id}", self.regions[r].name))
                    .collect();
                let lacking: Vec<String> =
                    lacking.iter().map(|&i| self.node_name((r, i))).collect();
                if lacking.len() == histories {
                    rep.failures.push(format!(
                        "{} served by {} but in no node's history: never committed",
                        &v[..10.min(v.len())],
                        by.join(", ")
                    ));
                    let mut w = self.watch.lock().unwrap_or_else(|e| e.into_inner());
                    for n in by {
                        w.uncommitted
                            .push((n, format!("served {v}, which was never committed")));
                    }
                } else {
                    rep.lost += 1;
                    rep.failures.push(format!(
                        "{} served by {} is missing from the history of {}",
                        &v[..10.min(v.len())],
                        by.join(", "),
                        lacking.join(", ")
                    ));
                }
            }
        }
    }

    pub async fn run_one(&mut self, s: &str) -> Report {
        let name = match s {
            "a" => "a. leader kill -9",
            "b" => "b. random kill -9 + restart",
            "c" => "c. SIGSTOP leader > election",
            "d" => "d. invalid push then valid",
            "e" => "e. git server down",
            "f" => "f. whole region restart",
            "g" => "g. data dir wiped",
            "h" => "h. iptables partitions",
            "i" => "i. write to a stale leader",
            _ => "unknown",
        };
        let mut rep = Report {
            name: name.into(),
            faults: 0,
            counts: Counts::default(),
            acked: 0,
            lost: 0,
            uncommitted: 0,
            conv: Vec::new(),
            failures: Vec::new(),
            notes: Vec::new(),
            skipped: None,
            elapsed: Duration::ZERO,
        };
        if self.deadline.saturating_duration_since(Instant::now()) < Duration::from_secs(45) {
            rep.skipped = Some("global deadline (--max-minutes) reached".into());
            return rep;
        }
        if s == "h" || s == "i" {
            if let Err(e) = &self.net.available {
                rep.skipped = Some(format!("needs iptables: {e}"));
                return rep;
            }
        }
        println!("--- {name}");
        let t0 = Instant::now();
        let c0 = self.load.totals();
        let (v0, u0) = {
            let w = self.watch.lock().unwrap_or_else(|e| e.into_inner());
            (w.violations.len(), w.uncommitted.len())
        };
        let res = match s {
            "a" => {
                self.leader_kills(&mut rep, if self.quick { 4 } else { 10 })
                    .await
            }
            "b" => {
                self.random_kills(&mut rep, if self.quick { 3 } else { 6 })
                    .await
            }
            "c" => self.sigstop_leader(&mut rep).await,
            "d" => {
                self.invalid_then_valid(&mut rep, if self.quick { 1 } else { 2 })
                    .await
            }
            "e" => self.git_down(&mut rep).await,
            "f" => self.region_restart(&mut rep).await,
            "g" => self.wipe(&mut rep).await,
            "h" => self.partitions(&mut rep).await,
            "i" => self.stale_leader_write(&mut rep).await,
            _ => Ok(()),
        };
        if let Err(e) = res {
            rep.failures.push(format!("{e:#}"));
        }
        if let Err(e) = self.heal_all().await {
            rep.failures.push(format!("after heal: {e:#}"));
            // The failure stays counted here; restart what did not recover
            // so the next scenarios start from a healthy cluster.
            if let Err(e) = self.contain(&mut rep).await {
                rep.failures
                    .push(format!("after restarting to contain it: {e:#}"));
            }
        }
        // Let in-flight requests and status samples land before counting.
        sleep(Duration::from_millis(300)).await;
        self.check_lost(&mut rep).await;
        self.check_panics(&mut rep);
        rep.counts = self.load.totals().minus(c0);
        if rep.counts.failed_live > 0 {
            let errs = self.load.errors.lock().unwrap_or_else(|e| e.into_inner());
            rep.failures.push(format!(
                "{} requests failed on live nodes; first: {:?}",
                rep.counts.failed_live,
                errs.iter().take(3).collect::<Vec<_>>()
            ));
        }
        let w = self.watch.lock().unwrap_or_else(|e| e.into_inner());
        for v in &w.violations[v0..] {
            rep.failures.push(format!("served-config invariant: {v}"));
        }
        let unc = w.uncommitted_nodes(u0);
        drop(w);
        rep.uncommitted = unc.len();
        if !unc.is_empty() {
            rep.failures.push(format!(
                "nodes that served an uncommitted config: {} ({})",
                unc.len(),
                unc.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
        rep.elapsed = t0.elapsed();
        rep
    }

    async fn leader_kills(&mut self, rep: &mut Report, kills: u32) -> Result<()> {
        for k in 0..kills {
            let r = (k % 2) as usize;
            let leader = self
                .wait_leader(r, &[0, 1, 2], Duration::from_secs(30))
                .await?;
            self.kill((r, leader));
            let t0 = Instant::now();
            rep.faults += 1;
            let d = self.rng.random_range(0..300);
            sleep(Duration::from_millis(d)).await;
            let sha = self.push_valid().await?;
            let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
            let nl = self
                .wait_leader(r, &others, Duration::from_secs(20))
                .await?;
            let live = self.live_nodes();
            self.wait_version(&live, &sha, Duration::from_secs(30))
                .await?;
            let conv = t0.elapsed();
            rep.conv.push(conv);
            println!(
                "  kill {}: {} (leader) killed, new leader {}-{}, {} served by all live nodes after {}",
                k + 1,
                self.node_name((r, leader)),
                self.regions[r].name,
                nl + 1,
                &sha[..10],
                fmt_d(conv)
            );
            self.start(r, leader)?;
            self.wait_up(r, leader, Duration::from_secs(30)).await?;
            self.wait_version(&[(r, leader)], &sha, Duration::from_secs(30))
                .await?;
        }
        Ok(())
    }

    async fn random_kills(&mut self, rep: &mut Report, kills: u32) -> Result<()> {
        for k in 0..kills {
            let n = (
                self.rng.random_range(0..2usize),
                self.rng.random_range(0..3usize),
            );
            let down_ms = self.rng.random_range(200..1500);
            let push = self.rng.random_bool(0.5);
            self.kill(n);
            rep.faults += 1;
            sleep(Duration::from_millis(down_ms)).await;
            if push {
                self.push_valid().await?;
            }
            self.start(n.0, n.1)?;
            let t0 = Instant::now();
            let up = self.wait_up(n.0, n.1, Duration::from_secs(30)).await?;
            let live = self.live_nodes();
            let head = self.head.clone();
            self.wait_version(&live, &head, Duration::from_secs(30))
                .await?;
            let conv = t0.elapsed();
            rep.conv.push(conv);
            println!(
                "  kill {}: {} down {}ms{}, serving again after {}, all on {} after {}",
                k + 1,
                self.node_name(n),
                down_ms,
                if push { " (push while down)" } else { "" },
                fmt_d(up),
                &head[..10],
                fmt_d(conv)
            );
        }
        Ok(())
    }

    async fn sigstop_leader(&mut self, rep: &mut Report) -> Result<()> {
        for r in 0..2 {
            let leader = self
                .wait_leader(r, &[0, 1, 2], Duration::from_secs(30))
                .await?;
            let hold = Duration::from_millis(self.rng.random_range(1800..3000));
            self.mark((r, leader), false);
            self.regions[r].sigstop(leader);
            let t0 = Instant::now();
            rep.faults += 1;
            let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
            let nl = self
                .wait_leader(r, &others, Duration::from_secs(15))
                .await?;
            let elected = t0.elapsed();
            let sha = self.push_valid().await?;
            let live = self.live_nodes();
            self.wait_version(&live, &sha, Duration::from_secs(30))
                .await?;
            if t0.elapsed() < hold {
                sleep(hold - t0.elapsed()).await;
            }
            let stopped_for = t0.elapsed();
            self.regions[r].sigcont(leader);
            let t1 = Instant::now();
            let until = t1 + self.left(Duration::from_secs(30));
            loop {
                let s = self.status((r, leader)).await;
                let ok = s.as_ref().is_some_and(|s| {
                    s["cluster"]["active_version"] == sha.as_str()
                        && s["cluster"]["role"] != "leader"
                });
                if ok {
                    break;
                }
                if Instant::now() >= until {
                    bail!(
                        "{} did not rejoin as follower serving {}: {:?}",
                        self.node_name((r, leader)),
                        &sha[..10],
                        s.map(|s| s["cluster"].clone())
                    );
                }
                sleep(Duration::from_millis(50)).await;
            }
            let conv = t1.elapsed();
            self.wait_up(r, leader, Duration::from_secs(10)).await?;
            rep.conv.push(conv);
            println!(
                "  {} (leader) stopped {}: new leader {}-{} after {}, {} served; after SIGCONT it rejoined as follower in {}",
                self.node_name((r, leader)),
                fmt_d(stopped_for),
                self.regions[r].name,
                nl + 1,
                fmt_d(elected),
                &sha[..10],
                fmt_d(conv)
            );
        }
        Ok(())
    }

    async fn invalid_then_valid(&mut self, rep: &mut Report, rounds: u32) -> Result<()> {
        for _ in 0..rounds {
            let bad = self.push_invalid().await?;
            rep.faults += 1;
            for r in 0..2 {
                let until = Instant::now() + self.left(Duration::from_secs(30));
                loop {
                    let l = self
                        .wait_leader(r, &[0, 1, 2], Duration::from_secs(30))
                        .await?;
                    let rej =
                        history_rejected(&self.gatewayctl, &self.regions[r].nodes[l].raft_addr())
                            .await?;
                    if rej.contains(&bad) {
                        break;
                    }
                    if Instant::now() >= until {
                        bail!(
                            "region {}: invalid commit {} never recorded as rejected",
                            self.regions[r].name,
                            &bad[..10]
                        );
                    }
                    sleep(Duration::from_millis(100)).await;
                }
            }
            // Give the invalid commit time to (wrongly) show up anywhere.
            sleep(Duration::from_millis(500)).await;
            for n in self.all_nodes() {
                if self.version(n).await.as_deref() == Some(bad.as_str()) {
                    rep.failures.push(format!(
                        "{} serves the invalid commit {}",
                        self.node_name(n),
                        &bad[..10]
                    ));
                }
            }
            let good = self.push_valid().await?;
            let t0 = Instant::now();
            let all = self.all_nodes();
            self.wait_version(&all, &good, Duration::from_secs(30))
                .await?;
            rep.conv.push(t0.elapsed());
            println!(
                "  invalid {} rejected in both regions, never served; valid {} served everywhere after {}",
                &bad[..10],
                &good[..10],
                fmt_d(t0.elapsed())
            );
        }
        Ok(())
    }

    async fn leader_git(&self, r: usize) -> Result<serde_json::Value> {
        let l = self
            .wait_leader(r, &[0, 1, 2], Duration::from_secs(30))
            .await?;
        Ok(self
            .status((r, l))
            .await
            .map(|s| s["cluster"]["git"].clone())
            .unwrap_or_default())
    }

    async fn git_down(&mut self, rep: &mut Report) -> Result<()> {
        let before = self.head.clone();
        self.daemon.kill9();
        let t0 = Instant::now();
        rep.faults += 1;
        for r in 0..2 {
            let until = Instant::now() + self.left(Duration::from_secs(30));
            loop {
                let g = self.leader_git(r).await?;
                if g["stale_since"].as_i64().unwrap_or(0) > 0 {
                    break;
                }
                if Instant::now() >= until {
                    bail!(
                        "region {}: staleness never reported: {g}",
                        self.regions[r].name
                    );
                }
                sleep(Duration::from_millis(100)).await;
            }
        }
        let stale_after = t0.elapsed();
        let sha = self.push_valid().await?;
        let hold = Duration::from_millis(self.rng.random_range(2000..4000));
        sleep(hold).await;
        for n in self.all_nodes() {
            let v = self.version(n).await;
            if v.as_deref() != Some(before.as_str()) {
                rep.failures.push(format!(
                    "{} changed config while Git was down: {v:?}",
                    self.node_name(n)
                ));
            }
        }
        let (ok, out) = ctl(
            &self.gatewayctl,
            &["--server", &self.regions[0].nodes[0].raft_addr(), "status"],
        )
        .await;
        if ok || !out.contains("STALE") {
            rep.failures.push(format!(
                "gatewayctl status while Git down: exit ok={ok}, no STALE: {out}"
            ));
        }
        let down_for = t0.elapsed();
        self.daemon = git_daemon(&self.repo.base, self.daemon_port)?;
        let t1 = Instant::now();
        let all = self.all_nodes();
        self.wait_version(&all, &sha, Duration::from_secs(90))
            .await?;
        let conv = t1.elapsed();
        rep.conv.push(conv);
        for r in 0..2 {
            let until = Instant::now() + self.left(Duration::from_secs(30));
            loop {
                let g = self.leader_git(r).await?;
                if g["stale_since"].as_i64() == Some(0) {
                    break;
                }
                if Instant::now() >= until {
                    bail!(
                        "region {}: staleness not cleared: {g}",
                        self.regions[r].name
                    );
                }
                sleep(Duration::from_millis(100)).await;
            }
        }
        println!(
            "  git daemon down {}: stale reported after {}, traffic served throughout; commit pushed while down served everywhere {} after it came back",
            fmt_d(down_for),
            fmt_d(stale_after),
            fmt_d(conv)
        );
        Ok(())
    }

    async fn region_restart(&mut self, rep: &mut Report) -> Result<()> {
        let regions: Vec<usize> = if self.quick { vec![0] } else { vec![0, 1] };
        for r in regions {
            let last = self.expected(r);
            for i in 0..3 {
                self.kill((r, i));
            }
            rep.faults += 1;
            let t0 = Instant::now();
            for i in 0..3 {
                self.start(r, i)?;
            }
            let mut worst = Duration::ZERO;
            for i in 0..3 {
                // The first answer with a config must already be the last commit.
                let until = Instant::now() + self.left(Duration::from_secs(30));
                loop {
                    if let Some(v) = self.version((r, i)).await.filter(|v| !v.is_empty()) {
                        if v != last {
                            rep.failures.push(format!(
                                "{} came back serving {} instead of the last commit {}",
                                self.node_name((r, i)),
                                &v[..10.min(v.len())],
                                &last[..10]
                            ));
                        }
                        break;
                    }
                    if Instant::now() >= until {
                        bail!("{} never answered after restart", self.node_name((r, i)));
                    }
                    sleep(Duration::from_millis(10)).await;
                }
                self.wait_up(r, i, Duration::from_secs(30)).await?;
                worst = worst.max(t0.elapsed());
            }
            let l = self
                .wait_leader(r, &[0, 1, 2], Duration::from_secs(30))
                .await?;
            let elected = t0.elapsed();
            let sha = self.push_valid().await?;
            let all = self.all_nodes();
            self.wait_version(&all, &sha, Duration::from_secs(30))
                .await?;
            rep.conv.push(worst);
            println!(
                "  region {}: all 3 killed and restarted; every node served {} from disk within {}; leader {}-{} after {}; next commit served",
                self.regions[r].name,
                &last[..10],
                fmt_d(worst),
                self.regions[r].name,
                l + 1,
                fmt_d(elected)
            );
        }
        Ok(())
    }

    async fn wipe(&mut self, rep: &mut Report) -> Result<()> {
        let n = (
            self.rng.random_range(0..2usize),
            self.rng.random_range(0..3usize),
        );
        self.kill(n);
        rep.faults += 1;
        std::fs::remove_dir_all(&self.regions[n.0].nodes[n.1].data)?;
        let sha = self.push_valid().await?;
        self.start(n.0, n.1)?;
        let t0 = Instant::now();
        self.wait_up(n.0, n.1, Duration::from_secs(60)).await?;
        self.wait_version(&[n], &sha, Duration::from_secs(60))
            .await?;
        let conv = t0.elapsed();
        rep.conv.push(conv);
        let ids = history_ids(&self.gatewayctl, &self.regions[n.0].nodes[n.1].raft_addr()).await?;
        println!(
            "  {} wiped and restarted: caught up to {} in {} ({} versions in its history)",
            self.node_name(n),
            &sha[..10],
            fmt_d(conv),
            ids.len()
        );
        Ok(())
    }

    fn cut_off(&self, r: usize, x: usize) -> Result<()> {
        for y in 0..3 {
            if y != x {
                self.net
                    .cut(&self.regions[r].nodes[x], &self.regions[r].nodes[y])?;
            }
        }
        Ok(())
    }

    async fn partitions(&mut self, rep: &mut Report) -> Result<()> {
        // h1: a follower of eu isolated from its region.
        let r = 0;
        let leader = self
            .wait_leader(r, &[0, 1, 2], Duration::from_secs(30))
            .await?;
        let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
        let x = followers[self.rng.random_range(0..2)];
        let before = self.expected(r);
        self.cut_off(r, x)?;
        rep.faults += 1;
        sleep(Duration::from_millis(300)).await;
        let sha = self.push_valid().await?;
        let majority: Vec<NodeRef> = self
            .all_nodes()
            .into_iter()
            .filter(|&n| n != (r, x))
            .collect();
        self.wait_version(&majority, &sha, Duration::from_secs(30))
            .await?;
        sleep(Duration::from_millis(1000)).await;
        let vx = self.version((r, x)).await;
        if vx.as_deref() != Some(before.as_str()) {
            rep.failures.push(format!(
                "partitioned {} serves {vx:?}, expected its last config {} (partition ineffective or uncommitted config applied)",
                self.node_name((r, x)),
                &before[..10]
            ));
        }
        let t1 = Instant::now();
        self.net.heal();
        self.wait_version(&[(r, x)], &sha, Duration::from_secs(60))
            .await?;
        rep.conv.push(t1.elapsed());
        println!(
            "  h1: {} cut off from its region: kept serving {}, majority committed {}; caught up {} after heal",
            self.node_name((r, x)),
            &before[..10],
            &sha[..10],
            fmt_d(t1.elapsed())
        );

        // h2: the leader of us isolated from the rest.
        let r = 1;
        let leader = self
            .wait_leader(r, &[0, 1, 2], Duration::from_secs(30))
            .await?;
        let before = self.expected(r);
        self.cut_off(r, leader)?;
        rep.faults += 1;
        let t0 = Instant::now();
        let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
        let nl = self
            .wait_leader(r, &others, Duration::from_secs(20))
            .await?;
        let elected = t0.elapsed();
        let sha = self.push_valid().await?;
        let majority: Vec<NodeRef> = self
            .all_nodes()
            .into_iter()
            .filter(|&n| n != (r, leader))
            .collect();
        self.wait_version(&majority, &sha, Duration::from_secs(30))
            .await?;
        sleep(Duration::from_millis(1000)).await;
        let vl = self.version((r, leader)).await;
        if vl.as_deref() != Some(before.as_str()) {
            rep.failures.push(format!(
                "isolated old leader {} serves {vl:?}, expected {}",
                self.node_name((r, leader)),
                &before[..10]
            ));
        }
        let t1 = Instant::now();
        self.net.heal();
        self.wait_version(&[(r, leader)], &sha, Duration::from_secs(60))
            .await?;
        self.wait_leader(r, &[0, 1, 2], Duration::from_secs(30))
            .await?;
        rep.conv.push(t1.elapsed());
        println!(
            "  h2: leader {} cut off: {}-{} elected after {}, {} committed by the majority; old leader kept {} and caught up {} after heal",
            self.node_name((r, leader)),
            self.regions[r].name,
            nl + 1,
            fmt_d(elected),
            &sha[..10],
            &before[..10],
            fmt_d(t1.elapsed())
        );

        // h3: rollback in eu while a follower is cut off.
        let r = 0;
        let leader = self
            .wait_leader(r, &[0, 1, 2], Duration::from_secs(30))
            .await?;
        let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
        let x = followers[self.rng.random_range(0..2)];
        let target = self.valid_list[self.valid_list.len() - 2].clone();
        let head = self.head.clone();
        self.cut_off(r, x)?;
        rep.faults += 1;
        sleep(Duration::from_millis(300)).await;
        let via = self.regions[r].nodes[leader].raft_addr();
        let (ok, out) = ctl(
            &self.gatewayctl,
            &[
                "--server", &via, "rollback", &target, "--reason", "chaos h3",
            ],
        )
        .await;
        if !ok {
            bail!("rollback {} while partitioned: {out}", &target[..10]);
        }
        self.pinned.insert(r, target.clone());
        let majority: Vec<NodeRef> = (0..3).filter(|&i| i != x).map(|i| (r, i)).collect();
        self.wait_version(&majority, &target, Duration::from_secs(30))
            .await?;
        sleep(Duration::from_millis(500)).await;
        let vx = self.version((r, x)).await;
        if vx.as_deref() != Some(head.as_str()) {
            rep.failures.push(format!(
                "partitioned {} serves {vx:?} during rollback, expected {}",
                self.node_name((r, x)),
                &head[..10]
            ));
        }
        let t1 = Instant::now();
        self.net.heal();
        self.wait_version(&[(r, x)], &target, Duration::from_secs(60))
            .await?;
        rep.conv.push(t1.elapsed());
        let (ok, out) = ctl(
            &self.gatewayctl,
            &["--server", &via, "resume", "--reason", "chaos h3 done"],
        )
        .await;
        if !ok {
            bail!("resume: {out}");
        }
        self.pinned.remove(&r);
        let nodes: Vec<NodeRef> = (0..3).map(|i| (r, i)).collect();
        self.wait_version(&nodes, &head, Duration::from_secs(30))
            .await?;
        println!(
            "  h3: rollback to {} while {} cut off: majority switched, {} converged to it {} after heal; resumed to {}",
            &target[..10],
            self.node_name((r, x)),
            self.node_name((r, x)),
            fmt_d(t1.elapsed()),
            &head[..10]
        );
        Ok(())
    }

    /// (active_version, configuration_hash, pinned_to) of a node, if it answers.
    async fn served(&self, n: NodeRef) -> Option<(String, String, String)> {
        let s = self.status(n).await?;
        Some((
            s["cluster"]["active_version"].as_str()?.to_string(),
            s["configuration_hash"].as_str()?.to_string(),
            s["cluster"]["pinned_to"].as_str().unwrap_or("").to_string(),
        ))
    }

    /// Wait until every node of region `r` serves `version` with `hash`,
    /// unpinned; the time it took.
    async fn wait_region_config(
        &self,
        r: usize,
        version: &str,
        hash: &str,
        timeout: Duration,
    ) -> Result<Duration> {
        let t0 = Instant::now();
        let until = t0 + self.left(timeout);
        loop {
            let mut off = Vec::new();
            for i in 0..3 {
                let got = self.served((r, i)).await;
                let ok = got
                    .as_ref()
                    .is_some_and(|(v, h, p)| v == version && h == hash && p.is_empty());
                if !ok {
                    off.push(format!("{}={got:?}", self.node_name((r, i))));
                }
            }
            if off.is_empty() {
                return Ok(t0.elapsed());
            }
            if Instant::now() >= until {
                bail!(
                    "region {} not all on {} with hash {hash} (unpinned) within {timeout:?}: {}",
                    self.regions[r].name,
                    &version[..10.min(version.len())],
                    off.join(", ")
                );
            }
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// What node `n` serves, checked against the committed config: its
    /// status must show `version` with `hash`, its proxy must route the
    /// committed commit's marker `/{ok_tag}` and not `/{bad_tag}` (the
    /// marker of the uncommitted rollback target). The problems found.
    async fn probe_committed(
        &self,
        n: NodeRef,
        version: &str,
        hash: &str,
        ok_tag: &str,
        bad_tag: &str,
    ) -> Vec<String> {
        let mut out = Vec::new();
        match self.served(n).await {
            Some((v, h, p)) => {
                if v != version || h != hash || !p.is_empty() {
                    out.push(format!(
                        "status shows active_version {} hash {h}{} (committed: {} hash {hash})",
                        &v[..10.min(v.len())],
                        if p.is_empty() {
                            String::new()
                        } else {
                            format!(" pinned to {}", &p[..10.min(p.len())])
                        },
                        &version[..10.min(version.len())]
                    ));
                }
            }
            None => out.push("admin /status did not answer".into()),
        }
        let proxy = self.regions[n.0].nodes[n.1].proxy_url();
        let t = Duration::from_secs(1);
        let good = get(&self.http, &format!("{proxy}/{ok_tag}"), t).await;
        if !matches!(good, Some((200, _))) {
            out.push(format!(
                "proxy GET /{ok_tag} (route of the committed config) -> {}",
                good.map(|(c, _)| c.to_string())
                    .unwrap_or_else(|| "no answer".into())
            ));
        }
        let bad = get(&self.http, &format!("{proxy}/{bad_tag}"), t).await;
        if matches!(bad, Some((200, _))) {
            out.push(format!(
                "proxy GET /{bad_tag} (route only the uncommitted rollback target has) -> 200"
            ));
        }
        out
    }

    /// i: isolate a region's leader, wait for the majority to elect, then
    /// send a rollback to the isolated old leader. It must not be
    /// acknowledged, and the old leader must keep serving the last
    /// committed config the whole time; after heal the region converges
    /// on that config (the rollback never committed).
    async fn stale_leader_write(&mut self, rep: &mut Report) -> Result<()> {
        let r = self.rng.random_range(0..2usize);
        let name = self.regions[r].name.clone();
        if self.pinned.contains_key(&r) {
            bail!("region {name} is pinned by an earlier scenario; i needs it following");
        }
        // A fresh commit: the last committed config; the one before it is
        // the rollback target (its marker route differs).
        let before = self.push_valid().await?;
        let all = self.all_nodes();
        self.wait_version(&all, &before, Duration::from_secs(30))
            .await?;
        let target = self.valid_list[self.valid_list.len() - 2].clone();
        let (ok_tag, bad_tag) = (self.tags[&before].clone(), self.tags[&target].clone());
        if ok_tag.starts_with(&bad_tag) || bad_tag.starts_with(&ok_tag) {
            bail!("marker routes /{ok_tag} and /{bad_tag} overlap as prefixes");
        }
        let hash = {
            let h = self.served((r, 0)).await.map(|(_, h, _)| h);
            h.unwrap_or_default()
        };
        self.wait_region_config(r, &before, &hash, Duration::from_secs(10))
            .await?;
        let leader = self
            .wait_leader(r, &[0, 1, 2], Duration::from_secs(30))
            .await?;
        let old = (r, leader);
        let pre = self
            .probe_committed(old, &before, &hash, &ok_tag, &bad_tag)
            .await;
        if !pre.is_empty() {
            bail!(
                "{} before the partition: {}",
                self.node_name(old),
                pre.join("; ")
            );
        }

        self.cut_off(r, leader)?;
        rep.faults += 1;
        let t0 = Instant::now();
        let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
        let nl = self
            .wait_leader(r, &others, Duration::from_secs(20))
            .await?;
        let elected = t0.elapsed();
        let role = self
            .status(old)
            .await
            .and_then(|s| s["cluster"]["role"].as_str().map(String::from))
            .unwrap_or_else(|| "?".into());

        // The write, with a short timeout, while we watch the old leader.
        let write_timeout = Duration::from_secs(3);
        let via = self.regions[r].nodes[leader].raft_addr();
        let ctl_bin = self.gatewayctl.clone();
        let tgt = target.clone();
        let write = tokio::spawn(async move {
            let t = Instant::now();
            let res = ctl_within(
                &ctl_bin,
                &[
                    "--server",
                    &via,
                    "rollback",
                    &tgt,
                    "--reason",
                    "chaos i: write to a stale leader",
                ],
                write_timeout,
            )
            .await;
            (res, t.elapsed())
        });
        // Sample until the write is over and 2 s more (bounded: 80 rounds, 12 s).
        let until = Instant::now() + self.left(Duration::from_secs(12));
        let mut done_at: Option<Instant> = None;
        let (mut rounds, mut bad_rounds) = (0u32, 0u32);
        let mut first_bad: Vec<String> = Vec::new();
        while rounds < 80 {
            rounds += 1;
            let p = self
                .probe_committed(old, &before, &hash, &ok_tag, &bad_tag)
                .await;
            if !p.is_empty() {
                bad_rounds += 1;
                if first_bad.is_empty() {
                    first_bad = p;
                }
            }
            if done_at.is_none() && write.is_finished() {
                done_at = Some(Instant::now());
            }
            let now = Instant::now();
            if now >= until || done_at.is_some_and(|d| now >= d + Duration::from_secs(2)) {
                break;
            }
            sleep(Duration::from_millis(100)).await;
        }
        let ((acked, out), took) =
            match tokio::time::timeout(write_timeout + Duration::from_secs(5), write).await {
                Ok(Ok(x)) => x,
                _ => ((false, "write task did not finish".into()), Duration::ZERO),
            };
        let out = out.trim().replace('\n', " ");
        if acked {
            rep.failures.push(format!(
                "isolated old leader {} ACKNOWLEDGED rollback to {} after {} (no majority can have committed it): {out}",
                self.node_name(old),
                &target[..10],
                fmt_d(took)
            ));
        }
        if bad_rounds > 0 {
            rep.failures.push(format!(
                "isolated old leader {} served an uncommitted config in {bad_rounds}/{rounds} samples during the partition; first: {}",
                self.node_name(old),
                first_bad.join("; ")
            ));
            self.watch
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .uncommitted
                .push((self.node_name(old), first_bad.join("; ")));
        }
        for &i in &others {
            let p = self
                .probe_committed((r, i), &before, &hash, &ok_tag, &bad_tag)
                .await;
            if !p.is_empty() {
                rep.failures.push(format!(
                    "majority node {} during the partition: {}",
                    self.node_name((r, i)),
                    p.join("; ")
                ));
            }
        }

        let t1 = Instant::now();
        self.net.heal();
        self.wait_leader(r, &[0, 1, 2], Duration::from_secs(30))
            .await?;
        let conv = match self
            .wait_region_config(r, &before, &hash, Duration::from_secs(15))
            .await
        {
            Ok(_) => {
                rep.conv.push(t1.elapsed());
                format!(
                    "region back on {} hash {} {} after heal",
                    &before[..10],
                    &hash[..12.min(hash.len())],
                    fmt_d(t1.elapsed())
                )
            }
            Err(e) => {
                rep.failures.push(format!("after heal: {e:#}"));
                for i in 0..3 {
                    if let Some((v, h, _)) = self.served((r, i)).await {
                        if v == before && h != hash {
                            self.watch
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .uncommitted
                                .push((
                                    self.node_name((r, i)),
                                    format!("after heal serves hash {h} as {v}"),
                                ));
                        }
                    }
                }
                format!(
                    "region NOT back on {} hash {} {} after heal",
                    &before[..10],
                    &hash[..12.min(hash.len())],
                    fmt_d(t1.elapsed())
                )
            }
        };
        // The rollback must not surface later either.
        sleep(Duration::from_millis(500)).await;
        for i in 0..3 {
            let p = self
                .probe_committed((r, i), &before, &hash, &ok_tag, &bad_tag)
                .await;
            if !p.is_empty() {
                rep.failures.push(format!(
                    "{} 0.5 s after the convergence check: {}",
                    self.node_name((r, i)),
                    p.join("; ")
                ));
            }
        }
        println!(
            "  i: leader {} (role while cut off: {role}) isolated: {name}-{} elected after {}; rollback to {} sent to the old leader: {} after {} ({}); old leader sampled {rounds}x (status + proxy /{ok_tag}, /{bad_tag}), {bad_rounds} bad; {conv}",
            self.node_name(old),
            nl + 1,
            fmt_d(elected),
            &target[..10],
            if acked { "ACKNOWLEDGED" } else { "not acknowledged" },
            fmt_d(took),
            out.chars().take(100).collect::<String>(),
        );
        Ok(())
    }
}
