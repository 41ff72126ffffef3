//! One test per error class: the exact rendered message, with file, line,
//! column and entity path.

mod common;

use common::*;
use gateway_config::{parse, NoPlugins};

/// The only error of a config.
fn one(text: &str) -> String {
    let e = errors(text);
    assert_eq!(e.len(), 1, "expected exactly one error, got: {e:#?}");
    e.into_iter().next().unwrap_or_default()
}

const V: &str = "_format_version: \"3.0\"\n";

#[test]
fn yaml_syntax_error() {
    assert_eq!(
        one("_format_version: \"3.0\"\nservices: [\n  {name: a\n"),
        "kong.yml:4:1: services[0]: invalid YAML: while parsing a flow mapping, did not find expected ',' or '}'"
    );
}

#[test]
fn multiple_documents() {
    assert_eq!(
        one("_format_version: \"3.0\"\n---\n_format_version: \"3.0\"\n"),
        "kong.yml:2:1: a file must hold exactly one YAML document; found a second one"
    );
}

#[test]
fn alias_bomb() {
    let mut text = String::from("_format_version: \"3.0\"\na: &a [x, x, x, x, x, x, x, x, x, x]\n");
    let mut prev = 'a';
    for c in 'b'..='i' {
        let refs = vec![format!("*{prev}"); 10].join(", ");
        text.push_str(&format!("{c}: &{c} [{refs}]\n"));
        prev = c;
    }
    let e = one(&text);
    assert_eq!(
        e,
        "kong.yml:5:40: d[8]: aliases expand to too many nodes (more than 10140); refusing a possible alias bomb"
    );
}

#[test]
fn nesting_limit() {
    let text = format!("{V}services: {}{}\n", "[".repeat(70), "]".repeat(70));
    assert_eq!(
        one(&text),
        format!(
            "kong.yml:2:{}: services{}: nesting deeper than 64 levels",
            11 + 63,
            "[0]".repeat(63)
        )
    );
}

#[test]
fn empty_file() {
    assert_eq!(
        one("# nothing here\n"),
        "kong.yml:1:1: the file is empty: expected a mapping with '_format_version'"
    );
}

#[test]
fn missing_format_version() {
    assert_eq!(
        one("services: []\n"),
        "kong.yml:1:1: missing required field '_format_version'"
    );
}

#[test]
fn unquoted_or_unknown_format_version() {
    assert_eq!(
        one("_format_version: 3.0\n"),
        "kong.yml:1:18: _format_version: expected string, found number 3 (write it quoted: \"3.0\")"
    );
    assert_eq!(
        one("_format_version: \"1.1\"\n"),
        "kong.yml:1:18: _format_version: unsupported _format_version '1.1': expected '3.0' or '2.1'"
    );
}

#[test]
fn unsupported_entity_type() {
    assert_eq!(
        one(&format!("{V}vaults:\n- name: env\n  prefix: env\n")),
        "kong.yml:2:1: vaults: entity type 'vaults' is not supported by this version"
    );
}

#[test]
fn unknown_entity_type_suggests() {
    assert_eq!(
        one(&format!("{V}servics: []\n")),
        "kong.yml:2:1: servics: unknown entity type 'servics' (did you mean 'services'?)"
    );
}

#[test]
fn unknown_field_suggests() {
    assert_eq!(
        one(&format!("{V}routes:\n- paths: [/]\n  hots: [a.com]\n")),
        "kong.yml:4:3: routes[0].hots: unknown field 'hots' (did you mean 'hosts'?)"
    );
    assert_eq!(
        one(&format!("{V}routes:\n- paths: [/]\n  zzzzzz: 1\n")),
        "kong.yml:4:3: routes[0].zzzzzz: unknown field 'zzzzzz'"
    );
}

#[test]
fn wrong_type() {
    assert_eq!(
        one(&format!("{V}services:\n- host: a.com\n  port: \"80\"\n")),
        "kong.yml:4:9: services[0].port: expected integer, found string \"80\""
    );
}

#[test]
fn missing_required_field() {
    assert_eq!(
        one(&format!("{V}services:\n- name: a\n  port: 80\n")),
        "kong.yml:3:3: services[0]: missing required field 'host'"
    );
}

