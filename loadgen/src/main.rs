//! The `settle-loadgen` binary: drives a node and reports throughput and latency.

use std::io::{BufRead, BufWriter, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use settle_loadgen::participants::participants_file_with_liquidity;
use settle_loadgen::run::{run, verify, RunOptions};
use settle_loadgen::settle::{run_settle, SettleOptions};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "settle-loadgen",
    version,
    about = "Drives a settle node and reports throughput and latency percentiles"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Print a participants file matching the workload, for `settle start --participants`.
    Participants {
        /// Number of participants (bank_00 … bank_{N-1}).
        #[arg(long, default_value_t = 32)]
        count: u32,
        /// Seed of the balances and limits.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Multiply every balance by this (prefunding for settlement throughput runs).
        #[arg(long, default_value_t = 1.0)]
        liquidity: f64,
    },
    /// Look up every id of an --acked file; exit non-zero unless all are there exactly once.
    Verify {
        /// Node to query.
        #[arg(long)]
        target: SocketAddr,
        /// File of acknowledged ids, one per line (from a run with --acked).
        #[arg(long)]
        acked: PathBuf,
        /// Deadline of each lookup (retried on a fresh connection past it).
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        request_timeout: Duration,
        /// Also write the result as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        #[command(flatten)]
        security: Security,
    },
}

/// How the load generator finds its credentials.
#[derive(Args)]
struct Security {
    /// Credentials directory: ca.pem and <identity>.pem/.key (a node's <data-dir>/tls, or one
    /// made by `settle certs init`).
    #[arg(long, env = "SETTLE_TLS_DIR")]
    tls_dir: Option<PathBuf>,
    /// Whose certificate to present (submitting for every bank needs admin).
    #[arg(long, env = "SETTLE_IDENTITY", default_value = "admin")]
    identity: String,
    /// Plaintext, no credentials: only for a node started --insecure.
    #[arg(long)]
    insecure: bool,
}

impl Security {
    fn apply(&self) -> anyhow::Result<()> {
        let config = settle_loadgen::net::client_config(
            self.tls_dir.as_deref(),
            &self.identity,
            self.insecure,
        )?;
        settle_loadgen::net::set_tls(config);
        Ok(())
    }
}

#[derive(Args)]
struct LoadArgs {
    /// Node address(es); clients are spread over them.
    #[arg(long = "target", default_value = "127.0.0.1:7000")]
    targets: Vec<SocketAddr>,
    /// How long to run, e.g. 10s, 2m.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Concurrent connections, each with one request in flight.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Transactions per request (at most 8,192).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Open loop at this many transactions/s in total (default: closed loop).
    #[arg(long)]
    rate: Option<u64>,
    /// Participants in the workload (must match the node's participants file).
    #[arg(long, default_value_t = 32)]
    participants: u32,
    /// Seed of the workload.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write an HTML report with SVG plots to this file: throughput and latency over time, and with
    /// --settle the cost breakdown and the cumulative cost against naive.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write every acknowledged transaction id to this file, one per line.
    #[arg(long)]
    acked: Option<PathBuf>,
    /// Id space of this run (default: from the clock, so runs never collide).
    #[arg(long)]
    run_id: Option<u64>,
    /// Ids in random order over the id space, like random (v4) UUIDs; by default each client's
    /// ids count up, like a sequence or a time-ordered id.
    #[arg(long)]
    scattered_ids: bool,
    /// Also drive and measure settlement: ask for T0/T1/T2 cycles while the load runs, drain the
    /// cycles after it, and report settled tx/s end to end and the cycle latency percentiles.
    #[arg(long)]
    settle: bool,
    /// With --settle: how often to ask for T0/T1/T2 cycles during the load (`off`: the node's own
    /// schedules run them).
    #[arg(long, default_value = "1s")]
    settle_trigger: String,
    /// Deadline of each request (connect, handshake, answer); past it the connection is closed
    /// and the same batch is re-sent to the next --target.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    request_timeout: Duration,
    /// A client that got no answer for this long stops.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    give_up_after: Duration,
    #[command(flatten)]
    security: Security,
}

