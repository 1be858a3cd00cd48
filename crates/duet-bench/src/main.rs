//! `duet-bench`: a load generator for Yjs sync servers (duet in either protocol, the
//! y-websocket server, y-sweet), driven with the same pre-encoded updates from real traces.
//!
//! Run (release build; see docs/BENCHMARKS.md):
//!   cargo build --release -p duet-bench -p duet-server
//!   target/release/duet-bench --spawn-server target/release/duet-server relay
//!   target/release/duet-bench --url ws://127.0.0.1:1234 --server-pid PID --protocol yjs idle
//!   target/release/duet-bench --spawn-server target/release/duet-server --server-args "" team
//!
//! Progress goes to stderr; the summary table (or `--json`) to stdout.

mod bare;
mod conn;
mod floor;
mod report;
mod scenario;
mod stats;
mod summary;
mod target;
use duet_bench::trace;
mod wire;

use anyhow::bail;
use clap::{Parser, Subcommand};
use scenario::Ctx;
use std::path::PathBuf;
use target::Target;
use wire::Protocol;

const SPAWN_ARGS: &str = "--memory --max-handshakes-per-sec 1000000 --max-connections-per-ip 1000000 \
     --max-messages-per-sec 1000000000 --max-bytes-per-sec 1000000000000";

#[derive(Parser, Debug)]
#[command(name = "duet-bench", version, about)]
struct Args {
    /// Server to drive, `ws://HOST:PORT` (rooms are appended as the path).
    #[arg(long)]
    url: Option<String>,
    /// PID of the server behind --url, for CPU and RSS from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Another node of the same cluster as --url (repeatable; `team` and `failover` spread
    /// rooms' members over the nodes, see their --spread).
    #[arg(long = "also-url")]
    also_urls: Vec<String>,
    /// The PID of each --also-url node, in the same order (server CPU is summed over nodes).
    #[arg(long = "also-pid")]
    also_pids: Vec<u32>,
    /// A process of an engine the cluster uses (PostgreSQL's postmaster, redis-server;
    /// repeatable): its CPU, children included, is reported apart.
    #[arg(long = "engine-pid")]
    engine_pids: Vec<u32>,
    /// Start this duet-server binary on 127.0.0.1:0 instead of --url (stopped at the end).
    #[arg(long)]
    spawn_server: Option<PathBuf>,
    /// Arguments for the spawned server after `--listen 127.0.0.1:0`. The default lifts the
    /// per-IP and per-connection rate limits, which a load generator on one address trips.
    #[arg(long, default_value = SPAWN_ARGS, allow_hyphen_values = true)]
    server_args: String,
    #[arg(long, value_enum, default_value_t = Protocol::Duet)]
    protocol: Protocol,
    /// A name for the server under test, carried into the report (`bench/compare` sets it).
    #[arg(long, default_value = "")]
    label: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Worker threads for this process (the server needs cores too).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Debug)]
