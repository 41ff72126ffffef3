//! `correlation-id` (Kong priority 100001): give every request a
//! correlation id header, keep one the client already sent, optionally echo
//! it to the client.
//!
//! Config (Kong's): `header_name` (default `Kong-Request-ID`), `generator`
//! (`uuid#counter` default, `uuid`, `tracker`), `echo_downstream` (false).

use super::{schema, ConfigIssues, Flow, Plugin, PluginFactory, RequestCtx};
use http::{HeaderName, HeaderValue};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub struct Factory;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Generator {
    Uuid,
    UuidCounter,
    Tracker,
}

struct CorrelationId {
    header: HeaderName,
    generator: Generator,
    echo_downstream: bool,
    /// Per-instance uuid prefix for `uuid#counter`.
    prefix: String,
    counter: AtomicU64,
}

/// The id chosen for this request, kept for the response phase.
#[derive(Clone)]
struct ChosenId(HeaderValue);

fn uuid_v4() -> String {
    let b: [u8; 16] = rand::random();
    let mut b = b;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl PluginFactory for Factory {
    fn name(&self) -> &'static str {
        "correlation-id"
    }
    fn priority(&self) -> i32 {
        100001
    }
    fn check(&self, config: &serde_json::Value) -> Result<serde_json::Value, ConfigIssues> {
        let mut issues = Vec::new();
        let Some(obj) = schema::object(
            config,
            &["header_name", "generator", "echo_downstream"],
            &mut issues,
        ) else {
            return Err(issues);
        };
        let header = schema::string(obj, "header_name", Some("Kong-Request-ID"), &mut issues);
        if let Some(h) = &header {
            if HeaderName::from_bytes(h.as_bytes()).is_err() {
                issues.push(("header_name".into(), format!("invalid header name {h:?}")));
            }
        }
        let generator = schema::string(obj, "generator", Some("uuid#counter"), &mut issues);
        if let Some(g) = &generator {
            if !["uuid", "uuid#counter", "tracker"].contains(&g.as_str()) {
                issues.push((
                    "generator".into(),
                    format!("expected one of: uuid, uuid#counter, tracker; found {g:?}"),
                ));
            }
        }
        let echo = schema::boolean(obj, "echo_downstream", false, &mut issues);
        if !issues.is_empty() {
            return Err(issues);
        }
        Ok(serde_json::json!({
            "header_name": header,
            "generator": generator,
            "echo_downstream": echo,
        }))
    }
    fn build(&self, config: &serde_json::Value) -> Result<Arc<dyn Plugin>, String> {
        let header = config["header_name"].as_str().unwrap_or("Kong-Request-ID");
        let header = HeaderName::from_bytes(header.as_bytes()).map_err(|e| e.to_string())?;
        let generator = match config["generator"].as_str() {
            Some("uuid") => Generator::Uuid,
            Some("tracker") => Generator::Tracker,
            _ => Generator::UuidCounter,
        };
        Ok(Arc::new(CorrelationId {
            header,
            generator,
            echo_downstream: config["echo_downstream"].as_bool().unwrap_or(false),
            prefix: uuid_v4(),
            counter: AtomicU64::new(0),
        }))
    }
}

impl CorrelationId {
    fn generate(&self, ctx: &RequestCtx) -> String {
        match self.generator {
            Generator::Uuid => uuid_v4(),
            Generator::UuidCounter => {
                let n = self.counter.fetch_add(1, Ordering::Relaxed) + 1;
                format!("{}#{n}", self.prefix)
            }
            Generator::Tracker => format!(
                "{}-{}-{}",
                ctx.client_addr.ip(),
                ctx.client_addr.port(),
                ctx.request_id
            ),
        }
    }
}

#[async_trait::async_trait]
impl Plugin for CorrelationId {
    fn name(&self) -> &'static str {
        "correlation-id"
    }

    async fn request_filter(&self, req: &mut http::request::Parts, ctx: &mut RequestCtx) -> Flow {
        let value = match req.headers.get(&self.header) {
            Some(v) if !v.is_empty() => v.clone(),
            _ => {
                let generated = self.generate(ctx);
                match HeaderValue::from_str(&generated) {
                    Ok(v) => {
                        req.headers.insert(self.header.clone(), v.clone());
                        v
                    }
                    Err(_) => return Flow::Continue,
                }
            }
        };
        ctx.extensions.insert(ChosenId(value));
        Flow::Continue
    }

    fn response_filter(&self, resp: &mut http::response::Parts, ctx: &mut RequestCtx) {
        if self.echo_downstream {
            if let Some(ChosenId(v)) = ctx.extensions.get::<ChosenId>() {
                resp.headers.insert(self.header.clone(), v.clone());
            }
        }
    }
}
