//! JSON over HTTP, for people and scripts: one transaction per request.
//!
//! Runs on its own thread with a small tokio runtime (axum): this is the
//! convenience path, not the data plane, so it may not take a core from the
//! shards. It reaches the shards through the same bounded inboxes as TCP.
//!
//! - `POST /v1/transactions`: 201 Created, 200 for an idempotent retry,
//!   409 Conflict with the original, 422 naming the field at fault.
//! - `GET /v1/transactions/{id}`: status and events, 404 if unknown (or,
//!   to a bank, if it is no party to it: see [`crate::access`]).
//! - `GET /v1/transactions/{id}/events`: the audit trail, explained.
//! - `GET /v1/participants`, `POST /v1/participants`: read, add or update
//!   (409 for a change to a booked opening balance: use a deposit).
//! - `GET /v1/balances[?participant=bank_07]`, `POST /v1/deposits`.
//! - `GET /v1/forecast?participant=bank_07&currency=USD[&hours=8|&steps=N]`:
//!   the balance over the next hours with 80/90/95 % intervals, and a
//!   shortfall when the 95 % lower bound goes below zero.
//! - `POST /v1/cycles` (`{"window":"T0"}`: run one now), `GET /v1/cycles`
//!   (`?after=K&max=N`), `GET /v1/cycles/{k}` (record re-costed by the checker).
//! - `GET /v1/fx`, `PUT /v1/fx`: the cycle parameters.
//! - `GET /metrics`: Prometheus (OpenMetrics text; auditor, operator or
//!   admin). This thread publishes its own metrics cells like a core does.
//! - `GET /`: the live console ([`crate::console`]), a static page open to
//!   all whose data fetches carry the operator's token.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::{json, Map, Value};
use settle_codec::{
    parse_id, Currency, Field, ParticipantId, RejectReason, Transaction, TxResult, TxStatus, Window,
};
use tokio::sync::oneshot;

use crate::access::Caller;
use crate::intake::{Intake, ShardError};
use crate::participants::ParticipantSpec;

/// Largest HTTP body accepted: one transaction or one participant is < 1 KiB.
const HTTP_BODY_BYTES_MAX: usize = 64 * 1024;

