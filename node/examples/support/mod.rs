//! Helpers shared by the node's benchmark examples (`region_bench`,
//! `gitops_bench`): environment knobs, the load average, the `gateway`
//! binary next to the example, free loopback ports and percentiles.
#![allow(dead_code)] // each example uses a part

use std::path::PathBuf;
use std::time::Duration;
use tokio::net::TcpListener;

pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn env_string(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

pub fn gateway_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("GATEWAY_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/examples/<example> → target/<profile>/gateway
    let profile_dir = exe
        .parent()
        .and_then(|examples| examples.parent())
        .expect("example binary lives in target/<profile>/examples");
    let bin = profile_dir.join(format!("gateway{}", std::env::consts::EXE_SUFFIX));
    if !bin.is_file() {
        eprintln!(
            "error: gateway binary not found at {}\n\
             build it first: cargo build --release -p gateway-node --bins --examples\n\
             (or point GATEWAY_BIN at it)",
            bin.display()
        );
        std::process::exit(2);
    }
    bin
}

pub async fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    l.local_addr().expect("addr").port()
}

/// Nearest-rank percentile of sorted samples.
pub fn pct(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

pub fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}
