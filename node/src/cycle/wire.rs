//! The control-plane messages (0x02xx) over the binary protocol: run a
//! cycle, read a cycle's record, list cycles, deposit, read balances.
//! Transaction audit trails are lookups (0x0103): they carry the events.

use settle_codec::messages::{
    Balance, BalancesRequest, BalancesResponse, CycleAuditRequest, CycleAuditResponse,
    CycleListRequest, CycleListResponse, CycleRunRequest, CycleRunResponse, DepositRequest,
    DepositResponse, ForecastRequest, MAX_BALANCES, MAX_CYCLE_SUMMARIES,
};
use settle_codec::{
    decode_body, Encode, ErrorCode, ErrorResponse, Frame, FrameBuf, Message, MessageKind,
    ParticipantId,
};

use crate::intake::{Intake, ShardError};
use crate::shard::Account;

/// Answers a control-plane frame into `out`; `false` when `frame` is not
/// one (the caller answers it).
pub async fn answer(frame: &Frame<'_>, intake: &Intake, out: &mut FrameBuf) -> bool {
    if crate::cluster::solo::answer(frame, out).await {
        // `settle status` reaching a node started without --peers.
        return true;
    }
    let id = frame.request_id();
    match frame.kind() {
        MessageKind::CycleRunRequest => {
            if let Some(r) = decode::<CycleRunRequest>(frame, out) {
                let window = (&r.window).into();
                match intake.router.run_cycle(window).await {
                    Ok(summary) => push(out, id, &CycleRunResponse { summary }),
                    Err(e) => shard_error(out, id, &e),
                }
            }
        }
        MessageKind::CycleAuditRequest => {
            if let Some(r) = decode::<CycleAuditRequest>(frame, out) {
                let cycle_id = r.cycle_id.to_native();
                match intake.router.cycle_record(cycle_id).await {
                    Ok(Some(record)) => push(out, id, &CycleAuditResponse { record }),
                    Ok(None) => error(
                        out,
                        id,
                        ErrorCode::BadRequest,
                        &format!("cycle {cycle_id} has no decision (not run yet, or not decided)"),
                    ),
                    Err(e) => shard_error(out, id, &e),
                }
            }
        }
        MessageKind::CycleListRequest => {
            if let Some(r) = decode::<CycleListRequest>(frame, out) {
                let max = (r.max.to_native() as usize).min(MAX_CYCLE_SUMMARIES);
                match intake
                    .router
                    .cycle_list(r.after_cycle.to_native(), max)
                    .await
                {
                    Ok((cycles, next_cycle_id)) => push(
                        out,
                        id,
                        &CycleListResponse {
                            cycles,
                            next_cycle_id,
                        },
                    ),
                    Err(e) => shard_error(out, id, &e),
                }
            }
        }
        MessageKind::DepositRequest => {
            if let Some(r) = decode::<DepositRequest>(frame, out) {
                let participant: ParticipantId = (&r.participant).into();
                let currency = (&r.currency).into();
                let amount = r.amount.to_native();
                if !intake.participants.load().contains(participant) {
                    error(
                        out,
                        id,
                        ErrorCode::BadRequest,
                        &format!("participant: {participant} is not registered"),
                    );
                } else if amount == 0 {
                    error(
                        out,
                        id,
                        ErrorCode::BadRequest,
                        "amount: must be greater than zero",
                    );
                } else {
                    match intake
                        .deposit(r.deposit_id.to_native(), participant, currency, amount)
                        .await
                    {
                        None => error(
                            out,
                            id,
                            ErrorCode::BadRequest,
                            &format!("currency: {currency} is not served by this engine"),
                        ),
                        Some(Ok((result, balance))) => {
                            push(out, id, &DepositResponse { result, balance })
                        }
                        Some(Err(e)) => shard_error(out, id, &e),
                    }
                }
            }
        }
        MessageKind::BalancesRequest => {
            if let Some(r) = decode::<BalancesRequest>(frame, out) {
                let participant = r.participant.as_ref().map(ParticipantId::from);
                if let Some(p) = participant.filter(|p| !intake.participants.load().contains(*p)) {
                    error(
                        out,
                        id,
                        ErrorCode::BadRequest,
                        &format!("participant: {p} is not registered"),
                    );
                    return true;
                }
                match balances(intake, participant).await {
                    Ok(balances) if balances.len() > MAX_BALANCES => error(
                        out,
                        id,
                        ErrorCode::BadRequest,
                        &format!(
                            "{} balances exceed the {MAX_BALANCES} of one response: ask per participant",
                            balances.len()
                        ),
                    ),
                    Ok(balances) => push(out, id, &BalancesResponse { balances }),
                    Err(e) => shard_error(out, id, &e),
                }
            }
        }
        MessageKind::ForecastRequest => {
            if let Some(r) = decode::<ForecastRequest>(frame, out) {
                use crate::forecast::{ForecastFailure, Horizon};
                let (hours, steps) = (r.hours.to_native(), r.steps.to_native());
                let horizon = match (steps, hours) {
                    (0, 0) => Horizon::Hours(crate::forecast::FORECAST_HOURS_DEFAULT),
                    (0, h) => Horizon::Hours(u64::from(h)),
                    (n, _) => Horizon::Steps(n as usize),
                };
                let participant = (&r.participant).into();
                let currency = (&r.currency).into();
                match crate::forecast::forecast(intake, participant, currency, horizon).await {
                    Ok(f) => push(out, id, &f),
                    Err(ForecastFailure::Shard(e)) => shard_error(out, id, &e),
                    Err(e) => error(out, id, ErrorCode::BadRequest, &e.to_string()),
                }
            }
        }
        _ => return false,
    }
    true
}

