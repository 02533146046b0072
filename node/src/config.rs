//! Node configuration helpers (the shard map of `--currencies`), logging
//! set-up, and defaults. `settle start`'s settings, flags and `--config`
//! file alike, are one struct in the binary.

use anyhow::anyhow;
use settle_codec::Currency;

use crate::shard::ShardMap;

/// The shard map for `--currencies`, or the default one.
pub fn shard_map(currencies: Option<&[String]>) -> anyhow::Result<ShardMap> {
    let Some(codes) = currencies else {
        return Ok(ShardMap::default_currencies());
    };
    let mut list = Vec::with_capacity(codes.len());
    for code in codes {
        let currency = Currency::from_code(code.trim())
            .ok_or_else(|| anyhow!("--currencies: unknown currency {code:?}"))?;
        if list.contains(&currency) {
            return Err(anyhow!("--currencies: {code} appears twice"));
        }
        list.push(currency);
    }
    if list.is_empty() || list.len() > crate::shard::SHARDS_MAX {
        return Err(anyhow!(
            "--currencies: between 1 and {} currencies",
            crate::shard::SHARDS_MAX
        ));
    }
    Ok(ShardMap::new(list))
}

/// Cores this process may run on.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The format [`init_logging`] set up (text until then).
pub fn log_format() -> LogFormat {
    *LOG_FORMAT.get().unwrap_or(&LogFormat::Text)
}

static LOG_FORMAT: std::sync::OnceLock<LogFormat> = std::sync::OnceLock::new();

/// Prints one line for the operator on stderr, whatever `RUST_LOG` says
/// (scripts and tests wait for "settle: listening on"): as it is in text
/// format; with `--log-format json` as a JSON line shaped like the log's
/// (every line of stderr is JSON).
pub fn say(line: &str) {
    match log_format() {
        LogFormat::Text => eprintln!("{line}"),
        LogFormat::Json => {
            let now = humantime::format_rfc3339_micros(std::time::SystemTime::now());
            let json = serde_json::json!({
                "timestamp": now.to_string(),
                "level": "INFO",
                "fields": { "message": line },
                "target": "settle",
            });
            eprintln!("{json}");
        }
    }
}

/// Structured logs on stderr; `RUST_LOG` filters (default `info`).
pub fn init_logging(format: LogFormat) {
    let _ = LOG_FORMAT.set(format);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currencies_flag_builds_a_shard_map_or_names_the_bad_code() {
        let map = shard_map(Some(&["EUR".into(), "CHF".into()])).unwrap();
        assert_eq!(map.shard_count(), 2);
        assert!(shard_map(Some(&["EUR".into(), "XXX".into()]))
            .unwrap_err()
            .to_string()
            .contains("XXX"));
        assert!(shard_map(Some(&["EUR".into(), "EUR".into()])).is_err());
        assert_eq!(shard_map(None).unwrap(), ShardMap::default_currencies());
    }
}
