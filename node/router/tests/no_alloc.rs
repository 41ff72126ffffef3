//! `Router::find` must not allocate. A counting global allocator checks it
//! on the benchmark table's samples (hits, regex hits, misses, header
//! routes), after one warm-up pass (the lazy-DFA fallback keeps a
//! per-thread cache that is allocated on first use).

#[path = "../benches/support/table.rs"]
mod table;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use gateway_router::{RequestView, Router};
use http::{HeaderMap, HeaderName, HeaderValue};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn find_does_not_allocate() {
    let t = table::generate(2_000, 3);
    let router = Router::build(&t.routes).unwrap();
    let reqs: Vec<(String, Option<String>, String, HeaderMap)> = t
        .samples
        .iter()
        .map(|s| {
            let mut h = HeaderMap::new();
            for (k, v) in &s.headers {
                h.append(
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            (s.method.clone(), s.host.clone(), s.path.clone(), h)
        })
        .collect();
    let run = || {
        let mut found = 0;
        for (m, host, path, headers) in &reqs {
            let view = RequestView {
                method: m,
                host: host.as_deref(),
                path,
                sni: Some("x.example.com"),
                headers,
            };
            found += usize::from(router.find(&view).is_some());
        }
        found
    };
    let warm = run();
    let before = ALLOCS.load(Ordering::Relaxed);
    let found = run();
    let after = ALLOCS.load(Ordering::Relaxed);
    assert_eq!(found, warm);
    assert!(found > reqs.len() / 2);
    assert_eq!(after - before, 0, "find allocated {} times", after - before);
}
