//! `gateway`: run a node, validate configs, or run the demo.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use gateway_config::SourceFile;
use gateway_node::app::{new_live_config, Node, NodeOptions};
use gateway_node::cluster::{Cluster, ClusterOptions};
use gateway_node::demo;
use gateway_node::proxy::forward::{PortMaps, TrustedProxies};
use gateway_node::proxy::server::{HttpLimits, Shutdown};
use gateway_node::proxy::ProxySettings;
use gateway_node::snapshot::LiveConfig;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// mimalloc as the global allocator (feature `mimalloc`): fewer
/// instructions per allocation than glibc on the proxy path, and it returns
/// freed memory to the OS by itself (docs/benchmarks.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "gateway",
    version,
    about = "A GitOps API gateway node that speaks Kong's declarative config"
)]
struct Cli {
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `gateway_node=debug`.
    #[arg(long, env = "GATEWAY_LOG", default_value = "info", global = true)]
    log: String,
    /// Log format.
    #[arg(long, env = "GATEWAY_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"], global = true)]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a gateway node serving a declarative config file (standalone
    /// mode). SIGHUP re-reads the files; SIGTERM/SIGINT drain and exit 0.
    Run(Box<RunArgs>),
    /// Check config files offline with the node's own validator. Exit 0 when
    /// valid; exit 1 with one `file:line:col: path: message` per line.
    Validate {
        /// One or more YAML/JSON files, merged into one config.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Start two demo services (foo, bar) and a gateway routing /foo and /bar
    /// to them, then print curl commands to try.
    Demo(DemoArgs),
}

#[derive(Args, Clone)]
struct ServeArgs {
    /// Address of the proxy listener.
    #[arg(long, env = "GATEWAY_PROXY_LISTEN", default_value = "0.0.0.0:8000")]
    proxy_listen: SocketAddr,
    /// Address of the admin API (keep it on loopback unless protected).
    #[arg(long, env = "GATEWAY_ADMIN_LISTEN", default_value = "127.0.0.1:8001")]
    admin_listen: SocketAddr,
    /// Front proxies whose X-Forwarded-* headers are trusted (comma-separated
    /// IPs/CIDRs, Kong's `trusted_ips`). Default: none.
    #[arg(long, env = "GATEWAY_TRUSTED_IPS", default_value = "")]
    trusted_ips: String,
    /// Ports clients connect to in front of the gateway, as Kong's
    /// `port_maps`: comma-separated `PUBLIC:LISTENER` pairs, e.g.
    /// `80:8000,443:8443` when a NodePort or load balancer forwards 80 to the
    /// proxy's 8000. `X-Forwarded-Port` reports the public port. Default:
    /// none (the listener's own port).
    #[arg(long, env = "GATEWAY_PORT_MAPS", default_value = "")]
    port_maps: String,
    /// Largest request body in bytes; 0 = unlimited (Kong's default). Larger
    /// bodies get 413.
    #[arg(long, env = "GATEWAY_MAX_BODY_SIZE", default_value_t = 0)]
    max_body_size: u64,
    /// Largest request header section in bytes (min 8192). Larger gets 431.
    #[arg(long, env = "GATEWAY_MAX_HEADER_SIZE", default_value_t = 32 * 1024)]
    max_header_size: usize,
    /// Serve every request on the general (hyper) path, never on the direct
    /// HTTP/1.1 path (see docs/proxy.md, "Two request paths"). For
    /// comparisons and as a switch should the direct path misbehave.
    #[arg(long, env = "GATEWAY_NO_DIRECT_PATH", value_parser = clap::builder::BoolishValueParser::new())]
    no_direct_path: bool,
    /// Seconds a client may take to send its request headers.
    #[arg(long, env = "GATEWAY_HEADER_READ_TIMEOUT", default_value_t = 30.0)]
    header_read_timeout: f64,
    /// Seconds allowed between two chunks of a client's request body.
    #[arg(long, env = "GATEWAY_CLIENT_BODY_TIMEOUT", default_value_t = 60.0)]
    client_body_timeout: f64,
    /// Idle keep-alive connections kept per upstream peer (address and port);
    /// 0 closes every upstream connection after its response.
    #[arg(
        long,
        env = "GATEWAY_UPSTREAM_KEEPALIVE_POOL_SIZE",
        default_value_t = 256
    )]
    upstream_keepalive_pool_size: usize,
    /// Seconds an idle upstream keep-alive connection is kept before the
    /// gateway closes it. Set it below the upstreams' own keep-alive timeout
    /// (5 s in Node.js, for one) so that the gateway, not the upstream,
    /// closes idle connections.
    #[arg(
        long,
        env = "GATEWAY_UPSTREAM_KEEPALIVE_IDLE_TIMEOUT",
        default_value_t = 60.0
    )]
    upstream_keepalive_idle_timeout: f64,
    /// Seconds in-flight requests get to finish on SIGTERM/SIGINT.
    #[arg(long, env = "GATEWAY_DRAIN_TIMEOUT", default_value_t = 10.0)]
    drain_timeout: f64,
    /// Node id. Cluster mode: the numeric Raft id (default: the ordinal of a
    /// StatefulSet hostname, `gw-eu-2` → 2). Standalone: shown by the admin
    /// API (default: the hostname).
    #[arg(long, env = "GATEWAY_NODE_ID")]
    node_id: Option<String>,
}

