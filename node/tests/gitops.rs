//! GitOps end to end: real Git repositories built with the git CLI, served
//! over `file://` and `git daemon`, and real `gateway run --region
//! --git-url` processes. Push → served everywhere; a bad commit → rejected
//! while the old config serves; rollback to `HEAD~2`; pending while pinned;
//! resume; leader killed mid-series; two regions with overlays; Git down.

mod common;

use common::region::*;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const SECRET: &str = "webhook-secret-for-tests";

struct Repo {
    _dir: tempfile::TempDir,
    bare: PathBuf,
    work: PathBuf,
}

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
        .env("GIT_AUTHOR_NAME", "Ada Ops")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada Ops")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Repo {
    fn new() -> Repo {
        let dir = tempfile::tempdir().expect("tempdir");
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
        Repo {
            _dir: dir,
            bare,
            work,
        }
    }

    fn url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    /// Write `files` (repo path → content), commit, push; the new sha.
    fn push(&self, files: &[(&str, &str)], message: &str) -> String {
        for (path, text) in files {
            let p = self.work.join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        }
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "-m", message]);
        git(&self.work, &["push", "-q", "origin", "main"]);
        git(&self.work, &["rev-parse", "HEAD"])
    }
}

fn secret_file(dir: &Path) -> PathBuf {
    let p = dir.join("webhook-secret");
    std::fs::write(&p, SECRET).expect("write secret");
    p
}

async fn webhook(region: &Region, i: usize, signature: &str) -> Got {
    let body = r#"{"ref":"refs/heads/main"}"#;
    let req = http::Request::post(format!("{}/hooks/git", region.admin(i)))
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-hub-signature-256", signature)
        .body(full(body))
        .expect("request");
    send(req).await
}

