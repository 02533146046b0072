//! An error and its causes as one line, each message once.
//!
//! Our typed errors put their source's message in their own (`"group 1:
//! log store: {source}"`) and also name it as their source, so printing
//! the chain the usual way (`{:#}`) says the same damage three times. This
//! walks the chain and leaves out a cause whose message the line already
//! holds.

/// `e` and its causes, outermost first, without repeats.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let message = cause.to_string();
        if message.is_empty() || out.contains(&message) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&message);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("corrupt segment 7")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    #[error("log store: {0}")]
    struct Middle(#[from] Inner);

    #[test]
    fn each_message_once_and_contexts_kept() {
        let e = anyhow::Error::from(Middle(Inner)).context("opening shard 1 (USD)");
        assert_eq!(
            format!("{e:#}"),
            "opening shard 1 (USD): log store: corrupt segment 7: corrupt segment 7",
            "what it replaces"
        );
        assert_eq!(
            one_line(&e),
            "opening shard 1 (USD): log store: corrupt segment 7"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(one_line(&plain), "outer: inner");
    }
}
