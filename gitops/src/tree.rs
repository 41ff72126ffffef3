//! Reading config files straight out of a commit's tree (no checkout).
//!
//! Layout, with the default config root `gateway/` and region `eu`:
//!
//! ```text
//! gateway/
//!   services.yaml          base: every region reads these
//!   plugins/auth.yml       base (subdirectories are read too)
//!   regions/
//!     eu/routes.yaml       overlay for region `eu` only
//!     us/routes.yaml       ignored by `eu`
//! ```
//!
//! Rules:
//! - Config files end in `.yaml` or `.yml` (lower case); other files are
//!   ignored, as are files and directories whose name starts with `.` and
//!   submodules. A symlink named `*.yaml`/`*.yml` is an error.
//! - Base files: every config file under the root, recursively, except the
//!   `<root>regions/` subtree; sorted byte-wise by full repository path.
//! - Overlay files: every config file under `<root>regions/<region>/`,
//!   recursively, sorted the same way. Other regions' directories are never
//!   read. No region configured, or no directory for it: no overlay.
//! - The result is base files then overlay files. `SourceFile::name` is the
//!   repository path (`gateway/regions/eu/routes.yaml`), so config errors
//!   read `gateway/regions/eu/routes.yaml:12:5: ...`.
//! - Merging is `gateway_config::parse` over that list: entities from all
//!   files are concatenated, `_format_version` must agree, and a duplicate
//!   name or id is an error naming both files. So an overlay can ADD
//!   services, routes, plugins, consumers...; it cannot override or patch a
//!   base entity (there is no deep merge). Put an entity that differs per
//!   region in every region's overlay instead of the base.
//! - No config file at all (root missing or empty): error naming the root
//!   and the commit. Total size over [`MAX_CONFIG_BYTES`] or more than
//!   [`MAX_CONFIG_FILES`] files: error. A file that is not UTF-8: error
//!   naming the file. A leading UTF-8 byte-order mark is removed.

use git2::{ObjectType, Oid, Repository, Tree, TreeEntry};
use tracing::debug;

use gateway_config::SourceFile;

use crate::{GitError, Mirror};

/// Largest total size of the config files of one commit.
pub const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

/// Most config files one commit may have (base + overlay).
pub const MAX_CONFIG_FILES: usize = 4096;

const REGIONS_DIR: &str = "regions";

impl Mirror {
    /// The config files of `commit`: base files, then this region's overlay
    /// files, as described in the [module docs](crate::tree).
    pub fn read_config(&self, commit: Oid) -> Result<Vec<SourceFile>, GitError> {
        let repo = self.lock();
        read_config(&repo, commit, &self.root, self.source.region.as_deref())
    }
}

pub(crate) fn read_config(
    repo: &Repository,
    commit: Oid,
    root: &str,
    region: Option<&str>,
) -> Result<Vec<SourceFile>, GitError> {
    let short = short_id(commit);
    let shown_root = if root.is_empty() { "/" } else { root };
    let cerr = |e: git2::Error| GitError::Commit {
        commit: commit.to_string(),
        message: e.message().to_string(),
    };
    let tree = repo
        .find_commit(commit)
        .and_then(|c| c.tree())
        .map_err(cerr)?;
    let mut reader = Reader {
        repo,
        commit: &short,
        root: shown_root,
        total: 0,
        entries: Vec::new(),
    };
    if let Some(root_tree) = subtree(repo, &tree, root).map_err(cerr)? {
        let mut base = Vec::new();
        reader.collect(&root_tree, root, Some(REGIONS_DIR), &mut base)?;
        base.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        reader.entries.extend(base);
        if let Some(region) = region {
            let overlay_root = format!("{root}{REGIONS_DIR}/{region}/");
            match subtree(repo, &tree, &overlay_root).map_err(cerr)? {
                Some(t) => {
                    let mut overlay = Vec::new();
                    reader.collect(&t, &overlay_root, None, &mut overlay)?;
                    overlay.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                    reader.entries.extend(overlay);
                }
                None => debug!(commit = %short, dir = %overlay_root, "no overlay for region"),
            }
        }
    }
    if reader.entries.is_empty() {
        return Err(GitError::NoConfigFiles {
            path: shown_root.to_string(),
            commit: short,
        });
    }
    let mut files = Vec::with_capacity(reader.entries.len());
    for (name, oid) in reader.entries {
        let blob = repo.find_blob(oid).map_err(cerr)?;
        let bytes = blob.content();
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let text = std::str::from_utf8(bytes).map_err(|_| GitError::NotUtf8 {
            file: name.clone(),
            commit: short.clone(),
        })?;
        files.push(SourceFile {
            name,
            text: text.to_string(),
        });
    }
    debug!(commit = %short, files = files.len(), "read config from commit");
    Ok(files)
}