/// The HTTP server thread.
pub struct HttpServer {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpServer {
    /// Binds `addr` and serves on a new thread.
    pub fn start(
        addr: SocketAddr,
        intake: Intake,
        security: Option<crate::credentials::ServerSecurity>,
        limits: crate::intake::limits::ClientLimits,
        mut metrics: crate::metrics::Publisher,
    ) -> anyhow::Result<HttpServer> {
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|e| anyhow::anyhow!("HTTP listen on {addr}: {e}"))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (shutdown, stopped) = oneshot::channel::<()>();
        let access = crate::http_access::HttpAccess {
            tokens: security.as_ref().map(|s| s.tokens.clone()),
            body_bytes_max: HTTP_BODY_BYTES_MAX,
        };
        let security_for_reload = security.clone();
        let thread = std::thread::Builder::new()
            .name("settle-http".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("a bound listener");
                    let listener = crate::http_tls::ClientListener::new(listener, security, limits)
                        .expect("a bound listener has an address");
                    if let Some(security) = security_for_reload {
                        tokio::spawn(reload_tokens(security));
                    }
                    let exposition =
                        std::sync::Arc::new(crate::metrics::Exposition::new(metrics.hub()));
                    tokio::spawn(async move {
                        loop {
                            metrics.publish(crate::metrics::Gauges::default());
                            tokio::time::sleep(crate::metrics::PUBLISH_INTERVAL).await;
                        }
                    });
                    let app = router(intake)
                        .merge(metrics_router(exposition))
                        .layer(axum::middleware::from_fn_with_state(
                            access,
                            crate::http_access::authorize,
                        ))
                        // The console's page holds no data: served without
                        // credentials; its fetches pass the middleware above.
                        .merge(crate::console::router())
                        // Outermost: every request, refused ones too, has its id.
                        .layer(axum::middleware::from_fn_with_state(
                            limits.slow_request,
                            crate::request_log::http,
                        ))
                        .into_make_service_with_connect_info::<crate::http_tls::Caller>();
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await;
                });
            })?;
        Ok(HttpServer {
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    pub fn stop(mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How often the tokens file is looked at for changes.
const TOKENS_RELOAD_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Re-reads the bearer tokens when their file changes: no restart needed.
async fn reload_tokens(security: crate::credentials::ServerSecurity) {
    let mut seen = None;
    loop {
        match security.reload_tokens(seen) {
            Ok(now) => seen = now,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "tokens file not reloaded; the previous tokens stay")
            }
        }
        tokio::time::sleep(TOKENS_RELOAD_INTERVAL).await;
    }
}

fn router(intake: Intake) -> Router {
    Router::new()
        .route("/v1/transactions", post(post_transaction))
        .route("/v1/transactions/{id}", get(get_transaction))
        .route("/v1/transactions/{id}/events", get(get_events))
        .route(
            "/v1/participants",
            get(get_participants).post(post_participant),
        )
        .route("/v1/balances", get(get_balances))
        .route("/v1/forecast", get(get_forecast))
        .route("/v1/deposits", post(post_deposit))
        .route("/v1/cycles", get(get_cycles).post(post_cycle))
        .route("/v1/cycles/{cycle}", get(get_cycle))
        .route("/v1/fx", get(get_fx).put(put_fx))
        .fallback(|| async { error(StatusCode::NOT_FOUND, None, "no such resource") })
        .layer(axum::extract::DefaultBodyLimit::max(HTTP_BODY_BYTES_MAX))
        .layer(axum::middleware::map_response(json_errors))
        .with_state(intake)
}

fn metrics_router(exposition: std::sync::Arc<crate::metrics::Exposition>) -> Router {
    Router::new()
        .route("/metrics", get(get_metrics))
        .with_state(exposition)
}

async fn get_metrics(
    State(exposition): State<std::sync::Arc<crate::metrics::Exposition>>,
) -> Response {
    match exposition.encode() {
        Ok(text) => (
            StatusCode::OK,
            [(
                axum::http::header::CONTENT_TYPE,
                crate::metrics::CONTENT_TYPE,
            )],
            text,
        )
            .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, None, e.to_string()),
    }
}

/// Largest plain-text error body the JSON wrapper reads (axum's own
/// rejections are one sentence).
const ERROR_TEXT_BYTES_MAX: usize = 4 * 1024;

/// Every error a client sees is JSON: axum's own rejections (413 body too
/// large, 405, a bad path or query) are plain text, so they are wrapped in
/// the `{"error": ...}` body our handlers write.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), ERROR_TEXT_BYTES_MAX)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let message = match text.trim() {
        "" => status.canonical_reason().unwrap_or("error").to_string(),
        text => text.to_string(),
    };
    error(status, None, message)
}

fn error(status: StatusCode, field: Option<&str>, message: impl Into<String>) -> Response {
    let mut body = json!({ "error": message.into() });
    if let Some(field) = field {
        body["field"] = json!(field);
    }
    (status, Json(body)).into_response()
}

/// Seconds a client is told to wait when a shard is full or changing leader.
const RETRY_AFTER_SECONDS: &str = "1";

fn shard_error(e: &ShardError) -> Response {
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, None, e.to_string());
    if matches!(
        e,
        ShardError::Full { .. } | ShardError::NotLeader { .. } | ShardError::ShuttingDown(_)
    ) {
        // Overloaded or between leaders: nothing was accepted, a retry is safe.
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static(RETRY_AFTER_SECONDS),
        );
    }
    response
}