/// Every balance (or one participant's) across the shards, by participant
/// then shard currency.
pub async fn balances(
    intake: &Intake,
    participant: Option<ParticipantId>,
) -> Result<Vec<Balance>, ShardError> {
    let mut out = Vec::new();
    for group in intake.shards.shards() {
        let currency = intake.shards.currency_of(group).expect("a shard currency");
        for (p, a) in intake.router.balances(group, participant).await? {
            out.push(balance(p, currency, &a));
        }
    }
    out.sort_by_key(|b| b.participant);
    Ok(out)
}

fn balance(participant: ParticipantId, currency: settle_codec::Currency, a: &Account) -> Balance {
    Balance {
        participant,
        currency,
        balance: a.balance,
        opening: a.opening,
        deposited: a.deposited,
        credited: a.credited,
        debited: a.debited,
        refunded: a.refunded,
        incoming: a.incoming,
    }
}

fn decode<'a, M: Message>(frame: &Frame<'a>, out: &mut FrameBuf) -> Option<&'a M::Archived> {
    match decode_body::<M>(frame) {
        Ok(archived) => Some(archived),
        Err(e) => {
            error(
                out,
                frame.request_id(),
                ErrorCode::BadRequest,
                &e.to_string(),
            );
            None
        }
    }
}

fn push<M: Encode>(out: &mut FrameBuf, request_id: u64, msg: &M) {
    if let Err(e) = out.push(request_id, msg) {
        error(
            out,
            request_id,
            ErrorCode::Internal,
            &format!("response does not fit a frame: {e}"),
        );
    }
}

fn shard_error(out: &mut FrameBuf, request_id: u64, e: &ShardError) {
    let code = match e {
        ShardError::NotLeader { .. } => ErrorCode::NotLeader,
        ShardError::ShuttingDown(_) => ErrorCode::ShuttingDown,
        ShardError::Full { .. } => ErrorCode::Overloaded,
        ShardError::Internal { .. } => ErrorCode::Internal,
    };
    error(out, request_id, code, &e.to_string());
}

fn error(out: &mut FrameBuf, request_id: u64, code: ErrorCode, message: &str) {
    out.push(request_id, &ErrorResponse::new(code, message))
        .expect("an error response is bounded and always fits a frame");
}
