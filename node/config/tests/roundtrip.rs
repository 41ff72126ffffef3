//! `to_declarative` writes a document that `parse` reads back to an equal
//! `Config` (and so the same hash): on rich fixtures and generated configs.

mod common;

use common::*;
use gateway_config::{parse, parse_normalized, Config};
use proptest::prelude::*;
use serde_json::{json, Value};

fn reparse(c: &Config) -> Config {
    let doc = c.to_declarative();
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    match parse(&[file("emitted.json", &text)], &TestCatalog) {
        Ok(c) => c,
        Err(e) => panic!("emitted document does not parse:\n{e}\n{text}"),
    }
}

fn assert_round_trip(c: &Config) {
    let back = reparse(c);
    assert_eq!(&back, c);
    assert_eq!(back.hash(), c.hash());
    assert_eq!(back.to_declarative(), c.to_declarative());
    // The fast reader used on Raft apply agrees with the spanned one.
    let compact = serde_json::to_string(&c.to_declarative()).unwrap_or_default();
    match parse_normalized("replicated", &compact, &TestCatalog) {
        Ok(fast) => assert_eq!(&fast, c),
        Err(e) => panic!("parse_normalized rejects an emitted document:\n{e}"),
    }
}

const CERT: &str =
    "-----BEGIN CERTIFICATE-----\n    MIIBszCCAVmgAwIBAgIUQ2Fh\n    -----END CERTIFICATE-----";
const KEY: &str =
    "-----BEGIN PRIVATE KEY-----\n    MIGHAgEAMBMGByqGSM49AgEG\n    -----END PRIVATE KEY-----";

fn rich() -> String {
    format!(
        r#"_format_version: "3.0"
services:
- name: first
  id: 11111111-1111-4111-8111-111111111111
  url: https://api.internal:8443/v1
  tls_verify: true
  tls_verify_depth: 2
  ca_certificates: [33333333-3333-4333-8333-333333333333]
  client_certificate: {{id: 22222222-2222-4222-8222-222222222222}}
  routes:
  - name: r-users
    paths: ['~/users/(?<id>\d+)$', /users]
    methods: [get, POST]
    headers:
      x-tenant: [a, "~*^t-[0-9]+$"]
    regex_priority: 10
    path_handling: v1
    https_redirect_status_code: 308
    protocols: [https]
    snis: [api.example.com]
    preserve_host: true
    request_buffering: false
    plugins:
    - name: cors
      config: {{origins: ["*"]}}
- id: 44444444-4444-4444-8444-444444444444
  host: "::1"
  port: 9000
  protocol: grpc
  enabled: false
  routes:
  - protocols: [grpc]
    paths: [/helloworld.Greeter]
- name: third
  host: lb.internal
  retries: 0
routes:
- name: late-for-first
  service: first
  hosts: ["*.example.com", "example.*:8080"]
- name: orphan
  paths: [/orphan]
- name: for-third
  service: {{name: third}}
  paths: [/third]
upstreams:
- name: LB.internal
  algorithm: consistent-hashing
  hash_on: header
  hash_on_header: x-user
  hash_fallback: cookie
  hash_on_cookie: sid
  hash_on_cookie_path: /app
  slots: 100
  host_header: backend.internal
  healthchecks:
    threshold: 25.5
    active:
      type: https
      https_sni: lb.example.com
      https_verify_certificate: false
      headers: {{x-probe: [yes]}}
      concurrency: 3
      healthy: {{interval: 0.5, http_statuses: [200]}}
    passive:
      type: tcp
      unhealthy: {{tcp_failures: 2, timeouts: 4}}
  targets:
  - target: "[::1]:9000"
    weight: 0
    id: 55555555-5555-4555-8555-555555555555
targets:
- target: 10.1.1.1
  upstream: lb.internal
consumers:
- username: alice
  custom_id: A-1
  tags: [team-a]
  keyauth_credentials:
  - key: alice-key
    ttl: 3600
  acls:
  - group: admins
  jwt_secrets:
  - key: alice-iss
    secret: s3cret
  plugins:
  - name: rate-limiting
    config: {{minute: 10}}
- custom_id: only-custom
  id: 66666666-6666-4666-8666-666666666666
  basicauth_credentials:
  - username: bob
    password: pw
keyauth_credentials:
- key: second-alice-key
  consumer: alice
plugins:
- name: key-auth
- name: rate-limiting
  service: first
  route: orphan
  consumer: alice
  enabled: false
  protocols: [http]
  instance_name: rl-1
  tags: [limits]
- name: rate-limiting
  consumer: 66666666-6666-4666-8666-666666666666
  route: r-users
certificates:
- id: 22222222-2222-4222-8222-222222222222
  cert: |
    {CERT}
  key: |
    {KEY}
  snis:
  - api.example.com
  - name: "*.example.org"
ca_certificates:
- id: 33333333-3333-4333-8333-333333333333
  cert: |
    {CERT}
snis:
- name: other.example.com
  certificate: 22222222-2222-4222-8222-222222222222
"#
    )
}

