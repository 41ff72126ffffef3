//! `gatewayctl`: operate a region through any node's control service.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use gateway_config::SourceFile;
use gateway_node::certs::{self, CertKind, ClusterTlsFiles};
use gateway_node::plugins::PluginRegistry;
use gateway_proto::control::control_client::ControlClient;
use gateway_proto::control::{self as pb};
use gateway_raft::network::{Dialer, MAX_MESSAGE_BYTES};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

#[derive(Parser)]
#[command(
    name = "gatewayctl",
    version,
    about = "Operate a gateway region: status, history, apply, rollback, members, certs"
)]
struct Cli {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Args)]
struct Conn {
    /// A node's Raft/control address (its --raft-listen). Default: the
    /// current context of the contexts file, else 127.0.0.1:7000.
    #[arg(long, short = 's', env = "GATEWAYCTL_SERVER", global = true)]
    server: Option<String>,
    /// A context (region) of the contexts file.
    #[arg(
        long,
        env = "GATEWAYCTL_CONTEXT",
        global = true,
        conflicts_with = "server"
    )]
    context: Option<String>,
    /// Every context of the contexts file (status, history, rollback, resume).
    #[arg(long, global = true, conflicts_with_all = ["server", "context"])]
    all_regions: bool,
    /// The contexts file (like a kubeconfig): `current-context` and
    /// `contexts: [{name, server, tls-ca, tls-cert, tls-key}]`.
    /// Default: ~/.config/gatewayctl/config.yaml.
    #[arg(long, env = "GATEWAYCTL_CONFIG", global = true)]
    contexts_file: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', global = true, default_value = "table", value_parser = ["table", "json", "yaml"])]
    output: String,
    /// Cluster CA (PEM), for mTLS.
    #[arg(long, env = "GATEWAYCTL_TLS_CA", global = true)]
    tls_ca: Option<PathBuf>,
    /// Client certificate (PEM), from `gatewayctl certs issue --client`.
    #[arg(long, env = "GATEWAYCTL_TLS_CERT", global = true)]
    tls_cert: Option<PathBuf>,
    /// Client private key (PEM).
    #[arg(long, env = "GATEWAYCTL_TLS_KEY", global = true)]
    tls_key: Option<PathBuf>,
    /// Same as `--output json`.
    #[arg(long, global = true, hide = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// What every node of the region serves: role, term, leader, applied
    /// index, active version, configuration hash, mode.
    Status,
    /// The config versions of the region, newest first, and rejected commits.
    History {
        /// Show at most N versions (0 = all).
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Validate config files here, then commit them to the region (without
    /// Git). Answers once committed.
    Apply {
        /// Config files (Kong declarative YAML or JSON), merged into one.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// A message recorded in the history.
        #[arg(long, short = 'm', default_value = "")]
        message: String,
    },
    /// Serve an earlier version and pin the region to it (new pushes are
    /// fetched and validated but stay pending until `resume`).
    Rollback {
        /// A version id or unique prefix (7+ characters); with Git also a
        /// full or short sha, `HEAD~N`, or a tag.
        to: String,
        /// Why, recorded in the history with who and when.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Leave pinned mode: serve the newest version (the branch head) again.
    Resume {
        /// Why, recorded in the history with who and when.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Semantic diff of two versions' configs (services, routes, upstreams,
    /// targets, consumers, plugins, certificates: added, removed, changed
    /// fields).
    Diff {
        /// The older version: a version id or unique prefix (7+ characters).
        from: String,
        /// The newer version, likewise.
        to: String,
    },
    /// Print a version's normalized config (default: the active one).
    GetConfig {
        /// A version id or unique prefix (7+ characters).
        version: Option<String>,
    },
    /// Check config files offline, as a node would before applying them
    /// (validation and compile); exit 1 with one error per line.
    Validate {
        /// Config files (Kong declarative YAML or JSON), merged into one.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List, add or remove region members.
    #[command(subcommand)]
    Members(MembersCmd),
    /// Create the cluster CA and issue node and client certificates.
    #[command(subcommand)]
    Certs(CertsCmd),
}

#[derive(Subcommand)]
enum MembersCmd {
    /// Show the region's members.
    List,
    /// Join a node as learner, then promote it to voter once caught up.
    Add {
        /// `ID=HOST:PORT` (the new node's --raft-listen address).
        member: String,
    },
    /// Remove a member (voter or learner) from the region.
    Remove {
        /// The member's node id.
        id: u64,
    },
}

#[derive(Subcommand)]
enum CertsCmd {
    /// Create `DIR/ca.pem` and `DIR/ca.key`.
    Init {
        /// Directory to write the CA into.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// The CA certificate's common name.
        #[arg(long, default_value = "gateway cluster CA")]
        name: String,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// Issue `DIR/NAME.pem` + `DIR/NAME.key`, signed by the CA in DIR.
    Issue {
        /// A node certificate (server + client auth) for this name.
        #[arg(long, conflicts_with = "client", required_unless_present = "client")]
        node: Option<String>,
        /// A client certificate (client auth only), e.g. for gatewayctl.
        #[arg(long)]
        client: Option<String>,
        /// Extra subject alternative names (DNS names or IPs), repeatable.
        #[arg(long)]
        san: Vec<String>,
        /// Directory holding the CA, where the certificate is written.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Validate { files } => return gateway_node::cli::validate(&files),
        Cmd::Certs(c) => certs_cmd(c),
        cmd => {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")
                .and_then(|rt| rt.block_on(remote(&cli.conn, cmd)));
            return match result {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("gatewayctl: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatewayctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn read_files(paths: &[PathBuf]) -> Result<Vec<SourceFile>> {
    gateway_node::cli::read_files(paths).map_err(|errors| anyhow::anyhow!("{}", errors.join("\n")))
}

fn certs_cmd(cmd: CertsCmd) -> Result<()> {
    match cmd {
        CertsCmd::Init { dir, name, force } => {
            let ca = certs::init_ca(&dir, &name, force)?;
            println!(
                "wrote {} and {} (keep the key secret)",
                ca.cert.display(),
                ca.key.display()
            );
        }
        CertsCmd::Issue {
            node,
            client,
            san,
            dir,
            force,
        } => {
            let (kind, name) = match (node, client) {
                (Some(n), _) => (CertKind::Node, n),
                (None, Some(c)) => (CertKind::Client, c),
                (None, None) => bail!("give --node NAME or --client NAME"),
            };
            let out = certs::issue(&dir, kind, &name, &san, force)?;
            println!(
                "wrote {} certificate {} and key {} (SANs: {})",
                out.kind,
                out.cert.display(),
                out.key.display(),
                out.subject_alt_names.join(", ")
            );
        }
    }
    Ok(())
}

/// One region to talk to: a context of the contexts file, or `--server`.
struct Target {
    label: String,
    server: String,
    tls: (Option<PathBuf>, Option<PathBuf>, Option<PathBuf>),
}

fn default_contexts_file() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/gatewayctl/config.yaml"))
}

fn targets(conn: &Conn) -> Result<Vec<Target>> {
    let flag_tls = (
        conn.tls_ca.clone(),
        conn.tls_cert.clone(),
        conn.tls_key.clone(),
    );
    if let Some(server) = &conn.server {
        return Ok(vec![Target {
            label: String::new(),
            server: server.clone(),
            tls: flag_tls,
        }]);
    }
    let explicit = conn.contexts_file.is_some();
    let file = conn.contexts_file.clone().or_else(default_contexts_file);
    let text = match &file {
        Some(f) => match std::fs::read_to_string(f) {
            Ok(t) => Some(t),
            Err(e) if explicit || conn.context.is_some() || conn.all_regions => {
                bail!("contexts file {}: {e}", f.display())
            }
            Err(_) => None,
        },
        None => None,
    };
    let Some(text) = text else {
        return Ok(vec![Target {
            label: String::new(),
            server: "127.0.0.1:7000".into(),
            tls: flag_tls,
        }]);
    };
    let name = file
        .as_ref()
        .map(|f| f.display().to_string())
        .unwrap_or_default();
    let doc = gateway_config::yaml_to_json(&name, &text).map_err(|e| anyhow::anyhow!(e))?;
    let mut all = Vec::new();
    for (i, c) in doc["contexts"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .enumerate()
    {
        let field = |k: &str| c[k].as_str().map(str::to_owned);
        let cname =
            field("name").with_context(|| format!("{name}: contexts[{i}]: missing name"))?;
        let server = field("server")
            .with_context(|| format!("{name}: contexts[{i}] ({cname}): missing server"))?;
        let path = |k: &str| field(k).map(PathBuf::from);
        let tls = (
            path("tls-ca").or(flag_tls.0.clone()),
            path("tls-cert").or(flag_tls.1.clone()),
            path("tls-key").or(flag_tls.2.clone()),
        );
        all.push(Target {
            label: cname,
            server,
            tls,
        });
    }
    if all.is_empty() {
        bail!("{name}: no contexts");
    }
    if conn.all_regions {
        return Ok(all);
    }
    let want = conn
        .context
        .clone()
        .or_else(|| doc["current-context"].as_str().map(str::to_owned))
        .with_context(|| {
            format!("{name}: no current-context; give --context NAME or --all-regions")
        })?;
    let names: Vec<String> = all.iter().map(|t| t.label.clone()).collect();
    all.into_iter()
        .find(|t| t.label == want)
        .map(|t| vec![t])
        .with_context(|| format!("{name}: no context {want:?} (have: {})", names.join(", ")))
}

fn dialer(tls: &(Option<PathBuf>, Option<PathBuf>, Option<PathBuf>)) -> Result<Dialer> {
    let tls = match tls {
        (None, None, None) => None,
        (Some(ca), Some(cert), Some(key)) => {
            let pem = ClusterTlsFiles {
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            }
            .load()?;
            Some(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(&pem.ca))
                    .identity(Identity::from_pem(&pem.cert, &pem.key)),
            )
        }
        _ => bail!("mTLS needs all of --tls-ca, --tls-cert and --tls-key"),
    };
    Ok(Dialer::new(tls))
}

fn client(dialer: &Dialer, addr: &str) -> Result<ControlClient<Channel>> {
    let ch = dialer.channel(addr)?;
    Ok(ControlClient::new(ch)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

fn status_err(addr: &str, s: tonic::Status) -> anyhow::Error {
    let code = match s.code() {
        tonic::Code::InvalidArgument => "invalid",
        tonic::Code::FailedPrecondition => "refused",
        tonic::Code::Unavailable => "unavailable",
        tonic::Code::NotFound => "not found",
        tonic::Code::ResourceExhausted => "too large",
        _ => "error",
    };
    anyhow::anyhow!("{addr}: {code}: {}", s.message())
}

/// Exit code when the command worked but the region is degraded (a node
/// down, nodes disagreeing, Git stale).
const DEGRADED: u8 = 3;

fn who() -> String {
    std::env::var("USER").unwrap_or_else(|_| "gatewayctl".into())
}

async fn remote(conn: &Conn, cmd: Cmd) -> Result<ExitCode> {
    let yaml = conn.output == "yaml";
    let json = conn.json || conn.output == "json" || yaml;
    let targets = targets(conn)?;
    let multi = targets.len() > 1;
    if multi
        && !matches!(
            cmd,
            Cmd::Status | Cmd::History { .. } | Cmd::Rollback { .. } | Cmd::Resume { .. }
        )
    {
        bail!("--all-regions works with status, history, rollback and resume");
    }
    let mut degraded = false;
    let mut out_json = Vec::new();
    for t in &targets {
        let dialer = dialer(&t.tls)?;
        let addr = t.server.as_str();
        let mut c = client(&dialer, addr)?;
        let e = |s| status_err(addr, s);
        let v = match &cmd {
            Cmd::Status => {
                let (v, bad) = status(&dialer, &mut c, addr, json).await?;
                degraded |= bad;
                v
            }
            Cmd::History { limit } => {
                let h = c
                    .history(pb::HistoryRequest { limit: *limit })
                    .await
                    .map_err(e)?
                    .into_inner();
                if !json {
                    print_history(&h);
                }
                history_json(&h)
            }
            Cmd::Apply { files, message } => {
                let files = read_files(files)?;
                // Validate here first: errors are listed with file:line:col.
                if let Err(errors) = gateway_node::cli::parse_checked(&files) {
                    for err in &errors {
                        eprintln!("{err}");
                    }
                    bail!("{} error(s); nothing was proposed", errors.len());
                }
                let req = pb::ProposeConfigRequest {
                    files: files
                        .iter()
                        .map(|f| pb::SourceFile {
                            name: f.name.clone(),
                            content: f.text.clone().into_bytes(),
                        })
                        .collect(),
                    author: who(),
                    message: message.clone(),
                    forwarded: false,
                };
                let r = c.propose_config(req).await.map_err(e)?.into_inner();
                write_reply("applied", &r, json)
            }
            Cmd::Rollback { to, reason } => {
                let req = pb::RollbackRequest {
                    to: to.clone(),
                    by: who(),
                    reason: reason.clone(),
                };
                let r = c.rollback(req).await.map_err(e)?.into_inner();
                write_reply("rolled back; pinned to", &r, json)
            }
            Cmd::Resume { reason } => {
                let r = c
                    .resume(pb::ResumeRequest {
                        by: who(),
                        reason: reason.clone(),
                    })
                    .await
                    .map_err(e)?
                    .into_inner();
                write_reply("resumed; following, serving", &r, json)
            }
            Cmd::GetConfig { version } => {
                let r = c
                    .get_config(pb::GetConfigRequest {
                        version: version.clone().unwrap_or_default(),
                    })
                    .await
                    .map_err(e)?
                    .into_inner();
                println!("{}", r.config);
                serde_json::Value::Null
            }
            Cmd::Diff { from, to } => {
                let mut configs = Vec::new();
                for rev in [from, to] {
                    let r = c
                        .get_config(pb::GetConfigRequest {
                            version: rev.clone(),
                        })
                        .await
                        .map_err(e)?
                        .into_inner();
                    let file = SourceFile {
                        name: format!("version {}", r.version),
                        text: r.config,
                    };
                    let config = gateway_config::parse(&[file], &PluginRegistry::builtin())
                        .map_err(|errs| anyhow::anyhow!("version {rev}: {errs}"))?;
                    configs.push(config);
                }
                let d = gateway_config::diff(&configs[0], &configs[1]);
                if !json {
                    println!("{d}");
                }
                serde_json::to_value(&d)?
            }
            Cmd::Members(m) => {
                let reply = match m {
                    MembersCmd::List => c.members(pb::MembersRequest {}).await,
                    MembersCmd::Add { member } => {
                        let (id, maddr) = member
                            .split_once('=')
                            .context("members add: give ID=HOST:PORT")?;
                        let id: u64 = id
                            .parse()
                            .with_context(|| format!("members add: {id:?} is not a node id"))?;
                        c.add_member(pb::AddMemberRequest {
                            id,
                            addr: maddr.to_string(),
                        })
                        .await
                    }
                    MembersCmd::Remove { id } => {
                        c.remove_member(pb::RemoveMemberRequest { id: *id }).await
                    }
                }
                .map_err(e)?
                .into_inner();
                if !json {
                    for m in &reply.members {
                        println!(
                            "{:<5} {:<24} {}{}",
                            m.id,
                            m.addr,
                            if m.voter { "voter" } else { "learner" },
                            if reply.leader_id == Some(m.id) {
                                " (leader)"
                            } else {
                                ""
                            }
                        );
                    }
                }
                serde_json::json!(reply
                    .members
                    .iter()
                    .map(|m| serde_json::json!({"id": m.id, "addr": m.addr, "voter": m.voter, "leader": reply.leader_id == Some(m.id)}))
                    .collect::<Vec<_>>())
            }
            Cmd::Validate { .. } | Cmd::Certs(_) => unreachable!("handled without a server"),
        };
        out_json.push(if multi {
            serde_json::json!({"context": t.label, "result": v})
        } else {
            v
        });
    }
    if json {
        let v = if multi {
            serde_json::Value::Array(out_json)
        } else {
            out_json.pop().unwrap_or_default()
        };
        if yaml {
            let mut out = String::new();
            to_yaml(&v, 0, &mut out);
            print!("{out}");
        } else {
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
    }
    Ok(if degraded {
        ExitCode::from(DEGRADED)
    } else {
        ExitCode::SUCCESS
    })
}

/// Ask every member of the region; print one row per node. Returns the JSON
/// and whether the region is degraded.
async fn status(
    dialer: &Dialer,
    c: &mut ControlClient<Channel>,
    addr: &str,
    json: bool,
) -> Result<(serde_json::Value, bool)> {
    let first = c
        .status(pb::StatusRequest {})
        .await
        .map_err(|s| status_err(addr, s))?
        .into_inner();
    let mut rows: BTreeMap<u64, Result<pb::NodeStatus, String>> = BTreeMap::new();
    for m in &first.members {
        let r = if m.id == first.node_id {
            Ok(first.clone())
        } else {
            match client(dialer, &m.addr) {
                Ok(mut mc) => {
                    let mut req = tonic::Request::new(pb::StatusRequest {});
                    req.set_timeout(std::time::Duration::from_secs(2));
                    mc.status(req)
                        .await
                        .map(|r| r.into_inner())
                        .map_err(|s| s.message().to_string())
                }
                Err(err) => Err(err.to_string()),
            }
        };
        rows.insert(m.id, r);
    }
    if rows.is_empty() {
        rows.insert(first.node_id, Ok(first.clone()));
    }
    let up: Vec<&pb::NodeStatus> = rows.values().filter_map(|r| r.as_ref().ok()).collect();
    let hashes: std::collections::BTreeSet<&str> =
        up.iter().map(|s| s.configuration_hash.as_str()).collect();
    let disagree = hashes.len() > 1;
    let leader_log = up
        .iter()
        .find(|s| s.role == "leader")
        .and_then(|s| s.last_log_index);
    let stale = up
        .iter()
        .any(|s| s.git.as_ref().is_some_and(|g| g.stale_since != 0));
    let down = rows.values().any(|r| r.is_err());
    let degraded = disagree || down || stale;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    if !json {
        println!("region {}", first.region);
        println!(
            "{:<1}{:<4} {:<9} {:>6} {:<10} {:<28} {:<14} {:<32} {:>5} {:<9} {:<5}",
            "",
            "NODE",
            "ROLE",
            "LEADER",
            "VERSION",
            "SUBJECT",
            "MODE",
            "CONFIG HASH",
            "LAG",
            "FETCHED",
            "READY"
        );
        let majority =
            up.iter()
                .map(|s| s.configuration_hash.as_str())
                .fold(BTreeMap::new(), |mut m, h| {
                    *m.entry(h).or_insert(0) += 1;
                    m
                });
        let common = majority
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(h, _)| *h)
            .unwrap_or("");
        for (id, r) in &rows {
            match r {
                Ok(s) => {
                    let version = if s.active_version.len() == 40 {
                        &s.active_version[..8]
                    } else {
                        &s.active_version
                    };
                    let lag = match (leader_log, s.last_applied_index) {
                        (Some(l), Some(a)) => l.saturating_sub(a).to_string(),
                        _ => "-".into(),
                    };
                    let fetched = match &s.git {
                        Some(g) if g.stale_since != 0 => format!("STALE {}s", now - g.stale_since),
                        Some(g) if g.last_fetch != 0 => format!("{}s ago", now - g.last_fetch),
                        _ => "-".into(),
                    };
                    let mode = if s.mode == "pinned" {
                        let p = if s.pinned_to.len() == 40 {
                            &s.pinned_to[..8]
                        } else {
                            &s.pinned_to
                        };
                        format!("pinned:{p}")
                    } else {
                        s.mode.clone()
                    };
                    println!(
                        "{:<1}{:<4} {:<9} {:>6} {:<10} {:<28} {:<14} {:<32} {:>5} {:<9} {:<5}{}",
                        if disagree && s.configuration_hash != common {
                            "!"
                        } else {
                            ""
                        },
                        s.node_id,
                        s.role,
                        s.leader_id.map(|l| l.to_string()).unwrap_or("-".into()),
                        if version.is_empty() { "-" } else { version },
                        s.active_subject.chars().take(28).collect::<String>(),
                        mode,
                        s.configuration_hash,
                        lag,
                        fetched,
                        if s.ready { "yes" } else { "no" },
                        if s.local_error.is_empty() {
                            String::new()
                        } else {
                            format!("  ERROR {}", s.local_error)
                        }
                    );
                }
                Err(err) => println!(" {id:<4} {:<9} {err}", "down"),
            }
        }
        if disagree {
            println!(
                "! nodes disagree on the served config (hashes: {})",
                hashes.into_iter().collect::<Vec<_>>().join(", ")
            );
        }
        if let Some(g) = up
            .iter()
            .find_map(|s| s.git.as_ref().filter(|g| !g.last_error.is_empty()))
        {
            println!(
                "git: {} ({} {}): {}",
                if g.stale_since != 0 {
                    "STALE"
                } else {
                    "warning"
                },
                g.url,
                g.branch,
                g.last_error
            );
        }
        let pending = up.iter().map(|s| s.pending).max().unwrap_or(0);
        if pending > 0 {
            println!("{pending} version(s) pending while pinned: `gatewayctl resume` to apply the branch head");
        }
    }
    // A commit rejected after the served version: show it and its errors.
    let history = c
        .history(pb::HistoryRequest { limit: 1 })
        .await
        .ok()
        .map(|h| h.into_inner());
    let served_index = history
        .as_ref()
        .and_then(|h| h.versions.first())
        .map(|v| v.index)
        .unwrap_or(0);
    let last_rejected = history
        .as_ref()
        .and_then(|h| h.rejected.first())
        .filter(|r| r.index > served_index)
        .cloned();
    if let (false, Some(r)) = (json, &last_rejected) {
        let short = if r.commit.len() == 40 {
            &r.commit[..8]
        } else {
            &r.commit
        };
        println!("rejected commit {short} (newer than the served config; still serving the last valid one):");
        for err in r.errors.iter().take(5) {
            println!("    {err}");
        }
        if r.errors.len() > 5 {
            println!("    ... {} more (gatewayctl history)", r.errors.len() - 5);
        }
    }
    let v = serde_json::json!({
        "region": first.region,
        "disagree": disagree,
        "last_rejected": last_rejected.as_ref().map(|r| serde_json::json!({"commit": r.commit, "index": r.index, "errors": r.errors})),
        "nodes": rows.iter().map(|(id, r)| match r {
            Ok(s) => status_json(s),
            Err(err) => serde_json::json!({"node_id": id, "role": "down", "error": err}),
        }).collect::<Vec<_>>(),
    });
    Ok((v, degraded))
}

fn print_history(h: &pb::HistoryReply) {
    println!(
        "mode: {}{}",
        h.mode,
        if h.pinned_to.is_empty() {
            String::new()
        } else {
            format!(" (pinned to {})", h.pinned_to)
        }
    );
    println!("full configs kept: the newest {}", h.keep_configs);
    println!(
        "{:<2}{:<12} {:>7} {:<6} {:<32} {:<24} {:<20} MESSAGE",
        "", "VERSION", "INDEX", "SOURCE", "CONFIG HASH", "AUTHOR", "TIME"
    );
    for v in &h.versions {
        let id = if v.id.len() == 40 { &v.id[..10] } else { &v.id };
        println!(
            "{:<2}{:<12} {:>7} {:<6} {:<32} {:<24} {:<20} {}{}{}",
            if v.active { "*" } else { "" },
            id,
            v.index,
            v.source,
            v.hash,
            v.author.chars().take(24).collect::<String>(),
            fmt_time(v.time),
            v.message.lines().next().unwrap_or(""),
            if h.pending.contains(&v.id) {
                " (pending)"
            } else {
                ""
            },
            if v.config_kept {
                ""
            } else {
                " (config pruned)"
            }
        );
    }
    for e in &h.events {
        println!(
            "{} at index {} by {} ({}): now serving {}{}",
            e.kind,
            e.index,
            e.by,
            fmt_time(e.time),
            e.version,
            if e.reason.is_empty() {
                String::new()
            } else {
                format!(", reason: {}", e.reason)
            }
        );
    }
    for r in &h.rejected {
        println!("rejected {} at index {}:", r.commit, r.index);
        for err in &r.errors {
            println!("    {err}");
        }
    }
}

fn history_json(h: &pb::HistoryReply) -> serde_json::Value {
    serde_json::json!({
        "mode": h.mode,
        "pinned_to": h.pinned_to,
        "pending": h.pending,
        "keep_configs": h.keep_configs,
        "versions": h.versions.iter().map(|v| serde_json::json!({
            "id": v.id, "index": v.index, "hash": v.hash, "source": v.source, "commit": v.commit,
            "parent": v.parent, "author": v.author, "message": v.message, "time": v.time,
            "active": v.active, "config_kept": v.config_kept})).collect::<Vec<_>>(),
        "events": h.events.iter().map(|e| serde_json::json!({
            "index": e.index, "kind": e.kind, "version": e.version, "by": e.by, "reason": e.reason, "time": e.time})).collect::<Vec<_>>(),
        "rejected": h.rejected.iter().map(|r| serde_json::json!({
            "commit": r.commit, "index": r.index, "errors": r.errors})).collect::<Vec<_>>(),
    })
}

/// Block-style YAML for a JSON value (strings JSON-quoted, which YAML reads).
fn to_yaml(v: &serde_json::Value, indent: usize, out: &mut String) {
    use serde_json::Value as J;
    let pad = " ".repeat(indent);
    match v {
        J::Object(m) if !m.is_empty() => {
            for (k, val) in m {
                match val {
                    J::Object(c) if !c.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        to_yaml(val, indent + 2, out);
                    }
                    J::Array(a) if !a.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        to_yaml(val, indent, out);
                    }
                    _ => out.push_str(&format!("{pad}{k}: {}\n", scalar(val))),
                }
            }
        }
        J::Array(a) if !a.is_empty() => {
            for item in a {
                match item {
                    J::Object(c) if !c.is_empty() => {
                        let mut inner = String::new();
                        to_yaml(item, indent + 2, &mut inner);
                        let inner = inner.replacen(&" ".repeat(indent + 2), &format!("{pad}- "), 1);
                        out.push_str(&inner);
                    }
                    J::Array(x) if !x.is_empty() => {
                        out.push_str(&format!("{pad}-\n"));
                        to_yaml(item, indent + 2, out);
                    }
                    _ => out.push_str(&format!("{pad}- {}\n", scalar(item))),
                }
            }
        }
        _ => out.push_str(&format!("{pad}{}\n", scalar(v))),
    }
}

fn scalar(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Object(_) => "{}".into(),
        serde_json::Value::Array(_) => "[]".into(),
        other => other.to_string(),
    }
}

/// UTC `YYYY-MM-DD HH:MM` from unix seconds.
fn fmt_time(t: i64) -> String {
    if t <= 0 {
        return "-".into();
    }
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        secs / 3600,
        (secs % 3600) / 60
    )
}

fn write_reply(what: &str, r: &pb::WriteReply, json: bool) -> serde_json::Value {
    if !json {
        println!(
            "{what} {} (raft index {}, configuration_hash {}{})",
            r.active_version,
            r.index,
            r.configuration_hash,
            if r.changed { "" } else { ", unchanged" }
        );
    }
    serde_json::json!({"active_version": r.active_version, "index": r.index,
        "configuration_hash": r.configuration_hash, "changed": r.changed})
}

fn status_json(s: &pb::NodeStatus) -> serde_json::Value {
    serde_json::json!({
        "region": s.region, "node_id": s.node_id, "role": s.role, "term": s.term,
        "leader_id": s.leader_id, "last_log_index": s.last_log_index,
        "last_applied_index": s.last_applied_index, "active_version": s.active_version,
        "active_subject": s.active_subject, "ready": s.ready, "pending": s.pending,
        "configuration_hash": s.configuration_hash, "mode": s.mode, "pinned_to": s.pinned_to,
        "local_error": s.local_error, "raft_addr": s.raft_addr,
        "git": s.git.as_ref().map(|g| serde_json::json!({
            "url": g.url, "branch": g.branch, "head": g.head, "last_fetch": g.last_fetch,
            "stale_since": g.stale_since, "last_error": g.last_error, "last_commit": g.last_commit})),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_documents_every_flag_and_subcommand() {
        use clap::CommandFactory;
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        assert_eq!(gateway_node::cli::undocumented(&cmd), Vec::<String>::new());
    }

    #[test]
    fn yaml_output_reads_back_as_the_same_value() {
        let v = serde_json::json!({
            "region": "eu", "disagree": false, "empty": [], "none": null,
            "nodes": [{"node_id": 1, "git": {"url": "file:///r", "head": "ab"}, "tags": ["a", "b"]}, {"node_id": 2}],
            "nested": {"a": {"b": [1, [2, 3]]}},
        });
        let mut out = String::new();
        to_yaml(&v, 0, &mut out);
        let back = gateway_config::yaml_to_json("out", &out).expect("valid yaml");
        assert_eq!(back, v, "{out}");
    }

    #[test]
    fn time_formatting() {
        assert_eq!(fmt_time(0), "-");
        assert_eq!(fmt_time(1_764_633_600), "2025-12-02 00:00");
        assert_eq!(fmt_time(951_782_400 + 3_723), "2000-02-29 01:02");
    }
}