#[test]
fn out_of_range() {
    assert_eq!(
        one(&format!("{V}services:\n- host: a.com\n  retries: 40000\n")),
        "kong.yml:4:12: services[0].retries: value 40000 is out of range: must be between 0 and 32767"
    );
    assert_eq!(
        one(&format!("{V}services:\n- host: a.com\n  read_timeout: 0\n")),
        "kong.yml:4:17: services[0].read_timeout: value 0 is out of range: must be between 1 and 2147483646"
    );
}

#[test]
fn invalid_regex_path() {
    assert_eq!(
        one(&format!("{V}services:\n- host: a.com\n  routes:\n  - paths:\n    - /ok\n    - ~/users/(\\d+\n")),
        "kong.yml:7:7: services[0].routes[0].paths[1]: invalid regex: '/users/(\\d+' (unclosed group at column 8)"
    );
}

#[test]
fn path_rules() {
    assert_eq!(
        one(&format!("{V}routes:\n- paths: [foo]\n")),
        "kong.yml:3:11: routes[0].paths[0]: should start with: / (fixed path) or ~/ (regex path)"
    );
    assert_eq!(
        one(&format!("{V}routes:\n- paths: [/a/../b]\n")),
        "kong.yml:3:11: routes[0].paths[0]: non-normalized path, consider use '/b' instead"
    );
}

#[test]
fn host_header_is_rejected() {
    assert_eq!(
        one(&format!("{V}routes:\n- paths: [/]\n  headers:\n    Host: [a.com]\n")),
        "kong.yml:5:5: routes[0].headers.Host: cannot contain 'host' header, which must be specified in the 'hosts' attribute"
    );
}

#[test]
fn header_regex_must_compile() {
    assert_eq!(
        one(&format!("{V}routes:\n- headers:\n    x-v: [\"~*v[0-9\"]\n")),
        "kong.yml:4:11: routes[0].headers.x-v[0]: invalid regex: 'v[0-9' (unclosed character class at column 2)"
    );
}

#[test]
fn bad_route_host() {
    assert_eq!(
        one(&format!("{V}routes:\n- hosts: [\"a.*.com\"]\n")),
        "kong.yml:3:11: routes[0].hosts[0]: invalid wildcard: must be placed at leftmost or rightmost label"
    );
}

#[test]
fn route_needs_a_match_criterion() {
    assert_eq!(
        one(&format!("{V}routes:\n- name: r\n  strip_path: true\n")),
        "kong.yml:3:3: routes[0]: must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https'"
    );
    assert_eq!(
        one(&format!("{V}routes:\n- protocols: [http]\n")),
        "kong.yml:3:3: routes[0]: must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'http'"
    );
}

#[test]
fn grpc_route_rules() {
    assert_eq!(
        one(&format!("{V}routes:\n- protocols: [grpc]\n  paths: [/svc]\n  strip_path: true\n")),
        "kong.yml:5:15: routes[0].strip_path: cannot set 'strip_path' when 'protocols' is 'grpc' or 'grpcs'"
    );
    assert_eq!(
        one(&format!("{V}routes:\n- protocols: [grpc]\n  paths: [/svc]\n  methods: [POST]\n")),
        "kong.yml:5:12: routes[0].methods: cannot set 'methods' when 'protocols' is 'grpc' or 'grpcs'"
    );
    assert_eq!(
        one(&format!("{V}routes:\n- protocols: [http, grpc]\n  paths: [/svc]\n")),
        "kong.yml:3:14: routes[0].protocols: these sets are mutually exclusive: ('http', 'https'), ('grpc', 'grpcs')"
    );
}

#[test]
fn snis_need_a_tls_protocol() {
    assert_eq!(
        one(&format!("{V}routes:\n- protocols: [http]\n  paths: [/]\n  snis: [a.com]\n")),
        "kong.yml:5:9: routes[0].snis: 'snis' can only be set when 'protocols' is 'grpcs' or 'https'"
    );
}

#[test]
fn unsupported_protocol() {
    assert_eq!(
        one(&format!("{V}services:\n- host: a.com\n  protocol: tcp\n")),
        "kong.yml:4:13: services[0].protocol: protocol 'tcp' is not supported by this version"
    );
    assert_eq!(
        one(&format!("{V}routes:\n- protocols: [ws]\n  paths: [/]\n")),
        "kong.yml:3:15: routes[0].protocols[0]: protocol 'ws' is not supported by this version"
    );
}

