//! Gateway-generated responses, in Kong's JSON shape:
//! `{"message":"...","request_id":"..."}` with the request id also in the
//! `X-Gateway-Request-Id` header.

use crate::proxy::body::{full, ProxyBody};
use http::{header, HeaderName, HeaderValue, Response, StatusCode};

/// Response header carrying the gateway's request id, on every response.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-gateway-request-id");

/// Why the gateway answered a request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayError {
    NoRoute,
    NoService,
    BadRequest,
    BadPath,
    /// An HTTP/1 request with both `Content-Length` and `Transfer-Encoding`.
    AmbiguousFraming,
    /// An HTTP/1 request head with a line ended by a bare LF.
    BareLineFeed,
    BodyTooLarge,
    UpstreamFailed,
    NoHealthyUpstream,
    UpstreamTimeout,
    HttpsRequired(u16),
    Internal,
}

impl GatewayError {
    pub fn status(self) -> StatusCode {
        match self {
            GatewayError::NoRoute => StatusCode::NOT_FOUND,
            GatewayError::NoService | GatewayError::NoHealthyUpstream => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            GatewayError::BadRequest
            | GatewayError::BadPath
            | GatewayError::AmbiguousFraming
            | GatewayError::BareLineFeed => StatusCode::BAD_REQUEST,
            GatewayError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::UpstreamFailed => StatusCode::BAD_GATEWAY,
            GatewayError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::HttpsRequired(code) => {
                StatusCode::from_u16(code).unwrap_or(StatusCode::UPGRADE_REQUIRED)
            }
            GatewayError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Kong's messages where Kong has one.
    pub fn message(self) -> &'static str {
        match self {
            GatewayError::NoRoute => "no Route matched with those values",
            GatewayError::NoService => "no Service found with those values",
            GatewayError::BadRequest => "Bad request",
            GatewayError::BadPath => "Bad request: invalid path",
            GatewayError::AmbiguousFraming => {
                "Bad request: both Content-Length and Transfer-Encoding"
            }
            GatewayError::BareLineFeed => "Bad request: a header line ends in LF without CR",
            GatewayError::BodyTooLarge => "Request size limit exceeded",
            GatewayError::UpstreamFailed => {
                "An invalid response was received from the upstream server"
            }
            GatewayError::NoHealthyUpstream => "failure to get a peer from the ring-balancer",
            GatewayError::UpstreamTimeout => "The upstream server is timing out",
            GatewayError::HttpsRequired(_) => "Please use HTTPS protocol",
            GatewayError::Internal => "An unexpected error occurred",
        }
    }
}

/// A JSON error response carrying the request id.
pub fn error_response(err: GatewayError, request_id: &str) -> Response<ProxyBody> {
    json_response(err.status(), err.message(), request_id)
}

/// The JSON body of a gateway-made response.
pub fn json_body(message: &str, request_id: &str) -> String {
    serde_json::json!({ "message": message, "request_id": request_id }).to_string()
}

pub fn json_response(status: StatusCode, message: &str, request_id: &str) -> Response<ProxyBody> {
    let body = json_body(message, request_id);
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert(REQUEST_ID_HEADER, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn no_route_is_kongs_404_with_request_id() {
        let resp = error_response(GatewayError::NoRoute, "abc123");
        assert_eq!(resp.status(), 404);
        assert_eq!(resp.headers()[&REQUEST_ID_HEADER], "abc123");
        let body = resp.into_body().collect().await.map(|c| c.to_bytes()).ok();
        let v: serde_json::Value =
            serde_json::from_slice(&body.unwrap_or_default()).unwrap_or_default();
        assert_eq!(v["message"], "no Route matched with those values");
        assert_eq!(v["request_id"], "abc123");
    }
}
