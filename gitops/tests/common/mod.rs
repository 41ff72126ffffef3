//! Test harness: upstream repositories built with the real `git` CLI, served
//! over file://, `git daemon` (git://) and smart HTTP (`git http-backend`
//! behind a tiny CGI server that requires a token).
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine;

/// Run `git` with a clean, deterministic environment; panic on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_cmd(dir)
        .args(args)
        .output()
        .expect("run git (is /usr/local/bin/git on PATH?)");
    assert!(
        out.status.success(),
        "git {args:?} in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn git_cmd(dir: &Path) -> Command {
    let mut c = Command::new("git");
    c.current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Test Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.com")
        .env("GIT_COMMITTER_NAME", "Test Committer")
        .env("GIT_COMMITTER_EMAIL", "committer@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "tag.gpgsign=false",
        ]);
    c
}

/// A working repo `src/` pushing to a bare repo `srv/repo.git`, which the
/// servers export. Also holds a scratch dir for mirrors.
pub struct Upstream {
    pub tmp: tempfile::TempDir,
}

impl Upstream {
    pub fn new() -> Upstream {
        let tmp = tempfile::tempdir().unwrap();
        let up = Upstream { tmp };
        std::fs::create_dir_all(up.work()).unwrap();
        std::fs::create_dir_all(up.srv()).unwrap();
        git(&up.srv(), &["init", "-q", "--bare", "repo.git"]);
        git(&up.work(), &["init", "-q"]);
        git(
            &up.work(),
            &["remote", "add", "origin", up.bare().to_str().unwrap()],
        );
        up
    }

    pub fn work(&self) -> PathBuf {
        self.tmp.path().join("src")
    }
    pub fn srv(&self) -> PathBuf {
        self.tmp.path().join("srv")
    }
    pub fn bare(&self) -> PathBuf {
        self.srv().join("repo.git")
    }
    pub fn file_url(&self) -> String {
        format!("file://{}", self.bare().display())
    }
    /// A fresh directory path for a mirror (not created).
    pub fn mirror_dir(&self, name: &str) -> PathBuf {
        self.tmp.path().join("mirrors").join(name)
    }

