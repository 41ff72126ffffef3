//! `request-termination` (Kong priority 2): answer every request of its
//! scope with a fixed status and message/body, without calling the upstream.
//!
//! Config (Kong's): `status_code` (503), `message` or `body` +
//! `content_type`, `echo` (false), `trigger` (a header or query name: only
//! terminate when it is present).

use super::{schema, ConfigIssues, Flow, Plugin, PluginFactory, RequestCtx};
use crate::proxy::body::full;
use std::sync::Arc;

pub struct Factory;

struct RequestTermination {
    status: http::StatusCode,
    body: bytes::Bytes,
    content_type: http::HeaderValue,
    trigger: Option<String>,
}

const FIELDS: &[&str] = &[
    "status_code",
    "message",
    "body",
    "content_type",
    "echo",
    "trigger",
];

impl PluginFactory for Factory {
    fn name(&self) -> &'static str {
        "request-termination"
    }
    fn priority(&self) -> i32 {
        2
    }
    fn check(&self, config: &serde_json::Value) -> Result<serde_json::Value, ConfigIssues> {
        let mut issues = Vec::new();
        let Some(obj) = schema::object(config, FIELDS, &mut issues) else {
            return Err(issues);
        };
        let status = schema::integer(obj, "status_code", Some(503), 100..=599, &mut issues);
        let message = schema::string(obj, "message", None, &mut issues);
        let body = schema::string(obj, "body", None, &mut issues);
        let content_type = schema::string(obj, "content_type", None, &mut issues);
        let echo = schema::boolean(obj, "echo", false, &mut issues);
        let trigger = schema::string(obj, "trigger", None, &mut issues);
        if message.is_some() && body.is_some() {
            issues.push((
                "message".into(),
                "message and body are mutually exclusive".into(),
            ));
        }
        if content_type.is_some() && body.is_none() {
            issues.push(("content_type".into(), "content_type requires body".into()));
        }
        if echo {
            issues.push((
                "echo".into(),
                "echo is not supported by this version".into(),
            ));
        }
        if !issues.is_empty() {
            return Err(issues);
        }
        Ok(serde_json::json!({
            "status_code": status, "message": message, "body": body,
            "content_type": content_type, "echo": echo, "trigger": trigger,
        }))
    }
    fn build(&self, config: &serde_json::Value) -> Result<Arc<dyn Plugin>, String> {
        let code = config["status_code"].as_u64().unwrap_or(503) as u16;
        let status = http::StatusCode::from_u16(code).map_err(|e| e.to_string())?;
        let (body, content_type) = if let Some(b) = config["body"].as_str() {
            let ct = config["content_type"]
                .as_str()
                .unwrap_or("application/json; charset=utf-8");
            (b.to_owned(), ct.to_owned())
        } else {
            let msg = config["message"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| status.canonical_reason().unwrap_or("terminated").to_owned());
            (
                serde_json::json!({ "message": msg }).to_string(),
                "application/json; charset=utf-8".to_owned(),
            )
        };
        Ok(Arc::new(RequestTermination {
            status,
            body: body.into(),
            content_type: http::HeaderValue::from_str(&content_type).map_err(|e| e.to_string())?,
            trigger: config["trigger"].as_str().map(str::to_owned),
        }))
    }
}

#[async_trait::async_trait]
impl Plugin for RequestTermination {
    fn name(&self) -> &'static str {
        "request-termination"
    }

    async fn request_filter(&self, req: &mut http::request::Parts, _ctx: &mut RequestCtx) -> Flow {
        if let Some(t) = &self.trigger {
            let in_header = req.headers.contains_key(t.as_str());
            let in_query = req.uri.query().is_some_and(|q| {
                q.split('&')
                    .any(|kv| kv.split('=').next() == Some(t.as_str()))
            });
            if !in_header && !in_query {
                return Flow::Continue;
            }
        }
        let mut resp = http::Response::new(full(self.body.clone()));
        *resp.status_mut() = self.status;
        resp.headers_mut()
            .insert(http::header::CONTENT_TYPE, self.content_type.clone());
        Flow::Respond(resp)
    }
}