#[test]
fn url_conflicts_with_parts() {
    assert_eq!(
        one(&format!(
            "{V}services:\n- url: http://a.com\n  port: 8080\n"
        )),
        "kong.yml:4:9: services[0].port: cannot set 'port' together with 'url'"
    );
}

#[test]
fn grpc_service_has_no_path() {
    assert_eq!(
        one(&format!("{V}services:\n- url: grpc://a.com:9000/x\n")),
        "kong.yml:3:3: services[0]: cannot set 'path' when 'protocol' is 'grpc'"
    );
}

#[test]
fn unsupported_upstream_settings() {
    assert_eq!(
        one(&format!("{V}upstreams:\n- name: u\n  algorithm: latency\n")),
        "kong.yml:4:14: upstreams[0].algorithm: algorithm 'latency' is not supported by this version"
    );
    assert_eq!(
        one(&format!("{V}upstreams:\n- name: u\n  hash_on: path\n")),
        "kong.yml:4:12: upstreams[0].hash_on: hash_on 'path' is not supported by this version"
    );
}

#[test]
fn upstream_hash_rules() {
    assert_eq!(
        one(&format!("{V}upstreams:\n- name: u\n  hash_on: header\n")),
        "kong.yml:4:12: upstreams[0].hash_on: 'hash_on_header' is required when 'hash_on' is 'header'"
    );
    assert_eq!(
        one(&format!("{V}upstreams:\n- name: u\n  hash_on: ip\n  hash_fallback: ip\n")),
        "kong.yml:5:18: upstreams[0].hash_fallback: 'hash_fallback' must differ from 'hash_on' ('ip')"
    );
    assert_eq!(
        one(&format!("{V}upstreams:\n- name: u\n  hash_fallback: consumer\n")),
        "kong.yml:4:18: upstreams[0].hash_fallback: 'hash_fallback' must be 'none' when 'hash_on' is 'none'"
    );
    assert_eq!(
        one(&format!("{V}upstreams:\n- name: 10.0.0.1\n")),
        "kong.yml:3:9: upstreams[0].name: Invalid name; no ip addresses allowed"
    );
}

#[test]
fn health_check_values() {
    assert_eq!(
        one(&format!(
            "{V}upstreams:\n- name: u\n  healthchecks:\n    active:\n      healthy:\n        http_statuses: [200, 1000]\n"
        )),
        "kong.yml:7:30: upstreams[0].healthchecks.active.healthy.http_statuses[1]: value 1000 is out of range: must be between 100 and 999"
    );
}

#[test]
fn target_errors() {
    assert_eq!(
        one(&format!(
            "{V}upstreams:\n- name: u\n  targets:\n  - target: a.internal:80\n  - target: A.internal:80\n"
        )),
        "kong.yml:6:13: upstreams[0].targets[1].target: duplicate target 'a.internal:80' in upstream 'u' (first defined at kong.yml:5:13)"
    );
    assert_eq!(
        one(&format!("{V}upstreams:\n- name: u\n  targets:\n  - target: a:1\n    weight: 70000\n")),
        "kong.yml:6:13: upstreams[0].targets[0].weight: value 70000 is out of range: must be between 0 and 65535"
    );
    assert_eq!(
        one(&format!("{V}targets:\n- target: a:1\n  upstream: nope\n")),
        "kong.yml:4:13: targets[0].upstream: unknown upstream 'nope': no upstream has this name or id"
    );
}

#[test]
fn consumer_errors() {
    assert_eq!(
        one(&format!("{V}consumers:\n- tags: [a]\n")),
        "kong.yml:3:3: consumers[0]: at least one of these fields must be non-empty: 'custom_id', 'username'"
    );
    assert_eq!(
        one(&format!("{V}consumers:\n- username: a\n- username: a\n")),
        "kong.yml:4:13: consumers[1].username: duplicate consumer name 'a' (first defined at kong.yml:3:13)"
    );
}