    pub fn write(&self, path: &str, text: impl AsRef<[u8]>) {
        let p = self.work().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    pub fn remove(&self, path: &str) {
        git(&self.work(), &["rm", "-q", "-r", path]);
    }

    /// Stage everything and commit; returns the full commit id.
    pub fn commit(&self, msg: &str) -> String {
        git(&self.work(), &["add", "-A"]);
        git(&self.work(), &["commit", "-q", "--allow-empty", "-m", msg]);
        self.rev("HEAD")
    }

    /// Append `n` empty commits ("empty 0", "empty 1", ...) to `main` in one
    /// `git fast-import` run; returns their ids, oldest first.
    pub fn empty_commits(&self, n: usize) -> Vec<String> {
        let parent = self.rev("HEAD");
        let mut stream = String::new();
        for i in 0..n {
            let msg = format!("empty {i}");
            stream.push_str(&format!(
                "commit refs/heads/main\nmark :{}\n\
                 author Test Author <author@example.com> {} +0000\n\
                 committer Test Committer <committer@example.com> {} +0000\n\
                 data {}\n{msg}\n",
                i + 1,
                1_700_000_000 + i,
                1_700_000_000 + i,
                msg.len()
            ));
            if i == 0 {
                stream.push_str(&format!("from {parent}\n"));
            }
        }
        let mut child = git_cmd(&self.work())
            .args(["fast-import", "--quiet", "--force"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stream.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "git fast-import failed");
        // Each empty commit keeps the tree, so the index stays valid.
        let log = git(
            &self.work(),
            &["rev-list", "--reverse", &format!("{parent}..main")],
        );
        let ids: Vec<String> = log.lines().map(str::to_string).collect();
        assert_eq!(ids.len(), n);
        ids
    }

    pub fn rev(&self, rev: &str) -> String {
        git(&self.work(), &["rev-parse", rev])
    }

    pub fn push(&self) {
        git(&self.work(), &["push", "-q", "--tags", "origin", "main"]);
    }

    pub fn force_push(&self) {
        git(&self.work(), &["push", "-q", "--force", "origin", "main"]);
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("server exited before listening: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "server did not listen on {port} in 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `git daemon` exporting `base`; killed on drop.
pub struct Daemon {
    child: Option<Child>,
    pub port: u16,
}

impl Daemon {
    pub fn start(base: &Path) -> Daemon {
        let port = free_port();
        // Run git-daemon itself: `git daemon` forks it as a child, and
        // killing the wrapper would leave the real daemon serving.
        let exec_path = git(base, &["--exec-path"]);
        let mut child = Command::new(Path::new(&exec_path).join("git-daemon"));
        child
            .current_dir(base)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .args([
                "--reuseaddr",
                &format!("--base-path={}", base.display()),
                "--export-all",
                &format!("--port={port}"),
                "--listen=127.0.0.1",
                &base.display().to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = child.spawn().expect("spawn git-daemon");
        wait_for_port(port, &mut child);
        Daemon {
            child: Some(child),
            port,
        }
    }

    pub fn url(&self, repo: &str) -> String {
        format!("git://127.0.0.1:{}/{repo}", self.port)
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Smart HTTP through `git http-backend` (CGI), requiring
/// `Authorization: Basic <any user>:<token>`. Stopped on drop.
pub struct HttpGit {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpGit {
    pub fn start(project_root: &Path, token: &str) -> HttpGit {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let root = project_root.to_path_buf();
        let token = token.to_string();
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut workers = Vec::new();
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (root, token) = (root.clone(), token.clone());
                workers.push(std::thread::spawn(move || {
                    let _ = handle(conn, &root, &token);
                }));
            }
            for w in workers {
                let _ = w.join();
            }
        });
        HttpGit {
            port,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self, repo: &str) -> String {
        format!("http://127.0.0.1:{}/{repo}", self.port)
    }
}

impl Drop for HttpGit {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn handle(conn: TcpStream, root: &Path, token: &str) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    conn.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Ok(());
    };
    let (method, target) = (method.to_string(), target.to_string());
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 {
            break;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }

    let authorized = headers
        .get("authorization")
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|d| String::from_utf8(d).ok())
        .and_then(|up| up.split_once(':').map(|(_, p)| p == token))
        .unwrap_or(false);
    if !authorized {
        out.write_all(
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\n\
              Content-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
        let _ = out.shutdown(Shutdown::Both);
        return Ok(());
    }

    let mut body = Vec::new();
    if let Some(len) = headers.get("content-length") {
        let len: usize = len.parse().unwrap_or(0);
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
    } else if headers
        .get("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }

    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut cmd = Command::new("git");
    cmd.arg("http-backend")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_USER", "test")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(ct) = headers.get("content-type") {
        cmd.env("CONTENT_TYPE", ct);
    }
    if let Some(ce) = headers.get("content-encoding") {
        cmd.env("HTTP_CONTENT_ENCODING", ce);
    }
    if let Some(p) = headers.get("git-protocol") {
        cmd.env("GIT_PROTOCOL", p);
    }
    let mut child = cmd.spawn()?;
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let mut cgi = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut cgi)?;
    let _ = feeder.join();
    wait_bounded(&mut child, Duration::from_secs(10));

    let (head, payload) = split_cgi(&cgi);
    let mut status = "200 OK".to_string();
    let mut resp_headers = String::new();
    for h in head.lines() {
        match h.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("status") => status = v.trim().to_string(),
            Some(_) => {
                resp_headers.push_str(h);
                resp_headers.push_str("\r\n");
            }
            None => {}
        }
    }
    write!(
        out,
        "HTTP/1.1 {status}\r\n{resp_headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        payload.len()
    )?;
    out.write_all(payload)?;
    out.flush()?;
    let _ = out.shutdown(Shutdown::Both);
    Ok(())
}

fn split_cgi(cgi: &[u8]) -> (String, &[u8]) {
    for (sep, len) in [(&b"\r\n\r\n"[..], 4), (&b"\n\n"[..], 2)] {
        if let Some(i) = cgi.windows(len).position(|w| w == sep) {
            return (
                String::from_utf8_lossy(&cgi[..i]).to_string(),
                &cgi[i + len..],
            );
        }
    }
    (String::new(), cgi)
}

fn wait_bounded(child: &mut Child, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A TCP server that accepts connections and never answers.
pub struct Blackhole {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Blackhole {
    pub fn start() -> Blackhole {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(c) = conn {
                    held.push(c);
                }
            }
        });
        Blackhole {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