#[derive(Args)]
struct RunArgs {
    /// Declarative config file(s) (Kong `_format_version: "3.0"`), merged.
    /// Standalone mode only; in cluster mode (`--region`) configs arrive
    /// through Raft (`POST /config`, `gatewayctl apply`, or Git).
    #[arg(
        long,
        short = 'c',
        env = "GATEWAY_CONFIG",
        value_delimiter = ',',
        required_unless_present = "region",
        conflicts_with = "region"
    )]
    config: Vec<PathBuf>,
    #[command(flatten)]
    serve: ServeArgs,
    #[command(flatten)]
    cluster: ClusterArgs,
}

#[derive(Args)]
struct ClusterArgs {
    /// Region this node belongs to: runs the node in cluster mode, as a
    /// member of the region's Raft group.
    #[arg(long, env = "GATEWAY_REGION")]
    region: Option<String>,
    /// Directory of this node's durable store (Raft log, config history).
    #[arg(long, env = "GATEWAY_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// Address of the Raft and control gRPC service (`gatewayctl --server`).
    #[arg(long, env = "GATEWAY_RAFT_LISTEN", default_value = "127.0.0.1:7000")]
    raft_listen: SocketAddr,
    /// The region's voters at bootstrap, this node included:
    /// `1=host:port,2=host:port,3=host:port`. When no peer has an initialized
    /// group, the lowest id initializes it with all of them.
    #[arg(long, env = "GATEWAY_PEERS", default_value = "")]
    peers: String,
    /// Full configs the region keeps in its history (older versions keep
    /// metadata only). Region-wide: while this node leads, it commits this
    /// value for every node.
    #[arg(long, env = "GATEWAY_KEEP_CONFIGS", default_value_t = 100)]
    keep_configs: usize,
    /// Snapshot the store and compact the Raft log every N entries.
    #[arg(long, env = "GATEWAY_SNAPSHOT_LOGS", default_value_t = 1000)]
    snapshot_logs: u64,
    /// Largest config a proposal may carry, in bytes.
    #[arg(long, env = "GATEWAY_MAX_CONFIG_BYTES", default_value_t = 16 * 1024 * 1024)]
    max_config_bytes: usize,
    /// Largest compressed config one Raft entry may carry, in bytes. A
    /// follower must receive and fsync an entry within one heartbeat
    /// (--heartbeat-ms), so raise both together.
    #[arg(long, env = "GATEWAY_MAX_ENTRY_BYTES", default_value_t = gateway_raft::packed::MAX_PACKED_BYTES)]
    max_entry_bytes: usize,
    /// Cluster CA (PEM) for mTLS between nodes and with gatewayctl.
    #[arg(long, env = "GATEWAY_TLS_CA", requires_all = ["tls_cert", "tls_key"])]
    tls_ca: Option<PathBuf>,
    /// This node's certificate (PEM), issued by `gatewayctl certs issue --node`.
    #[arg(long, env = "GATEWAY_TLS_CERT", requires = "tls_ca")]
    tls_cert: Option<PathBuf>,
    /// This node's private key (PEM).
    #[arg(long, env = "GATEWAY_TLS_KEY", requires = "tls_ca")]
    tls_key: Option<PathBuf>,
    /// Serve Raft/control in plaintext on a non-loopback address.
    #[arg(long, env = "GATEWAY_ALLOW_INSECURE_CLUSTER", value_parser = clap::builder::BoolishValueParser::new())]
    allow_insecure_cluster: bool,
    /// Raft heartbeat interval in milliseconds. openraft 0.9 also gives
    /// each AppendEntries this long to be sent and stored, so raise it for
    /// configs of several MB (with the election timeout above it).
    #[arg(long, env = "GATEWAY_HEARTBEAT_MS", default_value_t = 100)]
    heartbeat_ms: u64,
    /// How long a config write (POST /config, apply, rollback, resume)
    /// waits to be committed before it is answered 503 (the write may
    /// still commit later). Bounds writes sent to a leader that lost its
    /// majority.
    #[arg(long, env = "GATEWAY_WRITE_TIMEOUT_MS", default_value_t = 30_000)]
    write_timeout_ms: u64,
    /// Raft election timeout range in milliseconds, `MIN-MAX`. A follower
    /// that has heard from a leader waits MAX (openraft's leader lease) plus
    /// a random time in MIN..MAX before standing: 600-800 ms by default.
    /// Raise it where nodes may stall longer (heavily throttled CPUs).
    #[arg(long, env = "GATEWAY_ELECTION_TIMEOUT_MS", default_value = "200-400")]
    election_timeout_ms: String,
    /// GitOps: the repository holding the region's config (`file://`,
    /// `git://`, `https://`, `ssh://`). Only the region's leader fetches.
    /// `POST /config` and `gatewayctl apply` are then refused (409).
    #[arg(long, env = "GATEWAY_GIT_URL", requires = "region")]
    git_url: Option<String>,
    /// Branch to follow.
    #[arg(long, env = "GATEWAY_GIT_BRANCH", default_value = "main")]
    git_branch: String,
    /// Config root in the repository: every *.yaml/*.yml under it merges,
    /// then `<root>regions/<region>/` merges on top.
    #[arg(long, env = "GATEWAY_GIT_PATH", default_value = "gateway/")]
    git_path: String,
    /// How often the leader fetches (e.g. `15s`, `500ms`), with ±10% jitter.
    #[arg(long, env = "GATEWAY_GIT_POLL_INTERVAL", default_value = "15s")]
    git_poll_interval: String,
    /// File holding an HTTP(S) token (else the GATEWAY_GIT_TOKEN variable).
    #[arg(long, env = "GATEWAY_GIT_TOKEN_FILE")]
    git_token_file: Option<PathBuf>,
    /// Private key file for ssh:// URLs.
    #[arg(long, env = "GATEWAY_GIT_SSH_KEY")]
    git_ssh_key: Option<PathBuf>,
    /// File holding the webhook secret of `POST /hooks/git` (GitHub
    /// `X-Hub-Signature-256` HMAC, or GitLab `X-Gitlab-Token`).
    #[arg(long, env = "GATEWAY_WEBHOOK_SECRET_FILE")]
    webhook_secret_file: Option<PathBuf>,
}

