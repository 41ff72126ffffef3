//! # gateway-config: the pure config model
//!
//! Layout:
//! - `model`: the normalized config types (`Config`, `Service`, `Route`, ...),
//!   references resolved to indices, Kong defaults filled in.
//! - `parse`: YAML/JSON text -> spanned tree -> `Config`, collecting *every*
//!   error with `file:line:col: entity.path: message`.
//! - `catalog`: the `PluginCatalog` trait through which the node tells the
//!   validator which plugins exist and how to check their `config`.
//!
//! This crate does no IO: callers hand it file names and contents. The node,
//! `gateway validate`, `gatewayctl` and the tests all use the same code.

pub mod model;

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
/// `"3.0"` (or `"2.1"`) and agree across files.
pub fn parse(files: &[SourceFile], plugins: &dyn PluginCatalog) -> Result<Config, ConfigErrors> {
    let _ = (files, plugins);
    todo!("gateway-config::parse")
}

impl Config {
    /// A stable hash of the normalized config (32 lowercase hex chars, like
    /// Kong's `configuration_hash`). Equal configs hash equal regardless of
    /// source formatting.
    pub fn hash(&self) -> String {
        todo!("Config::hash")
    }

    /// This config as a Kong declarative document (JSON value) that `parse`
    /// reads back to an equal `Config`.
    pub fn to_declarative(&self) -> serde_json::Value {
        todo!("Config::to_declarative")
    }
}