#[test]
fn credential_errors() {
    assert_eq!(
        one(&format!(
            "{V}consumers:\n- username: a\n  keyauth_credentials:\n  - tags: [x]\n"
        )),
        "kong.yml:5:5: consumers[0].keyauth_credentials[0]: missing required field 'key'"
    );
    assert_eq!(
        one(&format!(
            "{V}consumers:\n- username: a\n  keyauth_credentials:\n  - key: k1\n- username: b\n  keyauth_credentials:\n  - key: k1\n"
        )),
        "kong.yml:8:10: consumers[1].keyauth_credentials[0].key: duplicate keyauth_credentials key (the same value is at kong.yml:5:10)"
    );
}

#[test]
fn unsupported_plugin_is_an_error() {
    let text = format!("{V}services:\n- host: a.com\n  plugins:\n  - name: key-auth\n");
    let e = parse(&[file("kong.yml", &text)], &NoPlugins).expect_err("must fail");
    assert_eq!(
        e.to_string(),
        "kong.yml:5:11: services[0].plugins[0].name: plugin 'key-auth' is not supported by this version"
    );
}

#[test]
fn plugin_config_errors_point_into_config() {
    let e = errors(&format!(
        "{V}plugins:\n- name: rate-limiting\n  config:\n    minute: \"5\"\n    days: 1\n"
    ));
    assert_eq!(
        e,
        vec![
            "kong.yml:5:13: plugins[0].config.minute: expected an integer",
            "kong.yml:6:11: plugins[0].config.days: unknown field",
        ]
    );
}

#[test]
fn plugin_twice_on_one_scope() {
    assert_eq!(
        one(&format!(
            "{V}services:\n- name: s\n  host: a.com\n  plugins:\n  - name: cors\nplugins:\n- name: cors\n  service: s\n"
        )),
        "kong.yml:8:9: plugins[0].name: plugin 'cors' is configured twice for the same service, route and consumer (first at kong.yml:6:11)"
    );
}

#[test]
fn nested_entity_cannot_repeat_its_parent() {
    assert_eq!(
        one(&format!("{V}services:\n- name: s\n  host: a.com\n  routes:\n  - paths: [/]\n    service: s\n")),
        "kong.yml:7:14: services[0].routes[0].service: cannot set 'service' here: the entity is nested under a service"
    );
}

#[test]
fn dangling_reference() {
    assert_eq!(
        one(&format!("{V}routes:\n- paths: [/]\n  service: nope\n")),
        "kong.yml:4:12: routes[0].service: unknown service 'nope': no service has this name or id"
    );
    assert_eq!(
        one(&format!(
            "{V}plugins:\n- name: cors\n  route: {{name: nope}}\n"
        )),
        "kong.yml:4:17: plugins[0].route.name: unknown route 'nope': no route has this name or id"
    );
}

#[test]
fn duplicate_names_and_ids() {
    assert_eq!(
        one(&format!("{V}services:\n- name: s\n  host: a.com\n- name: s\n  host: b.com\n")),
        "kong.yml:5:9: services[1].name: duplicate service name 's' (first defined at kong.yml:3:9)"
    );
    let id = "0b5a4c1e-3c5d-4f5e-9a8b-1c2d3e4f5a6b";
    assert_eq!(
        one(&format!(
            "{V}routes:\n- id: {id}\n  paths: [/a]\n- id: {id}\n  paths: [/b]\n"
        )),
        format!(
            "kong.yml:5:7: routes[1].id: duplicate route id '{id}' (first defined at kong.yml:3:7)"
        )
    );
    assert_eq!(
        one(&format!("{V}routes:\n- id: 42abc\n  paths: [/a]\n")),
        "kong.yml:3:7: routes[0].id: expected a valid UUID, found '42abc'"
    );
}

#[test]
fn certificate_errors() {
    assert_eq!(
        one(&format!("{V}certificates:\n- cert: not a pem\n  key: |\n    -----BEGIN PRIVATE KEY-----\n    MIIB\n    -----END PRIVATE KEY-----\n")),
        "kong.yml:3:9: certificates[0].cert: invalid certificate: no PEM block found (expected '-----BEGIN CERTIFICATE-----')"
    );
}

#[test]
fn duplicate_yaml_key() {
    assert_eq!(
        one(&format!("{V}services:\n- host: a.com\n  host: b.com\n")),
        "kong.yml:4:3: services[0].host: duplicate key 'host' (first at line 3)"
    );
}

