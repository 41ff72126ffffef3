//! Repeatable per-request cost of the proxy path: instructions and
//! allocator calls per proxied request, counted by callgrind, so the
//! figures do not depend on how busy the machine is. Also measures the
//! gateway's RSS with a large route table.
//!
//! ```sh
//! cargo build --release -p gateway-node --bin gateway --example proxy_instr
//! target/release/examples/proxy_instr              # MODE=instr (default)
//! MODE=rss ROUTES=10000 target/release/examples/proxy_instr
//! ```
//!
//! `MODE=instr` runs the release `gateway` (next to this example, or
//! `GATEWAY=path`) twice under `valgrind --tool=callgrind`, with a 1-route
//! config (`ROUTES`) in front of a trivial upstream served by this process,
//! and drives `WARM` then `WARM + REQUESTS` keep-alive `GET`s over `CONNS`
//! connections. The difference between the two runs, divided by
//! `REQUESTS`, is the cost of one request without start-up and warm-up.
//! Allocator calls are the callgrind call counts of `malloc`, `calloc`,
//! `realloc`, `posix_memalign`, `free` (glibc) and of mimalloc's `mi_*`
//! entry points, not counting calls between these functions.
//!
//! `MODE=rss` starts the gateway without valgrind and prints VmRSS once it
//! is up (after `IDLE_WAIT` seconds), split into `RssAnon` and `RssFile`,
//! and VmRSS again after `REQUESTS` requests.
//!
//! The route table is the one `bench/proxy.sh` generates: route i has
//! prefix path /svc-i/v1 (every 3rd also /svc-i/v2), every 10th a host,
//! every 500th a regex path; the request is `GET /svc-9991/v1/items`.
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BENCH_ID: usize = 9991;
const BODY: &str = r#"{"msg":"hello"}"#;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `bench/proxy.sh`'s `gen_kong`, as YAML.
fn kong_yaml(n: usize, upstream: SocketAddr) -> String {
    let mut s = String::from("_format_version: \"3.0\"\nservices:\n");
    for k in 1..=n {
        let i = if n == 1 { BENCH_ID } else { k };
        s.push_str(&format!(
            "- name: svc-{i}\n  url: http://{upstream}\n  routes:\n  - name: route-{i}\n"
        ));
        if i != BENCH_ID && i % 500 == 0 {
            s.push_str(&format!(
                "    paths:\n    - \"~/svc-{i}/v[0-9]+/orders/[0-9]+$\"\n"
            ));
        } else {
            s.push_str(&format!("    paths:\n    - /svc-{i}/v1\n"));
            if i % 3 == 0 {
                s.push_str(&format!("    - /svc-{i}/v2\n"));
            }
            if i != BENCH_ID && i % 10 == 0 {
                s.push_str(&format!("    hosts:\n    - svc-{i}.example.com\n"));
            }
        }
        s.push_str("    strip_path: false\n");
    }
    s
}

async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("upstream addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(
                        http::Response::builder()
                            .header("server", "upstream")
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from_static(BODY.as_bytes())))
                            .expect("response"),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

/// One `GET` on a fresh connection with `Connection: close`.
async fn get_once(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.ok()?;
    let head = String::from_utf8_lossy(&buf);
    head.split(' ').nth(1)?.parse().ok()
}

struct Gateway {
    child: Child,
    proxy: SocketAddr,
}

fn start_gateway(bin: &Path, config: &Path, callgrind_out: Option<&Path>) -> Gateway {
    let proxy = free_port();
    let admin = free_port();
    let mut cmd = match callgrind_out {
        Some(out) => {
            let mut c = Command::new("valgrind");
            c.arg("-q")
                .arg("--tool=callgrind")
                .arg(format!("--callgrind-out-file={}", out.display()))
                .arg("--compress-strings=no")
                .arg("--compress-pos=no")
                .arg(bin);
            c
        }
        None => Command::new(bin),
    };
    cmd.arg("run")
        .arg("--config")
        .arg(config)
        .arg("--proxy-listen")
        .arg(proxy.to_string())
        .arg("--admin-listen")
        .arg(admin.to_string())
        .env("TOKIO_WORKER_THREADS", "1")
        .env("GATEWAY_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let child = cmd.spawn().expect("start the gateway");
    let rt = tokio::runtime::Handle::current();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let up = rt.block_on(get_once(admin, "/status"));
        if up == Some(200) {
            break;
        }
        assert!(Instant::now() < deadline, "gateway did not come up");
        std::thread::sleep(Duration::from_millis(200));
    }
    Gateway { child, proxy }
}

