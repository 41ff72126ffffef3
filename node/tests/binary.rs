//! The `gateway` binary as users run it: validate, run (SIGHUP reload,
//! SIGTERM drain), demo, and streaming large bodies with flat memory.

mod common;

use bytes::Bytes;
use common::*;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_gateway");

/// A child process; with `run_gateway`, also its log lines (stderr, echoed
/// to the test's own stderr as they come).
struct Proc(Child, Option<std::sync::mpsc::Receiver<String>>);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.0.id().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{sig}");
    }
    /// Wait (bounded) for a log line containing `text`.
    fn logged(&self, text: &str, within: Duration) -> bool {
        let Some(rx) = &self.1 else { return false };
        let until = std::time::Instant::now() + within;
        while let Some(left) = until.checked_duration_since(std::time::Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(text) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    }
    /// Peak resident memory (VmHWM) in KiB.
    fn peak_rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

async fn free_port() -> u16 {
    server_port().await
}

/// Start `gateway run` on free loopback ports; wait until ready.
async fn run_gateway(config_path: &std::path::Path, extra: &[&str]) -> (Proc, String, String) {
    let (pp, ap) = (free_port().await, free_port().await);
    let child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(config_path)
        .args([
            "--proxy-listen",
            &format!("127.0.0.1:{pp}"),
            "--admin-listen",
            &format!("127.0.0.1:{ap}"),
        ])
        .args(extra)
        .env("GATEWAY_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gateway");
    let mut proc = Proc(child, None);
    if let Some(stderr) = proc.0.stderr.take() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        proc.1 = Some(rx);
    }
    let admin = format!("http://127.0.0.1:{ap}");
    let ready = eventually(Duration::from_secs(20), || {
        let url = format!("{admin}/status/ready");
        async move {
            match client()
                .request(http::Request::get(url).body(full("")).expect("req"))
                .await
            {
                Ok(r) => r.status() == 200,
                Err(_) => false,
            }
        }
    })
    .await;
    assert!(ready, "gateway became ready");
    (proc, format!("http://127.0.0.1:{pp}"), admin)
}

/// A temporary directory holding `kong.yml` with `yaml` (keep the
/// directory alive while the file is used).
fn kong_yml(yaml: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kong.yml");
    std::fs::write(&path, yaml).expect("write");
    (dir, path)
}

/// `gateway ARGS...`, run to completion.
fn gateway_output<S: AsRef<std::ffi::OsStr>>(
    args: impl IntoIterator<Item = S>,
) -> std::process::Output {
    Command::new(BIN).args(args).output().expect("run")
}

fn service_yaml(port: u16, path: &str) -> String {
    format!(
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://127.0.0.1:{port}\n    routes:\n      - name: r\n        paths: [{path}]\n"
    )
}

