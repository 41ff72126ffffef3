//! Mirror against real Git servers: file://, git daemon, smart HTTP.

mod common;

use std::time::{Duration, Instant};

use common::*;
use gateway_gitops::{FetchOutcome, GitError, GitSource, Mirror, Oid};

const SVC_A: &str = "_format_version: \"3.0\"\nservices:\n- name: a\n  host: a.internal\n";
const SVC_B: &str = "_format_version: \"3.0\"\nservices:\n- name: b\n  host: b.internal\n";
const SVC_EU: &str = "_format_version: \"3.0\"\nservices:\n- name: eu-only\n  host: eu.internal\n";
const SVC_US: &str = "_format_version: \"3.0\"\nservices:\n- name: us-only\n  host: us.internal\n";

fn source(url: &str, region: Option<&str>) -> GitSource {
    let mut s = GitSource::new(url);
    s.region = region.map(str::to_string);
    s
}

fn head(outcome: FetchOutcome) -> Oid {
    match outcome {
        FetchOutcome::Head { id, .. } => id,
        other => panic!("expected a head, got {other:?}"),
    }
}

fn names(files: &[gateway_config::SourceFile]) -> Vec<&str> {
    files.iter().map(|f| f.name.as_str()).collect()
}

fn oid(s: &str) -> Oid {
    Oid::from_str(s).unwrap()
}

#[test]
fn file_fetch_reads_base_then_region_overlay() {
    let up = Upstream::new();
    up.write("gateway/b.yaml", SVC_B);
    up.write("gateway/a.yml", SVC_A);
    up.write("gateway/README.md", "not config");
    up.write("gateway/notes.txt", "not config");
    up.write("gateway/.ci.yaml", "hidden: ignored");
    up.write("gateway/extra/z.yaml", "_format_version: \"3.0\"\n");
    up.write("gateway/regions/eu/eu.yaml", SVC_EU);
    up.write(
        "gateway/regions/eu/more/eu2.yml",
        "_format_version: \"3.0\"\n",
    );
    up.write("gateway/regions/us/us.yaml", SVC_US);
    up.write("other/outside.yaml", "not: read");
    up.write("gateway.yaml", "not: read");
    let c1 = up.commit("initial");
    up.push();

    let eu = Mirror::open(&up.mirror_dir("eu"), &source(&up.file_url(), Some("eu"))).unwrap();
    let us = Mirror::open(&up.mirror_dir("us"), &source(&up.file_url(), Some("us"))).unwrap();
    let none = Mirror::open(&up.mirror_dir("none"), &source(&up.file_url(), None)).unwrap();
    let outcome = eu.fetch().unwrap();
    assert_eq!(
        outcome,
        FetchOutcome::Head {
            id: oid(&c1),
            previous: None,
            forced: false
        }
    );
    assert!(outcome.changed());
    assert_eq!(eu.head(), Some(oid(&c1)));
    assert_eq!(head(us.fetch().unwrap()), oid(&c1));
    assert_eq!(head(none.fetch().unwrap()), oid(&c1));

    let eu_files = eu.read_config(oid(&c1)).unwrap();
    assert_eq!(
        names(&eu_files),
        [
            "gateway/a.yml",
            "gateway/b.yaml",
            "gateway/extra/z.yaml",
            "gateway/regions/eu/eu.yaml",
            "gateway/regions/eu/more/eu2.yml",
        ]
    );
    assert_eq!(eu_files[0].text, SVC_A);
    assert_eq!(eu_files[3].text, SVC_EU);
    let us_files = us.read_config(oid(&c1)).unwrap();
    assert_eq!(
        names(&us_files),
        [
            "gateway/a.yml",
            "gateway/b.yaml",
            "gateway/extra/z.yaml",
            "gateway/regions/us/us.yaml",
        ]
    );
    assert_eq!(
        names(&none.read_config(oid(&c1)).unwrap()),
        ["gateway/a.yml", "gateway/b.yaml", "gateway/extra/z.yaml"]
    );

    // The files merge with the config model: base + overlay entities.
    let cfg = gateway_config::parse(&eu_files, &gateway_config::NoPlugins).unwrap();
    let mut svcs: Vec<_> = cfg.services.iter().filter_map(|s| s.name.clone()).collect();
    svcs.sort();
    assert_eq!(svcs, ["a", "b", "eu-only"]);

    // Second fetch: unchanged.
    let again = eu.fetch().unwrap();
    assert_eq!(
        again,
        FetchOutcome::Head {
            id: oid(&c1),
            previous: Some(oid(&c1)),
            forced: false
        }
    );
    assert!(!again.changed());
}