#[test]
fn rich_fixture_round_trips() {
    let c = load_ok(&rich());
    // A few spot checks that the fixture means what it says.
    assert_eq!(c.services[0].client_certificate, Some(0));
    assert_eq!(c.services[0].ca_certificates, vec![0]);
    assert_eq!(c.services[2].upstream, Some(0));
    assert_eq!(
        c.certificates[0].snis,
        vec!["api.example.com", "*.example.org", "other.example.com"]
    );
    let routes: Vec<_> = c
        .routes
        .iter()
        .map(|r| (r.name.as_deref(), r.service))
        .collect();
    assert_eq!(
        routes,
        vec![
            (Some("r-users"), Some(0)),
            (None, Some(1)),
            (Some("late-for-first"), Some(0)),
            (Some("orphan"), None),
            (Some("for-third"), Some(2)),
        ]
    );
    assert_eq!(
        c.consumers[0].credentials["keyauth_credentials"],
        vec![
            json!({"key": "alice-key", "ttl": 3600}),
            json!({"key": "second-alice-key"})
        ]
    );
    assert_eq!(
        c.consumers[0].credentials["jwt_secrets"],
        vec![json!({"key": "alice-iss", "secret": "s3cret", "algorithm": "HS256"})]
    );
    assert_eq!(c.upstreams[0].targets.len(), 2);
    assert_round_trip(&c);
}

#[test]
fn kong_example_round_trips() {
    assert_round_trip(&load_ok(FIXTURE));
}

