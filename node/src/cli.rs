//! Pieces shared by the `gateway` and `gatewayctl` binaries: reading config
//! files and the offline `validate` command (the nodes' own validator).

use std::path::PathBuf;
use std::process::ExitCode;

use gateway_config::SourceFile;

use crate::plugins::PluginRegistry;

/// Read every file; all unreadable ones are reported, as
/// `path:0:0: cannot read file: ...`.
pub fn read_files(paths: &[PathBuf]) -> Result<Vec<SourceFile>, Vec<String>> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        match std::fs::read_to_string(p) {
            Ok(text) => files.push(SourceFile {
                name: p.display().to_string(),
                text,
            }),
            Err(e) => errors.push(format!("{}:0:0: cannot read file: {e}", p.display())),
        }
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(errors)
    }
}

/// Validate `files` as a node would before applying them: parse and
/// validate, then check that the result compiles. The errors, one per line.
pub fn parse_checked(files: &[SourceFile]) -> Result<gateway_config::Config, Vec<String>> {
    let plugins = PluginRegistry::builtin();
    let config = gateway_config::parse(files, &plugins)
        .map_err(|errors| errors.0.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    crate::snapshot::check_compiles(&config, &plugins).map_err(|e| vec![e.to_string()])?;
    Ok(config)
}

/// `validate FILE...`: exit 0 with a one-line summary, or exit 1 with one
/// `file:line:col: path: message` per line on stderr.
pub fn validate(paths: &[PathBuf]) -> ExitCode {
    let errors = match read_files(paths) {
        Ok(files) => match parse_checked(&files) {
            Ok(c) => {
                println!(
                    "ok: {} services, {} routes, {} upstreams, {} consumers, {} plugins (configuration_hash {})",
                    c.services.len(),
                    c.routes.len(),
                    c.upstreams.len(),
                    c.consumers.len(),
                    c.plugins.len(),
                    c.hash()
                );
                return ExitCode::SUCCESS;
            }
            Err(errors) => errors,
        },
        Err(errors) => errors,
    };
    for e in errors {
        eprintln!("{e}");
    }
    ExitCode::FAILURE
}

/// Every flag, argument and subcommand of `cmd` (recursively) that has no
/// help text, as `subcommand path: --flag`. The binaries' tests require it
/// to be empty: `--help` documents everything.
pub fn undocumented(cmd: &clap::Command) -> Vec<String> {
    fn walk(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let builtin = matches!(arg.get_id().as_str(), "help" | "version");
            if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                let name = arg
                    .get_long()
                    .map_or_else(|| arg.get_id().to_string(), |l| format!("--{l}"));
                out.push(format!("{path}: {name}"));
            }
        }
        for sub in cmd.get_subcommands() {
            let sub_path = format!("{path} {}", sub.get_name());
            if sub.get_about().is_none() && sub.get_long_about().is_none() {
                out.push(format!("{sub_path}: (no description)"));
            }
            walk(sub, &sub_path, out);
        }
    }
    let mut out = Vec::new();
    walk(cmd, cmd.get_name(), &mut out);
    out
}