#[test]
fn overlay_cannot_redefine_a_base_entity() {
    let up = Upstream::new();
    up.write("gateway/base.yaml", SVC_A);
    up.write(
        "gateway/regions/eu/a.yaml",
        SVC_A.replace("a.internal", "eu.a.internal"),
    );
    let c = up.commit("dup");
    up.push();
    let m = Mirror::open(&up.mirror_dir("m"), &source(&up.file_url(), Some("eu"))).unwrap();
    m.fetch().unwrap();
    let files = m.read_config(oid(&c)).unwrap();
    let errs = gateway_config::parse(&files, &gateway_config::NoPlugins)
        .unwrap_err()
        .to_string();
    assert!(errs.contains("gateway/regions/eu/a.yaml"), "{errs}");
    assert!(errs.contains("gateway/base.yaml"), "{errs}");
}

#[test]
fn custom_root_and_repo_root() {
    let up = Upstream::new();
    up.write("deploy/gw/x.yaml", SVC_A);
    up.write("top.yaml", SVC_B);
    let c = up.commit("c");
    up.push();
    let mut s = source(&up.file_url(), None);
    s.path = "./deploy/gw".into();
    let m = Mirror::open(&up.mirror_dir("m"), &s).unwrap();
    m.fetch().unwrap();
    assert_eq!(
        names(&m.read_config(oid(&c)).unwrap()),
        ["deploy/gw/x.yaml"]
    );
    s.path = "/".into();
    let m = Mirror::open(&up.mirror_dir("m2"), &s).unwrap();
    m.fetch().unwrap();
    assert_eq!(
        names(&m.read_config(oid(&c)).unwrap()),
        ["deploy/gw/x.yaml", "top.yaml"]
    );
}