async fn signed_webhook(region: &Region, i: usize) {
    let sig = gateway_gitops::sign_github(SECRET.as_bytes(), br#"{"ref":"refs/heads/main"}"#);
    let got = webhook(region, i, &sig).await;
    assert_eq!(got.status, 202, "{}", String::from_utf8_lossy(&got.body));
}

/// Wait until every node in `nodes` answers `path` with `status`.
async fn wait_route(region: &Region, nodes: &[usize], path: &str, status: u16) {
    for &i in nodes {
        let url = format!("{}{path}", region.proxy(i));
        let ok = eventually(WAIT, || {
            let url = url.clone();
            async move { try_status(&url).await == Some(status) }
        })
        .await;
        assert!(
            ok,
            "node {} never answered {path} with {status}: {:?}",
            i + 1,
            region.status(i).await
        );
    }
}

async fn try_status(url: &str) -> Option<u16> {
    let req = http::Request::get(url).body(full("")).ok()?;
    let resp = tokio::time::timeout(Duration::from_secs(2), client().request(req))
        .await
        .ok()?
        .ok()?;
    Some(resp.status().as_u16())
}

fn history(region: &Region, i: usize) -> Value {
    history_json(region, i).unwrap_or_else(|e| panic!("{e}"))
}

fn git_versions(h: &Value) -> Vec<String> {
    let mut v: Vec<(u64, String)> = h["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .filter(|v| v["source"] == "git")
        .map(|v| {
            (
                v["index"].as_u64().expect("index"),
                v["id"].as_str().expect("id").to_string(),
            )
        })
        .collect();
    v.sort();
    v.into_iter().map(|(_, id)| id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_reject_rollback_pending_resume_across_a_region() {
    let _serial = SERIAL.lock().await;
    let up = echo_upstream("svc").await;
    let port = up.addr.port();
    let repo = Repo::new();
    let c1 = repo.push(&[("gateway/kong.yml", &config(port, "/v1"))], "first route");
    let secret = secret_file(repo.work.parent().expect("dir"));
    // Poll rarely: after the first sync (on election), pushes arrive by webhook.
    let extra = [
        "--git-url",
        &repo.url(),
        "--git-poll-interval",
        "1h",
        "--webhook-secret-file",
        secret.to_str().expect("utf8"),
    ];
    let region = Region::start_all(3, &extra).await;
    let all = [0, 1, 2];
    wait_route(&region, &all, "/v1", 200).await;
    let leader = region.wait_leader(&all).await;
    let follower = (leader + 1) % 3;
    let s = region.status(follower).await.expect("status");
    assert_eq!(s["cluster"]["active_version"], c1.as_str());

    // A webhook without a valid signature is refused and fetches nothing.
    let got = webhook(&region, follower, "sha256=0000").await;
    assert_eq!(got.status, 401);

    let c2 = repo.push(
        &[("gateway/kong.yml", &config(port, "/v2"))],
        "second route",
    );
    // With a 1 h poll interval nothing fetches until the webhook: the
    // leader must not fetch on every Raft metrics change (a regression
    // that made it fetch hundreds of times a second).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for i in all {
        assert_eq!(
            try_status(&format!("{}/v2", region.proxy(i))).await,
            Some(404),
            "fetched without a webhook"
        );
    }
    signed_webhook(&region, follower).await;
    wait_route(&region, &all, "/v2", 200).await;
    wait_route(&region, &all, "/v1", 404).await;

    // An invalid commit is rejected with its location; /v2 keeps serving.
    let bad = format!("{}        regex_priority: nope\n", config(port, "/v3"));
    let c3 = repo.push(&[("gateway/kong.yml", &bad)], "broken push");
    signed_webhook(&region, leader).await;
    let rejected = eventually(WAIT, || async {
        history(&region, follower)["rejected"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["commit"] == c3.as_str()))
    })
    .await;
    assert!(rejected, "c3 rejected");
    let h = history(&region, follower);
    let errors = h["rejected"][0]["errors"].to_string();
    assert!(
        errors.contains("gateway/kong.yml:8:") && errors.contains("regex_priority"),
        "{errors}"
    );
    let (_, out) = ctl(&["--server", &region.raft(follower), "status"]);
    assert!(
        out.contains("rejected commit") && out.contains("gateway/kong.yml:8:"),
        "status shows the rejection: {out}"
    );
    for i in all {
        assert_eq!(
            try_status(&format!("{}/v2", region.proxy(i))).await,
            Some(200)
        );
        assert_eq!(
            try_status(&format!("{}/v3", region.proxy(i))).await,
            Some(404)
        );
    }

    let c4 = repo.push(
        &[("gateway/kong.yml", &config(port, "/v4"))],
        "fourth route",
    );
    signed_webhook(&region, follower).await;
    wait_route(&region, &all, "/v4", 200).await;

    // In GitOps mode Git is the source of truth.
    let got = region.post_config(follower, &config(port, "/admin")).await;
    assert_eq!(got.status, 409, "{}", String::from_utf8_lossy(&got.body));

    // Roll back to HEAD~2 (= c2; HEAD~1 is the rejected c3).
    let (ok, out) = ctl(&[
        "--server",
        &region.raft(follower),
        "rollback",
        "HEAD~2",
        "--reason",
        "bad deploy",
    ]);
    assert!(ok, "{out}");
    assert!(out.contains(&c2), "{out}");
    wait_route(&region, &all, "/v2", 200).await;
    wait_route(&region, &all, "/v4", 404).await;

    // A push while pinned is fetched and pending, not served.
    let c5 = repo.push(&[("gateway/kong.yml", &config(port, "/v5"))], "fifth route");
    signed_webhook(&region, follower).await;
    let pending = eventually(WAIT, || async {
        history(&region, leader)["pending"]
            .as_array()
            .is_some_and(|p| p.iter().any(|id| *id == c5.as_str()))
    })
    .await;
    assert!(pending, "c5 pending: {}", history(&region, leader));
    assert_eq!(
        try_status(&format!("{}/v5", region.proxy(follower))).await,
        Some(404)
    );
    assert_eq!(
        try_status(&format!("{}/v2", region.proxy(follower))).await,
        Some(200)
    );

    let (ok, out) = ctl(&[
        "--server",
        &region.raft(leader),
        "resume",
        "--reason",
        "fixed",
    ]);
    assert!(ok, "{out}");
    wait_route(&region, &all, "/v5", 200).await;

    // History: every commit once, in order, and the audited rollback.
    let h = history(&region, (leader + 2) % 3);
    assert_eq!(
        git_versions(&h),
        vec![c1.clone(), c2.clone(), c4.clone(), c5.clone()]
    );
    let events = h["events"].to_string();
    assert!(
        events.contains("bad deploy") && events.contains("rollback") && events.contains("resume"),
        "{events}"
    );

    // A semantic diff between two commits.
    let (ok, out) = ctl(&["--server", &region.raft(0), "diff", &c2[..10], &c4[..10]]);
    assert!(ok, "{out}");
    assert!(
        out.contains("routes:") && out.contains("/v2") && out.contains("/v4"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_during_pushes_applies_every_commit_once_in_order() {
    let _serial = SERIAL.lock().await;
    let up = echo_upstream("svc").await;
    let port = up.addr.port();
    let repo = Repo::new();
    let mut commits = vec![repo.push(&[("gateway/kong.yml", &config(port, "/p0"))], "p0")];
    let extra = ["--git-url", &repo.url(), "--git-poll-interval", "100ms"];
    let mut region = Region::start_all(3, &extra).await;
    wait_route(&region, &[0, 1, 2], "/p0", 200).await;
    for n in 1..=6 {
        commits.push(repo.push(
            &[("gateway/kong.yml", &config(port, &format!("/p{n}")))],
            &format!("p{n}"),
        ));
        if n == 3 {
            let leader = region.wait_leader(&[0, 1, 2]).await;
            region.kill9(leader);
            let alive: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
            region.wait_leader(&alive).await;
            region.start(leader);
        }
    }
    wait_route(&region, &[0, 1, 2], "/p6", 200).await;
    for i in 0..3 {
        let got = eventually(WAIT, || async {
            git_versions(&history(&region, i)) == commits
        })
        .await;
        assert!(
            got,
            "node {}: {:?} != {:?}",
            i + 1,
            git_versions(&history(&region, i)),
            commits
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_regions_from_one_repo_serve_their_own_overlays() {
    let _serial = SERIAL.lock().await;
    let up = echo_upstream("svc").await;
    let port = up.addr.port();
    let repo = Repo::new();
    let overlay = |name: &str| {
        format!(
            "_format_version: \"3.0\"\nservices:\n  - name: {name}\n    url: http://127.0.0.1:{port}\n    routes:\n      - name: r-{name}\n        paths: [/{name}]\n"
        )
    };
    let base = config(port, "/base");
    repo.push(
        &[
            ("gateway/kong.yml", base.as_str()),
            ("gateway/regions/eu/eu.yml", overlay("eu").as_str()),
            ("gateway/regions/us/us.yml", overlay("us").as_str()),
            ("README.md", "not config"),
        ],
        "two regions",
    );
    let extra = ["--git-url", &repo.url(), "--git-poll-interval", "200ms"];
    let mut eu = Region::new("eu", 1, &extra).await;
    let mut us = Region::new("us", 1, &extra).await;
    eu.start(0);
    us.start(0);
    wait_route(&eu, &[0], "/base", 200).await;
    wait_route(&us, &[0], "/base", 200).await;
    wait_route(&eu, &[0], "/eu", 200).await;
    wait_route(&us, &[0], "/us", 200).await;
    assert_eq!(try_status(&format!("{}/us", eu.proxy(0))).await, Some(404));
    assert_eq!(try_status(&format!("{}/eu", us.proxy(0))).await, Some(404));

    // One contexts file naming both regions: status and history for all.
    let ctx = eu._dir.path().join("contexts.yaml");
    std::fs::write(
        &ctx,
        format!(
            "current-context: eu\ncontexts:\n  - name: eu\n    server: {}\n  - name: us\n    server: {}\n",
            eu.raft(0),
            us.raft(0)
        ),
    )
    .expect("write contexts");
    let (ok, out) = ctl(&[
        "--contexts-file",
        ctx.to_str().expect("utf8"),
        "--all-regions",
        "status",
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains("region eu") && out.contains("region us"),
        "{out}"
    );
    let (ok, out) = ctl(&[
        "--contexts-file",
        ctx.to_str().expect("utf8"),
        "--context",
        "us",
        "-o",
        "json",
        "status",
    ]);
    assert!(ok, "{out}");
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["region"], "us");
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `git daemon` serving `base` on `port`; returns once it accepts.
async fn git_daemon(base: &Path, port: u16) -> Daemon {
    let exec = git(base, &["--exec-path"]);
    let child = Command::new(Path::new(&exec).join("git-daemon"))
        .args([
            "--reuseaddr",
            "--export-all",
            "--listen=127.0.0.1",
            &format!("--port={port}"),
        ])
        .arg(format!("--base-path={}", base.display()))
        .arg(base)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn git-daemon");
    let up = eventually(Duration::from_secs(10), || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
    assert!(up, "git daemon listening");
    Daemon(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_server_down_keeps_serving_reports_staleness_and_recovers() {
    let _serial = SERIAL.lock().await;
    let up = echo_upstream("svc").await;
    let port = up.addr.port();
    let repo = Repo::new();
    repo.push(&[("gateway/kong.yml", &config(port, "/g1"))], "g1");
    let base = repo.bare.parent().expect("dir").to_path_buf();
    let dport = server_port().await;
    let daemon = git_daemon(&base, dport).await;
    let url = format!("git://127.0.0.1:{dport}/config.git");
    let extra = ["--git-url", &url, "--git-poll-interval", "200ms"];
    let region = Region::start_all(3, &extra).await;
    wait_route(&region, &[0, 1, 2], "/g1", 200).await;

    drop(daemon);
    let leader = region.wait_leader(&[0, 1, 2]).await;
    let stale = eventually(WAIT, || async {
        region
            .status(leader)
            .await
            .is_some_and(|s| s["cluster"]["git"]["stale_since"].as_i64().unwrap_or(0) > 0)
    })
    .await;
    assert!(
        stale,
        "staleness reported: {:?}",
        region.status(leader).await
    );
    let (ok, out) = ctl(&["--server", &region.raft(leader), "status"]);
    assert!(
        !ok && out.contains("STALE"),
        "degraded exit code and STALE shown: {out}"
    );
    let metrics = get(&format!("{}/metrics", region.admin(leader))).await;
    let text = String::from_utf8_lossy(&metrics.body).to_string();
    let stale_secs: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix("gateway_git_stale_seconds "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(stale_secs > 0, "staleness metric: {text}");
    for i in 0..3 {
        assert_eq!(
            try_status(&format!("{}/g1", region.proxy(i))).await,
            Some(200)
        );
    }

    let _daemon = git_daemon(&base, dport).await;
    repo.push(&[("gateway/kong.yml", &config(port, "/g2"))], "g2");
    wait_route(&region, &[0, 1, 2], "/g2", 200).await;
    let fresh = eventually(WAIT, || async {
        region
            .status(leader)
            .await
            .is_some_and(|s| s["cluster"]["git"]["stale_since"] == 0)
    })
    .await;
    assert!(fresh, "staleness cleared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_push_is_followed_and_a_deleted_branch_keeps_the_last_config() {
    let _serial = SERIAL.lock().await;
    let up = echo_upstream("svc").await;
    let port = up.addr.port();
    let repo = Repo::new();
    repo.push(&[("gateway/kong.yml", &config(port, "/f1"))], "f1");
    repo.push(&[("gateway/kong.yml", &config(port, "/f2"))], "f2");
    let extra = ["--git-url", &repo.url(), "--git-poll-interval", "200ms"];
    let region = Region::start_all(3, &extra).await;
    wait_route(&region, &[0, 1, 2], "/f2", 200).await;

    // Rewrite history: drop f2, commit f3 on top of f1, force-push.
    git(&repo.work, &["reset", "-q", "--hard", "HEAD~1"]);
    std::fs::write(repo.work.join("gateway/kong.yml"), config(port, "/f3")).expect("write");
    git(&repo.work, &["commit", "-q", "-am", "f3 (rewritten)"]);
    git(&repo.work, &["push", "-q", "-f", "origin", "main"]);
    let f3 = git(&repo.work, &["rev-parse", "HEAD"]);
    wait_route(&region, &[0, 1, 2], "/f3", 200).await;
    let s = region.status(1).await.expect("status");
    assert_eq!(s["cluster"]["active_version"], f3.as_str());

    // Delete the branch: reported, and the region keeps serving f3.
    git(
        &repo.bare,
        &["config", "receive.denyDeleteCurrent", "ignore"],
    );
    git(&repo.work, &["push", "-q", "origin", ":main"]);
    let leader = region.wait_leader(&[0, 1, 2]).await;
    let reported = eventually(WAIT, || async {
        region.status(leader).await.is_some_and(|s| {
            s["cluster"]["git"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("missing"))
                && s["cluster"]["git"]["stale_since"].as_i64().unwrap_or(0) > 0
        })
    })
    .await;
    assert!(reported, "{:?}", region.status(leader).await);
    for i in 0..3 {
        assert_eq!(
            try_status(&format!("{}/f3", region.proxy(i))).await,
            Some(200)
        );
    }
}
