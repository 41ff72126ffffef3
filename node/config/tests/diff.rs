//! The semantic config diff: entities matched by identity, references by
//! name, declaration order and file layout ignored.

mod common;

use common::*;
use gateway_config::{diff, ConfigDiff, DiffCounts, EntityChange, FieldChange, KindDiff};
use serde_json::json;

fn diff_text(old: &str, new: &str) -> ConfigDiff {
    diff(&load_ok(old), &load_ok(new))
}

fn change(path: &str, old: serde_json::Value, new: serde_json::Value) -> FieldChange {
    FieldChange {
        path: path.to_string(),
        old: Some(old),
        new: Some(new),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(ToString::to_string).collect()
}

const BASE: &str = r#"_format_version: "3.0"
services:
- name: a
  url: http://a.internal:80
  routes:
  - name: r1
    paths: [/a]
  - name: r2
    paths: [/a2]
    plugins:
    - name: rate-limiting
      config:
        minute: 5
- name: b
  url: http://b-up
  routes:
  - name: r3
    hosts: [b.example.com]
upstreams:
- name: b-up
  targets:
  - target: 10.0.0.1:8080
    weight: 100
  - target: 10.0.0.2:8080
    weight: 50
consumers:
- username: alice
  keyauth_credentials:
  - key: alice-secret-key
plugins:
- name: cors
"#;

#[test]
fn identical_configs_are_empty() {
    let d = diff_text(BASE, BASE);
    assert!(d.is_empty(), "{d}");
    assert_eq!(d, ConfigDiff::default());
    assert_eq!(d.counts(), DiffCounts::default());
    assert_eq!(d.to_string(), "no changes");

    let fixture = load_ok(FIXTURE);
    assert!(diff(&fixture, &fixture).is_empty());
}

#[test]
fn a_config_equals_its_declarative_round_trip() {
    let c = load_ok(FIXTURE);
    let back = load_ok(&c.to_declarative().to_string());
    assert!(diff(&c, &back).is_empty());
}

#[test]
fn reordering_and_relayout_is_not_a_change() {
    // Services swapped, routes reordered, a nested route written top-level,
    // a nested plugin written top-level with a route reference, targets and
    // top-level entities in a different order.
    let reordered = r#"_format_version: "3.0"
plugins:
- name: cors
- name: rate-limiting
  route: r2
  config:
    minute: 5
consumers:
- username: alice
  keyauth_credentials:
  - key: alice-secret-key
upstreams:
- name: b-up
  targets:
  - target: 10.0.0.2:8080
    weight: 50
  - target: 10.0.0.1:8080
    weight: 100
services:
- name: b
  url: http://b-up
- name: a
  url: http://a.internal:80
  routes:
  - name: r2
    paths: [/a2]
routes:
- name: r3
  service: b
  hosts: [b.example.com]
- name: r1
  service: a
  paths: [/a]
"#;
    let old = load_ok(BASE);
    let new = load_ok(reordered);
    assert_ne!(old, new, "the model differs (order), the diff must not");
    let d = diff(&old, &new);
    assert!(d.is_empty(), "unexpected diff:\n{d}");
}

#[test]
fn added_and_removed_services() {
    let new = BASE
        .replace(
            "- name: b\n  url: http://b-up\n",
            "- name: c\n  url: http://b-up\n",
        )
        .replace("  - name: r3\n", "  - name: r3\n    service: c\n");
    // r3 is nested under the renamed service: it stays, with a new service.
    let new = new.replace("    service: c\n", "");
    let d = diff_text(BASE, &new);
    assert_eq!(d.services.added, strings(&["c"]));
    assert_eq!(d.services.removed, strings(&["b"]));
    assert!(d.services.changed.is_empty());
    assert_eq!(
        d.routes.changed,
        vec![EntityChange {
            key: "r3".into(),
            fields: vec![change("service", json!("b"), json!("c"))],
        }]
    );
    assert_eq!(
        d.counts(),
        DiffCounts {
            added: 1,
            removed: 1,
            changed: 1
        }
    );
}

#[test]
fn changed_service_and_route_fields() {
    let new = BASE
        .replace("url: http://a.internal:80", "url: http://a.internal:8080")
        .replace("paths: [/a]", "paths: [/a, /b]\n    strip_path: false");
    let d = diff_text(BASE, &new);
    assert_eq!(
        d.services,
        KindDiff {
            changed: vec![EntityChange {
                key: "a".into(),
                fields: vec![change("port", json!(80), json!(8080))],
            }],
            ..KindDiff::default()
        }
    );
    assert_eq!(
        d.routes,
        KindDiff {
            changed: vec![EntityChange {
                key: "r1".into(),
                fields: vec![
                    change("paths", json!(["/a"]), json!(["/a", "/b"])),
                    change("strip_path", json!(true), json!(false)),
                ],
            }],
            ..KindDiff::default()
        }
    );
}

#[test]
fn optional_field_set_and_unset() {
    let new = BASE.replace("url: http://a.internal:80", "url: http://a.internal:80/api");
    let d = diff_text(BASE, &new);
    assert_eq!(
        d.services.changed[0].fields,
        vec![FieldChange {
            path: "path".into(),
            old: None,
            new: Some(json!("/api")),
        }]
    );
    let back = diff_text(&new, BASE);
    assert_eq!(back.services.changed[0].fields[0].old, Some(json!("/api")));
    assert_eq!(back.services.changed[0].fields[0].new, None);
    assert!(back
        .to_string()
        .contains("  ~ a: path \"/api\" -> (unset)\n"));
}

#[test]
fn route_moved_to_another_service() {
    // r1 moves from a (nested) to b (top-level, by name).
    let new = BASE.replace("  - name: r1\n    paths: [/a]\n", "")
        + "routes:\n- name: r1\n  service: b\n  paths: [/a]\n";
    let d = diff_text(BASE, &new);
    assert!(d.services.is_empty(), "{d}");
    assert_eq!(
        d.routes.changed,
        vec![EntityChange {
            key: "r1".into(),
            fields: vec![change("service", json!("a"), json!("b"))],
        }]
    );
    assert_eq!(d.counts().changed, 1);
}

#[test]
fn upstream_target_weight_changed() {
    let new = BASE.replace("weight: 50", "weight: 0");
    let d = diff_text(BASE, &new);
    assert!(d.upstreams.is_empty());
    assert_eq!(
        d.targets.changed,
        vec![EntityChange {
            key: "b-up/10.0.0.2:8080".into(),
            fields: vec![change("weight", json!(50), json!(0))],
        }]
    );
    assert!(d.targets.added.is_empty() && d.targets.removed.is_empty());

    // A new address is a new target.
    let new = BASE.replace("10.0.0.2:8080", "10.0.0.3:8080");
    let d = diff_text(BASE, &new);
    assert_eq!(d.targets.added, strings(&["b-up/10.0.0.3:8080"]));
    assert_eq!(d.targets.removed, strings(&["b-up/10.0.0.2:8080"]));
}

#[test]
fn upstream_healthcheck_change_has_a_dotted_path() {
    let new = BASE.replace(
        "- name: b-up\n",
        "- name: b-up\n  healthchecks:\n    active:\n      timeout: 3\n",
    );
    let d = diff_text(BASE, &new);
    assert_eq!(
        d.upstreams.changed,
        vec![EntityChange {
            key: "b-up".into(),
            fields: vec![change(
                "healthchecks.active.timeout",
                json!(1.0),
                json!(3.0)
            )],
        }]
    );
}

#[test]
fn route_scoped_plugin_config_changed() {
    let new = BASE.replace("minute: 5", "minute: 10");
    let d = diff_text(BASE, &new);
    assert_eq!(
        d.plugins,
        KindDiff {
            changed: vec![EntityChange {
                key: "rate-limiting route=r2".into(),
                fields: vec![change("config.minute", json!(5), json!(10))],
            }],
            ..KindDiff::default()
        }
    );
    assert!(d.routes.is_empty());
    assert_eq!(d.counts().changed, 1);

    // Moving the plugin to another route is a different plugin.
    let new = BASE
        .replace(
            "    plugins:\n    - name: rate-limiting\n      config:\n        minute: 5\n",
            "",
        )
        .replace(
            "  - name: r1\n    paths: [/a]\n",
            "  - name: r1\n    paths: [/a]\n    plugins:\n    - name: rate-limiting\n      config:\n        minute: 5\n",
        );
    let d = diff_text(BASE, &new);
    assert_eq!(d.plugins.added, strings(&["rate-limiting route=r1"]));
    assert_eq!(d.plugins.removed, strings(&["rate-limiting route=r2"]));
}

#[test]
fn consumer_added_and_credentials_redacted() {
    let new = BASE.replace(
        "consumers:\n",
        "consumers:\n- username: bob\n  custom_id: b-1\n",
    );
    let d = diff_text(BASE, &new);
    assert_eq!(
        d.consumers,
        KindDiff {
            added: strings(&["bob"]),
            ..KindDiff::default()
        }
    );
    assert_eq!(
        d.counts(),
        DiffCounts {
            added: 1,
            removed: 0,
            changed: 0
        }
    );

    let new = BASE.replace("alice-secret-key", "alice-other-key");
    let d = diff_text(BASE, &new);
    assert_eq!(
        d.consumers.changed,
        vec![EntityChange {
            key: "alice".into(),
            fields: vec![change(
                "keyauth_credentials",
                json!([{"key": "<redacted>"}]),
                json!([{"key": "<redacted>"}]),
            )],
        }]
    );
    let shown = format!("{d} {}", serde_json::to_string(&d).expect("json"));
    assert!(!shown.contains("alice-secret-key") && !shown.contains("alice-other-key"));
}

#[test]
fn renamed_route_is_removed_and_added_with_its_plugin() {
    let new = BASE.replace("name: r2", "name: r2b");
    let d = diff_text(BASE, &new);
    assert_eq!(d.routes.added, strings(&["r2b"]));
    assert_eq!(d.routes.removed, strings(&["r2"]));
    assert_eq!(d.plugins.added, strings(&["rate-limiting route=r2b"]));
    assert_eq!(d.plugins.removed, strings(&["rate-limiting route=r2"]));
}

#[test]
fn unnamed_entities_use_ids_and_natural_keys() {
    let old = r#"_format_version: "3.0"
services:
- url: http://x.internal
  routes:
  - paths: [/x]
- id: 5d0f6e43-0000-4000-8000-000000000001
  url: http://y.internal
"#;
    let new = r#"_format_version: "3.0"
services:
- id: 5d0f6e43-0000-4000-8000-000000000001
  url: http://y.internal:81
- url: http://x.internal
  routes:
  - paths: [/x]
    preserve_host: true
"#;
    let d = diff_text(old, new);
    assert_eq!(
        d.services.changed,
        vec![EntityChange {
            key: "id=5d0f6e43-0000-4000-8000-000000000001".into(),
            fields: vec![change("port", json!(80), json!(81))],
        }]
    );
    assert_eq!(
        d.routes.changed,
        vec![EntityChange {
            key: "service=url=http://x.internal:80 paths=/x".into(),
            fields: vec![change("preserve_host", json!(false), json!(true))],
        }]
    );
}

#[test]
fn display_is_a_sorted_summary() {
    let new = BASE
        .replace("url: http://a.internal:80", "url: http://a.internal:8080")
        .replace("paths: [/a]", "paths: [/a, /b]")
        .replace(
            "- name: b\n",
            "- name: z-new\n  url: http://n.internal\n- name: a-new\n  url: http://n.internal\n- name: b\n",
        )
        .replace("plugins:\n- name: cors\n", "")
        .replace("weight: 50", "weight: 5");
    let d = diff_text(BASE, &new);
    let expected = r#"services:
  + a-new
  + z-new
  ~ a: port 80 -> 8080
routes:
  ~ r1: paths ["/a"] -> ["/a","/b"]
targets:
  ~ b-up/10.0.0.2:8080: weight 50 -> 5
plugins:
  - cors (global)
2 added, 1 removed, 3 changed"#;
    assert_eq!(d.to_string(), expected);
}

#[test]
fn display_truncates_long_values_but_the_struct_does_not() {
    let long: Vec<String> = (0..40).map(|i| format!("/p{i}")).collect();
    let new = BASE.replace("paths: [/a]", &format!("paths: [{}]", long.join(", ")));
    let d = diff_text(BASE, &new);
    let full = json!(long);
    assert_eq!(d.routes.changed[0].fields[0].new, Some(full.clone()));
    let line = d
        .to_string()
        .lines()
        .find(|l| l.starts_with("  ~ r1: paths "))
        .expect("route line")
        .to_string();
    assert!(line.ends_with("..."), "{line}");
    assert!(line.len() < full.to_string().len(), "{line}");
}

#[test]
fn serializes_with_every_kind() {
    let new = BASE.replace("weight: 50", "weight: 0");
    let v = serde_json::to_value(diff_text(BASE, &new)).expect("json");
    assert_eq!(
        v["targets"],
        json!({
            "added": [],
            "removed": [],
            "changed": [{
                "key": "b-up/10.0.0.2:8080",
                "fields": [{"path": "weight", "old": 50, "new": 0}],
            }],
        })
    );
    for kind in [
        "services",
        "routes",
        "upstreams",
        "targets",
        "consumers",
        "plugins",
        "certificates",
        "ca_certificates",
    ] {
        assert!(v.get(kind).is_some(), "{kind} missing");
    }
}

const CERT: &str =
    "-----BEGIN CERTIFICATE-----\n    MIIBszCCAVmgAwIBAgIUQ2Fh\n    -----END CERTIFICATE-----";
const KEY: &str =
    "-----BEGIN PRIVATE KEY-----\n    MIGHAgEAMBMGByqGSM49AgEG\n    -----END PRIVATE KEY-----";
const KEY2: &str =
    "-----BEGIN PRIVATE KEY-----\n    MIGHAgEAMBMGByqGSM49AgEH\n    -----END PRIVATE KEY-----";

fn tls(key: &str, snis: &str) -> String {
    format!(
        r#"_format_version: "3.0"
services:
- name: s
  url: https://s.internal
  client_certificate: 22222222-2222-4222-8222-222222222222
  ca_certificates: [33333333-3333-4333-8333-333333333333]
certificates:
- id: 22222222-2222-4222-8222-222222222222
  cert: |
    {CERT}
  key: |
    {KEY}
- cert: |
    {CERT}
  key: |
    {key}
  snis: [{snis}]
ca_certificates:
- id: 33333333-3333-4333-8333-333333333333
  cert: |
    {CERT}
"#
    )
}

#[test]
fn certificates_by_id_or_sni_with_keys_redacted() {
    let old = tls(KEY, "b.example.com, a.example.com");
    assert!(diff_text(&old, &old).is_empty());

    let d = diff_text(
        &old,
        &tls(KEY2, "b.example.com, a.example.com, c.example.com"),
    );
    assert!(d.services.is_empty() && d.ca_certificates.is_empty(), "{d}");
    assert_eq!(
        d.certificates.changed,
        vec![EntityChange {
            key: "sni=a.example.com".into(),
            fields: vec![
                change("key", json!("<redacted>"), json!("<redacted>")),
                change(
                    "snis",
                    json!(["b.example.com", "a.example.com"]),
                    json!(["b.example.com", "a.example.com", "c.example.com"]),
                ),
            ],
        }]
    );
    let shown = format!("{d} {}", serde_json::to_string(&d).expect("json"));
    assert!(!shown.contains("MIGHAgEAMBMGByqGSM49AgE"), "{shown}");

    // References to certificates are by key, not index.
    let no_client = old.replace(
        "  client_certificate: 22222222-2222-4222-8222-222222222222\n",
        "",
    );
    let d = diff_text(&old, &no_client);
    assert_eq!(
        d.services.changed,
        vec![EntityChange {
            key: "s".into(),
            fields: vec![FieldChange {
                path: "client_certificate".into(),
                old: Some(json!("id=22222222-2222-4222-8222-222222222222")),
                new: None,
            }],
        }]
    );
}

#[test]
fn large_configs_diff() {
    let build = |port: u16| {
        let mut text = String::from("_format_version: \"3.0\"\nservices:\n");
        for s in 0..500 {
            let p = if s == 250 { port } else { 8080 };
            text.push_str(&format!(
                "- name: svc-{s}\n  url: http://backend-{s}.internal:{p}\n  routes:\n"
            ));
            for r in 0..10 {
                text.push_str(&format!(
                    "  - name: svc-{s}-r{r}\n    paths: [/api/{s}/{r}]\n    plugins:\n    - name: cors\n"
                ));
            }
        }
        load_ok(&text)
    };
    let (old, new) = (build(8080), build(9090));
    let started = std::time::Instant::now();
    let d = diff(&old, &new);
    eprintln!("diffed 5,000 routes in {:?}", started.elapsed());
    assert_eq!(
        d.to_string(),
        "services:\n  ~ svc-250: port 8080 -> 9090\n0 added, 0 removed, 1 changed"
    );
}