#[test]
fn validate_exit_codes_and_located_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.yml");
    std::fs::write(&good, service_yaml(8080, "/a")).expect("write");
    let out = gateway_output([OsStr::new("validate"), good.as_os_str()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok: 1 services, 1 routes"));

    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    url: http://x:1\n    retries: many\n    routes:\n      - name: r\n        paths: [\"~/a(\"]\n",
    )
    .expect("write");
    let out = gateway_output([OsStr::new("validate"), bad.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "one error per line: {stderr}");
    let name = bad.display().to_string();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{name}:5:")) && l.contains("services[0].retries")),
        "{stderr}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with(&format!("{name}:8:"))
            && l.contains("services[0].routes[0].paths[0]")),
        "{stderr}"
    );

    let out = gateway_output([
        OsStr::new("validate"),
        dir.path().join("missing.yml").as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read file"));

    // A Kong plugin this version does not implement is an error naming it
    // (a skipped auth plugin would open the route), with the node's own
    // plugin set; and several files merge, each error naming its file.
    let auth = dir.path().join("auth.yml");
    std::fs::write(
        &auth,
        "_format_version: \"3.0\"\nplugins:\n  - name: key-auth\n    service: s\n",
    )
    .expect("write");
    let out = gateway_output([OsStr::new("validate"), good.as_os_str(), auth.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!("{}:3:", auth.display()))
            && stderr.contains("plugins[0]")
            && stderr.contains("key-auth"),
        "{stderr}"
    );
}

#[test]
fn bad_run_flags_are_rejected_naming_the_flag() {
    let (_dir, path) = kong_yml(&service_yaml(9, "/"));
    for (flag, value, says) in [
        (
            "--upstream-keepalive-idle-timeout",
            "0",
            "must be more than 0 seconds",
        ),
        (
            "--upstream-keepalive-idle-timeout",
            "-1",
            "is not a valid number of seconds",
        ),
        ("--max-header-size", "100", "must be at least 8192 bytes"),
        ("--port-maps", "80", "expected PUBLIC:LISTENER"),
    ] {
        let flag_value = format!("{flag}={value}");
        let out = gateway_output([
            OsStr::new("run"),
            OsStr::new("--config"),
            path.as_os_str(),
            OsStr::new("--proxy-listen=127.0.0.1:0"),
            OsStr::new("--admin-listen=127.0.0.1:0"),
            OsStr::new(&flag_value),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flag} {value}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains(says),
            "{flag} {value}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_a_bad_file_keeps_the_old_config() {
    let up = echo_upstream("s").await;
    let (_dir, path) = kong_yml(&service_yaml(up.port(), "/one"));
    let (proc, proxy, _admin) = run_gateway(&path, &[]).await;
    assert_eq!(get(&format!("{proxy}/one")).await.status, 200);

    std::fs::write(&path, service_yaml(up.port(), "/two")).expect("write");
    proc.signal("HUP");
    let url = format!("{proxy}/two");
    assert!(
        eventually(Duration::from_secs(10), || {
            let u = url.clone();
            async move { get(&u).await.status == 200 }
        })
        .await
    );
    assert_eq!(get(&format!("{proxy}/one")).await.status, 404);

    std::fs::write(
        &path,
        "_format_version: \"3.0\"\nservices: [{ name: s, bogus: 1 }]\n",
    )
    .expect("write");
    proc.signal("HUP");
    // Wait until the gateway has read and rejected the file (its log says
    // so, with the file's located errors), then check nothing changed.
    let (rejected, _proc) = tokio::task::spawn_blocking(move || {
        let seen = proc.logged("SIGHUP reload rejected", Duration::from_secs(10));
        (seen, proc)
    })
    .await
    .expect("log reader");
    assert!(rejected, "the bad reload was processed and rejected");
    assert_eq!(get(&format!("{proxy}/two")).await.status, 200);
    assert_eq!(get(&format!("{proxy}/one")).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let up = echo_upstream("s").await;
    let (_dir, path) = kong_yml(&service_yaml(up.port(), "/"));
    let (proc, proxy, _admin) = run_gateway(&path, &["--drain-timeout", "10"]).await;
    let slow = tokio::spawn(get_with_owned(
        format!("{proxy}/slow"),
        "x-test-delay-ms",
        "1500",
    ));
    // Wait until the request reached the upstream, then stop the gateway.
    upstream_got_one_request(&up).await;
    proc.signal("TERM");
    let r = slow.await.expect("task");
    assert_eq!(r.status, 200, "in-flight request finished during drain");
    let (code, _proc) = exit_code(proc).await;
    assert_eq!(code, Some(0));
    // New connections are refused after shutdown.
    assert!(
        tokio::net::TcpStream::connect(proxy.trim_start_matches("http://"))
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_drains_only_for_the_drain_timeout_then_exits_zero() {
    let up = echo_upstream("s").await;
    let (_dir, path) = kong_yml(&service_yaml(up.port(), "/"));
    let (proc, proxy, _admin) = run_gateway(&path, &["--drain-timeout", "0.5"]).await;
    // A request the upstream holds for 30 s: longer than the drain allows.
    let url = format!("{proxy}/held");
    let held = tokio::spawn(async move {
        let client = client();
        let req = http::Request::get(&url)
            .header("x-test-delay-ms", "30000")
            .body(full(""))
            .expect("req");
        client.request(req).await.map(|r| r.status())
    });
    upstream_got_one_request(&up).await;
    let signalled = std::time::Instant::now();
    proc.signal("INT");
    let (code, proc) = exit_code(proc).await;
    assert_eq!(code, Some(0));
    let took = signalled.elapsed();
    // The drain ended at its bound, not when the held request would have.
    assert!(took < Duration::from_secs(20), "exit took {took:?}");
    let outcome = held.await.expect("task");
    assert!(outcome.is_err(), "the held request was cut: {outcome:?}");
    drop(proc);
}

/// Wait (bounded) until `up` has received its first request.
async fn upstream_got_one_request(up: &Upstream) {
    let reqs = up.requests.clone();
    assert!(
        eventually(Duration::from_secs(5), || {
            let r = reqs.clone();
            async move { r.load(std::sync::atomic::Ordering::SeqCst) == 1 }
        })
        .await
    );
}

/// Wait for the process to exit; its exit code.
async fn exit_code(mut proc: Proc) -> (Option<i32>, Proc) {
    tokio::task::spawn_blocking(move || {
        let status = proc.0.wait().expect("exit status");
        (status.code(), proc)
    })
    .await
    .expect("wait")
}

async fn get_with_owned(url: String, k: &'static str, v: &'static str) -> Got {
    get_with(&url, &[(k, v)]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_foo_and_bar() {
    let (pp, ap) = (free_port().await, free_port().await);
    let mut child = Command::new(BIN)
        .args([
            "demo",
            "--proxy-listen",
            &format!("127.0.0.1:{pp}"),
            "--admin-listen",
            &format!("127.0.0.1:{ap}"),
        ])
        .env("GATEWAY_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn demo");
    let stdout = child.stdout.take().expect("stdout");
    let proc = Proc(child, None);
    let printed = tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            text.push_str(&line);
            text.push('\n');
            if line.starts_with("Press Ctrl-C") {
                break;
            }
        }
        text
    })
    .await
    .expect("read stdout");
    assert!(
        printed.contains(&format!("curl -i http://127.0.0.1:{pp}/foo")),
        "{printed}"
    );
    let foo = get(&format!("http://127.0.0.1:{pp}/foo")).await;
    assert_eq!(
        foo.json(),
        serde_json::json!({"msg": "Hello from the foo microservice"})
    );
    let bar = get(&format!("http://127.0.0.1:{pp}/bar")).await;
    assert_eq!(
        bar.json(),
        serde_json::json!({"msg": "Hello from the bar microservice"})
    );
    let none = get(&format!("http://127.0.0.1:{pp}/nothing")).await;
    assert_eq!(none.status, 404);
    assert_eq!(none.json()["message"], "no Route matched with those values");
    proc.signal("INT");
}

const GIB: u64 = 1 << 30;
const CHUNK: usize = 256 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_streams_both_ways_with_flat_memory() {
    use http_body_util::BodyExt;
    // Upstream: GET streams 1 GiB of generated data; POST counts what it got.
    let up = upstream(|req: http::Request<hyper::body::Incoming>| async move {
        if req.method() == http::Method::POST {
            let mut n: u64 = 0;
            let mut body = req.into_body();
            while let Some(frame) = body.frame().await {
                if let Ok(d) = frame.map(|f| f.into_data()) {
                    n += d.map_or(0, |d| d.len() as u64);
                }
            }
            return http::Response::new(full(n.to_string()));
        }
        let chunk = Bytes::from(vec![b'x'; CHUNK]);
        let count = (GIB as usize) / CHUNK;
        let stream = futures_util::stream::iter((0..count).map(move |_| {
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(http_body::Frame::data(chunk.clone()))
        }));
        http::Response::new(http_body_util::StreamBody::new(stream).boxed())
    })
    .await;
    let (_dir, path) = kong_yml(&service_yaml(up.port(), "/"));
    let (proc, proxy, _admin) = run_gateway(&path, &[]).await;
    let baseline = proc.peak_rss_kib();

    // Download.
    let resp = client()
        .request(
            http::Request::get(format!("{proxy}/big"))
                .body(full(""))
                .expect("req"),
        )
        .await
        .expect("download");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut got: u64 = 0;
    while let Some(frame) = body.frame().await {
        got += frame
            .expect("frame")
            .into_data()
            .map_or(0, |d| d.len() as u64);
    }
    assert_eq!(got, GIB);

    // Upload.
    let chunk = Bytes::from(vec![b'y'; CHUNK]);
    let count = (GIB as usize) / CHUNK;
    let stream = futures_util::stream::iter((0..count).map(move |_| {
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(http_body::Frame::data(chunk.clone()))
    }));
    let req = http::Request::post(format!("{proxy}/upload"))
        .body(http_body_util::StreamBody::new(stream).boxed())
        .expect("req");
    let r = read(client().request(req).await.expect("upload")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), GIB.to_string());

    let peak = proc.peak_rss_kib();
    eprintln!("gateway peak RSS: baseline {baseline} KiB, after 2 GiB streamed {peak} KiB");
    assert!(baseline > 0 && peak > 0, "read /proc status");
    assert!(
        peak < baseline + 64 * 1024,
        "memory stays flat: {baseline} KiB -> {peak} KiB"
    );
}