enum Scenario {
    /// K writers replay a trace into one room while M readers follow.
    Relay(scenario::relay::RelayOpts),
    /// C idle connections over R rooms: server RSS per connection.
    Idle(scenario::idle::IdleOpts),
    /// R rooms with one member each: server RSS per loaded room.
    Rooms(scenario::rooms::RoomsOpts),
    /// N clients join a room holding a large document at once.
    Join(scenario::join::JoinOpts),
    /// One member stops reading while others type.
    Slow(scenario::slow::SlowOpts),
    /// R rooms of K people typing one character every C ms each: server CPU per keystroke,
    /// keystroke-to-remote latency, store commits per keystroke, convergence per room.
    Team(scenario::team::TeamOpts),
    /// People typing in rooms spread over a cluster's nodes while a node is killed or the bus
    /// disrupted half way: reconnect times, time to converge, acknowledged keystrokes lost.
    Failover(scenario::failover::FailoverOpts),
    /// Only the in-process floor.
    Floor,
    /// Runs a bare relay (no document, no checks, no storage) that speaks just enough of the
    /// y-websocket protocol for these scenarios: the floor a relay server cannot beat on this
    /// machine. Prints its URL and serves until killed.
    BareRelay {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
        /// Runtime worker threads (default: one per core, as tokio servers run).
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Reads JSON reports (one per file, as `--json` writes them) and prints each metric's
    /// median per server label, with ratios to the first label given.
    Summarize {
        /// Label the ratios are taken against.
        #[arg(long, default_value = "duet")]
        baseline: String,
        files: Vec<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Scenario::BareRelay { listen, workers } = &args.scenario {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        if let Some(n) = workers {
            builder.worker_threads((*n).max(1));
        }
        return builder.enable_all().build()?.block_on(bare::serve(listen));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    if let Scenario::Summarize { baseline, files } = &args.scenario {
        return summary::print(baseline, files);
    }
    let target = match (&args.spawn_server, &args.url) {
        (Some(path), None) => {
            let log =
                std::env::temp_dir().join(format!("duet-bench-server-{}.log", std::process::id()));
            let extra: Vec<String> = args
                .server_args
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            let t = Target::spawn(path, &extra, &log)?;
            progress!(
                "started {} at {} (pid {:?}, log {})",
                path.display(),
                t.url,
                t.pid,
                log.display()
            );
            t
        }
        (None, Some(url)) => {
            let mut t = Target::remote(url, args.server_pid);
            t.others = args
                .also_urls
                .iter()
                .enumerate()
                .map(|(i, url)| {
                    (
                        url.trim_end_matches('/').to_owned(),
                        args.also_pids.get(i).copied(),
                    )
                })
                .collect();
            t.engines = args.engine_pids.clone();
            t
        }
        (None, None) if matches!(args.scenario, Scenario::Floor) => Target::remote("ws://-", None),
        _ => bail!("give either --url ws://HOST:PORT [--server-pid PID] or --spawn-server PATH"),
    };
    if target.pid.is_none() && !matches!(args.scenario, Scenario::Floor) {
        progress!("no --server-pid: server CPU and RSS will be n/a");
    }
    progress!("measuring the floor (WebSocket round trip on loopback)");
    let floor = floor::Floor {
        ws_rtt: floor::ws_round_trip(2000, 40).await?,
        yrs_apply_us: 0.0,
    };
    let run_id = format!(
        "bench-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    );
    let ctx = Ctx {
        target,
        protocol: args.protocol,
        floor,
        run_id,
    };
    let cpu_before = target::cpu_ticks();
    let report = match &args.scenario {
        Scenario::Relay(o) => scenario::relay::run(&ctx, o).await?,
        Scenario::Idle(o) => scenario::idle::run(&ctx, o).await?,
        Scenario::Rooms(o) => scenario::rooms::run(&ctx, o).await?,
        Scenario::Join(o) => scenario::join::run(&ctx, o).await?,
        Scenario::Slow(o) => scenario::slow::run(&ctx, o).await?,
        Scenario::Team(o) => scenario::team::run(&ctx, o).await?,
        Scenario::Failover(o) => scenario::failover::run(&ctx, o).await?,
        Scenario::Summarize { .. } | Scenario::BareRelay { .. } => return Ok(()),
        Scenario::Floor => {
            let t = trace::Trace::load(&trace::resolve_trace("sveltecomponent")?)?;
            let enc = trace::encode(&t, 1, None)?;
            let mut f = ctx.floor;
            f.yrs_apply_us = floor::yrs_apply(&enc.updates)?;
            report::Report::new("floor", ctx.protocol, "-", f)
        }
    };
    let mut report = report;
    report.label = args.label.clone();
    if let (Some(before), Some(after)) = (cpu_before, target::cpu_ticks()) {
        // A virtual machine's host can take CPU time away from it ("steal"): runs taken while
        // it does are slower, and their figures are not comparable with quiet ones.
        let steal = after.steal.saturating_sub(before.steal) as f64;
        let total = after.total.saturating_sub(before.total) as f64;
        report.row(
            "machine steal time",
            (total > 0.0).then(|| 100.0 * steal / total),
            "%",
            "CPU time the host took from this machine during the run (/proc/stat); figures of runs above a few % are noisy".into(),
        );
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        report.print_table();
    }
    Ok(())
}