async fn post_transaction(
    State(intake): State<Intake>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Response {
    let mut stages = crate::request_log::Stages::start();
    let mut response = submit_one(&intake, &caller, &body, &mut stages).await;
    stages.mark("answer");
    // For the slow-request line (`request_log::http`).
    response.extensions_mut().insert(stages);
    response
}

/// [`post_transaction`]'s work, marking its stages.
async fn submit_one(
    intake: &Intake,
    caller: &Caller,
    body: &[u8],
    stages: &mut crate::request_log::Stages,
) -> Response {
    let tx = match parse_transaction(body) {
        Ok(tx) => tx,
        Err((field, reason, message)) => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({ "error": message, "field": field, "reason": reason })),
            )
                .into_response()
        }
    };
    let results = match intake.submit_staged(std::iter::once(tx), stages).await {
        Ok(results) => results,
        Err(e) => return shard_error(&e),
    };
    let view = settle_codec::TransactionJson::from(tx);
    match results[0] {
        TxResult::Created => (StatusCode::CREATED, Json(json!({ "result": "created", "transaction": view }))).into_response(),
        TxResult::Duplicate => (StatusCode::OK, Json(json!({ "result": "duplicate", "transaction": view }))).into_response(),
        TxResult::Conflict => {
            // The original as the caller may see it: another bank's
            // payment stays hidden (NotFound, no events).
            let original = match intake.router.lookup(&[tx.id], caller.visibility()).await {
                Ok(items) => items.into_iter().next(),
                Err(e) => return shard_error(&e),
            };
            (
                StatusCode::CONFLICT,
                Json(json!({
                    "result": "conflict",
                    "error": "this id was already accepted with different content",
                    "original": original,
                })),
            )
                .into_response()
        }
        TxResult::Rejected { reason, field } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "error": format!("{field}: {reason}"), "field": field.as_str(), "reason": reason.as_str() })),
        )
            .into_response(),
    }
}

/// Parses a JSON transaction field by field, so every error names its field
/// (serde's own message would say "invalid value: integer -5" without saying where).
fn parse_transaction(body: &[u8]) -> Result<Transaction, (&'static str, &'static str, String)> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ("transaction", "malformed", format!("body is not JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err((
            "transaction",
            "malformed",
            "body must be a JSON object".into(),
        ));
    };
    let known = [
        "id",
        "debtor",
        "creditor",
        "amount",
        "send",
        "receive",
        "window",
        "client_timestamp_us",
    ];
    if let Some(unknown) = map.keys().find(|k| !known.contains(&k.as_str())) {
        return Err((
            "transaction",
            "malformed",
            format!("unknown field {unknown:?}"),
        ));
    }
    let text = |map: &Map<String, Value>,
                field: Field|
     -> Result<String, (&'static str, &'static str, String)> {
        match map.get(field.as_str()) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err((
                field.as_str(),
                "malformed",
                format!("{field} must be a string, got {other}"),
            )),
            None => Err((field.as_str(), "malformed", format!("{field} is missing"))),
        }
    };
    let reject = |field: Field, reason: RejectReason, value: &str| {
        (
            field.as_str(),
            reason.as_str(),
            format!("{field}: {reason}: {value:?}"),
        )
    };
    let id_text = text(&map, Field::Id)?;
    let id = parse_id(&id_text).ok_or_else(|| {
        let (field, reason, message) = reject(Field::Id, RejectReason::Malformed, &id_text);
        let message = format!("{message} (an id is {})", settle_codec::ID_FORMAT);
        (field, reason, message)
    })?;
    let debtor_text = text(&map, Field::Debtor)?;
    let debtor = ParticipantId::from_name(&debtor_text)
        .ok_or_else(|| reject(Field::Debtor, RejectReason::UnknownDebtor, &debtor_text))?;
    let creditor_text = text(&map, Field::Creditor)?;
    let creditor = ParticipantId::from_name(&creditor_text).ok_or_else(|| {
        reject(
            Field::Creditor,
            RejectReason::UnknownCreditor,
            &creditor_text,
        )
    })?;
    let amount = match map.get("amount") {
        Some(Value::Number(n)) => match n.as_u64() {
            Some(0) => {
                return Err((
                    "amount",
                    "zero_amount",
                    "amount must be greater than zero".into(),
                ))
            }
            Some(a) => a,
            None => {
                return Err((
                    "amount",
                    "malformed",
                    format!("amount must be a positive integer of minor units, got {n}"),
                ))
            }
        },
        Some(other) => {
            return Err((
                "amount",
                "malformed",
                format!("amount must be an integer of minor units, got {other}"),
            ))
        }
        None => return Err(("amount", "malformed", "amount is missing".into())),
    };
    let send_text = text(&map, Field::Send)?;
    let send = Currency::from_code(&send_text)
        .ok_or_else(|| reject(Field::Send, RejectReason::UnknownCurrency, &send_text))?;
    let receive_text = text(&map, Field::Receive)?;
    let receive = Currency::from_code(&receive_text)
        .ok_or_else(|| reject(Field::Receive, RejectReason::UnknownCurrency, &receive_text))?;
    let window_text = text(&map, Field::Window)?;
    let window = Window::from_name(&window_text)
        .ok_or_else(|| reject(Field::Window, RejectReason::UnsupportedWindow, &window_text))?;
    let client_timestamp_us = match map.get("client_timestamp_us") {
        None => 0,
        Some(v) => v.as_u64().ok_or((
            "client_timestamp_us",
            "malformed",
            format!("client_timestamp_us must be a non-negative integer, got {v}"),
        ))?,
    };
    Ok(Transaction {
        id,
        debtor,
        creditor,
        amount,
        send,
        receive,
        window,
        client_timestamp_us,
    })
}

