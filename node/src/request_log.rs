//! Request ids and slow-request lines.
//!
//! Every request runs in a tracing span carrying its request id, so every
//! line logged while serving it says which request it was: on HTTP the
//! client's `x-request-id` header (echoed back; made up when absent or not
//! a plain token), on the binary port `<core>.<connection>.<frame id>`
//! (the frame's request id is the client's, unique per connection).
//!
//! A request slower than `--slow-request-ms` logs one line with its stages
//! and their durations ([`Stages`]): timings per request (a batch of up to
//! thousands of transactions), never per transaction, in a fixed array (no
//! allocation unless the line is logged).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The request id header, read and echoed.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Longest request id taken from a client (longer ones are replaced).
pub const REQUEST_ID_BYTES_MAX: usize = 64;

/// The default of `--slow-request-ms`.
pub const SLOW_REQUEST_DEFAULT: Duration = Duration::from_millis(200);

/// Stages one request records at most.
pub const STAGES_MAX: usize = 8;

/// Named stages of one request, each with the time since the previous mark.
#[derive(Debug, Clone, Copy)]
pub struct Stages {
    started: Instant,
    last: Instant,
    marks: [(&'static str, Duration); STAGES_MAX],
    len: usize,
}

impl Default for Stages {
    fn default() -> Self {
        Stages::start()
    }
}

impl Stages {
    pub fn start() -> Stages {
        let now = Instant::now();
        Stages {
            started: now,
            last: now,
            marks: [("", Duration::ZERO); STAGES_MAX],
            len: 0,
        }
    }

    /// Ends stage `name` now. Beyond [`STAGES_MAX`] the time is added to the
    /// last stage (it is never lost from the total).
    pub fn mark(&mut self, name: &'static str) {
        let now = Instant::now();
        let took = now - self.last;
        self.last = now;
        if self.len < STAGES_MAX {
            self.marks[self.len] = (name, took);
            self.len += 1;
        } else {
            self.marks[STAGES_MAX - 1].1 += took;
        }
    }

    /// Appends the stages of `other`, measured inside this request: first
    /// the time up to its start as stage `before`, then its own.
    pub fn extend(&mut self, before: &'static str, other: &Stages) {
        let gap = other.started.saturating_duration_since(self.last);
        let mut push = |name, took| {
            if self.len < STAGES_MAX {
                self.marks[self.len] = (name, took);
                self.len += 1;
            } else {
                self.marks[STAGES_MAX - 1].1 += took;
            }
        };
        push(before, gap);
        for &(name, took) in other.stages() {
            push(name, took);
        }
        self.last = self.last.max(other.last);
    }

    pub fn total(&self) -> Duration {
        self.last - self.started
    }

    pub fn stages(&self) -> &[(&'static str, Duration)] {
        &self.marks[..self.len]
    }

    /// Logs the slow-request line if the request took `slow` or longer.
    pub fn log_if_slow(&self, slow: Duration, port: &'static str, what: &dyn fmt::Display) {
        let total = self.total();
        if total >= slow {
            tracing::warn!(
                port,
                request = %what,
                total_ms = total.as_secs_f64() * 1e3,
                stages = %self,
                "slow request"
            );
        }
    }
}

/// `validate=0.012ms commit=3.400ms`: the stages in order.
impl fmt::Display for Stages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, took)) in self.stages().iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{name}={:.3}ms", took.as_secs_f64() * 1e3)?;
        }
        Ok(())
    }
}

/// Whether a client's request id can be logged and echoed as it is: a
/// plain token (letters, digits, `-_.:`), not too long.
fn acceptable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= REQUEST_ID_BYTES_MAX
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A request id of this process: `h` (HTTP), the process id and a counter.
fn made_up() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "h{:x}-{:x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Binary-port connection numbers of this process (the request id's middle).
pub fn next_connection() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The HTTP middleware (outermost): the request's id and span, the id
/// echoed in the response, and its slow-request line. Handlers may put
/// their own [`Stages`] in the response's extensions (a submit's validate,
/// claim, commit); the line lists them.
pub async fn http(State(slow): State<Duration>, request: Request, next: Next) -> Response {
    let stages = Stages::start();
    let id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| acceptable(id))
        .map_or_else(made_up, str::to_string);
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let span = tracing::info_span!("request", request_id = %id, %method, %path);
    let mut response = next.run(request).instrument(span.clone()).await;
    let mut all = stages;
    match response.extensions_mut().remove::<Stages>() {
        Some(inner) => {
            all.extend("authorize", &inner);
            all.mark("respond");
        }
        None => all.mark("handle"),
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let _in_request = span.enter();
    let status = response.status().as_u16();
    all.log_if_slow(slow, "http", &format_args!("{method} {path} {status}"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_add_up_to_the_total_and_print_in_order() {
        let mut s = Stages::start();
        s.mark("validate");
        std::thread::sleep(Duration::from_millis(2));
        s.mark("commit");
        let sum: Duration = s.stages().iter().map(|(_, d)| *d).sum();
        assert_eq!(sum, s.total());
        assert!(s.stages()[1].1 >= Duration::from_millis(2));
        let text = s.to_string();
        assert!(
            text.starts_with("validate=") && text.contains(" commit="),
            "{text}"
        );
        for _ in 0..STAGES_MAX + 3 {
            s.mark("more");
        }
        assert_eq!(s.stages().len(), STAGES_MAX);
        let sum: Duration = s.stages().iter().map(|(_, d)| *d).sum();
        assert_eq!(sum, s.total(), "marks past the bound still count");
    }

    #[test]
    fn only_plain_short_request_ids_are_taken() {
        assert!(acceptable("req-42_a.b:c"));
        assert!(!acceptable(""));
        assert!(!acceptable("with space"));
        assert!(!acceptable("quote\"injection"));
        assert!(!acceptable(&"x".repeat(REQUEST_ID_BYTES_MAX + 1)));
        assert_ne!(made_up(), made_up());
    }
}
