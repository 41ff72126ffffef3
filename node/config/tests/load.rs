//! A realistic Kong config loads unchanged, with Kong's defaults filled in.

mod common;

use common::*;
use gateway_config::*;
use serde_json::json;
use std::collections::BTreeMap;

#[test]
fn kong_example_config_loads() {
    let c = load_ok(FIXTURE);
    assert_eq!(c.format_version, "3.0");

    // Services: url shorthand, explicit fields, defaults.
    assert_eq!(c.services.len(), 2);
    let foo = &c.services[0];
    assert_eq!(foo.name.as_deref(), Some("foo"));
    assert_eq!(foo.meta.tags[..], ["example".to_string()]);
    assert_eq!(
        (
            foo.protocol,
            foo.host.as_str(),
            foo.port,
            foo.path.as_deref()
        ),
        (Protocol::Http, "foo-upstream", 80, Some("/api"))
    );
    assert_eq!(foo.upstream, Some(0));
    assert_eq!(
        (
            foo.retries,
            foo.connect_timeout_ms,
            foo.read_timeout_ms,
            foo.write_timeout_ms
        ),
        (5, 60000, 60000, 60000)
    );
    assert!(foo.enabled);
    let bar = &c.services[1];
    assert_eq!(
        (
            bar.protocol,
            bar.host.as_str(),
            bar.port,
            bar.path.as_deref()
        ),
        (Protocol::Https, "bar.example.com", 8443, None)
    );
    assert_eq!((bar.retries, bar.connect_timeout_ms), (3, 5000));
    assert_eq!(bar.upstream, None);

    // Routes: nested first (service order), then top-level.
    let names: Vec<_> = c.routes.iter().map(|r| r.name.as_deref()).collect();
    assert_eq!(
        names,
        vec![Some("foo-route"), Some("bar-route"), Some("another-route")]
    );
    let r0 = &c.routes[0];
    assert_eq!(r0.service, Some(0));
    assert_eq!(r0.methods[..], ["GET", "POST"]);
    assert_eq!(r0.paths[..], ["/foo"]);
    assert_eq!(r0.protocols[..], [Protocol::Http, Protocol::Https]);
    assert!(r0.strip_path && !r0.preserve_host);
    assert_eq!(
        (
            r0.regex_priority,
            r0.path_handling,
            r0.https_redirect_status_code
        ),
        (0, PathHandling::V0, 426)
    );
    assert!(r0.request_buffering && r0.response_buffering);
    let r1 = &c.routes[1];
    assert_eq!(r1.service, Some(1));
    assert_eq!(r1.hosts[..], ["bar.example.com", "*.bar.example.com"]);
    assert_eq!(r1.paths[..], [r"~/bar/(?<id>\d+)$"]);
    assert!(!r1.strip_path);
    assert_eq!(
        r1.headers,
        BTreeMap::from([(
            "x-version".to_string(),
            vec!["v1".to_string(), "v2".to_string()]
        )])
    );
    assert_eq!(c.routes[2].service, Some(0));
    assert_eq!(c.routes[2].hosts[..], ["hello.com"]);

    // Upstream: health checks merge over Kong's defaults.
    let up = &c.upstreams[0];
    assert_eq!(up.name, "foo-upstream");
    assert_eq!(up.algorithm, Algorithm::RoundRobin);
    assert_eq!((up.hash_on, up.hash_fallback), (HashOn::None, HashOn::None));
    assert_eq!((up.slots, up.hash_on_cookie_path.as_str()), (10000, "/"));
    let mut hc = Healthchecks::default();
    hc.active.http_path = "/status".into();
    hc.active.timeout_secs = 2.0;
    hc.active.healthy.interval_secs = 5.0;
    hc.active.healthy.successes = 2;
    hc.active.unhealthy.interval_secs = 5.0;
    hc.active.unhealthy.http_failures = 3;
    hc.active.unhealthy.tcp_failures = 3;
    hc.passive.unhealthy.http_failures = 5;
    assert_eq!(up.healthchecks, hc);
    assert_eq!(
        hc.active.unhealthy.http_statuses,
        vec![429, 404, 500, 501, 502, 503, 504, 505]
    );
    assert_eq!(hc.passive.unhealthy.http_statuses, vec![429, 500, 503]);
    let targets: Vec<_> = up
        .targets
        .iter()
        .map(|t| (t.host.as_str(), t.port, t.weight))
        .collect();
    assert_eq!(
        targets,
        vec![("10.0.0.1", 8080, 100), ("foo-2.internal", 8000, 50)]
    );

    // Consumers and credentials.
    assert_eq!(c.consumers.len(), 1);
    assert_eq!(c.consumers[0].username.as_deref(), Some("example-user"));
    assert_eq!(
        c.consumers[0].credentials,
        BTreeMap::from([(
            "keyauth_credentials".to_string(),
            vec![json!({"key": "my-key"})]
        )])
    );

    // Plugins: scopes resolved, canonical order, catalog defaults filled.
    let scopes: Vec<_> = c
        .plugins
        .iter()
        .map(|p| (p.name.as_str(), p.service, p.route, p.consumer))
        .collect();
    assert_eq!(
        scopes,
        vec![
            ("rate-limiting", None, None, Some(0)),
            ("key-auth", Some(0), None, None),
            ("rate-limiting", Some(1), None, Some(0)),
        ]
    );
    assert_eq!(
        c.plugins[0].config,
        json!({"policy": "local", "second": 5, "minute": null, "hour": 10000})
    );
    assert_eq!(
        c.plugins[1].config,
        json!({"key_names": ["apikey"], "hide_credentials": false})
    );
    assert_eq!(c.plugins[2].meta.tags[..], ["extra_limits", "my_tag"]);
    assert_eq!(
        c.plugins[2].protocols[..],
        [
            Protocol::Grpc,
            Protocol::Grpcs,
            Protocol::Http,
            Protocol::Https
        ]
    );
    assert!(c.plugins.iter().all(|p| p.enabled));
}