#[test]
fn every_error_is_reported() {
    let text = "_format_version: \"3.0\"
services:
- name: api
  host: api.internal
  port: \"80\"
  routes:
  - paths: [/ok, ~/bad(]
    hosts: [a.*.com]
  - name: empty
- name: api
  protocol: udp
  host: other
routes:
- service: missing
  paths: [/x]
  colour: blue
plugins:
- name: no-such-plugin
";
    let e = errors(text);
    assert_eq!(
        e,
        vec![
            "kong.yml:5:9: services[0].port: expected integer, found string \"80\"",
            "kong.yml:7:18: services[0].routes[0].paths[1]: invalid regex: '/bad(' (unclosed group at column 5)",
            "kong.yml:8:13: services[0].routes[0].hosts[0]: invalid wildcard: must be placed at leftmost or rightmost label",
            "kong.yml:9:5: services[0].routes[1]: must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https'",
            "kong.yml:10:9: services[1].name: duplicate service name 'api' (first defined at kong.yml:3:9)",
            "kong.yml:11:13: services[1].protocol: protocol 'udp' is not supported by this version",
            "kong.yml:14:12: routes[0].service: unknown service 'missing': no service has this name or id",
            "kong.yml:16:3: routes[0].colour: unknown field 'colour'",
            "kong.yml:18:9: plugins[0].name: plugin 'no-such-plugin' is not supported by this version",
        ]
    );
}

#[test]
fn pcre_only_regex_features_are_reported() {
    assert_eq!(
        one(&format!("{V}routes:\n- paths: ['~/a(?=b)']\n")),
        "kong.yml:3:11: routes[0].paths[0]: invalid regex: '/a(?=b)' (look-around, including look-ahead and look-behind, is not supported at column 3)"
    );
    assert_eq!(
        one(&format!("{V}routes:\n- paths: ['~/(a)\\1']\n")),
        "kong.yml:3:11: routes[0].paths[0]: invalid regex: '/(a)\\1' (backreferences are not supported at column 5)"
    );
}

const CERT: &str = "|\n    -----BEGIN CERTIFICATE-----\n    MIIBszCCAVmgAwIBAgIUQ2Fh\n    -----END CERTIFICATE-----";
const KEY: &str = "|\n    -----BEGIN PRIVATE KEY-----\n    MIGHAgEAMBMGByqGSM49AgEG\n    -----END PRIVATE KEY-----";

#[test]
fn certificate_sni_and_ca_errors() {
    let text = format!(
        "{V}certificates:
- cert: {CERT}
  key: {KEY}
  snis: [api.example.com, \"*.*.example.com\", 10.0.0.1]
- cert: {CERT}
  key: {KEY}
  cert_alt: {CERT}
snis:
- name: API.example.com
  certificate: {{ id: 7e1c7c1b-4b4f-4a57-9a3e-111111111111 }}
- name: other.example.com
ca_certificates:
- cert: |
    -----BEGIN CERTIFICATE-----
    MIIBszCCAVmgAwIBAgIUQ2Fh
    -----END CERTIFICATE-----
    -----BEGIN CERTIFICATE-----
    MIIBszCCAVmgAwIBAgIUQ2Fh
    -----END CERTIFICATE-----
  cert_digest: nothex
"
    );
    assert_eq!(
        errors(&text),
        vec![
            "kong.yml:11:27: certificates[0].snis[1]: only one wildcard must be specified",
            "kong.yml:11:46: certificates[0].snis[2]: must not be an IP",
            "kong.yml:12:3: certificates[1]: all or none of these fields must be set: 'cert_alt', 'key_alt'",
            // SNI names compare case-insensitively.
            "kong.yml:25:9: snis[0].name: duplicate SNI name 'api.example.com' (first defined at kong.yml:11:10)",
            "kong.yml:26:22: snis[0].certificate.id: unknown certificate '7e1c7c1b-4b4f-4a57-9a3e-111111111111': no certificate has this id",
            "kong.yml:27:3: snis[1]: missing required field 'certificate'",
            "kong.yml:30:5: ca_certificates[0].cert: please submit only one certificate at a time",
            "kong.yml:36:16: ca_certificates[0].cert_digest: expected a SHA-256 digest (64 hex characters)",
        ]
    );
}
