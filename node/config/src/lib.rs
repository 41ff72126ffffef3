//! # gateway-config: the pure config model
//!
//! Layout (the pipeline runs top to bottom):
//! - `model`: the normalized config types (`Config`, `Service`, `Route`, ...),
//!   references resolved to indices, Kong defaults filled in.
//! - `yaml`: YAML/JSON text -> spanned tree (line/column on every node),
//!   with alias-expansion, nesting-depth and one-document limits.
//! - `fields`: typed, located access to the tree (unknown-field detection
//!   with suggestions, type and range checks).
//! - `check`: value validators (hosts, paths, regexes, names, PEM, ...).
//! - `decode`: tree -> `raw` entities, one submodule per entity family,
//!   calling the `PluginCatalog` for each plugin's `config`.
//! - `resolve`: uniqueness, references -> indices, per-scope plugin
//!   duplicates, assembly of the `Config` in its documented order.
//! - `emit`: `Config::to_declarative` and the canonical `Config::hash`.
//! - `diag`: error collection; every error is `file:line:col: path: message`
//!   and parsing never stops at the first one.
//!
//! This crate does no IO: callers hand it file names and contents. The node,
//! `gateway validate`, `gatewayctl` and the tests all use the same code.
//! `docs/config.md` lists every supported field, default and rule.

mod check;
mod decode;
mod diag;
mod emit;
mod fields;
mod raw;
mod resolve;
mod yaml;

pub use yaml::{alias_budget, MAX_DEPTH};

pub mod diff;
pub mod model;

pub use diff::{diff, ConfigDiff, DiffCounts, EntityChange, FieldChange, KindDiff};

pub use model::*;

use std::fmt;

/// One input file: a name used in error messages and its text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

/// One problem found in a config, located as precisely as the input allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// File name as given in `SourceFile::name`.
    pub file: String,
    /// 1-based; 0 when the error has no position (e.g. a missing file).
    pub line: usize,
    /// 1-based; 0 when unknown.
    pub column: usize,
    /// Entity path such as `services[2].routes[0].paths[1]` (empty = document).
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// All errors found in a config (never empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// What the validator needs to know about plugins. The node implements this
/// with its plugin registry; tests may implement it with a fixed list.
pub trait PluginCatalog {
    /// Validate one plugin's `config` object and return it with defaults
    /// filled in. `None` means the plugin name is unknown to this version.
    /// Errors are `(sub_path, message)`, sub_path relative to `config`
    /// (e.g. `"minute"`), empty for the whole object.
    fn check(
        &self,
        name: &str,
        config: &serde_json::Value,
    ) -> Option<Result<serde_json::Value, Vec<(String, String)>>>;
}

/// A catalog that knows no plugins: every plugin entry is an error.
pub struct NoPlugins;

impl PluginCatalog for NoPlugins {
    fn check(
        &self,
        _name: &str,
        _config: &serde_json::Value,
    ) -> Option<Result<serde_json::Value, Vec<(String, String)>>> {
        None
    }
}

/// Parse, validate and normalize one config made of one or more files.
/// Entities from all files merge into one config; `_format_version` must be
/// `"3.0"` (or `"2.1"`) and agree across files. On failure, every error found
/// is returned, ordered by file (as given), line and column.
pub fn parse(files: &[SourceFile], plugins: &dyn PluginCatalog) -> Result<Config, ConfigErrors> {
    parse_with(files, plugins, yaml::load)
}

/// Parse a config this crate emitted (`serde_json::to_string` of
/// [`Config::to_declarative`]), such as a version replicated through Raft:
/// the same validation as [`parse`], but read with `serde_json` instead of
/// the spanned YAML reader. Should the text not be valid JSON or fail
/// validation, it is parsed again with [`parse`], so errors still carry
/// their line and column.
pub fn parse_normalized(
    name: &str,
    text: &str,
    plugins: &dyn PluginCatalog,
) -> Result<Config, ConfigErrors> {
    let files = [SourceFile {
        name: name.to_string(),
        text: text.to_string(),
    }];
    let fast = parse_with(&files, plugins, |t| yaml::Loaded {
        root: yaml::load_trusted_json(t),
        errors: Vec::new(),
    });
    match fast {
        Ok(config) => Ok(config),
        Err(_) => parse(&files, plugins),
    }
}

