//! The load generator (GETs to every node's proxy, the whole run) and the
//! status watcher (which config each node serves, checked against the set
//! of valid commits; which commits a majority acknowledged).

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

pub type HttpClient = Client<HttpConnector, Empty<Bytes>>;

pub fn client() -> HttpClient {
    let mut c = HttpConnector::new();
    // All node addresses are on lo; send from 127.0.0.1, which no iptables
    // rule of the suite matches (rules match node gids).
    c.set_local_address(Some("127.0.0.1".parse().expect("ip")));
    c.set_connect_timeout(Some(Duration::from_secs(1)));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(5))
        .build(c)
}

/// GET `url` with a timeout; (status, body).
pub async fn get(c: &HttpClient, url: &str, timeout: Duration) -> Option<(u16, Bytes)> {
    let req = http::Request::get(url).body(Empty::new()).ok()?;
    tokio::time::timeout(timeout, async {
        let resp = c.request(req).await.ok()?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        Some((status, body))
    })
    .await
    .ok()?
}

pub async fn status(c: &HttpClient, admin: &str) -> Option<Value> {
    let (code, body) = get(c, &format!("{admin}/status"), Duration::from_secs(2)).await?;
    if code != 200 {
        return None;
    }
    serde_json::from_slice(&body).ok()
}

#[derive(Default)]
pub struct Slot {
    pub name: String,
    pub url: String,
    pub sent: AtomicU64,
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    /// Failures while the node was marked live for the whole request.
    pub failed_live: AtomicU64,
    pub up: AtomicBool,
    /// Bumped on every mark up/down: a request spanning a change is not judged.
    pub epoch: AtomicU64,
}

#[derive(Default)]
pub struct Load {
    pub slots: Vec<Slot>,
    pub errors: Mutex<Vec<String>>,
    pub stop: AtomicBool,
}

#[derive(Clone, Copy, Default, Debug)]
pub struct Counts {
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    pub failed_live: u64,
}

impl Counts {
    pub fn minus(self, o: Counts) -> Counts {
        Counts {
            sent: self.sent - o.sent,
            ok: self.ok - o.ok,
            failed: self.failed - o.failed,
            failed_live: self.failed_live - o.failed_live,
        }
    }
}