async fn get_transaction(
    State(intake): State<Intake>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let Some(id) = parse_id(&id) else {
        return error(
            StatusCode::BAD_REQUEST,
            Some("id"),
            format!(
                "{id:?} is not a transaction id ({})",
                settle_codec::ID_FORMAT
            ),
        );
    };
    // Another bank's transaction is answered 404 like an unknown id.
    match intake.router.lookup(&[id], caller.visibility()).await {
        Ok(items) => {
            let item = items.into_iter().next().expect("one item per id");
            if item.status == TxStatus::NotFound {
                error(StatusCode::NOT_FOUND, None, "no transaction with this id")
            } else {
                (StatusCode::OK, Json(item)).into_response()
            }
        }
        Err(e) => shard_error(&e),
    }
}

async fn get_participants(State(intake): State<Intake>) -> Response {
    let registry = intake.participants.load();
    let list: Vec<ParticipantSpec> = registry.iter().map(|p| p.spec()).collect();
    (StatusCode::OK, Json(json!({ "participants": list }))).into_response()
}

async fn post_participant(State(intake): State<Intake>, body: Bytes) -> Response {
    let spec: ParticipantSpec = match serde_json::from_slice(&body) {
        Ok(spec) => spec,
        Err(e) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                None,
                format!("participant: {e}"),
            )
        }
    };
    let participant = match spec.validate(0) {
        Ok(p) => p,
        Err(e) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                None,
                e.to_string().replace("participants[0].", ""),
            )
        }
    };
    // Balances are opening balances, booked once: refuse to change a booked
    // one (the control group keeps it anyway) rather than answer 200.
    let booked = intake.participants.load().get(participant.id).cloned();
    let stored = match booked {
        None => participant.clone(),
        Some(old) => match old.updated_by(&participant) {
            (_, refused) if !refused.is_empty() => {
                let field = format!("balances.{}", refused[0].currency);
                return error(StatusCode::CONFLICT, Some(&field), refused[0].to_string());
            }
            (stored, _) => stored,
        },
    };
    match intake
        .router
        .upsert_participants(vec![participant.clone()])
        .await
    {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({ "participant": stored.spec() })),
        )
            .into_response(),
        Err(e) => shard_error(&e),
    }
}