/// A generated declarative document: services with nested routes, top-level
/// routes, upstreams, consumers, plugins on assorted scopes.
fn doc_strategy() -> impl Strategy<Value = Value> {
    let service = (
        any::<bool>(),
        0usize..3,
        prop::sample::select(vec!["http", "https", "grpc"]),
        1u16..65535,
        0u32..10,
        prop::collection::vec(
            (
                prop::sample::subsequence(vec!["/a", "/b/c", "~/d/\\d+", "/e"], 1..3),
                prop::sample::subsequence(vec!["GET", "POST", "put"], 0..2),
                any::<bool>(),
            ),
            0..3,
        ),
    );
    (
        prop::collection::vec(service, 0..4),
        prop::collection::vec((0usize..5, prop::sample::select(vec!["/x", "/y/z"])), 0..4),
        prop::collection::vec(
            (prop::sample::select(vec!["cors", "key-auth", "rate-limiting"]), 0usize..5, 0usize..8, 0usize..4),
            0..8,
        ),
        0usize..3,
    )
        .prop_map(|(services, top_routes, plugins, consumers)| {
            let hosts = ["a.internal", "lb.internal", "10.0.0.9"];
            let mut svc_json = Vec::new();
            let mut route_names = Vec::new();
            for (i, (named, host, proto, port, retries, routes)) in services.iter().enumerate() {
                let grpc = *proto == "grpc";
                let mut s = json!({"host": hosts[*host], "protocol": proto, "port": port, "retries": retries});
                if *named {
                    s["name"] = json!(format!("s{i}"));
                }
                let mut rs = Vec::new();
                for (j, (paths, methods, strip)) in routes.iter().enumerate() {
                    let name = format!("s{i}-r{j}");
                    let mut r = json!({"name": name, "paths": paths});
                    if grpc {
                        r["protocols"] = json!(["grpc", "grpcs"]);
                    } else {
                        r["methods"] = json!(methods);
                        r["strip_path"] = json!(strip);
                    }
                    route_names.push(name);
                    rs.push(r);
                }
                s["routes"] = Value::Array(rs);
                svc_json.push(s);
            }
            let mut top = Vec::new();
            for (k, (svc, path)) in top_routes.iter().enumerate() {
                let name = format!("top{k}");
                let mut r = json!({"name": name, "paths": [path]});
                if let Some((named, _, proto, ..)) = services.get(*svc) {
                    if *named && *proto != "grpc" {
                        r["service"] = json!(format!("s{svc}"));
                    }
                }
                route_names.push(name);
                top.push(r);
            }
            let consumers_json: Vec<Value> =
                (0..consumers).map(|i| json!({"username": format!("c{i}")})).collect();
            let mut seen = std::collections::HashSet::new();
            let mut plugins_json = Vec::new();
            for (name, svc, route, consumer) in plugins {
                let mut p = json!({"name": name});
                let mut key = (name, None, None, None);
                if let Some((true, ..)) = services.get(svc) {
                    p["service"] = json!(format!("s{svc}"));
                    key.1 = Some(svc);
                }
                if let Some(r) = route_names.get(route) {
                    p["route"] = json!(r);
                    key.2 = Some(route);
                }
                if consumer < consumers {
                    p["consumer"] = json!(format!("c{consumer}"));
                    key.3 = Some(consumer);
                }
                if seen.insert(key) {
                    plugins_json.push(p);
                }
            }
            json!({
                "_format_version": "3.0",
                "services": svc_json,
                "routes": top,
                "upstreams": [{"name": "lb.internal", "targets": [{"target": "10.0.0.1:81"}]}],
                "consumers": consumers_json,
                "plugins": plugins_json,
            })
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn generated_configs_round_trip(doc in doc_strategy()) {
        let text = serde_json::to_string(&doc).unwrap_or_default();
        let c = match parse(&[file("gen.json", &text)], &TestCatalog) {
            Ok(c) => c,
            Err(e) => panic!("generated document is invalid:\n{e}\n{text}"),
        };
        let back = reparse(&c);
        prop_assert_eq!(&back, &c);
        prop_assert_eq!(back.hash(), c.hash());
    }
}

/// `parse_normalized` of text that fails validation reports the errors with
/// lines and columns, as `parse` does (it re-reads the text to find them).
#[test]
fn parse_normalized_errors_keep_positions() {
    let text = "{\n  \"_format_version\": \"3.0\",\n  \"services\": [{\"name\": \"a\", \"url\": \"ftp://x\"}]\n}";
    let err = match parse_normalized("v.json", text, &TestCatalog) {
        Ok(_) => panic!("accepted an ftp service"),
        Err(e) => e.to_string(),
    };
    assert!(err.starts_with("v.json:3:"), "{err}");
    assert!(err.contains("services[0]"), "{err}");
}

/// The hash streams `serde_json` output of the config, so it relies on
/// `serde_json::Map` iterating in key order (no `preserve_order` feature):
/// plugin configs written with their keys in another order hash the same.
#[test]
fn hash_ignores_key_order_in_plugin_configs() {
    let a = "_format_version: \"3.0\"\nplugins:\n- name: cors\n  config: {origins: [\"*\"], credentials: true}\n";
    let b = "_format_version: \"3.0\"\nplugins:\n- name: cors\n  config: {credentials: true, origins: [\"*\"]}\n";
    let ca = parse(&[file("a.yml", a)], &TestCatalog).unwrap_or_else(|e| panic!("{e}"));
    let cb = parse(&[file("b.yml", b)], &TestCatalog).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ca.hash(), cb.hash());
    // The property the hash relies on, checked directly: should a dependency
    // turn on `preserve_order`, maps keep insertion order and this fails.
    let m: serde_json::Map<String, Value> =
        serde_json::from_str(r#"{"b": 1, "a": 2}"#).unwrap_or_default();
    assert_eq!(m.keys().collect::<Vec<_>>(), ["a", "b"]);
}