fn parse_trigger(text: &str) -> Result<Option<Duration>, String> {
    if text == "off" {
        return Ok(None);
    }
    humantime::parse_duration(text)
        .map(Some)
        .map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let outcome = runtime.block_on(async {
        match cli.command {
            Some(Command::Participants {
                count,
                seed,
                liquidity,
            }) => {
                if !(liquidity.is_finite() && liquidity > 0.0) {
                    anyhow::bail!("--liquidity must be a positive number");
                }
                let file = participants_file_with_liquidity(count, seed, liquidity);
                println!("{}", serde_json::to_string_pretty(&file)?);
                Ok(ExitCode::SUCCESS)
            }
            Some(Command::Verify {
                target,
                acked,
                request_timeout,
                json,
                security,
            }) => {
                security.apply()?;
                verify_command(target, &acked, request_timeout, json).await
            }
            None => {
                cli.load.security.apply()?;
                load_command(cli.load).await
            }
        }
    });
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("settle-loadgen: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn load_command(args: LoadArgs) -> anyhow::Result<ExitCode> {
    let run_id = args.run_id.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let options = RunOptions {
        targets: args.targets,
        duration: args.duration,
        clients: args.clients,
        batch: args.batch,
        rate_tps: args.rate,
        participants: args.participants,
        seed: args.seed,
        run_id,
        scattered_ids: args.scattered_ids,
        live: true,
        collect_acked: args.acked.is_some(),
        settled: None,
        request_timeout: args.request_timeout,
        give_up_after: args.give_up_after,
    };
    // Acknowledged ids are collected per client and written at the end: the
    // crash tests kill the node, never the load generator.
    let (outcome, settled) = if args.settle {
        let trigger_every = parse_trigger(&args.settle_trigger)
            .map_err(|e| anyhow::anyhow!("--settle-trigger {:?}: {e}", args.settle_trigger))?;
        let settle = SettleOptions {
            trigger_every,
            ..SettleOptions::default()
        };
        let (outcome, report) = run_settle(options, settle).await?;
        (outcome, Some(report))
    } else {
        (run(options).await?, None)
    };
    println!("{}", outcome.report.text());
    if let Some(report) = &settled {
        println!("{}", report.text());
    }
    if let Some(path) = args.json {
        let json = match &settled {
            Some(s) => serde_json::json!({ "load": outcome.report, "settle": s }),
            None => serde_json::to_value(&outcome.report)?,
        };
        std::fs::write(&path, serde_json::to_vec_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.report {
        settle_loadgen::html_report::write(
            path,
            &settle_loadgen::html_report::ReportInput {
                title: "settle-loadgen",
                load: &outcome.report,
                timeline: &outcome.timeline,
                settle: settled.as_ref(),
            },
        )?;
        eprintln!("settle-loadgen: report written to {}", path.display());
    }
    if let Some(path) = args.acked {
        let file =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut out = BufWriter::new(file);
        for id in &outcome.acked {
            writeln!(out, "{}", settle_codec::format_id(*id))?;
        }
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn verify_command(
    target: SocketAddr,
    acked: &PathBuf,
    request_timeout: Duration,
    json: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let file =
        std::fs::File::open(acked).with_context(|| format!("opening {}", acked.display()))?;
    let mut ids = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let id = settle_codec::parse_id(line)
            .with_context(|| format!("{}:{}: {line:?} is not an id", acked.display(), n + 1))?;
        ids.push(id);
    }
    let v = verify(target, &ids, request_timeout).await?;
    println!("{}", v.line());
    for example in &v.examples {
        println!("illegal trail: {example}");
    }
    if let Some(path) = json {
        std::fs::write(&path, serde_json::to_vec_pretty(&v)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if v.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
