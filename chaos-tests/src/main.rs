//! Chaos suite for the gateway: two real regions (eu, us) of three
//! `gateway run --region` processes each, following one Git repository
//! served by `git daemon`, under load, while a seeded schedule kills,
//! stops, wipes and partitions nodes. See docs/reliability.md.
//!
//! Layout:
//! - `harness`: processes (git daemon, upstream, regions of nodes), the
//!   seeded RNG, iptables partition rules and their cleanup.
//! - `load`: the load generator (every node, whole run) and its per-node
//!   accounting of failures on live nodes.
//! - `scenarios`: one function per fault scenario (a-i) and the invariant
//!   checks run after each.
//! - `main.rs`: flags, the schedule, the summary table and the exit code.

mod harness;
mod load;
mod scenarios;

use anyhow::{bail, Context, Result};
use clap::Parser;
use harness::*;
use load::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Parser, Debug)]
#[command(
    about = "Chaos tests: real regions under kill -9, SIGSTOP, wiped disks, Git outages and partitions"
)]
pub struct Args {
    /// Seed of the fault schedule (victims, timings); random if absent.
    #[arg(long)]
    seed: Option<u64>,
    /// Global deadline: scenarios not started by then are skipped.
    #[arg(long, default_value_t = 12)]
    max_minutes: u64,
    /// CI subset: leader kills, random kills, invalid push, region restart, fewer faults.
    #[arg(long)]
    quick: bool,
    /// Directory holding `gateway` and `gatewayctl` (default: next to this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Only these scenarios (comma-separated letters, e.g. `a,d,h`).
    #[arg(long)]
    only: Option<String>,
    /// Interval between two GETs to one node, in ms.
    #[arg(long, default_value_t = 5)]
    load_interval_ms: u64,
    /// Keep the work directory (node data, logs) after the run.
    #[arg(long)]
    keep: bool,
}

/// Start a tiny upstream answering 200 to everything.
async fn echo_upstream() -> Result<u16> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = l.local_addr()?.port();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        let body = format!("{{\"echo\":\"{}\"}}", req.uri().path());
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from(body)),
                        ))
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                .await;
            });
        }
    });
    Ok(port)
}

pub struct Chaos {
    pub rng: StdRng,
    pub quick: bool,
    pub deadline: Instant,
    pub gateway: PathBuf,
    pub gatewayctl: PathBuf,
    pub dir: PathBuf,
    pub repo: Repo,
    pub daemon: Proc,
    pub daemon_port: u16,
    pub git_url: String,
    pub upstream: u16,
    pub regions: Vec<Region>,
    pub load: Arc<Load>,
    pub watch: Arc<Mutex<Watch>>,
    pub net: NetGuard,
    pub http: HttpClient,
    /// Newest valid commit pushed; every valid commit in push order.
    pub head: String,
    pub valid_list: Vec<String>,
    /// Commit → its marker route's tag (`/c<n>` is routed only by that commit).
    pub tags: HashMap<String, String>,
    /// Region → commit it is pinned to by a rollback.
    pub pinned: HashMap<usize, String>,
    pub pushes: u32,
    /// Node log → bytes already scanned for panics.
    pub log_offsets: HashMap<String, u64>,
}

fn find_bins(args: &Args) -> Result<(PathBuf, PathBuf)> {
    let dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("binary directory")?
            .to_path_buf(),
    };
    let (g, c) = (dir.join("gateway"), dir.join("gatewayctl"));
    for b in [&g, &c] {
        if !b.exists() {
            bail!(
                "{} not found: build with `cargo build --release -p gateway-node --bins -p chaos-tests` or pass --bin-dir",
                b.display()
            );
        }
    }
    Ok((g, c))
}

async fn setup(args: &Args, seed: u64, deadline: Instant, dir: PathBuf) -> Result<Chaos> {
    let (gateway, gatewayctl) = find_bins(args)?;
    for ip in ["127.0.0.11", "127.0.0.21"] {
        free_port(ip).with_context(|| {
            format!("loopback alias {ip} unusable (Linux routes 127.0.0.0/8 to lo)")
        })?;
    }
    let upstream = echo_upstream().await?;
    let repo = Repo::new(&dir.join("git"))?;
    let c0 = repo.commit(&valid_config(upstream, "c0"), "c0")?;
    repo.push_head()?;
    let daemon_port = free_port("127.0.0.1")?;
    let daemon = git_daemon(&repo.base, daemon_port)?;
    let git_url = format!("git://127.0.0.1:{daemon_port}/config.git");
    let regions = vec![
        Region::new("eu", "127.0.0.1", 3, 0, &dir)?,
        Region::new("us", "127.0.0.2", 3, 3, &dir)?,
    ];
    let targets = regions
        .iter()
        .flat_map(|r| r.nodes.iter().map(|n| (n.name(), n.proxy_url())))
        .collect();
    let load = Load::new(targets);
    let mut watch = Watch::default();
    watch.valid.insert(c0.clone());
    let mut c = Chaos {
        rng: StdRng::seed_from_u64(seed),
        quick: args.quick,
        deadline,
        gateway,
        gatewayctl,
        dir,
        repo,
        daemon,
        daemon_port,
        git_url,
        upstream,
        regions,
        load,
        watch: Arc::new(Mutex::new(watch)),
        net: NetGuard::new(),
        http: client(),
        head: c0.clone(),
        valid_list: vec![c0.clone()],
        tags: HashMap::from([(c0.clone(), "c0".to_string())]),
        pinned: HashMap::new(),
        pushes: 0,
        log_offsets: HashMap::new(),
    };
    for r in 0..2 {
        for i in 0..3 {
            c.start(r, i)?;
        }
    }
    for r in 0..2 {
        c.wait_leader(r, &[0, 1, 2], Duration::from_secs(60))
            .await?;
    }
    let all = c.all_nodes();
    c.wait_version(&all, &c0, Duration::from_secs(60)).await?;
    for (r, i) in all {
        c.wait_up(r, i, Duration::from_secs(30)).await?;
    }
    Ok(c)
}