async fn get_events(
    State(intake): State<Intake>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let Some(id) = parse_id(&id) else {
        return error(
            StatusCode::BAD_REQUEST,
            Some("id"),
            format!(
                "{id:?} is not a transaction id ({})",
                settle_codec::ID_FORMAT
            ),
        );
    };
    // Another bank's transaction is answered 404 like an unknown id.
    match intake.router.lookup(&[id], caller.visibility()).await {
        Ok(items) => {
            let item = items.into_iter().next().expect("one item per id");
            if item.status == TxStatus::NotFound {
                error(StatusCode::NOT_FOUND, None, "no transaction with this id")
            } else {
                (StatusCode::OK, Json(crate::cycle::audit::trail_json(&item))).into_response()
            }
        }
        Err(e) => shard_error(&e),
    }
}

#[derive(serde::Deserialize)]
struct BalancesQuery {
    participant: Option<String>,
}

async fn get_balances(State(intake): State<Intake>, Query(q): Query<BalancesQuery>) -> Response {
    let participant = match q.participant.as_deref() {
        None => None,
        Some(name) => match ParticipantId::from_name(name) {
            Some(p) => Some(p),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    Some("participant"),
                    format!("{name:?} is not a participant name"),
                )
            }
        },
    };
    if let Some(p) = participant.filter(|p| !intake.participants.load().contains(*p)) {
        return error(
            StatusCode::NOT_FOUND,
            Some("participant"),
            format!("{p} is not registered"),
        );
    }
    match crate::cycle::wire::balances(&intake, participant).await {
        Ok(balances) => (StatusCode::OK, Json(json!({ "balances": balances }))).into_response(),
        Err(e) => shard_error(&e),
    }
}

#[derive(serde::Deserialize)]
struct ForecastQuery {
    participant: Option<String>,
    currency: Option<String>,
    hours: Option<u64>,
    steps: Option<usize>,
}

async fn get_forecast(State(intake): State<Intake>, Query(q): Query<ForecastQuery>) -> Response {
    use crate::forecast::{ForecastFailure, Horizon};
    let bad = |field: &str, message: String| error(StatusCode::BAD_REQUEST, Some(field), message);
    let Some(participant) = q.participant.as_deref().and_then(ParticipantId::from_name) else {
        return bad(
            "participant",
            "a participant name like bank_07 is needed".into(),
        );
    };
    let Some(currency) = q.currency.as_deref().and_then(Currency::from_code) else {
        return bad("currency", "a currency code like USD is needed".into());
    };
    let horizon = match (q.steps, q.hours) {
        (Some(0), _) => return bad("steps", "at least 1".into()),
        (_, Some(0)) => return bad("hours", "at least 1".into()),
        (Some(n), _) => Horizon::Steps(n),
        (None, Some(hours)) => Horizon::Hours(hours),
        (None, None) => Horizon::Hours(crate::forecast::FORECAST_HOURS_DEFAULT),
    };
    match crate::forecast::forecast(&intake, participant, currency, horizon).await {
        Ok(f) => (StatusCode::OK, Json(crate::forecast::to_json(&f))).into_response(),
        Err(e @ ForecastFailure::Currency(_)) => bad("currency", e.to_string()),
        Err(e @ ForecastFailure::Participant(_)) => {
            error(StatusCode::NOT_FOUND, Some("participant"), e.to_string())
        }
        Err(e @ (ForecastFailure::NoHistory { .. } | ForecastFailure::Model { .. })) => {
            error(StatusCode::CONFLICT, None, e.to_string())
        }
        Err(ForecastFailure::Shard(e)) => shard_error(&e),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, None, e.to_string()),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DepositBody {
    deposit_id: String,
    participant: ParticipantId,
    currency: Currency,
    amount: u64,
}

async fn post_deposit(State(intake): State<Intake>, body: Bytes) -> Response {
    let d: DepositBody = match serde_json::from_slice(&body) {
        Ok(d) => d,
        Err(e) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                None,
                format!("deposit: {e}"),
            )
        }
    };
    let Some(deposit_id) = parse_id(&d.deposit_id) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("deposit_id"),
            format!(
                "{:?} is not an id ({})",
                d.deposit_id,
                settle_codec::ID_FORMAT
            ),
        );
    };
    if !intake.participants.load().contains(d.participant) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("participant"),
            format!("{} is not registered", d.participant),
        );
    }
    if d.amount == 0 {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("amount"),
            "must be greater than zero",
        );
    }
    let Some(outcome) = intake
        .deposit(deposit_id, d.participant, d.currency, d.amount)
        .await
    else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("currency"),
            format!("{} is not served by this engine", d.currency),
        );
    };
    match outcome {
        Ok((result, balance)) => {
            let status = match result {
                TxResult::Created => StatusCode::CREATED,
                TxResult::Duplicate => StatusCode::OK,
                TxResult::Conflict => StatusCode::CONFLICT,
                TxResult::Rejected { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            };
            (
                status,
                Json(json!({ "result": result, "balance": balance })),
            )
                .into_response()
        }
        Err(e) => shard_error(&e),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CycleBody {
    window: Window,
}

async fn post_cycle(State(intake): State<Intake>, body: Bytes) -> Response {
    let c: CycleBody = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("window"),
                format!("cycle: {e}"),
            )
        }
    };
    match intake.router.run_cycle(c.window).await {
        Ok(summary) => (StatusCode::OK, Json(json!({ "summary": summary }))).into_response(),
        Err(e) => shard_error(&e),
    }
}