#[test]
fn json_input_is_accepted() {
    let c = load_ok(
        r#"{"_format_version": "3.0",
            "services": [{"name": "s", "host": "example.com",
                          "routes": [{"paths": ["/"]}]}]}"#,
    );
    assert_eq!(c.services[0].host, "example.com");
    assert_eq!(c.routes[0].paths[..], ["/"]);
}

#[test]
fn grpc_routes_default_to_not_stripping() {
    let c = load_ok(
        "_format_version: '3.0'\nservices:\n- name: g\n  url: grpc://grpc.internal:9000\n  routes:\n  - protocols: [grpc, grpcs]\n    paths: [/helloworld.Greeter]\n",
    );
    assert_eq!(c.services[0].protocol, Protocol::Grpc);
    assert!(!c.routes[0].strip_path);
}

#[test]
fn format_2_1_regex_paths_gain_the_tilde() {
    let c = load_ok("_format_version: '2.1'\nroutes:\n- paths: ['/users/\\d+', /plain]\n");
    assert_eq!(c.format_version, "3.0");
    assert_eq!(c.routes[0].paths[..], [r"~/users/\d+", "/plain"]);
}

#[test]
fn anchors_and_merge_keys_expand() {
    let c = load_ok(
        "_format_version: '3.0'
services:
- &base
  name: a
  host: a.internal
  connect_timeout: 1000
  read_timeout: 2000
  routes: []
- <<: *base
  name: b
  read_timeout: 3000
",
    );
    let t: Vec<_> = c
        .services
        .iter()
        .map(|s| {
            (
                s.name.as_deref(),
                s.host.as_str(),
                s.connect_timeout_ms,
                s.read_timeout_ms,
            )
        })
        .collect();
    assert_eq!(
        t,
        vec![
            (Some("a"), "a.internal", 1000, 2000),
            (Some("b"), "a.internal", 1000, 3000)
        ]
    );
}

#[test]
fn hash_is_stable_and_ignores_formatting() {
    let a = load_ok(FIXTURE);
    let b = load_ok(
        &FIXTURE
            .replace("# ", "#   ")
            .replace("methods: [GET, post]", "methods:\n    - get\n    - POST"),
    );
    assert_eq!(a, b);
    assert_eq!(a.hash(), b.hash());
    assert_eq!(a.hash().len(), 32);
    assert!(a
        .hash()
        .bytes()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    let mut c = a.clone();
    c.services[0].retries = 6;
    assert_ne!(a.hash(), c.hash());
}