fn parse_with(
    files: &[SourceFile],
    plugins: &dyn PluginCatalog,
    load: impl Fn(&str) -> yaml::Loaded,
) -> Result<Config, ConfigErrors> {
    if files.is_empty() {
        return Err(ConfigErrors(vec![ConfigError {
            file: String::new(),
            line: 0,
            column: 0,
            path: String::new(),
            message: "no config files given".to_string(),
        }]));
    }
    let names = files.iter().map(|f| f.name.clone()).collect();
    let mut dec = decode::Dec::new(diag::Diag::new(names), plugins);
    let mut first_version: Option<(String, diag::At)> = None;
    for (i, file) in files.iter().enumerate() {
        let loaded = load(&file.text);
        for e in loaded.errors {
            let at = diag::At {
                file: i,
                pos: e.pos,
                path: e.path,
            };
            dec.d.err(&at, e.message);
        }
        let Some(root) = loaded.root else {
            if file.text.trim().is_empty() || !dec.d.has_errors_in(i) {
                let at = diag::At {
                    file: i,
                    pos: yaml::Pos { line: 1, col: 1 },
                    path: String::new(),
                };
                dec.d.err(
                    &at,
                    "the file is empty: expected a mapping with '_format_version'",
                );
            }
            continue;
        };
        let version = dec.document(fields::Field::root(i, &root));
        if let Some((v, at)) = version {
            match &first_version {
                None => first_version = Some((v, at)),
                Some((first, first_at)) if *first != v => {
                    let loc = dec.d.loc(first_at);
                    dec.d.err(
                        &at,
                        format!("_format_version '{v}' differs from '{first}' at {loc}"),
                    );
                }
                Some(_) => {}
            }
        }
    }
    let decode::Dec { mut d, raw, .. } = dec;
    let config = resolve::resolve(&mut d, raw);
    if d.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(d.into_errors()))
    }
}

impl Config {
    /// A stable hash of the normalized config (32 lowercase hex chars, like
    /// Kong's `configuration_hash`). Equal configs hash equal regardless of
    /// source formatting.
    pub fn hash(&self) -> String {
        emit::hash(self)
    }

    /// This config as a Kong declarative document (JSON value) that `parse`
    /// reads back to an equal `Config`.
    pub fn to_declarative(&self) -> serde_json::Value {
        emit::to_declarative(self)
    }
}

impl Healthchecks {
    /// The `healthchecks` object of an upstream in the declarative form
    /// ([`Config::to_declarative`]), every default filled in.
    pub fn to_declarative(&self) -> serde_json::Value {
        emit::healthchecks_obj(self)
    }
}

/// Load any YAML/JSON document (not a gateway config) into JSON, with the
/// same safe loader as configs (alias and depth limits). For small tool
/// files such as `gatewayctl`'s contexts file. Errors read
/// `name:line:col: path: message`.
pub fn yaml_to_json(name: &str, text: &str) -> Result<serde_json::Value, String> {
    fn conv(n: &yaml::Node) -> serde_json::Value {
        use serde_json::Value as J;
        match &n.value {
            yaml::Value::Null => J::Null,
            yaml::Value::Bool(b) => J::Bool(*b),
            yaml::Value::Int(i) => J::from(*i),
            yaml::Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(J::Number)
                .unwrap_or(J::Null),
            yaml::Value::Str(s) => J::String(s.clone()),
            yaml::Value::Seq(items) => J::Array(items.iter().map(conv).collect()),
            yaml::Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.text.clone(), conv(v)))
                    .collect(),
            ),
        }
    }
    let loaded = yaml::load(text);
    if let Some(e) = loaded.errors.first() {
        return Err(format!(
            "{name}:{}:{}: {}: {}",
            e.pos.line, e.pos.col, e.path, e.message
        ));
    }
    Ok(loaded
        .root
        .as_ref()
        .map(conv)
        .unwrap_or(serde_json::Value::Null))
}
