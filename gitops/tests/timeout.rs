//! A server that accepts but never answers must not hang the fetch: the
//! libgit2 timeouts bound it. Its own test binary, because the timeouts are
//! process-wide and set once.

mod common;

use std::time::{Duration, Instant};

use common::*;
use gateway_gitops::{configure_timeouts, GitError, GitSource, Mirror, Timeouts};

#[test]
fn silent_server_times_out() {
    assert!(configure_timeouts(Timeouts {
        connect: Duration::from_secs(2),
        io: Duration::from_secs(2),
    }));
    assert!(!configure_timeouts(Timeouts::default()), "first call wins");
    let hole = Blackhole::start();
    let dir = tempfile::tempdir().unwrap();
    for url in [
        format!("http://127.0.0.1:{}/repo.git", hole.port),
        format!("git://127.0.0.1:{}/repo.git", hole.port),
    ] {
        let m = Mirror::open(&dir.path().join("m"), &GitSource::new(url.as_str())).unwrap();
        let t = Instant::now();
        let e = m.fetch().unwrap_err();
        let took = t.elapsed();
        assert!(took < Duration::from_secs(10), "{url}: took {took:?}");
        assert!(matches!(e, GitError::Fetch { .. }), "{e:?}");
        assert!(e.to_string().contains(&url), "{e}");
    }
}