fn stop_gateway(mut g: Gateway) {
    // SIGTERM: drain and exit, so callgrind writes its profile.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(g.child.id().to_string())
        .status();
    let status = g.child.wait().expect("wait for the gateway");
    assert!(status.success(), "gateway exited with {status}");
}

/// `total` keep-alive GETs over `conns` connections; returns the failures.
async fn drive(proxy: SocketAddr, total: usize, conns: usize) -> usize {
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..conns.max(1) {
        let (next, failed) = (next.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(proxy)
                .await
                .expect("connect to the proxy");
            let _ = stream.set_nodelay(true);
            let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Full<Bytes>>(
                hyper_util::rt::TokioIo::new(stream),
            )
            .await
            .expect("client handshake");
            tokio::spawn(conn);
            let path = format!("/svc-{BENCH_ID}/v1/items");
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let req = http::Request::get(path.as_str())
                    .header("host", proxy.to_string())
                    .body(Full::new(Bytes::new()))
                    .expect("request");
                let ok = match sender.send_request(req).await {
                    Ok(resp) => {
                        let status = resp.status();
                        let body = resp.into_body().collect().await.map(|b| b.to_bytes());
                        status == 200 && body.is_ok_and(|b| b == BODY.as_bytes())
                    }
                    Err(_) => false,
                };
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    failed.load(Ordering::Relaxed)
}

#[derive(Default, Debug)]
struct Profile {
    instructions: u64,
    allocs: u64,
    frees: u64,
}

const ALLOC_FNS: &[&str] = &[
    "malloc",
    "calloc",
    "realloc",
    "posix_memalign",
    "aligned_alloc",
    "memalign",
    "mi_malloc",
    "mi_malloc_aligned",
    "mi_zalloc",
    "mi_zalloc_aligned",
    "mi_calloc",
    "mi_realloc",
    "mi_realloc_aligned",
];
const FREE_FNS: &[&str] = &["free", "cfree", "mi_free"];

fn parse_callgrind(path: &Path) -> Profile {
    let f = std::fs::File::open(path).expect("callgrind output");
    let mut p = Profile::default();
    let mut cur_fn = String::new();
    let mut cur_cfn = String::new();
    let mut calls: HashMap<String, u64> = HashMap::new();
    let is_alloc_side = |name: &str| {
        let base = name.split('\'').next().unwrap_or(name);
        ALLOC_FNS.contains(&base) || FREE_FNS.contains(&base)
    };
    for line in BufReader::new(f).lines() {
        let line = line.expect("read callgrind output");
        if let Some(rest) = line.strip_prefix("fn=") {
            cur_fn = rest.to_owned();
        } else if let Some(rest) = line.strip_prefix("cfn=") {
            cur_cfn = rest.to_owned();
        } else if let Some(rest) = line.strip_prefix("calls=") {
            if !is_alloc_side(&cur_fn) {
                let n: u64 = rest
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                let base = cur_cfn.split('\'').next().unwrap_or(&cur_cfn).to_owned();
                *calls.entry(base).or_default() += n;
            }
        } else if let Some(rest) = line
            .strip_prefix("summary:")
            .or_else(|| line.strip_prefix("totals:"))
        {
            if let Some(n) = rest.split_whitespace().next().and_then(|n| n.parse().ok()) {
                p.instructions = p.instructions.max(n);
            }
        }
    }
    for (name, n) in &calls {
        if ALLOC_FNS.contains(&name.as_str()) {
            p.allocs += n;
        } else if FREE_FNS.contains(&name.as_str()) {
            p.frees += n;
        }
    }
    if std::env::var_os("SHOW_ALLOC_FNS").is_some() {
        let mut v: Vec<_> = calls
            .iter()
            .filter(|(k, _)| ALLOC_FNS.contains(&k.as_str()) || FREE_FNS.contains(&k.as_str()))
            .collect();
        v.sort();
        eprintln!("{}: {v:?}", path.display());
    }
    p
}

/// A `/proc/PID/status` field in kB (`VmRSS`, `RssAnon`, `RssFile`).
fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn rss_kb(pid: u32) -> u64 {
    status_kb(pid, "VmRSS")
}

fn gateway_bin() -> PathBuf {
    if let Ok(p) = std::env::var("GATEWAY") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/examples/proxy_instr -> target/<profile>/gateway
    exe.parent()
        .and_then(Path::parent)
        .map(|d| d.join("gateway"))
        .expect("gateway next to the example")
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    let mode = std::env::var("MODE").unwrap_or_else(|_| "instr".into());
    let routes: usize = env_or("ROUTES", 1);
    let requests: usize = env_or("REQUESTS", 20_000);
    let warm: usize = env_or("WARM", 2_000);
    let conns: usize = env_or("CONNS", 50);
    let bin = gateway_bin();
    let dir = std::env::temp_dir().join(format!("proxy_instr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let up = rt.block_on(upstream());
    let config = dir.join("kong.yml");
    std::fs::File::create(&config)
        .and_then(|mut f| f.write_all(kong_yaml(routes, up).as_bytes()))
        .expect("write config");
    println!(
        "gateway {} | routes {routes} | conns {conns} | upstream {up}",
        bin.display()
    );

    match mode.as_str() {
        "rss" => {
            let idle_wait: u64 = env_or("IDLE_WAIT", 2);
            let t = Instant::now();
            let g = start_gateway(&bin, &config, None);
            let up_in = t.elapsed();
            std::thread::sleep(Duration::from_secs(idle_wait));
            let idle = rss_kb(g.child.id());
            // Anonymous memory is what the gateway allocated; file-backed
            // pages (binary, libraries) depend on the page cache.
            let (anon, file) = (
                status_kb(g.child.id(), "RssAnon"),
                status_kb(g.child.id(), "RssFile"),
            );
            let t = Instant::now();
            let failed = rt.block_on(drive(g.proxy, requests, conns));
            let took = t.elapsed();
            let loaded = rss_kb(g.child.id());
            println!("idle RssAnon {anon} kB | idle RssFile {file} kB");
            println!(
                "up in {:.2}s | idle VmRSS {idle} kB ({:.1} MiB) | after {requests} requests ({failed} failed, {:.0} req/s, noisy) VmRSS {loaded} kB ({:.1} MiB)",
                up_in.as_secs_f64(),
                idle as f64 / 1024.0,
                requests as f64 / took.as_secs_f64(),
                loaded as f64 / 1024.0
            );
            stop_gateway(g);
        }
        _ => {
            let mut profiles = Vec::new();
            for (i, n) in [warm, warm + requests].into_iter().enumerate() {
                let out = dir.join(format!("callgrind.{i}.out"));
                let g = start_gateway(&bin, &config, Some(&out));
                let t = Instant::now();
                let failed = rt.block_on(drive(g.proxy, n, conns));
                assert_eq!(failed, 0, "{failed} of {n} requests failed");
                let took = t.elapsed();
                stop_gateway(g);
                let p = parse_callgrind(&out);
                println!(
                    "run {i}: {n} requests in {:.1}s under callgrind: {} instructions, {} allocs, {} frees ({})",
                    took.as_secs_f64(),
                    p.instructions,
                    p.allocs,
                    p.frees,
                    out.display()
                );
                profiles.push(p);
            }
            let (a, b) = (&profiles[0], &profiles[1]);
            let per = |x: u64, y: u64| (y as f64 - x as f64) / requests as f64;
            println!(
                "per request: {:.0} instructions | {:.1} allocs | {:.1} frees",
                per(a.instructions, b.instructions),
                per(a.allocs, b.allocs),
                per(a.frees, b.frees)
            );
            println!("profiles kept in {}", dir.display());
        }
    }
}
