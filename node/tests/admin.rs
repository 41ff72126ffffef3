//! Admin API: status, readiness, entity listings, DB-less `/config`.

mod common;

use common::*;
use gateway_node::app::{new_live_config, Node};
use http::Request;

fn config(port: u16, route: &str) -> String {
    format!(
        r#"
_format_version: "3.0"
services:
  - name: svc
    url: http://127.0.0.1:{port}
    routes:
      - name: r1
        paths: [{route}]
upstreams:
  - name: pool
    targets:
      - target: 127.0.0.1:{port}
        weight: 50
consumers:
  - username: alice
    custom_id: a-1
plugins:
  - name: correlation-id
    service: svc
    config:
      header_name: X-Trace
"#
    )
}

#[tokio::test]
async fn ready_only_once_a_config_is_active() {
    let live = new_live_config().expect("live");
    let node = Node::start(loopback_options(), live).await.expect("start");
    let admin = format!("http://{}", node.admin_addr);
    let r = get(&format!("{admin}/status/ready")).await;
    assert_eq!(r.status, 503);
    assert_eq!(
        r.json()["message"],
        "no configuration available (empty configuration present)"
    );
    let up = echo_upstream("a").await;
    let r = post(
        &format!("{admin}/config"),
        "application/x-yaml",
        config(up.port(), "/a"),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(get(&format!("{admin}/status/ready")).await.status, 200);
}

#[tokio::test]
async fn root_status_and_entities_in_kong_shapes() {
    let up = echo_upstream("a").await;
    let gw = gateway(&config(up.port(), "/a")).await;
    let root = get(&gw.admin_url("/")).await.json();
    assert_eq!(root["node_id"], "test-node");
    assert!(root["version"].is_string());
    assert!(root["plugins"]["available_on_server"]
        .as_array()
        .expect("list")
        .contains(&"correlation-id".into()));

    let status = get(&gw.admin_url("/status")).await.json();
    let hash = status["configuration_hash"]
        .as_str()
        .expect("hash")
        .to_owned();
    assert_eq!(hash.len(), 32);
    assert!(status["server"]["total_requests"].is_u64());

    let services = get(&gw.admin_url("/services")).await.json();
    assert_eq!(services["data"][0]["name"], "svc");
    assert_eq!(services["data"][0]["port"], up.port());
    assert_eq!(services["data"][0]["retries"], 5);
    assert!(services["next"].is_null());
    let sid = services["data"][0]["id"].as_str().expect("id").to_owned();

    let routes = get(&gw.admin_url("/routes")).await.json();
    assert_eq!(routes["data"][0]["paths"][0], "/a");
    assert_eq!(routes["data"][0]["service"]["id"], sid.as_str());
    assert_eq!(get(&gw.admin_url("/routes/r1")).await.json()["name"], "r1");
    assert_eq!(
        get(&gw.admin_url(&format!("/services/{sid}/routes")))
            .await
            .json()["data"][0]["name"],
        "r1"
    );
    assert_eq!(get(&gw.admin_url("/services/nope")).await.status, 404);

    let upstreams = get(&gw.admin_url("/upstreams")).await.json();
    assert_eq!(upstreams["data"][0]["name"], "pool");
    assert_eq!(upstreams["data"][0]["algorithm"], "round-robin");
    // Kong's defaults, filled in.
    let checks = &upstreams["data"][0]["healthchecks"];
    assert_eq!(checks["active"]["http_path"], "/");
    assert_eq!(checks["active"]["unhealthy"]["tcp_failures"], 0);
    assert!(checks["passive"].is_object(), "{checks}");
    let pool = get(&gw.admin_url("/upstreams/pool")).await.json();
    assert_eq!(&pool["healthchecks"], checks);

    let targets = get(&gw.admin_url("/upstreams/pool/targets")).await.json();
    assert_eq!(
        targets["data"][0]["target"],
        format!("127.0.0.1:{}", up.port())
    );
    assert_eq!(targets["data"][0]["weight"], 50);
    let health = get(&gw.admin_url("/upstreams/pool/health")).await;
    assert_eq!(health.status, 200, "{}", health.text());
    assert_eq!(
        health.json()["data"][0]["target"],
        format!("127.0.0.1:{}", up.port())
    );
    // The same target id and upstream as /targets shows.
    assert_eq!(health.json()["data"][0]["id"], targets["data"][0]["id"]);
    assert!(health.json()["data"][0]["id"].is_string());
    assert_eq!(
        health.json()["data"][0]["upstream"],
        targets["data"][0]["upstream"]
    );

    let consumers = get(&gw.admin_url("/consumers")).await.json();
    assert_eq!(consumers["data"][0]["username"], "alice", "{consumers}");
    assert_eq!(consumers["data"][0]["custom_id"], "a-1");
    assert!(consumers["next"].is_null());
    let plugins = get(&gw.admin_url("/plugins")).await.json();
    let plugin = &plugins["data"][0];
    assert_eq!(plugin["name"], "correlation-id", "{plugins}");
    assert_eq!(plugin["service"]["id"], sid.as_str());
    assert_eq!(plugin["config"]["header_name"], "X-Trace");
    // Defaults filled in, as Kong shows them.
    assert_eq!(plugin["config"]["echo_downstream"], false, "{plugin}");
    assert_eq!(plugin["enabled"], true);

    // The proxy's connection and request counters move with traffic.
    let before = get(&gw.admin_url("/status")).await.json()["server"].clone();
    assert_eq!(get(&gw.url("/a")).await.status, 200);
    let after = get(&gw.admin_url("/status")).await.json()["server"].clone();
    let grew = |field: &str| after[field].as_u64() > before[field].as_u64();
    assert!(
        grew("connections_accepted") && grew("total_requests"),
        "{before} -> {after}"
    );
    assert!(after["connections_active"].is_u64() && after["connections_handled"].is_u64());

    let r = send(
        Request::delete(gw.admin_url("/services"))
            .body(full(""))
            .expect("req"),
    )
    .await;
    assert_eq!(r.status, 405);
}

#[tokio::test]
async fn post_config_applies_rejects_and_checks_hash() {
    let up = echo_upstream("a").await;
    let gw = gateway(&config(up.port(), "/a")).await;
    assert_eq!(get(&gw.url("/a")).await.status, 200);

    // An invalid config: 400 with every error located, old config kept.
    let bad = format!(
        r#"_format_version: "3.0"
services:
  - name: svc
    url: http://127.0.0.1:{port}
    retries: lots
    routes:
      - name: bad
        paths: ["~/x("]
        bogus: 1
"#,
        port = up.port()
    );
    let r = post(&gw.admin_url("/config"), "application/x-yaml", bad).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let v = r.json();
    assert_eq!(v["name"], "invalid declarative configuration");
    let errors = v["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 3, "all errors reported: {v}");
    let lines: Vec<u64> = errors
        .iter()
        .map(|e| e["line"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(lines, vec![5, 8, 9], "{v}");
    assert!(
        errors.iter().all(|e| e["line"].as_u64().unwrap_or(0) > 0),
        "{v}"
    );
    assert_eq!(
        get(&gw.url("/a")).await.status,
        200,
        "old config keeps serving"
    );
    assert_eq!(get(&gw.url("/b")).await.status, 404);

    // A valid one as Kong's multipart `-F config=@kong.yml`.
    let boundary = "XyZ";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"config\"; filename=\"kong.yml\"\r\n\r\n{}\r\n--{boundary}--\r\n",
        config(up.port(), "/b")
    );
    let r = post(
        &gw.admin_url("/config"),
        &format!("multipart/form-data; boundary={boundary}"),
        body,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(get(&gw.url("/b")).await.status, 200);
    assert_eq!(get(&gw.url("/a")).await.status, 404);

    // The same config again with check_hash: 304.
    let r = post(
        &gw.admin_url("/config?check_hash=1"),
        "application/json",
        serde_json::json!({ "config": config(up.port(), "/b") }).to_string(),
    )
    .await;
    assert_eq!(r.status, 304);

    // GET /config returns a config that POSTs back to the same hash.
    let current = get(&gw.admin_url("/config")).await.json();
    let hash = current["configuration_hash"]
        .as_str()
        .expect("hash")
        .to_owned();
    let text = current["config"].as_str().expect("config text").to_owned();
    let r = post(
        &gw.admin_url("/config?check_hash=1"),
        "application/json",
        text,
    )
    .await;
    assert_eq!(r.status, 304, "round trip keeps the hash {hash}");
}
