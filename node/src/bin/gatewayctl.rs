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
    /// A node's Raft/control address (its --raft-listen).
    #[arg(
        long,
        short = 's',
        env = "GATEWAYCTL_SERVER",
        default_value = "127.0.0.1:7000",
        global = true
    )]
    server: String,
    /// Cluster CA (PEM), for mTLS.
    #[arg(long, env = "GATEWAYCTL_TLS_CA", global = true)]
    tls_ca: Option<PathBuf>,
    /// Client certificate (PEM), from `gatewayctl certs issue --client`.
    #[arg(long, env = "GATEWAYCTL_TLS_CERT", global = true)]
    tls_cert: Option<PathBuf>,
    /// Client private key (PEM).
    #[arg(long, env = "GATEWAYCTL_TLS_KEY", global = true)]
    tls_key: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
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
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// A message recorded in the history.
        #[arg(long, short = 'm', default_value = "")]
        message: String,
    },
    /// Serve an earlier version and pin the region to it.
    Rollback {
        /// Version id (commit id or admin-N), or a unique prefix of 7+ characters.
        to: String,
    },
    /// Leave pinned mode: serve the newest version again.
    Resume,
    /// Print a version's normalized config (default: the active one).
    GetConfig { version: Option<String> },
    /// Check config files offline; exit 1 with one error per line.
    Validate {
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
    List,
    /// Join a node as learner, then promote it to voter once caught up.
    Add {
        /// `ID=HOST:PORT` (the new node's --raft-listen address).
        member: String,
    },
    Remove {
        id: u64,
    },
}

