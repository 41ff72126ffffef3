//! Times each CPU step a config change takes on the commit path, in-process
//! (no Raft, no disk): the proposer's parse + validate of the YAML, the
//! hash, the normalized JSON that is replicated, and each node's
//! `parse_normalized` + compile + swap on apply.
//!
//! ```sh
//! cargo build --release -p gateway-node --example config_pipeline
//! target/release/examples/config_pipeline            # 400 services, ~100 KB
//! SERVICES=20000 target/release/examples/config_pipeline   # ~5 MB
//! ```
use gateway_config::SourceFile;
use gateway_node::plugins::PluginRegistry;
use gateway_node::snapshot::LiveConfig;
use gateway_node::upstream::UpstreamManager;
use std::time::Instant;

fn config(services: usize) -> String {
    let mut s = String::from("_format_version: \"3.0\"\nservices:\n");
    for i in 0..services {
        s.push_str(&format!(
            "  - name: inventory-catalogue-backend-{i:05}\n    url: http://127.0.0.1:9/internal/inventory/{i:05}\n    routes:\n      - name: inventory-catalogue-public-{i:05}\n        paths: [/api/v1/inventory/{i:05}/catalogue, /api/v2/inventory/{i:05}/catalogue-legacy]\n"
        ));
    }
    s
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("SERVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let yaml = config(n);
    println!("yaml {} bytes", yaml.len());
    let reg = PluginRegistry::builtin();
    for round in 0..3 {
        let t = Instant::now();
        let files = [SourceFile {
            name: "kong.yml".into(),
            text: yaml.clone(),
        }];
        let c = gateway_config::parse(&files, &reg).unwrap();
        let t_parse = t.elapsed();
        let t = Instant::now();
        let h = c.hash();
        let t_hash = t.elapsed();
        let t = Instant::now();
        let json = serde_json::to_string(&c.to_declarative()).unwrap();
        let t_json = t.elapsed();
        let t = Instant::now();
        let c2 = gateway_config::parse_normalized("v", &json, &reg).unwrap();
        let t_parse_json = t.elapsed();
        let live = LiveConfig::new(UpstreamManager::new(), PluginRegistry::builtin()).unwrap();
        let t = Instant::now();
        live.apply(c2).await.unwrap();
        let t_apply = t.elapsed();
        println!("round {round}: parse yaml {t_parse:?}, hash {t_hash:?}, to json {t_json:?} ({} B), parse_normalized {t_parse_json:?}, hash+compile+swap {t_apply:?} [{h}]", json.len());
    }
}
