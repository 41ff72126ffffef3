//! Processes, the Git repository and daemon, iptables rules: everything the
//! suite starts, with cleanup in `Drop` (and on Ctrl-C, see `main`).

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::collections::HashSet;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Pids of every child still running, for the Ctrl-C handler.
pub static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn register(pid: u32) {
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
}

fn unregister(pid: u32) {
    CHILDREN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|p| *p != pid);
}

pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a pid we spawned and have not reaped yet.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// Kill every registered child (SIGCONT first, in case it is stopped).
pub fn kill_all_children() {
    let pids = CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for p in pids {
        signal(p, libc::SIGCONT);
        signal(p, libc::SIGKILL);
    }
}

type SpawnReq = (Command, std::sync::mpsc::Sender<std::io::Result<Child>>);

static SPAWNER: Mutex<Option<std::sync::mpsc::Sender<SpawnReq>>> = Mutex::new(None);

/// Spawn with SIGKILL as parent-death signal, so a `kill -9` of the suite
/// does not leave gateways behind. The parent-death signal fires when the
/// spawning *thread* exits, so every child is spawned by one thread that
/// lives as long as the process (never by a tokio blocking-pool thread).
fn spawn(mut cmd: Command) -> Result<Child> {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let tx = {
        let mut g = SPAWNER.lock().unwrap_or_else(|e| e.into_inner());
        g.get_or_insert_with(|| {
            let (tx, rx) = std::sync::mpsc::channel::<SpawnReq>();
            std::thread::spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            });
            tx
        })
        .clone()
    };
    let (rtx, rrx) = std::sync::mpsc::channel();
    tx.send((cmd, rtx)).context("spawner thread gone")?;
    let child = rrx.recv().context("spawner thread gone")??;
    register(child.id());
    Ok(child)
}

/// A child process killed (SIGCONT + SIGKILL) and reaped on drop.
pub struct Proc(pub Option<Child>);

