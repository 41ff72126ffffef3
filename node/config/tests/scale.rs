//! A large config (10,000 routes) parses, resolves and round-trips.

mod common;

use common::*;

/// A kong.yml with `services` services named `svc-S`, each with the
/// `service_fields` lines and `routes` routes named `svc-S-rR` whose
/// further fields come from `route_fields(S, R)`.
fn services_yaml(
    services: usize,
    routes: usize,
    service_fields: &str,
    route_fields: impl Fn(usize, usize) -> String,
) -> String {
    let mut text = String::from("_format_version: \"3.0\"\nservices:\n");
    for s in 0..services {
        text.push_str(&format!(
            "- name: svc-{s}\n  url: http://backend-{s}.internal:8080\n{service_fields}  routes:\n"
        ));
        for r in 0..routes {
            text.push_str(&format!("  - name: svc-{s}-r{r}\n"));
            text.push_str(&route_fields(s, r));
        }
    }
    text
}

#[test]
fn ten_thousand_routes() {
    let text = services_yaml(1000, 10, "", |s, r| {
        format!("    paths: [/api/{s}/{r}]\n    methods: [GET]\n    plugins:\n    - name: cors\n")
    });
    let started = std::time::Instant::now();
    let c = load_ok(&text);
    let parsed = started.elapsed();
    assert_eq!(c.routes.len(), 10_000);
    assert_eq!(c.plugins.len(), 10_000);
    assert_eq!(c.routes[9_999].service, Some(999));
    let back = gateway_config::parse(
        &[file("emitted.json", &c.to_declarative().to_string())],
        &TestCatalog,
    )
    .expect("round trip");
    assert_eq!(back, c);
    eprintln!(
        "parsed 10,000 routes in {parsed:?} (total with round trip {:?})",
        started.elapsed()
    );
}

/// The parsed config is kept for as long as it is served, so the vectors
/// built by pushing must not keep spare capacity (it cost about 2.5 MB of
/// resident memory at 10,000 routes), and short strings and protocol lists
/// must not take a heap block each (10,000 routes held about 65,000 small
/// blocks, 1.9 MB with the allocator's overhead). A route's lists and
/// `tags` are boxed slices, exact by construction. Both readers are checked.
#[test]
fn kept_config_has_no_spare_capacity() {
    let text = services_yaml(50, 3, "  tags: [a, b, c]\n", |s, r| {
        format!("    paths: [/api/{s}/{r}, /v2/{s}/{r}]\n    hosts: [h{r}.example.com]\n    methods: [GET, POST]\n    snis: [h{r}.example.com]\n    protocols: [https]\n    tags: [t]\n    headers:\n      x-a: [a, b]\n    plugins:\n    - name: cors\n      protocols: [http, https]\n")
    });
    let c = load_ok(&text);
    let normalized = c.to_declarative().to_string();
    let again = gateway_config::parse_normalized("n.json", &normalized, &TestCatalog)
        .expect("normalized parse");
    assert_eq!(again, c);
    for (what, c) in [("parse", &c), ("parse_normalized", &again)] {
        assert_eq!(c.routes.len(), 150);
        assert_eq!(c.plugins.len(), 150);
        assert!(
            c.plugins.iter().all(|p| !p.protocols.spilled()),
            "{what}: plugins"
        );
        assert_eq!(c.routes.capacity(), c.routes.len(), "{what}: routes");
        assert_eq!(c.services.capacity(), c.services.len(), "{what}: services");
        for (i, r) in c.routes.iter().enumerate() {
            assert!(!r.protocols.spilled(), "{what}: routes[{i}].protocols");
            let name = r.name.as_ref().expect("named route");
            assert!(!name.is_heap_allocated(), "{what}: routes[{i}].name");
            for p in r.paths.iter().chain(r.hosts.iter()) {
                assert!(!p.is_heap_allocated(), "{what}: routes[{i}]: {p}");
            }
            for (h, v) in &r.headers {
                assert_eq!(v.capacity(), v.len(), "{what}: routes[{i}].headers[{h}]");
            }
        }
        for (i, s) in c.services.iter().enumerate() {
            let name = s.name.as_ref().expect("named service");
            assert!(!name.is_heap_allocated(), "{what}: services[{i}].name");
            assert!(!s.host.is_heap_allocated(), "{what}: services[{i}].host");
        }
    }
}
