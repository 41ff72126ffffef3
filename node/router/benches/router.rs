//! Criterion benchmarks on the 10,000-route table of `support/table.rs`:
//! compile time, and lookup time for hits, regex hits and misses (each
//! iteration looks up a fixed, shuffled set of requests; reported per
//! lookup).
//!
//! ```text
//! cargo bench -p gateway-router --bench router
//! ```

#[path = "support/table.rs"]
mod table;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gateway_router::{RequestView, Router};
use http::{HeaderMap, HeaderName, HeaderValue};

struct OwnedReq {
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

fn requests(t: &table::Table, kind: table::Kind, max: usize) -> Vec<OwnedReq> {
    let mut v: Vec<OwnedReq> = t
        .samples
        .iter()
        .filter(|s| s.kind == kind)
        .map(|s| {
            let mut headers = HeaderMap::new();
            for (k, val) in &s.headers {
                headers.append(
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(val).unwrap(),
                );
            }
            OwnedReq {
                method: s.method.clone(),
                host: s.host.clone(),
                path: s.path.clone(),
                headers,
            }
        })
        .collect();
    let mut rng = table::Rng::new(5);
    for i in (1..v.len()).rev() {
        v.swap(i, rng.below(i + 1));
    }
    v.truncate(max);
    v
}

fn bench(c: &mut Criterion) {
    let t = table::generate(10_000, 42);

    let mut g = c.benchmark_group("router_compile");
    g.sample_size(10);
    g.bench_function("10k_routes", |b| {
        b.iter(|| Router::build(black_box(&t.routes)).unwrap())
    });
    g.finish();

    let router = Router::build(&t.routes).unwrap();
    let mut g = c.benchmark_group("router_lookup_10k");
    for (name, kind) in [
        ("hit", table::Kind::Hit),
        ("regex_hit", table::Kind::RegexHit),
        ("miss", table::Kind::Miss),
    ] {
        let reqs = requests(&t, kind, 1024);
        g.throughput(Throughput::Elements(reqs.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                for q in &reqs {
                    black_box(router.find(black_box(&q.view())));
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