#[derive(Args)]
struct DemoArgs {
    /// Address of the proxy listener.
    #[arg(long, default_value = "127.0.0.1:8000")]
    proxy_listen: SocketAddr,
    /// Address of the admin API.
    #[arg(long, default_value = "127.0.0.1:8001")]
    admin_listen: SocketAddr,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log, &cli.log_format);
    let result = match cli.command {
        Command::Validate { files } => return gateway_node::cli::validate(&files),
        Command::Run(args) => runtime().and_then(|rt| rt.block_on(run(*args))),
        Command::Demo(args) => runtime().and_then(|rt| rt.block_on(run_demo(args))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    // Before any thread starts: threads pick their malloc arena at first use.
    gateway_node::snapshot::return_freed_memory_promptly();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn init_logging(filter: &str, format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn secs(what: &str, v: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(v)
        .with_context(|| format!("--{what}: {v} is not a valid number of seconds"))
}

fn positive_secs(what: &str, v: f64) -> Result<Duration> {
    let d = secs(what, v)?;
    if d.is_zero() {
        bail!("--{what} must be more than 0 seconds");
    }
    Ok(d)
}

fn node_options(a: &ServeArgs) -> Result<NodeOptions> {
    if a.max_header_size < 8192 {
        bail!(
            "--max-header-size must be at least 8192 bytes (got {})",
            a.max_header_size
        );
    }
    let trusted =
        TrustedProxies::parse(&a.trusted_ips).map_err(|e| anyhow::anyhow!("--trusted-ips: {e}"))?;
    let port_maps =
        PortMaps::parse(&a.port_maps).map_err(|e| anyhow::anyhow!("--port-maps: {e}"))?;
    let mut opts = NodeOptions {
        proxy_listen: a.proxy_listen,
        admin_listen: a.admin_listen,
        limits: HttpLimits {
            header_read_timeout: secs("header-read-timeout", a.header_read_timeout)?,
            max_header_size: a.max_header_size,
        },
        proxy: ProxySettings {
            trusted,
            port_maps,
            max_body_size: a.max_body_size,
            client_body_timeout: secs("client-body-timeout", a.client_body_timeout)?,
            upstream_keepalive_pool_size: a.upstream_keepalive_pool_size,
            upstream_keepalive_idle_timeout: positive_secs(
                "upstream-keepalive-idle-timeout",
                a.upstream_keepalive_idle_timeout,
            )?,
        },
        drain_timeout: secs("drain-timeout", a.drain_timeout)?,
        direct_path: !a.no_direct_path,
        ..NodeOptions::default()
    };
    if let Some(id) = &a.node_id {
        opts.node_id = id.clone();
    }
    Ok(opts)
}

async fn load_into(live: &LiveConfig, paths: &[PathBuf]) -> Result<()> {
    let files =
        gateway_node::cli::read_files(paths).map_err(|e| anyhow::anyhow!("{}", e.join("\n")))?;
    live.apply_files(&files).await?;
    Ok(())
}

async fn run(args: RunArgs) -> Result<()> {
    if args.cluster.region.is_some() {
        return run_cluster(args).await;
    }
    let opts = node_options(&args.serve)?;
    let live = new_live_config()?;
    load_into(&live, &args.config).await?;
    let node = Node::start(opts, live.clone()).await?;
    // SIGHUP: reload from the same files; a bad config is logged and the
    // current one keeps serving.
    let paths = args.config.clone();
    let reload_live = live.clone();
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            match load_into(&reload_live, &paths).await {
                Ok(()) => tracing::info!("reloaded configuration on SIGHUP"),
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP reload rejected; keeping the current configuration")
                }
            }
        }
    });
    wait_for_stop_signal().await;
    tracing::info!("shutting down: draining in-flight requests");
    node.shutdown();
    node.wait().await;
    Ok(())
}

