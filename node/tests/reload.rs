//! Hot reload under continuous load: zero failed requests.

mod common;

use common::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn config(a: u16, b: u16, version: usize) -> String {
    // Both versions route /svc; they differ in where and in an extra route,
    // so every reload really swaps a different compiled config.
    let port = if version.is_multiple_of(2) { a } else { b };
    format!(
        r#"
_format_version: "3.0"
services:
  - name: svc
    url: http://127.0.0.1:{port}
    routes:
      - name: main
        paths: [/svc]
      - name: extra-{version}
        paths: [/extra-{version}]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reload_every_100ms_under_load_drops_nothing() {
    let a = echo_upstream("a").await;
    let b = echo_upstream("b").await;
    let gw = Arc::new(gateway(&config(a.port(), b.port(), 0)).await);
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (gw, stop, ok, failed) = (gw.clone(), stop.clone(), ok.clone(), failed.clone());
        clients.push(tokio::spawn(async move {
            let c = client();
            // Bounded: at most 20k requests per client.
            for _ in 0..20_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let req = http::Request::get(gw.url("/svc/x"))
                    .body(full(""))
                    .expect("req");
                match c.request(req).await {
                    Ok(resp) if resp.status() == 200 => {
                        let _ = read(resp).await;
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(resp) => {
                        let got = read(resp).await;
                        eprintln!("failed: {} {}", got.status, got.text());
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        eprintln!("failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let mut reloads = 0;
    for v in 1..=30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = post(
            &gw.admin_url("/config"),
            "application/x-yaml",
            config(a.port(), b.port(), v),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text());
        reloads += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.expect("client task");
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("reloads={reloads} ok={ok} failed={failed}");
    assert_eq!(reloads, 30);
    assert!(ok > 100, "load actually ran: {ok}");
    assert_eq!(failed, 0);
    assert!(
        a.requests.load(Ordering::Relaxed) > 0 && b.requests.load(Ordering::Relaxed) > 0,
        "both versions served"
    );
}
