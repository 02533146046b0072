//! The live console: `GET /` on the HTTP port serves one page (HTML, script
//! and style compiled into the binary: no CDN, no build step) that polls
//! this node's `/metrics`, `/v1/cycles` and `/v1/forecast` and shows
//! throughput, latency percentiles, cycles and savings, balances, rails,
//! shard leaders and lag, and forecasts.
//!
//! The page itself holds no data, so it is served to anyone (outside the
//! access middleware); every fetch it makes carries the bearer token the
//! operator gives it (URL fragment `#token=…`, which browsers never send,
//! or the login field; kept in the tab's sessionStorage) and is checked by
//! [`crate::http_access`] like any other request: auditors, operators and
//! admins may read the metrics, a bank or a stranger gets 403/401, which
//! the page shows in its error banner. A strict Content-Security-Policy
//! keeps the page to its own script, style and origin.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const INDEX_HTML: &str = include_str!("console/index.html");
const CONSOLE_JS: &str = include_str!("console/console.js");
const CONSOLE_CSS: &str = include_str!("console/console.css");

/// Only this origin's script, style and data; no framing, no inline code.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The console's routes: the page and its two assets.
pub fn router() -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/console.js",
            get(|| async { asset("text/javascript; charset=utf-8", CONSOLE_JS) }),
        )
        .route(
            "/console.css",
            get(|| async { asset("text/css; charset=utf-8", CONSOLE_CSS) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        // The assets change with the binary: revalidate rather than run an old script.
        (header::CACHE_CONTROL, "no-cache"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_assets_and_no_inline_script() {
        assert!(INDEX_HTML.contains(r#"<script src="/console.js" defer></script>"#));
        assert!(INDEX_HTML.contains(r#"<link rel="stylesheet" href="/console.css">"#));
        // CSP forbids inline code: the page has none and names no other host.
        assert_eq!(INDEX_HTML.matches("<script").count(), 1);
        assert!(!INDEX_HTML.contains(" style=") && !INDEX_HTML.contains(" onclick="));
        for text in [INDEX_HTML, CONSOLE_JS, CONSOLE_CSS] {
            assert!(!text.contains("http://") && !text.contains("https://"));
        }
        // The token is sent only as a header, never in a URL.
        assert!(CONSOLE_JS.contains(r#"headers["Authorization"] = "Bearer " + t"#));
        assert!(!CONSOLE_JS.contains("?token") && !CONSOLE_JS.contains("&token"));
    }

    #[test]
    fn every_asset_carries_the_security_headers() {
        let response = asset("text/css; charset=utf-8", CONSOLE_CSS);
        let headers = response.headers();
        assert_eq!(
            headers[header::CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY
        );
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(headers[header::CONTENT_TYPE], "text/css; charset=utf-8");
    }
}
