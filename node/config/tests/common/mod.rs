//! Shared test helpers: a small plugin catalog and parse shortcuts.
#![allow(dead_code)]

use gateway_config::{parse, Config, ConfigErrors, PluginCatalog, SourceFile};
use serde_json::{json, Map, Value};

/// Knows `key-auth`, `rate-limiting` and `cors`; fills defaults and rejects
/// unknown config keys and wrong types, like the node's registry will.
pub struct TestCatalog;

impl PluginCatalog for TestCatalog {
    fn check(&self, name: &str, config: &Value) -> Option<Result<Value, Vec<(String, String)>>> {
        let (defaults, ints): (Value, &[&str]) = match name {
            "key-auth" => (
                json!({"key_names": ["apikey"], "hide_credentials": false}),
                &[],
            ),
            "rate-limiting" => (
                json!({"policy": "local", "second": null, "minute": null, "hour": null}),
                &["second", "minute", "hour"],
            ),
            "cors" => (json!({"origins": [], "credentials": false}), &[]),
            _ => return None,
        };
        let Value::Object(mut out) = defaults else {
            return None;
        };
        let given = config.as_object().cloned().unwrap_or_else(Map::new);
        let mut errors = Vec::new();
        for (k, v) in given {
            if !out.contains_key(&k) {
                errors.push((k, "unknown field".to_string()));
            } else if ints.contains(&k.as_str()) && !(v.is_u64() || v.is_null()) {
                errors.push((k, "expected an integer".to_string()));
            } else {
                out.insert(k, v);
            }
        }
        if errors.is_empty() {
            Some(Ok(Value::Object(out)))
        } else {
            Some(Err(errors))
        }
    }
}

pub fn file(name: &str, text: &str) -> SourceFile {
    SourceFile {
        name: name.to_string(),
        text: text.to_string(),
    }
}

pub fn load(text: &str) -> Result<Config, ConfigErrors> {
    parse(&[file("kong.yml", text)], &TestCatalog)
}

pub fn load_ok(text: &str) -> Config {
    match load(text) {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

/// The rendered errors, one string each.
pub fn errors(text: &str) -> Vec<String> {
    match load(text) {
        Ok(_) => panic!("expected errors, the config is valid"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

pub const FIXTURE: &str = include_str!("../fixtures/kong.yml");