#[derive(serde::Deserialize)]
struct CyclesQuery {
    after: Option<u64>,
    max: Option<usize>,
}

async fn get_cycles(State(intake): State<Intake>, Query(q): Query<CyclesQuery>) -> Response {
    let max = q
        .max
        .unwrap_or(50)
        .min(settle_codec::messages::MAX_CYCLE_SUMMARIES);
    match intake.router.cycle_list(q.after.unwrap_or(0), max).await {
        Ok((cycles, next)) => (
            StatusCode::OK,
            Json(json!({ "cycles": cycles, "next_cycle_id": next })),
        )
            .into_response(),
        Err(e) => shard_error(&e),
    }
}

async fn get_cycle(State(intake): State<Intake>, Path(cycle): Path<u64>) -> Response {
    match intake.router.cycle_record(cycle).await {
        Ok(Some(record)) => {
            let checked = crate::cycle::audit::recost(&record);
            let checker = match &checked {
                Ok(r) => json!({
                    "valid": r.report.valid,
                    "errors": r.report.errors,
                    "cost": r.report.cost,
                    "naive_cost": r.naive,
                    "verified": r.agrees,
                }),
                Err(e) => json!({ "error": e.to_string(), "verified": false }),
            };
            (
                StatusCode::OK,
                Json(json!({
                    "record": record,
                    "savings_pct": record.summary.savings_pct(),
                    "checker": checker,
                })),
            )
                .into_response()
        }
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            None,
            format!("cycle {cycle} is not decided or its record is no longer kept"),
        ),
        Err(e) => shard_error(&e),
    }
}

async fn get_fx(State(intake): State<Intake>) -> Response {
    match intake.router.fx().await {
        Ok(fx) => (StatusCode::OK, Json(fx)).into_response(),
        Err(e) => shard_error(&e),
    }
}

async fn put_fx(State(intake): State<Intake>, body: Bytes) -> Response {
    let fx: crate::cycle::fx::FxConfig = match serde_json::from_slice(&body) {
        Ok(fx) => fx,
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, None, format!("fx: {e}")),
    };
    if let Err(e) = fx.validate() {
        return error(StatusCode::UNPROCESSABLE_ENTITY, None, e);
    }
    match intake.router.set_fx(fx.clone()).await {
        Ok(()) => (StatusCode::OK, Json(fx)).into_response(),
        Err(e) => shard_error(&e),
    }
}