impl Proc {
    pub fn pid(&self) -> Option<u32> {
        self.0.as_ref().map(|c| c.id())
    }
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.0.take() {
            signal(c.id(), libc::SIGCONT);
            let _ = c.kill();
            let _ = c.wait();
            unregister(c.id());
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .args([
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Chaos Monkey")
        .env("GIT_AUTHOR_EMAIL", "chaos@example.com")
        .env("GIT_COMMITTER_NAME", "Chaos Monkey")
        .env("GIT_COMMITTER_EMAIL", "chaos@example.com")
        .output()
        .context("run git")?;
    if !out.status.success() {
        bail!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// One config repository (bare + work tree) under `base`.
pub struct Repo {
    pub base: PathBuf,
    pub work: PathBuf,
}

impl Repo {
    pub fn new(base: &Path) -> Result<Repo> {
        let bare = base.join("config.git");
        let work = base.join("work");
        std::fs::create_dir_all(&bare)?;
        std::fs::create_dir_all(&work)?;
        git(&bare, &["init", "--bare", "-q", "-b", "main"])?;
        git(&work, &["init", "-q", "-b", "main"])?;
        git(&work, &["remote", "add", "origin", &bare.to_string_lossy()])?;
        Ok(Repo {
            base: base.to_path_buf(),
            work,
        })
    }

    /// Commit `content` as gateway/kong.yml (not pushed yet); the sha.
    pub fn commit(&self, content: &str, message: &str) -> Result<String> {
        let p = self.work.join("gateway/kong.yml");
        std::fs::create_dir_all(p.parent().expect("parent"))?;
        std::fs::write(p, content)?;
        git(&self.work, &["add", "-A"])?;
        git(
            &self.work,
            &["commit", "-q", "--allow-empty", "-m", message],
        )?;
        git(&self.work, &["rev-parse", "HEAD"])
    }

    pub fn push_head(&self) -> Result<()> {
        git(&self.work, &["push", "-q", "origin", "main"]).map(|_| ())
    }
}

/// A valid config: `/live` (the load generator's route) plus a marker route.
pub fn valid_config(upstream: u16, tag: &str) -> String {
    format!(
        "_format_version: \"3.0\"\nservices:\n  - name: svc\n    url: http://127.0.0.1:{upstream}\n    routes:\n      - name: live\n        paths: [/live]\n      - name: marker\n        paths: [/{tag}]\n"
    )
}

/// Syntactically fine YAML the validator rejects.
pub fn invalid_config(upstream: u16, tag: &str) -> String {
    format!(
        "{}        regex_priority: nope\n",
        valid_config(upstream, tag)
    )
}

pub fn git_daemon(base: &Path, port: u16) -> Result<Proc> {
    let exec = git(base, &["--exec-path"])?;
    let mut cmd = Command::new(Path::new(&exec).join("git-daemon"));
    cmd.args([
        "--reuseaddr",
        "--export-all",
        "--listen=127.0.0.1",
        &format!("--port={port}"),
    ])
    .arg(format!("--base-path={}", base.display()))
    .arg(base)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let p = Proc(Some(spawn(cmd).context("spawn git-daemon")?));
    let until = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > until {
            bail!("git daemon not listening on {port}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(p)
}

/// A free port on `ip` (bound then released).
pub fn free_port(ip: &str) -> Result<u16> {
    let l = std::net::TcpListener::bind((ip, 0)).with_context(|| format!("bind {ip}:0"))?;
    Ok(l.local_addr()?.port())
}

pub struct Node {
    pub region: String,
    pub id: u64,
    /// Global index (load generator slot).
    pub slot: usize,
    pub ip: String,
    pub raft: u16,
    pub proxy: u16,
    pub admin: u16,
    pub data: PathBuf,
    /// The process runs with this gid, so iptables `--gid-owner` can tell
    /// its packets from its peers' (all of them leave from 127.0.0.1).
    pub gid: u32,
    pub proc: Proc,
    pub stopped: bool,
}

impl Node {
    pub fn raft_addr(&self) -> String {
        format!("{}:{}", self.ip, self.raft)
    }
    pub fn admin_url(&self) -> String {
        format!("http://{}:{}", self.ip, self.admin)
    }
    pub fn proxy_url(&self) -> String {
        format!("http://{}:{}", self.ip, self.proxy)
    }
    pub fn name(&self) -> String {
        format!("{}-{}", self.region, self.id)
    }
    pub fn running(&self) -> bool {
        self.proc.0.is_some()
    }
}

pub struct Region {
    pub name: String,
    pub nodes: Vec<Node>,
    pub peers: String,
}

impl Region {
    /// Nodes `base_ip.1..=n` (e.g. 127.0.0.1 + "1" → 127.0.0.11).
    pub fn new(
        name: &str,
        ip_prefix: &str,
        n: usize,
        first_slot: usize,
        dir: &Path,
    ) -> Result<Region> {
        let mut nodes = Vec::new();
        for i in 0..n {
            let ip = format!("{ip_prefix}{}", i + 1);
            nodes.push(Node {
                region: name.into(),
                id: i as u64 + 1,
                slot: first_slot + i,
                raft: free_port(&ip)?,
                proxy: free_port(&ip)?,
                admin: free_port(&ip)?,
                data: dir.join(format!("{name}-{}", i + 1)),
                gid: 61000 + (first_slot + i) as u32,
                ip,
                proc: Proc(None),
                stopped: false,
            });
        }
        let peers = nodes
            .iter()
            .map(|m| format!("{}={}", m.id, m.raft_addr()))
            .collect::<Vec<_>>()
            .join(",");
        Ok(Region {
            name: name.into(),
            nodes,
            peers,
        })
    }

    pub fn start(&mut self, i: usize, gateway: &Path, git_url: &str, log_dir: &Path) -> Result<()> {
        let m = &self.nodes[i];
        if m.running() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_dir.join(format!("{}.log", m.name())))?;
        let mut cmd = Command::new(gateway);
        cmd.args([
            "run",
            "--region",
            &self.name,
            "--node-id",
            &m.id.to_string(),
        ])
        .arg("--data-dir")
        .arg(&m.data)
        .args(["--raft-listen", &m.raft_addr()])
        .args(["--peers", &self.peers])
        .args(["--proxy-listen", &format!("{}:{}", m.ip, m.proxy)])
        .args(["--admin-listen", &format!("{}:{}", m.ip, m.admin)])
        .args(["--git-url", git_url, "--git-poll-interval", "200ms"])
        .env(
            "GATEWAY_LOG",
            // CHAOS_GATEWAY_LOG overrides the nodes' log filter (investigations).
            std::env::var("CHAOS_GATEWAY_LOG").unwrap_or_else(|_| "error,openraft=off".into()),
        )
        .stdout(Stdio::null())
        .stderr(log)
        .gid(m.gid);
        let child = spawn(cmd).with_context(|| format!("spawn {}", m.name()))?;
        let m = &mut self.nodes[i];
        m.proc = Proc(Some(child));
        m.stopped = false;
        Ok(())
    }

    pub fn kill9(&mut self, i: usize) {
        self.nodes[i].proc.kill9();
        self.nodes[i].stopped = false;
    }

    pub fn sigstop(&mut self, i: usize) {
        if let Some(p) = self.nodes[i].proc.pid() {
            signal(p, libc::SIGSTOP);
            self.nodes[i].stopped = true;
        }
    }

    pub fn sigcont(&mut self, i: usize) {
        if let Some(p) = self.nodes[i].proc.pid() {
            signal(p, libc::SIGCONT);
        }
        self.nodes[i].stopped = false;
    }
}

/// iptables rules tagged `chaos-tests-<pid>`; all removed on drop.
pub struct NetGuard {
    pub tag: String,
    pub available: Result<(), String>,
}

impl NetGuard {
    pub fn new() -> NetGuard {
        let tag = format!("chaos-tests-{}", std::process::id());
        let available = match Command::new("iptables")
            .args(["-w", "-S", "OUTPUT"])
            .output()
        {
            Err(e) => Err(format!(
                "`iptables` not found ({e}); install the iptables package"
            )),
            Ok(o) if !o.status.success() => Err(format!(
                "`iptables -S OUTPUT` failed (root / CAP_NET_ADMIN needed): {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Ok(_) => Ok(()),
        };
        let g = NetGuard { tag, available };
        if g.available.is_ok() {
            g.remove_matching(|t| {
                // Leftovers of earlier runs whose process is gone.
                t.strip_prefix("chaos-tests-")
                    .and_then(|p| p.parse::<u32>().ok())
                    .is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists())
            });
        }
        g
    }

    fn rules() -> Vec<String> {
        Command::new("iptables")
            .args(["-w", "-S", "OUTPUT"])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn remove_matching(&self, pred: impl Fn(&str) -> bool) -> usize {
        let mut n = 0;
        for r in Self::rules() {
            let Some(rest) = r.strip_prefix("-A OUTPUT ") else {
                continue;
            };
            let words: Vec<&str> = rest.split_whitespace().collect();
            let Some(pos) = words.iter().position(|w| *w == "--comment") else {
                continue;
            };
            let tag = words
                .get(pos + 1)
                .map(|t| t.trim_matches('"'))
                .unwrap_or("");
            if !pred(tag) {
                continue;
            }
            let ok = Command::new("iptables")
                .args(["-w", "-D", "OUTPUT"])
                .args(&words)
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                n += 1;
            }
        }
        n
    }

    /// Drop every Raft request between `a` and `b`, both ways. Packets of all
    /// nodes leave from 127.0.0.1, so the sender is told by its gid.
    pub fn cut(&self, a: &Node, b: &Node) -> Result<()> {
        for (from, to) in [(a, b), (b, a)] {
            let st = Command::new("iptables")
                .args(["-w", "-I", "OUTPUT", "-p", "tcp", "-m", "owner"])
                .args(["--gid-owner", &from.gid.to_string()])
                .args(["-d", &to.ip, "--dport", &to.raft.to_string()])
                .args(["-m", "comment", "--comment", &self.tag, "-j", "DROP"])
                .status()?;
            if !st.success() {
                bail!("iptables -I OUTPUT failed");
            }
        }
        Ok(())
    }

    pub fn heal(&self) -> usize {
        let tag = self.tag.clone();
        self.remove_matching(|t| t == tag)
    }
}

impl Drop for NetGuard {
    fn drop(&mut self) {
        if self.available.is_ok() {
            self.heal();
        }
    }
}

/// Every version id in a node's history (`gatewayctl -o json history`).
pub async fn history_ids(gatewayctl: &Path, raft: &str) -> Result<HashSet<String>> {
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::process::Command::new(gatewayctl)
            .args(["--server", raft, "-o", "json", "history", "--limit", "0"])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("gatewayctl history timed out")??;
    if !out.status.success() {
        bail!(
            "gatewayctl history: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: Value = serde_json::from_slice(&out.stdout)?;
    Ok(v["versions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["id"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default())
}

pub async fn history_rejected(gatewayctl: &Path, raft: &str) -> Result<HashSet<String>> {
    let out = tokio::process::Command::new(gatewayctl)
        .args(["--server", raft, "-o", "json", "history", "--limit", "0"])
        .kill_on_drop(true)
        .output()
        .await?;
    let v: Value = serde_json::from_slice(&out.stdout)?;
    Ok(v["rejected"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["commit"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default())
}

pub async fn ctl(gatewayctl: &Path, args: &[&str]) -> (bool, String) {
    ctl_within(gatewayctl, args, Duration::from_secs(20)).await
}

/// Run `gatewayctl args`, killed after `timeout` (then `(false, "timed out")`).
pub async fn ctl_within(gatewayctl: &Path, args: &[&str], timeout: Duration) -> (bool, String) {
    let r = tokio::time::timeout(
        timeout,
        tokio::process::Command::new(gatewayctl)
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await;
    match r {
        Ok(Ok(out)) => (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ),
        Ok(Err(e)) => (false, e.to_string()),
        Err(_) => (false, "timed out".into()),
    }
}
