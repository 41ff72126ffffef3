//! Where configs come from: `GitSource` settings, credential loading and URL
//! redaction.

use std::fmt;
use std::path::PathBuf;

use crate::GitError;

/// Environment variable read for the HTTP(S) token when `token_file` is unset.
pub const TOKEN_ENV: &str = "GATEWAY_GIT_TOKEN";

/// Default HTTP basic-auth username sent with the token. GitHub accepts
/// `x-access-token` for both app installation tokens and personal access
/// tokens; GitLab wants `oauth2` (or any non-empty name for project/personal
/// tokens); Gitea and Bitbucket accept `x-token-auth`/any name. Set
/// [`GitSource::token_username`] to match the host.
pub const DEFAULT_TOKEN_USERNAME: &str = "x-access-token";

/// Settings of one Git source: which repository, branch and directory hold
/// the gateway's config, and how to authenticate.
///
/// `Debug` never prints credentials: the URL is redacted and the token is
/// never held here (only the path of the file it is read from).
#[derive(Clone, PartialEq, Eq)]
pub struct GitSource {
    /// Repository URL: `file:///srv/repo.git`, a plain path `/srv/repo.git`,
    /// `git://host/repo.git`, `http(s)://host/org/repo.git`,
    /// `ssh://git@host/org/repo.git` or scp-like `git@host:org/repo.git`.
    /// Credentials embedded in an http(s) URL work but are discouraged: use
    /// `token_file` or `GATEWAY_GIT_TOKEN` instead.
    pub url: String,
    /// Branch to follow. Default `main`.
    pub branch: String,
    /// Config root inside the repository. Default `gateway/`. Leading `./`
    /// and `/` are ignored, a trailing `/` is implied; `""` or `/` means the
    /// repository root.
    pub path: String,
    /// Region whose overlay directory `<path>regions/<region>/` is merged
    /// after the base files. `None`: base files only.
    pub region: Option<String>,
    /// File holding the HTTP(S) token (surrounding whitespace is trimmed).
    /// Read on every fetch, so a rotated Kubernetes Secret is picked up.
    /// When unset, the `GATEWAY_GIT_TOKEN` environment variable is used.
    pub token_file: Option<PathBuf>,
    /// Username sent with the token (HTTP basic auth). Default
    /// [`DEFAULT_TOKEN_USERNAME`].
    pub token_username: String,
    /// Private key file for ssh URLs (no passphrase). When unset, ssh
    /// authentication goes through the ssh agent (`SSH_AUTH_SOCK`).
    pub ssh_key: Option<PathBuf>,
}

impl GitSource {
    /// A source with the defaults: branch `main`, path `gateway/`, no region,
    /// token from `GATEWAY_GIT_TOKEN` if set.
    pub fn new(url: impl Into<String>) -> GitSource {
        GitSource {
            url: url.into(),
            branch: "main".to_string(),
            path: "gateway/".to_string(),
            region: None,
            token_file: None,
            token_username: DEFAULT_TOKEN_USERNAME.to_string(),
            ssh_key: None,
        }
    }

    /// The URL with any credentials removed, for logs and errors.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }

    /// The config root, normalized: no leading `./` or `/`, ending in `/`
    /// unless it is the repository root (`""`).
    pub fn root(&self) -> String {
        normalize_root(&self.path)
    }

    /// Check the settings that can be checked without IO.
    pub fn validate(&self) -> Result<(), GitError> {
        if self.url.trim().is_empty() {
            return Err(GitError::Settings("url is empty".into()));
        }
        if self.branch.is_empty()
            || !git2::Reference::is_valid_name(&format!("refs/heads/{}", self.branch))
        {
            return Err(GitError::Settings(format!(
                "branch `{}` is not a valid branch name",
                self.branch
            )));
        }
        let root = self.root();
        if root.split('/').any(|c| c == "..") {
            return Err(GitError::Settings(format!(
                "path `{}` must not contain `..`",
                self.path
            )));
        }
        if let Some(region) = &self.region {
            let ok = !region.is_empty()
                && region != "."
                && region != ".."
                && !region.contains(['/', '\\'])
                && !region.chars().any(char::is_control);
            if !ok {
                return Err(GitError::Settings(format!(
                    "region `{region}` must be a single directory name"
                )));
            }
        }
        if self.token_username.is_empty() {
            return Err(GitError::Settings("token_username is empty".into()));
        }
        Ok(())
    }