impl Load {
    pub fn new(targets: Vec<(String, String)>) -> Arc<Load> {
        Arc::new(Load {
            slots: targets
                .into_iter()
                .map(|(name, url)| Slot {
                    name,
                    url,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }

    pub fn mark(&self, slot: usize, up: bool) {
        let s = &self.slots[slot];
        s.epoch.fetch_add(1, Ordering::SeqCst);
        s.up.store(up, Ordering::SeqCst);
        s.epoch.fetch_add(1, Ordering::SeqCst);
    }

    pub fn totals(&self) -> Counts {
        let mut c = Counts::default();
        for s in &self.slots {
            c.sent += s.sent.load(Ordering::SeqCst);
            c.ok += s.ok.load(Ordering::SeqCst);
            c.failed += s.failed.load(Ordering::SeqCst);
            c.failed_live += s.failed_live.load(Ordering::SeqCst);
        }
        c
    }

    /// One task per target: GET /live, sequentially, every `every`, until
    /// `stop` or `until` (the loop is bounded by the global deadline).
    pub fn spawn(
        self: &Arc<Self>,
        every: Duration,
        until: Instant,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        (0..self.slots.len())
            .map(|i| {
                let me = self.clone();
                tokio::spawn(async move {
                    let c = client();
                    let mut tick = tokio::time::interval(every);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    let url = format!("{}/live", me.slots[i].url);
                    while !me.stop.load(Ordering::SeqCst) && Instant::now() < until {
                        tick.tick().await;
                        let s = &me.slots[i];
                        let e0 = s.epoch.load(Ordering::SeqCst);
                        let up0 = s.up.load(Ordering::SeqCst);
                        s.sent.fetch_add(1, Ordering::SeqCst);
                        let got = get(&c, &url, Duration::from_secs(2)).await;
                        if matches!(got, Some((200, _))) {
                            s.ok.fetch_add(1, Ordering::SeqCst);
                            continue;
                        }
                        s.failed.fetch_add(1, Ordering::SeqCst);
                        let live = up0
                            && s.up.load(Ordering::SeqCst)
                            && s.epoch.load(Ordering::SeqCst) == e0;
                        if live {
                            s.failed_live.fetch_add(1, Ordering::SeqCst);
                            let mut errs = me.errors.lock().unwrap_or_else(|e| e.into_inner());
                            if errs.len() < 50 {
                                errs.push(format!(
                                    "{}: GET /live on a live node → {:?}",
                                    s.name,
                                    got.map(|(c, b)| (
                                        c,
                                        String::from_utf8_lossy(&b)
                                            .chars()
                                            .take(120)
                                            .collect::<String>()
                                    ))
                                ));
                            }
                        }
                    }
                })
            })
            .collect()
    }
}

/// What the watcher learned from `GET /status` of every node.
#[derive(Default)]
pub struct Watch {
    /// (region, commit) → configuration_hash first seen with it.
    pub hash_of: HashMap<(String, String), String>,
    /// Commits pushed as valid / invalid.
    pub valid: HashSet<String>,
    pub invalid: HashSet<String>,
    /// (region, commit) → nodes that reported it as active_version.
    pub seen_on: HashMap<(String, String), HashSet<u64>>,
    /// Per region: commits a majority reported active (acknowledged).
    pub acked: HashMap<String, HashSet<String>>,
    pub violations: Vec<String>,
    /// (node name, what it served): a node seen serving a config that is
    /// not a committed version's (the watcher's confirmed mismatches, and
    /// what scenarios find). Run and scenarios report the distinct nodes.
    pub uncommitted: Vec<(String, String)>,
    pub samples: u64,
    /// (node name, version, hash) seen once but not yet confirmed bad.
    suspect: HashMap<String, (String, String)>,
    /// Node name → the previous sample's (version, hash).
    last_pair: HashMap<String, (String, String)>,
}

impl Watch {
    /// Distinct nodes in `uncommitted[from..]`, sorted.
    pub fn uncommitted_nodes(&self, from: usize) -> std::collections::BTreeSet<String> {
        self.uncommitted
            .get(from..)
            .unwrap_or_default()
            .iter()
            .map(|(n, _)| n.clone())
            .collect()
    }
}

pub struct WatchTarget {
    pub region: String,
    pub id: u64,
    pub name: String,
    pub admin: String,
}

/// Poll every node's status every 100 ms; check the served config is a
/// valid commit's (a mismatch must repeat on the next sample to count, so
/// a torn read between two fields cannot fail the run).
pub fn spawn_watcher(
    watch: Arc<Mutex<Watch>>,
    targets: Vec<WatchTarget>,
    majority: usize,
    stop: Arc<AtomicBool>,
    until: Instant,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let c = client();
        while !stop.load(Ordering::SeqCst) && Instant::now() < until {
            for t in &targets {
                let Some(s) = status(&c, &t.admin).await else {
                    continue;
                };
                let version = s["cluster"]["active_version"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                let hash = s["configuration_hash"].as_str().unwrap_or("").to_string();
                if version.is_empty() {
                    continue;
                }
                let mut w = watch.lock().unwrap_or_else(|e| e.into_inner());
                w.samples += 1;
                let key = (t.region.clone(), version.clone());
                let problem = if w.invalid.contains(&version) {
                    Some(format!("serves INVALID commit {version} (hash {hash})"))
                } else if !w.valid.contains(&version) {
                    Some(format!("serves a version never pushed as valid: {version}"))
                } else {
                    match w.hash_of.get(&key) {
                        Some(h) if *h != hash => Some(format!(
                            "serves {version} with hash {hash}, earlier seen as {h}"
                        )),
                        _ => None,
                    }
                };
                let pair = (version.clone(), hash.clone());
                let repeated = w.last_pair.get(&t.name) == Some(&pair);
                w.last_pair.insert(t.name.clone(), pair.clone());
                match problem {
                    Some(p) => {
                        if w.suspect.get(&t.name) == Some(&pair) {
                            // Once per node and problem (it repeats every sample).
                            let v = format!("{}: {p}", t.name);
                            if w.violations.len() < 50 && !w.violations.contains(&v) {
                                w.violations.push(v);
                            }
                            if w.uncommitted.len() < 1000 {
                                w.uncommitted.push((t.name.clone(), p));
                            }
                        } else {
                            w.suspect.insert(t.name.clone(), pair);
                        }
                    }
                    None => {
                        w.suspect.remove(&t.name);
                        // Learn a commit's hash from two identical samples in
                        // a row, never from one possibly torn read.
                        if repeated {
                            w.hash_of.entry(key.clone()).or_insert(hash);
                        }
                        let n = {
                            let set = w.seen_on.entry(key).or_default();
                            set.insert(t.id);
                            set.len()
                        };
                        if n >= majority {
                            w.acked.entry(t.region.clone()).or_default().insert(version);
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}