fn fmt_d(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(rand::random);
    println!(
        "chaos-tests seed={seed} (replay with --seed {seed}){}",
        if args.quick { " --quick" } else { "" }
    );
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.max_minutes * 60);

    // Ctrl-C / SIGTERM: kill children, remove rules, exit.
    let tag = format!("chaos-tests-{}", std::process::id());
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
        }
        eprintln!("interrupted: killing children, removing iptables rules tagged {tag}");
        kill_all_children();
        let g = NetGuard {
            tag,
            available: Ok(()),
        };
        g.heal();
        std::process::exit(130);
    });

    let tmp = match tempfile::Builder::new().prefix("chaos-tests-").tempdir() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tempdir: {e}");
            std::process::exit(2);
        }
    };
    println!("work dir {} (node logs: *.log)", tmp.path().display());
    let code = match run(&args, seed, deadline, tmp.path().to_path_buf()).await {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("chaos-tests: setup failed: {e:#}");
            2
        }
    };
    println!("total run time {} (seed {seed})", fmt_d(started.elapsed()));
    if args.keep {
        let p = tmp.keep();
        println!("kept {}", p.display());
    }
    std::process::exit(code);
}

async fn run(args: &Args, seed: u64, deadline: Instant, dir: PathBuf) -> Result<bool> {
    let t0 = Instant::now();
    let mut c = setup(args, seed, deadline, dir).await?;
    println!(
        "setup: 2 regions x 3 nodes up, serving {} ({}); iptables: {}",
        &c.head[..10],
        fmt_d(t0.elapsed()),
        match &c.net.available {
            Ok(()) => "available".to_string(),
            Err(e) => format!("UNAVAILABLE ({e})"),
        }
    );
    let stop = Arc::new(AtomicBool::new(false));
    let load_tasks = c.load.spawn(
        Duration::from_millis(args.load_interval_ms.max(1)),
        deadline + Duration::from_secs(120),
    );
    let targets = c
        .regions
        .iter()
        .flat_map(|r| {
            r.nodes.iter().map(|n| WatchTarget {
                region: n.region.clone(),
                id: n.id,
                name: n.name(),
                admin: n.admin_url(),
            })
        })
        .collect();
    let watcher = spawn_watcher(
        c.watch.clone(),
        targets,
        2,
        stop.clone(),
        deadline + Duration::from_secs(120),
    );

    let all: Vec<&str> = if args.quick {
        vec!["a", "b", "d", "f", "g"]
    } else {
        vec!["a", "b", "c", "d", "e", "f", "g", "h", "i"]
    };
    let chosen: Vec<&str> = match &args.only {
        Some(o) => all
            .into_iter()
            .filter(|s| o.split(',').any(|x| x.trim() == *s))
            .collect(),
        None => all,
    };
    let mut reports = Vec::new();
    for s in chosen {
        let rep = c.run_one(s).await;
        rep.print_details();
        reports.push(rep);
    }

    c.load.stop.store(true, Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    for t in load_tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), watcher).await;

    scenarios::print_table(&reports);
    println!("\nper node (whole run):");
    println!(
        "{:<6} {:>9} {:>9} {:>8} {:>12}",
        "node", "sent", "ok", "failed", "failed-live"
    );
    for s in &c.load.slots {
        println!(
            "{:<6} {:>9} {:>9} {:>8} {:>12}",
            s.name,
            s.sent.load(Ordering::SeqCst),
            s.ok.load(Ordering::SeqCst),
            s.failed.load(Ordering::SeqCst),
            s.failed_live.load(Ordering::SeqCst)
        );
    }
    let (samples, acked, uncommitted) = {
        let w = c.watch.lock().unwrap_or_else(|e| e.into_inner());
        (
            w.samples,
            w.acked.values().map(|s| s.len()).sum::<usize>(),
            w.uncommitted_nodes(0),
        )
    };
    let tot = c.load.totals();
    let failed_scen = reports.iter().filter(|r| !r.failures.is_empty()).count();
    let skipped = reports.iter().filter(|r| r.skipped.is_some()).count();
    println!(
        "\nsummary: {} scenarios, {} passed, {} failed, {} skipped; requests {} (failed on live nodes {}), status samples {}, commits acknowledged {}, pushes {}",
        reports.len(),
        reports.len() - failed_scen - skipped,
        failed_scen,
        skipped,
        tot.sent,
        tot.failed_live,
        samples,
        acked,
        c.pushes
    );
    println!(
        "nodes that served an uncommitted config: {}{}",
        uncommitted.len(),
        if uncommitted.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                uncommitted.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        }
    );
    let ok = failed_scen == 0 && tot.failed_live == 0 && uncommitted.is_empty();
    println!("{}", if ok { "RESULT: PASS" } else { "RESULT: FAIL" });
    Ok(ok)
}
