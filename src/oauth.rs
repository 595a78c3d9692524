//! `POST /oauth/token`: the OAuth 2.0 client-credentials grant (RFC 6749 §4.4). Clients
//! authenticate with HTTP Basic or with `client_id`/`client_secret` in the body (form or
//! JSON) and get a bearer token for both fronts. Errors follow RFC 6749 §5.2.

use base64::Engine;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;

use crate::token::{TokenError, Tokens};

/// The token route.
pub const TOKEN_PATH: &str = "/oauth/token";

/// Unknown parameters are ignored, as RFC 6749 §3.2 requires.
#[derive(Debug, Default, Deserialize)]
struct TokenRequest {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    /// Accepted and ignored: every token grants the whole API.
    #[allow(dead_code)]
    scope: Option<String>,
}

/// Handles a POST to the token route. A body that has not arrived within
/// `body_read_timeout` gets 408 (as on the callback route), so a client that stalls does
/// not hold its connection.
pub async fn token(
    tokens: Option<&Tokens>,
    max_body: usize,
    body_read_timeout: std::time::Duration,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let basic = req.headers().get(header::AUTHORIZATION).cloned();
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    let collect = Limited::new(req.into_body(), max_body).collect();
    let Ok(body) = tokio::time::timeout(body_read_timeout, collect).await else {
        return error(&TokenError::BodyTimedOut(format!(
            "body: not received within {}",
            humantime::format_duration(body_read_timeout)
        )));
    };
    let body = match body {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return error(&TokenError::InvalidRequest(
                "the body is unreadable or too large".into(),
            ));
        }
    };
    issue(tokens, basic.as_ref(), json, &body).unwrap_or_else(|e| error(&e))
}

fn issue(
    tokens: Option<&Tokens>,
    basic: Option<&HeaderValue>,
    json: bool,
    body: &[u8],
) -> Result<Response<Full<Bytes>>, TokenError> {
    let form: TokenRequest = if body.iter().all(u8::is_ascii_whitespace) {
        TokenRequest::default()
    } else if json {
        serde_json::from_slice(body)
            .map_err(|e| TokenError::InvalidRequest(format!("body: {e}")))?
    } else {
        serde_urlencoded::from_bytes(body)
            .map_err(|e| TokenError::InvalidRequest(format!("body: {e}")))?
    };
    let grant_type = form
        .grant_type
        .ok_or_else(|| TokenError::InvalidRequest("grant_type: missing".into()))?;
    if grant_type != "client_credentials" {
        return Err(TokenError::UnsupportedGrantType(format!(
            "grant_type: `{grant_type}` is not supported; use client_credentials"
        )));
    }
    let (id, secret) = match (basic, form.client_id, form.client_secret) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(TokenError::InvalidRequest(
                "client credentials given twice (Authorization header and body); use one".into(),
            ));
        }
        (Some(header), None, None) => parse_basic(header)?,
        (None, Some(id), Some(secret)) => (id, secret),
        (None, _, _) => {
            return Err(TokenError::InvalidClient(
                "client authentication failed: send client_id and client_secret, or HTTP Basic"
                    .into(),
            ));
        }
    };
    let tokens =
        tokens.ok_or_else(|| TokenError::InvalidClient("client authentication failed".into()))?;
    let issued = tokens.issue(&id, &secret)?;
    tracing::info!(client_id = %id, "access token issued");
    let body = json!({
        "access_token": issued.access_token.expose(),
        "token_type": "bearer",
        "expires_in": issued.expires_in,
    });
    Ok(reply(StatusCode::OK, &body))
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))` (RFC 6749 §2.3.1).
fn parse_basic(header: &HeaderValue) -> Result<(String, String), TokenError> {
    let invalid = || {
        TokenError::InvalidClient(
            "client authentication failed: malformed Basic credentials".into(),
        )
    };
    let value = header.to_str().map_err(|_| invalid())?.trim();
    let (scheme, encoded) = value.split_once(' ').ok_or_else(invalid)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(invalid());
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| invalid())?;
    let decoded = String::from_utf8(decoded).map_err(|_| invalid())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(invalid)?;
    let unescape = |s: &str| -> Result<String, TokenError> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(&format!("v={s}")).map_err(|_| invalid())?;
        Ok(pairs.into_iter().next().map(|(_, v)| v).unwrap_or_default())
    };
    Ok((unescape(id)?, unescape(secret)?))
}

fn reply(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // Tokens must not be cached (RFC 6749 §5.1).
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

fn error(e: &TokenError) -> Response<Full<Bytes>> {
    let (status, code, description) = match e {
        TokenError::InvalidClient(d) => (StatusCode::UNAUTHORIZED, "invalid_client", d),
        TokenError::UnsupportedGrantType(d) => {
            (StatusCode::BAD_REQUEST, "unsupported_grant_type", d)
        }
        TokenError::InvalidRequest(d) => (StatusCode::BAD_REQUEST, "invalid_request", d),
        TokenError::BodyTimedOut(d) => (StatusCode::REQUEST_TIMEOUT, "invalid_request", d),
    };
    tracing::debug!(error = code, description = %crate::error::Escaped(description), "token request refused");
    let mut response = reply(
        status,
        &json!({ "error": code, "error_description": description }),
    );
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"recording-events\""),
        );
    }
    response
}