#[test]
fn missing_or_bad_config_files_are_clear_errors() {
    let up = Upstream::new();
    up.write("gateway/README.md", "only docs");
    up.write("gateway/regions/us/us.yaml", SVC_US);
    let docs_only = up.commit("docs only");
    up.remove("gateway");
    up.write("elsewhere/x.yaml", SVC_A);
    let no_root = up.commit("no root");
    up.write("gateway/bad.yaml", b"name: \xff\xfe\n".as_slice());
    let bad = up.commit("latin1");
    up.push();
    let m = Mirror::open(&up.mirror_dir("m"), &source(&up.file_url(), Some("eu"))).unwrap();
    m.fetch().unwrap();

    let e = m.read_config(oid(&docs_only)).unwrap_err();
    assert!(matches!(e, GitError::NoConfigFiles { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("`gateway/`"), "{msg}");
    assert!(msg.contains(&docs_only[..7]), "{msg}");

    let e = m.read_config(oid(&no_root)).unwrap_err();
    assert!(matches!(e, GitError::NoConfigFiles { .. }), "{e:?}");

    let e = m.read_config(oid(&bad)).unwrap_err();
    assert!(matches!(e, GitError::NotUtf8 { .. }), "{e:?}");
    assert!(e.to_string().starts_with("gateway/bad.yaml: "), "{e}");

    let e = m
        .read_config(oid("0123456789012345678901234567890123456789"))
        .unwrap_err();
    assert!(matches!(e, GitError::Commit { .. }), "{e:?}");
}

#[test]
fn commits_between_over_git_daemon_oldest_first() {
    let up = Upstream::new();
    up.write("gateway/a.yaml", SVC_A);
    let c0 = up.commit("c0");
    up.push();
    let daemon = Daemon::start(&up.srv());
    let m = Mirror::open(&up.mirror_dir("m"), &source(&daemon.url("repo.git"), None)).unwrap();
    assert_eq!(head(m.fetch().unwrap()), oid(&c0));

    let mut new = Vec::new();
    for i in 1..=3 {
        up.write("gateway/a.yaml", format!("{SVC_A}# rev {i}\n"));
        new.push(up.commit(&format!("change {i}\n\nbody {i}")));
    }
    up.push();
    let outcome = m.fetch().unwrap();
    assert_eq!(
        outcome,
        FetchOutcome::Head {
            id: oid(&new[2]),
            previous: Some(oid(&c0)),
            forced: false
        }
    );

    let range = m.commits_between(Some(oid(&c0)), oid(&new[2])).unwrap();
    assert!(!range.rewritten && !range.truncated);
    let ids: Vec<_> = range.commits.iter().map(|c| c.id.clone()).collect();
    assert_eq!(ids, new);
    assert_eq!(range.commits[0].parent, c0);
    assert_eq!(range.commits[1].parent, new[0]);
    assert_eq!(range.commits[2].message, "change 3\n\nbody 3");
    assert_eq!(range.commits[2].summary(), "change 3");
    assert_eq!(range.commits[2].author, "Test Author <author@example.com>");
    assert!(range.commits[2].time > 1_600_000_000);
    assert_eq!(
        m.read_config(oid(&new[2])).unwrap()[0].text,
        format!("{SVC_A}# rev 3\n")
    );

    let only = m.commits_between(None, oid(&new[2])).unwrap();
    assert_eq!(only.commits.len(), 1);
    assert_eq!(only.commits[0].id, new[2]);
    assert!(m
        .commits_between(Some(oid(&new[2])), oid(&new[2]))
        .unwrap()
        .commits
        .is_empty());
    assert_eq!(m.commit(oid(&c0)).unwrap().parent, "", "root commit");
}

#[test]
fn commits_between_caps_at_newest_100_and_follows_first_parent() {
    let up = Upstream::new();
    up.write("gateway/a.yaml", SVC_A);
    let base = up.commit("base");
    let last = up.empty_commits(105).pop().unwrap();
    // A merge: the side branch's commit is not listed, the merge is.
    git(&up.work(), &["checkout", "-q", "-b", "side"]);
    let side = up.commit("side work");
    git(&up.work(), &["checkout", "-q", "main"]);
    git(
        &up.work(),
        &["merge", "-q", "--no-ff", "-m", "merge side", "side"],
    );
    let merge = up.rev("HEAD");
    up.push();
    let m = Mirror::open(&up.mirror_dir("m"), &source(&up.file_url(), None)).unwrap();
    m.fetch().unwrap();

    let range = m.commits_between(Some(oid(&base)), oid(&last)).unwrap();
    assert!(range.truncated);
    assert_eq!(range.commits.len(), gateway_gitops::MAX_COMMITS);
    assert_eq!(range.commits.last().unwrap().id, last);
    assert_eq!(range.commits[0].message, "empty 5", "newest 100 kept");

    let range = m.commits_between(Some(oid(&last)), oid(&merge)).unwrap();
    assert!(!range.truncated && !range.rewritten);
    let ids: Vec<_> = range.commits.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, [merge.as_str()]);
    // From the side commit (an ancestor of the merge, not on first-parent line).
    let range = m.commits_between(Some(oid(&side)), oid(&merge)).unwrap();
    assert!(!range.rewritten);
    assert_eq!(range.commits.last().unwrap().id, merge);
    assert!(range.commits.iter().all(|c| c.id != side));
}

#[test]
fn force_push_is_reported_and_tags_are_pruned() {
    let up = Upstream::new();
    up.write("gateway/a.yaml", SVC_A);
    let a = up.commit("A");
    up.write("gateway/b.yaml", SVC_B);
    let b = up.commit("B");
    git(&up.work(), &["tag", "v1"]);
    up.push();
    let m = Mirror::open(&up.mirror_dir("m"), &source(&up.file_url(), None)).unwrap();
    assert_eq!(head(m.fetch().unwrap()), oid(&b));
    assert_eq!(m.resolve("v1").unwrap().id, b);

    git(&up.work(), &["reset", "-q", "--hard", &a]);
    up.write("gateway/c.yaml", SVC_B.replace("name: b", "name: c"));
    let c = up.commit("C");
    up.force_push();
    git(&up.work(), &["push", "-q", "origin", ":refs/tags/v1"]);

    let outcome = m.fetch().unwrap();
    assert_eq!(
        outcome,
        FetchOutcome::Head {
            id: oid(&c),
            previous: Some(oid(&b)),
            forced: true
        }
    );
    assert!(outcome.forced());
    let range = m.commits_between(Some(oid(&b)), oid(&c)).unwrap();
    assert!(range.rewritten);
    assert_eq!(range.commits.len(), 1);
    assert_eq!(range.commits[0].id, c);
    // The old commit stays readable by id (rollback target).
    assert_eq!(m.read_config(oid(&b)).unwrap().len(), 2);
    // The deleted tag is gone from the mirror.
    let e = m.resolve("v1").unwrap_err();
    assert!(matches!(e, GitError::UnknownRev { .. }), "{e:?}");
    // Unknown `from` counts as rewritten.
    let range = m
        .commits_between(
            Some(oid("0123456789012345678901234567890123456789")),
            oid(&c),
        )
        .unwrap();
    assert!(range.rewritten);
}

#[test]
fn deleted_branch_is_branch_missing() {
    let up = Upstream::new();
    up.write("gateway/a.yaml", SVC_A);
    let a = up.commit("A");
    up.push();
    git(&up.work(), &["push", "-q", "origin", "main:keep"]);
    let m = Mirror::open(&up.mirror_dir("m"), &source(&up.file_url(), None)).unwrap();
    assert_eq!(head(m.fetch().unwrap()), oid(&a));

    git(&up.bare(), &["update-ref", "-d", "refs/heads/main"]);
    let outcome = m.fetch().unwrap();
    assert_eq!(
        outcome,
        FetchOutcome::BranchMissing {
            previous: Some(oid(&a))
        }
    );
    assert_eq!(outcome.head(), None);
    assert_eq!(m.head(), None);
    assert!(m.resolve("HEAD").is_err());
    assert_eq!(m.resolve(&a).unwrap().id, a, "commits stay readable");

    // A branch that never existed.
    let mut s = source(&up.file_url(), None);
    s.branch = "nope".into();
    let m2 = Mirror::open(&up.mirror_dir("m2"), &s).unwrap();
    assert_eq!(
        m2.fetch().unwrap(),
        FetchOutcome::BranchMissing { previous: None }
    );

    // The branch comes back.
    up.push();
    assert_eq!(
        m.fetch().unwrap(),
        FetchOutcome::Head {
            id: oid(&a),
            previous: None,
            forced: false
        }
    );
}

#[test]
fn resolve_revisions() {
    let up = Upstream::new();
    let mut ids = Vec::new();
    for i in 0..4 {
        up.write("gateway/a.yaml", format!("{SVC_A}# {i}\n"));
        ids.push(up.commit(&format!("c{i}")));
    }
    git(&up.work(), &["tag", "light", &ids[1]]);
    git(&up.work(), &["tag", "-a", "-m", "release", "v2", &ids[2]]);
    up.push();
    // Local work moves on; the mirror resolves against what it fetched.
    up.commit("not pushed");
    let m = Mirror::open(&up.mirror_dir("m"), &source(&up.file_url(), None)).unwrap();
    m.fetch().unwrap();

    assert_eq!(m.resolve("HEAD").unwrap().id, ids[3]);
    assert_eq!(m.resolve("HEAD~2").unwrap().id, ids[1]);
    assert_eq!(m.resolve("HEAD^").unwrap().id, ids[2]);
    assert_eq!(m.resolve("main~3").unwrap().id, ids[0]);
    assert_eq!(m.resolve("light").unwrap().id, ids[1]);
    assert_eq!(m.resolve("v2").unwrap().id, ids[2], "annotated tag peeled");
    assert_eq!(m.resolve(&ids[0][..7]).unwrap().id, ids[0]);
    assert_eq!(m.resolve(&ids[0]).unwrap().message, "c0");

    for bad in ["HEAD~9", "nosuchtag", "deadbeef", ""] {
        let e = m.resolve(bad).unwrap_err();
        assert!(matches!(e, GitError::UnknownRev { .. }), "{bad}: {e:?}");
        assert!(e.to_string().contains(&format!("`{bad}`")), "{e}");
    }
    let tree = git(&up.work(), &["rev-parse", &format!("{}^{{tree}}", ids[0])]);
    assert!(m.resolve(&tree).is_err(), "a tree is not a commit");
}

#[test]
fn reopen_updates_remote_url_without_storing_credentials() {
    let up = Upstream::new();
    up.write("gateway/a.yaml", SVC_A);
    up.commit("A");
    up.push();
    let dir = up.mirror_dir("m");
    Mirror::open(&dir, &source(&up.file_url(), None))
        .unwrap()
        .fetch()
        .unwrap();
    assert_eq!(git(&dir, &["remote", "get-url", "origin"]), up.file_url());
    Mirror::open(
        &dir,
        &source("https://tok:SECRET@example.invalid/r.git", None),
    )
    .unwrap();
    assert_eq!(
        git(&dir, &["remote", "get-url", "origin"]),
        "https://***@example.invalid/r.git"
    );
    let config = std::fs::read_to_string(dir.join("config")).unwrap();
    assert!(!config.contains("SECRET"), "{config}");

    // A non-empty directory that is not a repo is refused.
    let junk = up.mirror_dir("junk");
    std::fs::create_dir_all(&junk).unwrap();
    std::fs::write(junk.join("file"), "x").unwrap();
    let e = Mirror::open(&junk, &source(&up.file_url(), None)).unwrap_err();
    assert!(matches!(e, GitError::Mirror { .. }), "{e:?}");
}

#[test]
fn server_down_fails_fast_naming_redacted_url() {
    let up = Upstream::new();
    up.write("gateway/a.yaml", SVC_A);
    let a = up.commit("A");
    up.push();
    let mut daemon = Daemon::start(&up.srv());
    let url = daemon.url("repo.git");
    let m = Mirror::open(&up.mirror_dir("m"), &source(&url, None)).unwrap();
    assert_eq!(head(m.fetch().unwrap()), oid(&a));

    daemon.kill();
    let t = Instant::now();
    let e = m.fetch().unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    assert!(matches!(e, GitError::Fetch { .. }), "{e:?}");
    assert!(e.to_string().contains(&url), "{e}");
    assert!(!e.is_auth());
    // The mirror still has what it fetched.
    assert_eq!(m.head(), Some(oid(&a)));

    // Credentials in the URL never reach the error.
    let port = free_port();
    let secret_url = format!("http://user:SECRET@127.0.0.1:{port}/repo.git");
    let m = Mirror::open(&up.mirror_dir("m2"), &source(&secret_url, None)).unwrap();
    let t = Instant::now();
    let e = m.fetch().unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    let msg = e.to_string();
    assert!(
        !msg.contains("SECRET") && !format!("{e:?}").contains("SECRET"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("http://***@127.0.0.1:{port}/repo.git")),
        "{msg}"
    );
}

#[test]
fn smart_http_with_token() {
    const TOKEN: &str = "tok-3f9a1c-very-secret";
    let up = Upstream::new();
    up.write("gateway/a.yaml", SVC_A);
    up.write("gateway/regions/eu/eu.yaml", SVC_EU);
    let a = up.commit("A");
    up.push();
    let http = HttpGit::start(&up.srv(), TOKEN);
    let url = http.url("repo.git");
    let token_file = up.tmp.path().join("token");

    // Right token (with the trailing newline a Secret file usually has).
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let mut s = source(&url, Some("eu"));
    s.token_file = Some(token_file.clone());
    let m = Mirror::open(&up.mirror_dir("m"), &s).unwrap();
    assert_eq!(head(m.fetch().unwrap()), oid(&a));
    assert_eq!(
        names(&m.read_config(oid(&a)).unwrap()),
        ["gateway/a.yaml", "gateway/regions/eu/eu.yaml"]
    );
    up.write("gateway/b.yaml", SVC_B);
    let b = up.commit("B");
    up.push();
    assert_eq!(
        m.fetch().unwrap(),
        FetchOutcome::Head {
            id: oid(&b),
            previous: Some(oid(&a)),
            forced: false
        }
    );

    // Wrong token: 401 -> Auth error naming the URL, never the token.
    std::fs::write(&token_file, "wrong-token-value").unwrap();
    let t = Instant::now();
    let e = m.fetch().unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(15));
    assert!(e.is_auth(), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains(&url), "{msg}");
    assert!(msg.contains("rejected"), "{msg}");
    assert!(
        !msg.contains("wrong-token-value") && !msg.contains(TOKEN),
        "{msg}"
    );
    assert!(!format!("{e:?}").contains("wrong-token-value"));

    // No token configured at all.
    let m2 = Mirror::open(&up.mirror_dir("m2"), &source(&url, None)).unwrap();
    if std::env::var_os(gateway_gitops::TOKEN_ENV).is_none() {
        let e = m2.fetch().unwrap_err();
        assert!(e.is_auth(), "{e:?}");
        assert!(e.to_string().contains("no token"), "{e}");
    }

    // Unreadable token file.
    let mut s3 = source(&url, None);
    s3.token_file = Some(up.tmp.path().join("missing-token"));
    let m3 = Mirror::open(&up.mirror_dir("m3"), &s3).unwrap();
    assert!(matches!(m3.fetch().unwrap_err(), GitError::Token { .. }));
}