/// `1=host:port,2=host:port` → id → address.
fn parse_peers(s: &str) -> Result<BTreeMap<u64, String>> {
    let mut peers = BTreeMap::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (id, addr) = item
            .split_once('=')
            .with_context(|| format!("--peers: {item:?} is not ID=HOST:PORT"))?;
        let id: u64 = id
            .trim()
            .parse()
            .with_context(|| format!("--peers: {id:?} in {item:?} is not a node id"))?;
        if addr
            .rsplit_once(':')
            .is_none_or(|(_, port)| port.parse::<u16>().is_err())
        {
            bail!("--peers: {addr:?} (node {id}) is not HOST:PORT");
        }
        if peers.insert(id, addr.trim().to_string()).is_some() {
            bail!("--peers: node {id} is listed twice");
        }
    }
    Ok(peers)
}

/// The node id: `--node-id`, or the ordinal of a StatefulSet hostname
/// (`gw-eu-2` → 2).
fn cluster_node_id(flag: Option<&str>, hostname: &str) -> Result<u64> {
    if let Some(id) = flag {
        return id.parse().with_context(|| {
            format!("--node-id: {id:?} is not a number (cluster mode needs a numeric id)")
        });
    }
    hostname
        .rsplit_once('-')
        .and_then(|(_, n)| n.parse().ok())
        .with_context(|| format!("no --node-id, and the hostname {hostname:?} does not end in -N (StatefulSet ordinal)"))
}

