//! Several files merge into one config; duplicates across files are errors
//! naming both files.

mod common;

use common::*;
use gateway_config::parse;

fn parse_files(files: &[(&str, &str)]) -> Result<gateway_config::Config, Vec<String>> {
    let files: Vec<_> = files.iter().map(|(n, t)| file(n, t)).collect();
    parse(&files, &TestCatalog).map_err(|e| e.0.iter().map(ToString::to_string).collect())
}

const A: &str = "_format_version: \"3.0\"
services:
- name: foo
  host: foo.internal
  routes:
  - name: foo-a
    paths: [/a]
routes:
- name: top-a
  service: bar
  paths: [/top-a]
";

const B: &str = "_format_version: \"3.0\"
services:
- name: bar
  host: bar.internal
  routes:
  - name: bar-b
    paths: [/b]
upstreams:
- name: bar.internal
  targets:
  - target: 10.0.0.2
plugins:
- name: cors
  route: foo-a
";

#[test]
fn files_merge_in_order_and_refer_to_each_other() {
    let c = parse_files(&[("a.yml", A), ("b.yml", B)]).expect("valid");
    let services: Vec<_> = c.services.iter().map(|s| s.name.as_deref()).collect();
    assert_eq!(services, vec![Some("foo"), Some("bar")]);
    let routes: Vec<_> = c
        .routes
        .iter()
        .map(|r| (r.name.as_deref(), r.service))
        .collect();
    assert_eq!(
        routes,
        vec![
            (Some("foo-a"), Some(0)),
            (Some("bar-b"), Some(1)),
            (Some("top-a"), Some(1)),
        ]
    );
    assert_eq!(c.services[1].upstream, Some(0));
    assert_eq!(c.plugins[0].route, Some(0));
}

#[test]
fn duplicates_across_files_name_both_files() {
    let b = "_format_version: \"3.0\"\nservices:\n- name: foo\n  host: other.internal\n";
    assert_eq!(
        parse_files(&[("a.yml", A), ("b.yml", b)]).expect_err("duplicate"),
        vec![
            "a.yml:10:12: routes[0].service: unknown service 'bar': no service has this name or id",
            "b.yml:3:9: services[0].name: duplicate service name 'foo' (first defined at a.yml:3:9)",
        ]
    );
}

#[test]
fn format_versions_must_agree() {
    let b = "_format_version: \"2.1\"\n";
    assert_eq!(
        parse_files(&[("a.yml", "_format_version: \"3.0\"\n"), ("b.yml", b)])
            .expect_err("mismatch"),
        vec!["b.yml:1:18: _format_version: _format_version '2.1' differs from '3.0' at a.yml:1:18"]
    );
}

#[test]
fn errors_in_every_file_are_reported() {
    let a = "_format_version: \"3.0\"\nservices: [\n";
    let b = "_format_version: \"3.0\"\nroutes:\n- paths: [x]\n";
    assert_eq!(
        parse_files(&[("a.yml", a), ("b.yml", b)]).expect_err("errors"),
        vec![
            "a.yml:3:1: services[0]: invalid YAML: while parsing a node, did not find expected node content",
            "b.yml:3:11: routes[0].paths[0]: should start with: / (fixed path) or ~/ (regex path)",
        ]
    );
}

#[test]
fn no_files_is_an_error() {
    assert_eq!(
        parse_files(&[]).expect_err("nothing"),
        vec![":0:0: no config files given"]
    );
}
