//! Compile time and per-lookup latency of the router on the 10,000-route
//! benchmark table (`benches/support/table.rs`).
//!
//! ```text
//! cargo run --release -p gateway-router --example route_latency [ROUTES] [LOOKUPS]
//! ```
//!
//! Each lookup is timed alone with two `Instant::now()` calls; the median
//! cost of an empty `Instant::now()` pair, measured first, is subtracted
//! from every sample (floored at 0). The batch line times whole passes with
//! no per-lookup timer, as a cross-check of the mean. The request's own bytes
//! are read just before each timed lookup (a proxy has just parsed them).
//!
//! Requests cycle, shuffled, through all 12,500 samples of the table (so
//! most router data a lookup needs is not in L1/L2), except `hot`, which
//! cycles through 256 of them (a small working set, all in cache).

#[path = "../benches/support/table.rs"]
mod table;

use std::hint::black_box;
use std::time::{Duration, Instant};

use gateway_router::{RequestView, Router};
use http::{HeaderMap, HeaderName, HeaderValue};

struct OwnedReq {
    kind: table::Kind,
    method: String,
    host: Option<String>,
    path: String,
    headers: HeaderMap,
}

impl OwnedReq {
    fn view(&self) -> RequestView<'_> {
        RequestView {
            method: &self.method,
            host: self.host.as_deref(),
            path: &self.path,
            sni: None,
            headers: &self.headers,
        }
    }
}

fn touch(q: &OwnedReq) -> usize {
    let sum = |s: &str| s.bytes().map(usize::from).sum::<usize>();
    sum(&q.path) + q.host.as_deref().map_or(0, sum) + q.headers.len()
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn timer_overhead_ns() -> u64 {
    let mut v: Vec<u64> = (0..200_000)
        .map(|_| {
            let a = Instant::now();
            let b = Instant::now();
            (b - a).as_nanos() as u64
        })
        .collect();
    v.sort_unstable();
    percentile(&v, 0.5)
}

fn report(name: &str, router: &Router, reqs: &[&OwnedReq], lookups: usize, overhead: u64) {
    let mut samples = Vec::with_capacity(lookups);
    let mut found = 0usize;
    for i in 0..lookups {
        let q = reqs[i % reqs.len()];
        let view = q.view();
        // A proxy calls the router right after parsing the request, so its
        // bytes are in cache: touch them before the timer starts.
        black_box(touch(q));
        let t0 = Instant::now();
        let m = router.find(black_box(&view));
        let t1 = Instant::now();
        found += usize::from(black_box(m).is_some());
        samples.push(((t1 - t0).as_nanos() as u64).saturating_sub(overhead));
    }
    samples.sort_unstable();
    let mean = samples.iter().sum::<u64>() as f64 / samples.len() as f64;
    // Batch cross-check: whole passes, no per-lookup timer.
    let passes = (lookups / reqs.len()).max(1);
    let t0 = Instant::now();
    for _ in 0..passes {
        for q in reqs {
            black_box(router.find(black_box(&q.view())));
        }
    }
    let batch = t0.elapsed().as_nanos() as f64 / (passes * reqs.len()) as f64;
    println!(
        "{name:<10} n={:<8} found={:>5.1}%  p50={:>4} ns  p99={:>4} ns  p99.9={:>5} ns  max={:>6} ns  mean={:>6.1} ns  batch-mean={:>6.1} ns",
        samples.len(),
        100.0 * found as f64 / lookups as f64,
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        percentile(&samples, 0.999),
        samples[samples.len() - 1],
        mean,
        batch,
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let lookups: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let t = table::generate(n, 42);
    let regexes = t
        .routes
        .iter()
        .filter(|r| r.paths.iter().any(|p| p.starts_with('~')))
        .count();
    println!(
        "routes={} (regex routes={regexes}), samples={}",
        t.routes.len(),
        t.samples.len()
    );

    let mut builds: Vec<Duration> = Vec::new();
    let mut router = None;
    for _ in 0..7 {
        let t0 = Instant::now();
        let r = Router::build(&t.routes).expect("benchmark table compiles");
        builds.push(t0.elapsed());
        router = Some(r);
    }
    let router = router.expect("built at least once");
    builds.sort();
    println!(
        "compile: median={:.1} ms min={:.1} ms max={:.1} ms ({router:?})",
        builds[builds.len() / 2].as_secs_f64() * 1e3,
        builds[0].as_secs_f64() * 1e3,
        builds[builds.len() - 1].as_secs_f64() * 1e3,
    );

    let mut reqs: Vec<OwnedReq> = t
        .samples
        .iter()
        .map(|s| {
            let mut headers = HeaderMap::new();
            for (k, v) in &s.headers {
                headers.append(
                    HeaderName::from_bytes(k.as_bytes()).expect("header name"),
                    HeaderValue::from_str(v).expect("header value"),
                );
            }
            OwnedReq {
                kind: s.kind,
                method: s.method.clone(),
                host: s.host.clone(),
                path: s.path.clone(),
                headers,
            }
        })
        .collect();
    // Deterministic shuffle so consecutive lookups touch unrelated routes.
    let mut rng = table::Rng::new(99);
    for i in (1..reqs.len()).rev() {
        reqs.swap(i, rng.below(i + 1));
    }

    let overhead = timer_overhead_ns();
    println!("timer overhead (median Instant::now() pair): {overhead} ns, subtracted");

    // Warm up.
    for q in &reqs {
        black_box(router.find(&q.view()));
    }
    let all: Vec<&OwnedReq> = reqs.iter().collect();
    let of = |k: table::Kind| -> Vec<&OwnedReq> { reqs.iter().filter(|q| q.kind == k).collect() };
    report("mixed", &router, &all, lookups, overhead);
    report("hit", &router, &of(table::Kind::Hit), lookups, overhead);
    report(
        "regex-hit",
        &router,
        &of(table::Kind::RegexHit),
        lookups,
        overhead,
    );
    report("miss", &router, &of(table::Kind::Miss), lookups, overhead);
    report(
        "hot",
        &router,
        &all[..256.min(all.len())],
        lookups,
        overhead,
    );
}