    pub(crate) fn transport(&self) -> Transport {
        transport_of(&self.url)
    }

    /// The token for http(s): `token_file` if set (an unreadable or empty
    /// file is an error), else `GATEWAY_GIT_TOKEN` if set and non-empty.
    pub(crate) fn load_token(&self) -> Result<Option<Secret>, GitError> {
        token_from(
            self.token_file.as_deref(),
            std::env::var(TOKEN_ENV).ok().as_deref(),
        )
    }
}

impl fmt::Debug for GitSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitSource")
            .field("url", &self.redacted_url())
            .field("branch", &self.branch)
            .field("path", &self.path)
            .field("region", &self.region)
            .field("token_file", &self.token_file)
            .field("token_username", &self.token_username)
            .field("ssh_key", &self.ssh_key)
            .finish()
    }
}

/// A credential. `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

pub(crate) fn token_from(
    file: Option<&std::path::Path>,
    env: Option<&str>,
) -> Result<Option<Secret>, GitError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| GitError::Token {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(GitError::Token {
                path: path.to_path_buf(),
                message: "file is empty".into(),
            });
        }
        return Ok(Some(Secret(token.to_string())));
    }
    Ok(env
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| Secret(t.to_string())))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// `file://` or a plain path: no network, no credentials.
    Local,
    /// `git://`: no credentials.
    Git,
    /// `http://` or `https://`: token.
    Http,
    /// `ssh://` or scp-like: key file or agent.
    Ssh,
}

pub(crate) fn transport_of(url: &str) -> Transport {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        Transport::Http
    } else if lower.starts_with("git://") {
        Transport::Git
    } else if lower.starts_with("ssh://") || lower.starts_with("git+ssh://") {
        Transport::Ssh
    } else if lower.starts_with("file://") || !is_scp_like(url) {
        Transport::Local
    } else {
        Transport::Ssh
    }
}

/// `[user@]host:path` with no `/` before the first `:` (git's own rule).
fn is_scp_like(url: &str) -> bool {
    match url.find(':') {
        Some(colon) => {
            let before = &url[..colon];
            !before.is_empty() && !before.contains('/') && !url[colon..].starts_with("://")
        }
        None => false,
    }
}

