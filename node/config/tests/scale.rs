//! A large config (10,000 routes) parses, resolves and round-trips.

mod common;

use common::*;

#[test]
fn ten_thousand_routes() {
    let mut text = String::from("_format_version: \"3.0\"\nservices:\n");
    for s in 0..1000 {
        text.push_str(&format!(
            "- name: svc-{s}\n  url: http://backend-{s}.internal:8080\n  routes:\n"
        ));
        for r in 0..10 {
            text.push_str(&format!(
                "  - name: svc-{s}-r{r}\n    paths: [/api/{s}/{r}]\n    methods: [GET]\n    plugins:\n    - name: cors\n"
            ));
        }
    }
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
