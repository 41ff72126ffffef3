//! `gateway`: run a node, validate configs, or run the demo.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use gateway_config::SourceFile;
use gateway_node::app::{new_live_config, Node, NodeOptions};
use gateway_node::demo;
use gateway_node::plugins::PluginRegistry;
use gateway_node::proxy::forward::TrustedProxies;
use gateway_node::proxy::server::{HttpLimits, Shutdown};
use gateway_node::proxy::ProxySettings;
use gateway_node::snapshot::LiveConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

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
    Run(RunArgs),
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
    /// Largest request body in bytes; 0 = unlimited (Kong's default). Larger
    /// bodies get 413.
    #[arg(long, env = "GATEWAY_MAX_BODY_SIZE", default_value_t = 0)]
    max_body_size: u64,
    /// Largest request header section in bytes (min 8192). Larger gets 431.
    #[arg(long, env = "GATEWAY_MAX_HEADER_SIZE", default_value_t = 32 * 1024)]
    max_header_size: usize,
    /// Seconds a client may take to send its request headers.
    #[arg(long, env = "GATEWAY_HEADER_READ_TIMEOUT", default_value_t = 30.0)]
    header_read_timeout: f64,
    /// Seconds allowed between two chunks of a client's request body.
    #[arg(long, env = "GATEWAY_CLIENT_BODY_TIMEOUT", default_value_t = 60.0)]
    client_body_timeout: f64,
    /// Seconds in-flight requests get to finish on SIGTERM/SIGINT.
    #[arg(long, env = "GATEWAY_DRAIN_TIMEOUT", default_value_t = 10.0)]
    drain_timeout: f64,
    /// Node id shown by the admin API (default: the hostname).
    #[arg(long, env = "GATEWAY_NODE_ID")]
    node_id: Option<String>,
}

#[derive(Args)]
struct RunArgs {
    /// Declarative config file(s) (Kong `_format_version: "3.0"`), merged.
    #[arg(
        long,
        short = 'c',
        env = "GATEWAY_CONFIG",
        required = true,
        value_delimiter = ','
    )]
    config: Vec<PathBuf>,
    #[command(flatten)]
    serve: ServeArgs,
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
        Command::Validate { files } => return validate(&files),
        Command::Run(args) => runtime().and_then(|rt| rt.block_on(run(args))),
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

fn read_files(paths: &[PathBuf]) -> Result<Vec<SourceFile>, Vec<String>> {
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

fn validate(paths: &[PathBuf]) -> ExitCode {
    let files = match read_files(paths) {
        Ok(f) => f,
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            return ExitCode::FAILURE;
        }
    };
    match gateway_config::parse(&files, &PluginRegistry::builtin()) {
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

fn secs(what: &str, v: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(v)
        .with_context(|| format!("--{what}: {v} is not a valid number of seconds"))
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
    let mut opts = NodeOptions {
        proxy_listen: a.proxy_listen,
        admin_listen: a.admin_listen,
        limits: HttpLimits {
            header_read_timeout: secs("header-read-timeout", a.header_read_timeout)?,
            max_header_size: a.max_header_size,
        },
        proxy: ProxySettings {
            trusted,
            max_body_size: a.max_body_size,
            client_body_timeout: secs("client-body-timeout", a.client_body_timeout)?,
        },
        drain_timeout: secs("drain-timeout", a.drain_timeout)?,
        ..NodeOptions::default()
    };
    if let Some(id) = &a.node_id {
        opts.node_id = id.clone();
    }
    Ok(opts)
}

async fn load_into(live: &LiveConfig, paths: &[PathBuf]) -> Result<()> {
    let files = read_files(paths).map_err(|e| anyhow::anyhow!("{}", e.join("\n")))?;
    live.apply_files(&files).await?;
    Ok(())
}

async fn run(args: RunArgs) -> Result<()> {
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