async fn run_cluster(args: RunArgs) -> Result<()> {
    let c = &args.cluster;
    let region = c.region.clone().unwrap_or_default();
    if region.is_empty()
        || !region
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
    {
        bail!("--region: {region:?} must be non-empty letters, digits, '-' or '_'");
    }
    let node_id = cluster_node_id(
        args.serve.node_id.as_deref(),
        &gateway_node::app::hostname(),
    )?;
    let mut opts = node_options(&args.serve)?;
    opts.node_id = node_id.to_string();
    let (min, max) = c
        .election_timeout_ms
        .split_once('-')
        .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)))
        .with_context(|| {
            format!(
                "--election-timeout-ms: {:?} is not MIN-MAX",
                c.election_timeout_ms
            )
        })?;
    let tls = match (&c.tls_ca, &c.tls_cert, &c.tls_key) {
        (Some(ca), Some(cert), Some(key)) => Some(
            gateway_node::certs::ClusterTlsFiles {
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            }
            .load()?,
        ),
        _ => None,
    };
    let mut copts = ClusterOptions::new(&region, node_id, c.data_dir.clone(), c.raft_listen);
    copts.peers = parse_peers(&c.peers)?;
    copts.keep_configs = c.keep_configs;
    copts.snapshot_logs = c.snapshot_logs;
    copts.max_config_bytes = c.max_config_bytes;
    copts.max_entry_bytes = c.max_entry_bytes;
    copts.tls = tls;
    copts.allow_insecure_cluster = c.allow_insecure_cluster;
    copts.heartbeat_ms = c.heartbeat_ms;
    copts.write_timeout = std::time::Duration::from_millis(c.write_timeout_ms.max(1));
    copts.election_timeout_ms = (min, max);
    if let Some(url) = &c.git_url {
        let mut source = gateway_gitops::GitSource::new(url.clone());
        source.branch = c.git_branch.clone();
        source.path = c.git_path.clone();
        source.region = Some(region.clone());
        source.token_file = c.git_token_file.clone();
        source.ssh_key = c.git_ssh_key.clone();
        source.validate()?;
        let poll_interval = gateway_node::cluster::gitsync::parse_duration(&c.git_poll_interval)
            .map_err(|e| anyhow::anyhow!("--git-poll-interval: {e}"))?;
        let webhook_secret = match &c.webhook_secret_file {
            Some(p) => {
                let s = std::fs::read_to_string(p)
                    .with_context(|| format!("--webhook-secret-file {}", p.display()))?;
                let s = s.trim();
                if s.is_empty() {
                    bail!("--webhook-secret-file {}: the file is empty", p.display());
                }
                Some(s.as_bytes().to_vec())
            }
            None => None,
        };
        copts.git = Some(gateway_node::cluster::gitsync::GitOptions {
            source,
            poll_interval,
            webhook_secret,
        });
    }
    opts.max_config_bytes = c.max_config_bytes;

    let live = new_live_config()?;
    // Serves the config on disk at once, before any peer answers.
    let cluster = Cluster::start(copts, live.clone()).await?;
    let node = Node::start_with_cluster(opts, live, Some(cluster.clone())).await?;
    println!(
        "gateway node {node_id} of region {region}: proxy {} admin {} raft {}",
        node.proxy_addr, node.admin_addr, cluster.raft_addr
    );
    wait_for_stop_signal().await;
    tracing::info!("shutting down: draining in-flight requests");
    node.shutdown();
    node.wait().await;
    cluster.shutdown().await;
    Ok(())
}