/// Remove credentials from a URL so it can be logged.
///
/// For `scheme://userinfo@host/...` the whole userinfo of http(s) URLs is
/// replaced by `***` (a token alone may sit in the username), and for other
/// schemes only the password part is. A query string is replaced by `?***`.
/// scp-like `git@host:path` and paths are returned unchanged.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let scheme = &url[..scheme_end];
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(at) => {
            let (userinfo, host) = (&authority[..at], &authority[at + 1..]);
            let http = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
            if http {
                format!("***@{host}")
            } else {
                match userinfo.find(':') {
                    Some(c) => format!("{}:***@{host}", &userinfo[..c]),
                    None => format!("{userinfo}@{host}"),
                }
            }
        }
        None => authority.to_string(),
    };
    let tail = match tail.find('?') {
        Some(q) => format!("{}?***", &tail[..q]),
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

pub(crate) fn normalize_root(path: &str) -> String {
    let mut p = path.trim();
    loop {
        if let Some(r) = p.strip_prefix("./") {
            p = r;
        } else if let Some(r) = p.strip_prefix('/') {
            p = r;
        } else {
            break;
        }
    }
    let p = p.trim_end_matches('/');
    if p.is_empty() || p == "." {
        String::new()
    } else {
        format!("{p}/")
    }
}

/// Replaces secrets (the raw URL, the token) in text coming back from
/// libgit2 before it goes into an error or a log line.
pub(crate) struct Scrubber {
    replacements: Vec<(String, String)>,
}

impl Scrubber {
    pub(crate) fn new(url: &str, token: Option<&Secret>) -> Scrubber {
        let mut replacements = Vec::new();
        let redacted = redact_url(url);
        if redacted != url {
            replacements.push((url.to_string(), redacted));
        }
        if let Some(t) = token {
            replacements.push((t.expose().to_string(), "***".to_string()));
        }
        Scrubber { replacements }
    }

    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (secret, shown) in &self.replacements {
            if !secret.is_empty() {
                out = out.replace(secret.as_str(), shown);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_http_userinfo_and_query() {
        assert_eq!(
            redact_url("https://x-access-token:ghp_SECRET@github.com/o/r.git"),
            "https://***@github.com/o/r.git"
        );
        assert_eq!(
            redact_url("https://ghp_SECRET@github.com/o/r.git"),
            "https://***@github.com/o/r.git"
        );
        assert_eq!(
            redact_url("https://host/r.git?private_token=abc"),
            "https://host/r.git?***"
        );
        assert_eq!(
            redact_url("ssh://git:pw@host/r.git"),
            "ssh://git:***@host/r.git"
        );
        assert_eq!(redact_url("ssh://git@host/r.git"), "ssh://git@host/r.git");
        assert_eq!(redact_url("git@host:o/r.git"), "git@host:o/r.git");
        assert_eq!(redact_url("/srv/r.git"), "/srv/r.git");
        assert_eq!(redact_url("http://h:80"), "http://h:80");
    }

    #[test]
    fn transports() {
        assert_eq!(transport_of("file:///x"), Transport::Local);
        assert_eq!(transport_of("/srv/x.git"), Transport::Local);
        assert_eq!(transport_of("./x"), Transport::Local);
        assert_eq!(transport_of("git://h/x"), Transport::Git);
        assert_eq!(transport_of("HTTPS://h/x"), Transport::Http);
        assert_eq!(transport_of("ssh://h/x"), Transport::Ssh);
        assert_eq!(transport_of("git@github.com:o/r.git"), Transport::Ssh);
    }

    #[test]
    fn roots() {
        assert_eq!(normalize_root("gateway/"), "gateway/");
        assert_eq!(normalize_root("./gateway"), "gateway/");
        assert_eq!(normalize_root("/a/b//"), "a/b/");
        assert_eq!(normalize_root(""), "");
        assert_eq!(normalize_root("/"), "");
        assert_eq!(normalize_root("."), "");
    }

    #[test]
    fn token_sources() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t");
        std::fs::write(&f, "  tok123\n").unwrap();
        let t = token_from(Some(&f), Some("envtok")).unwrap().unwrap();
        assert_eq!(t.expose(), "tok123", "file wins over env");
        assert_eq!(format!("{t:?}"), "***");
        let t = token_from(None, Some(" envtok ")).unwrap().unwrap();
        assert_eq!(t.expose(), "envtok");
        assert!(token_from(None, Some("  ")).unwrap().is_none());
        assert!(token_from(None, None).unwrap().is_none());
        std::fs::write(&f, "\n").unwrap();
        assert!(matches!(
            token_from(Some(&f), None),
            Err(GitError::Token { .. })
        ));
        let missing = dir.path().join("missing");
        assert!(token_from(Some(&missing), Some("envtok")).is_err());
    }

    #[test]
    fn validate_rejects_bad_settings() {
        let mut s = GitSource::new("file:///x");
        assert!(s.validate().is_ok());
        s.region = Some("../eu".into());
        assert!(s.validate().is_err());
        s.region = Some("eu".into());
        s.branch = "bad..name".into();
        assert!(s.validate().is_err());
        s.branch = "main".into();
        s.path = "a/../b".into();
        assert!(s.validate().is_err());
    }

    #[test]
    fn debug_hides_credentials() {
        let s = GitSource::new("https://u:SECRET@h/r.git");
        assert!(!format!("{s:?}").contains("SECRET"));
        let sc = Scrubber::new(&s.url, Some(&Secret("TOK".into())));
        assert_eq!(
            sc.scrub("failed https://u:SECRET@h/r.git with TOK"),
            "failed https://***@h/r.git with ***"
        );
    }
}