#[derive(Subcommand)]
enum CertsCmd {
    /// Create `DIR/ca.pem` and `DIR/ca.key`.
    Init {
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
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
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Validate { files } => return validate(&files),
        Cmd::Certs(c) => certs_cmd(c),
        cmd => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")
            .and_then(|rt| rt.block_on(remote(&cli.conn, cmd))),
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
    paths
        .iter()
        .map(|p| {
            std::fs::read_to_string(p)
                .map(|text| SourceFile {
                    name: p.display().to_string(),
                    text,
                })
                .with_context(|| format!("{}: cannot read file", p.display()))
        })
        .collect()
}

fn validate(paths: &[PathBuf]) -> ExitCode {
    let files = match read_files(paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::FAILURE;
        }
    };
    match gateway_config::parse(&files, &PluginRegistry::builtin()) {
        Ok(c) => {
            println!(
                "ok: {} services, {} routes, {} upstreams (configuration_hash {})",
                c.services.len(),
                c.routes.len(),
                c.upstreams.len(),
                c.hash()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            ExitCode::FAILURE
        }
    }
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

fn dialer(conn: &Conn) -> Result<Dialer> {
    let tls = match (&conn.tls_ca, &conn.tls_cert, &conn.tls_key) {
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
    anyhow::anyhow!("{addr}: {} ({:?})", s.message(), s.code())
}

async fn remote(conn: &Conn, cmd: Cmd) -> Result<()> {
    let dialer = dialer(conn)?;
    let addr = conn.server.as_str();
    let mut c = client(&dialer, addr)?;
    let e = |s| status_err(addr, s);
    match cmd {
        Cmd::Status => {
            let first = c
                .status(pb::StatusRequest {})
                .await
                .map_err(e)?
                .into_inner();
            // Ask every member; a node that does not answer is shown as down.
            let mut rows: BTreeMap<u64, Result<pb::NodeStatus, String>> = BTreeMap::new();
            for m in &first.members {
                let r = if m.id == first.node_id {
                    Ok(first.clone())
                } else {
                    match client(&dialer, &m.addr) {
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
            if conn.json {
                let v: Vec<serde_json::Value> = rows
                    .iter()
                    .map(|(id, r)| match r {
                        Ok(s) => status_json(s),
                        Err(err) => serde_json::json!({"node_id": id, "error": err}),
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            println!("region {}", first.region);
            println!(
                "{:<5} {:<10} {:>5} {:>6} {:>8} {:>8} {:<24} {:<34} {:<9}",
                "NODE",
                "ROLE",
                "TERM",
                "LEADER",
                "LOG",
                "APPLIED",
                "VERSION",
                "CONFIG HASH",
                "MODE"
            );
            for (id, r) in &rows {
                match r {
                    Ok(s) => println!(
                        "{:<5} {:<10} {:>5} {:>6} {:>8} {:>8} {:<24} {:<34} {:<9}{}",
                        s.node_id,
                        s.role,
                        s.term,
                        s.leader_id.map(|l| l.to_string()).unwrap_or("-".into()),
                        s.last_log_index
                            .map(|l| l.to_string())
                            .unwrap_or("-".into()),
                        s.last_applied_index
                            .map(|l| l.to_string())
                            .unwrap_or("-".into()),
                        if s.active_version.is_empty() {
                            "-"
                        } else {
                            &s.active_version
                        },
                        s.configuration_hash,
                        if s.mode == "pinned" {
                            format!("pinned:{}", s.pinned_to)
                        } else {
                            s.mode.clone()
                        },
                        if s.local_error.is_empty() {
                            String::new()
                        } else {
                            format!("  ERROR {}", s.local_error)
                        }
                    ),
                    Err(err) => println!("{id:<5} {:<10} {err}", "down"),
                }
            }
        }
        Cmd::History { limit } => {
            let h = c
                .history(pb::HistoryRequest { limit })
                .await
                .map_err(e)?
                .into_inner();
            if conn.json {
                let v: Vec<serde_json::Value> = h
                    .versions
                    .iter()
                    .map(|v| {
                        serde_json::json!({"id": v.id, "index": v.index, "hash": v.hash, "source": v.source,
                        "commit": v.commit, "author": v.author, "message": v.message, "time": v.time,
                        "active": v.active, "config_kept": v.config_kept})
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"mode": h.mode, "pinned_to": h.pinned_to, "versions": v})
                    )?
                );
                return Ok(());
            }
            println!(
                "mode: {}{}",
                h.mode,
                if h.pinned_to.is_empty() {
                    String::new()
                } else {
                    format!(" (pinned to {})", h.pinned_to)
                }
            );
            println!(
                "{:<2}{:<24} {:>7} {:<6} {:<34} {:<16} MESSAGE",
                "", "VERSION", "INDEX", "SOURCE", "CONFIG HASH", "AUTHOR"
            );
            for v in &h.versions {
                println!(
                    "{:<2}{:<24} {:>7} {:<6} {:<34} {:<16} {}{}",
                    if v.active { "*" } else { "" },
                    v.id,
                    v.index,
                    v.source,
                    v.hash,
                    v.author,
                    v.message.lines().next().unwrap_or(""),
                    if v.config_kept {
                        ""
                    } else {
                        " (config pruned)"
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
        Cmd::Apply { files, message } => {
            let files = read_files(&files)?;
            // Validate here first: errors are listed with file:line:col.
            if let Err(errors) = gateway_config::parse(&files, &PluginRegistry::builtin()) {
                for err in &errors.0 {
                    eprintln!("{err}");
                }
                bail!("{} error(s); nothing was proposed", errors.0.len());
            }
            let author = std::env::var("USER").unwrap_or_else(|_| "gatewayctl".into());
            let req = pb::ProposeConfigRequest {
                files: files
                    .iter()
                    .map(|f| pb::SourceFile {
                        name: f.name.clone(),
                        content: f.text.clone().into_bytes(),
                    })
                    .collect(),
                author,
                message,
                forwarded: false,
            };
            let r = c.propose_config(req).await.map_err(e)?.into_inner();
            print_write("applied", &r);
        }
        Cmd::Rollback { to } => {
            let r = c
                .rollback(pb::RollbackRequest { to })
                .await
                .map_err(e)?
                .into_inner();
            print_write("rolled back; pinned to", &r);
        }
        Cmd::Resume => {
            let r = c
                .resume(pb::ResumeRequest {})
                .await
                .map_err(e)?
                .into_inner();
            print_write("resumed; following, serving", &r);
        }
        Cmd::GetConfig { version } => {
            let r = c
                .get_config(pb::GetConfigRequest {
                    version: version.unwrap_or_default(),
                })
                .await
                .map_err(e)?
                .into_inner();
            println!("{}", r.config);
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
                MembersCmd::Remove { id } => c.remove_member(pb::RemoveMemberRequest { id }).await,
            }
            .map_err(e)?
            .into_inner();
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
        Cmd::Validate { .. } | Cmd::Certs(_) => unreachable!("handled without a server"),
    }
    Ok(())
}

fn print_write(what: &str, r: &pb::WriteReply) {
    println!(
        "{what} {} (raft index {}, configuration_hash {}{})",
        r.active_version,
        r.index,
        r.configuration_hash,
        if r.changed { "" } else { ", unchanged" }
    );
}

fn status_json(s: &pb::NodeStatus) -> serde_json::Value {
    serde_json::json!({
        "region": s.region, "node_id": s.node_id, "role": s.role, "term": s.term,
        "leader_id": s.leader_id, "last_log_index": s.last_log_index,
        "last_applied_index": s.last_applied_index, "active_version": s.active_version,
        "configuration_hash": s.configuration_hash, "mode": s.mode, "pinned_to": s.pinned_to,
        "local_error": s.local_error, "raft_addr": s.raft_addr,
    })
}
