//! HTTP's side of [`crate::access`]: who is calling (client certificate,
//! else bearer token), what the request does, and a 401 (no or unknown
//! credentials) or 403 (not allowed) JSON answer, logged, before any
//! handler runs. A request let through carries its [`Caller`] as an
//! extension, for the handlers whose answer depends on who asks (a bank's
//! lookups show only its own transactions). The console's static page and
//! assets (`/`, `/console.js`, `/console.css`: no data) are routed outside
//! this middleware; the page's data fetches pass through it.

use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use settle_codec::ParticipantId;
use settle_security::tokens::TokenTable;
use tracing::warn;

use crate::access::{Caller, Op};

/// What the middleware needs: the tokens (`None` on an `--insecure` node).
#[derive(Clone)]
pub struct HttpAccess {
    pub tokens: Option<Arc<ArcSwap<TokenTable>>>,
    /// Largest body buffered to read a submit's debtor.
    pub body_bytes_max: usize,
}

fn refuse(status: StatusCode, message: String) -> Response {
    let mut response =
        (status, axum::Json(serde_json::json!({ "error": message }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            "Bearer".parse().expect("a valid header"),
        );
    }
    response
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The caller of `request`; `None` for a token that is not (or no longer) valid.
fn caller(
    access: &HttpAccess,
    conn: &crate::http_tls::Caller,
    request: &Request,
) -> Option<Caller> {
    let Some(tokens) = &access.tokens else {
        return Some(Caller::Insecure);
    };
    if !conn.tls {
        return Some(Caller::Insecure);
    }
    if let Some(identity) = &conn.identity {
        return Some(Caller::Known(identity.clone()));
    }
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return Some(Caller::Anonymous);
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let identity = token.and_then(|t| tokens.load().lookup(t, now_unix()).cloned());
    if identity.is_none() {
        warn!(peer = %conn.addr, "HTTP request with an unknown or expired token refused");
    }
    identity.map(Caller::Known)
}

/// What a request does; `None` for a route that does not exist (the router
/// answers it 404/405, to an authenticated caller only).
fn op(method: &Method, path: &str, query: Option<&str>, body: Option<&Bytes>) -> Option<Op> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let op = match (method.as_str(), segments.as_slice()) {
        ("POST", ["v1", "transactions"]) => {
            let debtor = body
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                .and_then(|v| v.get("debtor")?.as_str().and_then(ParticipantId::from_name));
            // No readable debtor: only a caller allowed to submit as anyone
            // reaches the handler (which answers 422).
            Op::SubmitAs(debtor.unwrap_or(ParticipantId(u32::MAX)))
        }
        ("GET", ["v1", "transactions", _]) | ("GET", ["v1", "transactions", _, "events"]) => {
            Op::ReadTransactions
        }
        ("GET", ["v1", "participants"]) => Op::ReadParticipants,
        ("POST", ["v1", "participants"]) => Op::WriteParticipants,
        ("GET", ["v1", "balances"]) => {
            let participant = query.and_then(|q| {
                q.split('&')
                    .find_map(|kv| kv.strip_prefix("participant="))
                    .map(|name| ParticipantId::from_name(name).unwrap_or(ParticipantId(u32::MAX)))
            });
            Op::ReadBalances(participant)
        }
        ("GET", ["v1", "forecast"]) => {
            // A forecast shows a balance's future: read like that balance.
            let participant = query
                .and_then(|q| {
                    q.split('&')
                        .find_map(|kv| kv.strip_prefix("participant="))
                        .and_then(ParticipantId::from_name)
                })
                .unwrap_or(ParticipantId(u32::MAX));
            Op::ReadBalances(Some(participant))
        }
        ("POST", ["v1", "deposits"]) => Op::Deposit,
        ("POST", ["v1", "cycles"]) => Op::RunCycle,
        ("GET", ["v1", "cycles"]) | ("GET", ["v1", "cycles", _]) => Op::ReadCycles,
        ("GET", ["v1", "fx"]) => Op::ReadFx,
        ("PUT", ["v1", "fx"]) => Op::WriteFx,
        ("GET", ["metrics"]) => Op::ReadMetrics,
        _ => return None,
    };
    Some(op)
}

/// The middleware: decides, logs a refusal, or runs the handler.
pub async fn authorize(
    State(access): State<HttpAccess>,
    ConnectInfo(conn): ConnectInfo<crate::http_tls::Caller>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(caller) = caller(&access, &conn, &request) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "unknown or expired bearer token".into(),
        );
    };
    if caller == Caller::Insecure {
        request.extensions_mut().insert(caller);
        return next.run(request).await;
    }
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query = request.uri().query().map(str::to_string);
    // A submit's debtor is in its body: read it (bounded) and put it back.
    let (request, body) =
        if method == Method::POST && path.trim_end_matches('/') == "/v1/transactions" {
            let (parts, body) = request.into_parts();
            let Ok(bytes) = axum::body::to_bytes(body, access.body_bytes_max).await else {
                return refuse(StatusCode::PAYLOAD_TOO_LARGE, "body too large".into());
            };
            (
                Request::from_parts(parts, Body::from(bytes.clone())),
                Some(bytes),
            )
        } else {
            (request, None)
        };
    let decision = match op(&method, &path, query.as_deref(), body.as_ref()) {
        Some(op) => caller.check(op),
        None if caller == Caller::Anonymous => caller.check(Op::Status),
        None => Ok(()),
    };
    match decision {
        Ok(()) => {
            let mut request = request;
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(denied) => {
            warn!(peer = %conn.addr, %method, %path, %denied, "HTTP request refused");
            let status = if caller == Caller::Anonymous {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::FORBIDDEN
            };
            refuse(status, denied.to_string())
        }
    }
}