async fn wait_for_stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn run_demo(args: DemoArgs) -> Result<()> {
    let services_shutdown = Shutdown::default();
    let foo = demo::start_service("foo", services_shutdown.clone()).await?;
    let bar = demo::start_service("bar", services_shutdown.clone()).await?;
    let live: Arc<LiveConfig> = new_live_config()?;
    live.apply_files(&[SourceFile {
        name: "demo/kong.yml".into(),
        text: demo::demo_config(foo.port(), bar.port()),
    }])
    .await?;
    let opts = NodeOptions {
        proxy_listen: args.proxy_listen,
        admin_listen: args.admin_listen,
        drain_timeout: Duration::from_secs(2),
        ..NodeOptions::default()
    };
    let node = Node::start(opts, live).await?;
    let p = node.proxy_addr;
    let a = node.admin_addr;
    println!("gateway demo: proxy on http://{p}, admin API on http://{a}");
    println!("demo services: foo on {foo}, bar on {bar}");
    println!();
    println!("Try:");
    println!(
        "  curl -i http://{p}/foo        # -> {{\"msg\":\"Hello from the foo microservice\"}}"
    );
    println!(
        "  curl -i http://{p}/bar        # -> {{\"msg\":\"Hello from the bar microservice\"}}"
    );
    println!("  curl -i http://{p}/nothing    # -> 404 {{\"message\":\"no Route matched with those values\"}}");
    println!("  curl -s http://{a}/routes     # the routes being served");
    println!("  curl -s http://{a}/status     # configuration_hash and counters");
    println!();
    println!("Press Ctrl-C to stop.");
    wait_for_stop_signal().await;
    node.shutdown();
    node.wait().await;
    services_shutdown.trigger();
    Ok(())
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
        // README: every flag of `run` has a GATEWAY_* environment variable.
        let run = cmd.find_subcommand("run").expect("run");
        let without_env: Vec<_> = run
            .get_arguments()
            .filter(|a| a.get_long().is_some_and(|l| l != "help"))
            .filter(|a| {
                a.get_env()
                    .is_none_or(|e| !e.to_string_lossy().starts_with("GATEWAY_"))
            })
            .map(|a| a.get_id().to_string())
            .collect();
        assert!(without_env.is_empty(), "{without_env:?}");
    }

    #[test]
    fn node_id_from_flag_or_statefulset_ordinal() {
        assert_eq!(cluster_node_id(Some("7"), "whatever").unwrap(), 7);
        assert_eq!(cluster_node_id(None, "gw-eu-2").unwrap(), 2);
        assert!(cluster_node_id(Some("gw-1"), "gw-eu-2").is_err());
        let err = cluster_node_id(None, "laptop").unwrap_err().to_string();
        assert!(err.contains("laptop"), "{err}");
    }

    #[test]
    fn peers_parse_and_bad_entries_are_named() {
        let p = parse_peers("1=127.0.0.1:7001, 2=gw-eu-1:7000").unwrap();
        assert_eq!(p.get(&2).map(String::as_str), Some("gw-eu-1:7000"));
        assert!(parse_peers("").unwrap().is_empty());
        for bad in ["1", "x=a:1", "1=a", "1=a:1,1=b:2"] {
            let err = parse_peers(bad).unwrap_err().to_string();
            assert!(err.contains("--peers"), "{bad}: {err}");
        }
    }
}