fn short_id(id: Oid) -> String {
    id.to_string()[..7].to_string()
}

/// The tree at `dir` (`""` = `tree` itself; `dir` ends in `/`), or `None`
/// when it is missing or not a directory.
fn subtree<'r>(
    repo: &'r Repository,
    tree: &Tree<'r>,
    dir: &str,
) -> Result<Option<Tree<'r>>, git2::Error> {
    let dir = dir.trim_end_matches('/');
    if dir.is_empty() {
        return Ok(Some(tree.clone()));
    }
    let entry = match tree.get_path(std::path::Path::new(dir)) {
        Ok(e) => e,
        Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if entry.kind() != Some(ObjectType::Tree) {
        return Ok(None);
    }
    Ok(Some(repo.find_tree(entry.id())?))
}

struct Reader<'a> {
    repo: &'a Repository,
    commit: &'a str,
    root: &'a str,
    total: u64,
    entries: Vec<(String, Oid)>,
}

impl Reader<'_> {
    /// Collect config files under `tree` (whose path is `prefix`, ending in
    /// `/` or empty), skipping the top-level directory `skip_dir`.
    fn collect(
        &mut self,
        tree: &Tree<'_>,
        prefix: &str,
        skip_dir: Option<&str>,
        out: &mut Vec<(String, Oid)>,
    ) -> Result<(), GitError> {
        for entry in tree.iter() {
            let Ok(name) = entry.name() else {
                return Err(GitError::NotUtf8 {
                    file: format!("{prefix}{}", String::from_utf8_lossy(entry.name_bytes())),
                    commit: self.commit.to_string(),
                });
            };
            if name.starts_with('.') {
                continue;
            }
            let path = format!("{prefix}{name}");
            match entry.kind() {
                Some(ObjectType::Tree) => {
                    if skip_dir == Some(name) {
                        continue;
                    }
                    let sub = self.repo.find_tree(entry.id()).map_err(|e| self.err(e))?;
                    self.collect(&sub, &format!("{path}/"), None, out)?;
                }
                Some(ObjectType::Blob) if is_config_name(name) => self.add(&entry, path, out)?,
                _ => {} // other files, submodules (commits)
            }
        }
        Ok(())
    }

    fn add(
        &mut self,
        entry: &TreeEntry<'_>,
        path: String,
        out: &mut Vec<(String, Oid)>,
    ) -> Result<(), GitError> {
        if entry.filemode() == 0o120000 {
            return Err(GitError::Symlink {
                file: path,
                commit: self.commit.to_string(),
            });
        }
        let (size, _) = self
            .repo
            .odb()
            .and_then(|odb| odb.read_header(entry.id()))
            .map_err(|e| self.err(e))?;
        self.total += size as u64;
        if self.total > MAX_CONFIG_BYTES {
            return Err(GitError::TooLarge {
                path: self.root.to_string(),
                commit: self.commit.to_string(),
                what: format!("more than {MAX_CONFIG_BYTES} bytes in total (reached at {path})"),
            });
        }
        if self.entries.len() + out.len() >= MAX_CONFIG_FILES {
            return Err(GitError::TooLarge {
                path: self.root.to_string(),
                commit: self.commit.to_string(),
                what: format!("more than {MAX_CONFIG_FILES} files"),
            });
        }
        out.push((path, entry.id()));
        Ok(())
    }

    fn err(&self, e: git2::Error) -> GitError {
        GitError::Commit {
            commit: self.commit.to_string(),
            message: e.message().to_string(),
        }
    }
}

fn is_config_name(name: &str) -> bool {
    name.ends_with(".yaml") || name.ends_with(".yml")
}
