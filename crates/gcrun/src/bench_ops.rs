//! `gcrun bench ops`: what operators wait for when the dead-letter set is
//! large. N dead-lettered runs (default 100,000) are written through the
//! store's own calls (create, then the move to `dead` or `rejected`: the
//! same scripts the pipeline runs, without waiting for 100,000 runs to fail
//! for real), then it times, median of repeated calls:
//! - a page of the dead-letter listing (what `gcrun dlq list` and the
//!   dashboard read) at the start, at the far end (a cursor near the last
//!   entry), and with a filter that matches one entry in a thousand;
//! - the dashboard's dead-letter page and overview over HTTP;
//! - `gcrun dlq list` as a user runs it (a whole process);
//! - reading every entry (what a requeue of all matching previews).

use std::time::Instant;

use anyhow::Result;
use clap::Args;
use futures_util::StreamExt;
use gcrun_model::{Flavor, RequestLimits, RunId, RunRequest, RunStatus};
use gcrun_producer::operator::Operator;
use gcrun_store::{PageRequest, RunFilter, RunUpdate, Store, StoreConfig};
use serde_json::json;

#[derive(Args, Debug)]
pub struct OpsBench {
    /// Dead-lettered runs to hold.
    #[arg(long, default_value_t = 100_000)]
    entries: usize,
    /// Timed repetitions of each call (the median is printed).
    #[arg(long, default_value_t = 25)]
    repeats: usize,
}

const TOKEN: &str = "bench-operator-token-0123456789";

fn median_ms(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    let m = samples[samples.len() / 2];
    (m * 100.0).round() / 100.0
}

async fn timed<F, Fut, T>(repeats: usize, mut f: F) -> Result<f64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut samples = Vec::with_capacity(repeats);
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        f().await?;
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(median_ms(samples))
}

/// Writes `n` dead-lettered runs, 64 at a time; one in a thousand has the
/// reason `needle`.
async fn fill(store: &Store, n: usize) -> Result<f64> {
    let t = Instant::now();
    let request = RunRequest::builder(Flavor::Execute, "custom_-_bench")
        .input("customerId", "42")
        .build(&RequestLimits::default())
        .map_err(|v| anyhow::anyhow!("{v}"))?;
    let results: Vec<Result<()>> = futures_util::stream::iter(0..n)
        .map(|i| {
            let (store, request) = (store.clone(), request.clone());
            async move {
                let id = RunId::new();
                let now = gcrun_producer::now_ms();
                store.create_run(id, &request, now, now + 3_600_000).await?;
                let reason =
                    if i % 1000 == 999 { "needle: the one to find".to_string() } else { format!("gave up {i}") };
                let to = if i % 3 == 0 { RunStatus::Rejected } else { RunStatus::Dead };
                let update = RunUpdate { last_error: Some(reason.clone()), ..RunUpdate::default() };
                store.transition(&id, RunStatus::Accepted, to, now, &reason, &update).await?;
                Ok(())
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>>>()?;
    Ok(t.elapsed().as_secs_f64())
}

pub async fn run(args: OpsBench) -> Result<()> {
    let redis = gcrun_harness::RedisServer::try_start_with(gcrun_harness::RedisOptions::default())
        .map_err(|e| anyhow::anyhow!(e))?;
    let conn = gcrun_store::connect(&redis.url()).await?;
    let store = Store::new(conn.clone(), StoreConfig::default());
    let queues = gcrun_queue::Queues::new(conn, &gcrun_queue::QueueSettings::default());
    let fill_secs = fill(&store, args.entries).await?;
    let n = store.dlq_len().await?;
    let all = RunFilter::default();
    let first = PageRequest { limit: 50, ..PageRequest::default() };
    let first_page = timed(args.repeats, || async { Ok(store.dlq_page(&all, &first).await?) }).await?;
    // A cursor 60 entries before the end: the last page but one.
    let (member, score): (String, f64) = {
        let mut c = store.connection();
        let v: Vec<(String, f64)> =
            redis::cmd("ZRANGE").arg("{gcrun}:dlq").arg(-60).arg(-60).arg("WITHSCORES").query_async(&mut c).await?;
        v.into_iter().next().ok_or_else(|| anyhow::anyhow!("the dead-letter set is empty"))?
    };
    let cursor = format!("{score}:{member}");
    let deep = PageRequest { after: Some(&cursor), limit: 50, ..PageRequest::default() };
    let deep_page = timed(args.repeats, || async { Ok(store.dlq_page(&all, &deep).await?) }).await?;
    let needle = RunFilter { reason_contains: Some("needle".into()), ..RunFilter::default() };
    let filtered_page = timed(args.repeats, || async { Ok(store.dlq_page(&needle, &first).await?) }).await?;
    let t = Instant::now();
    let found = store.dlq_list(&needle).await?.len();
    let filtered_walk = t.elapsed().as_secs_f64() * 1000.0;
    let t = Instant::now();
    let every = store.dlq_list(&all).await?.len();
    let read_all_secs = t.elapsed().as_secs_f64();

    // The dashboard over HTTP, as a browser asks for it.
    let operator = Operator::new(store.clone(), queues);
    let config = gcrun_dashboard::DashboardConfig {
        operators: vec![gcrun_dashboard::OperatorToken::parse(&format!("bench={TOKEN}")).map_err(anyhow::Error::msg)?],
        ..gcrun_dashboard::DashboardConfig::default()
    };
    let app = gcrun_dashboard::router(operator, config)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();
    let page = |url: String| {
        let http = http.clone();
        async move {
            let r = http.get(url).bearer_auth(TOKEN).send().await?;
            anyhow::ensure!(r.status().is_success(), "dashboard answered {}", r.status());
            Ok(r.bytes().await?.len())
        }
    };
    let dash_first = timed(args.repeats, || page(format!("{base}/ops/dlq"))).await?;
    let dash_deep = timed(args.repeats, || page(format!("{base}/ops/dlq?after={}", urlencode(&cursor)))).await?;
    let dash_filtered = timed(args.repeats, || page(format!("{base}/ops/dlq?reason=needle"))).await?;
    let dash_overview = timed(args.repeats.min(10), || page(format!("{base}/ops"))).await?;

    // The CLI as a user runs it: a whole process.
    let exe = std::env::current_exe()?;
    let cli = timed(args.repeats.min(10), || {
        let (exe, url) = (exe.clone(), redis.url());
        async move {
            let out = tokio::task::spawn_blocking(move || {
                std::process::Command::new(exe)
                    .args(["dlq", "list", "--page-size", "50"])
                    .env("REDIS_URL", url)
                    .env("GCRUN_LOG", "error")
                    .output()
            })
            .await??;
            anyhow::ensure!(out.status.success(), "gcrun dlq list failed");
            Ok(())
        }
    })
    .await?;
    let mut c = store.connection();
    let info: String = redis::cmd("INFO").arg("memory").query_async(&mut c).await?;
    let used: u64 =
        info.lines().find_map(|l| l.strip_prefix("used_memory:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    println!(
        "{}",
        json!({
            "scenario": "ops/dead-letters",
            "dead_letters": n,
            "written_in_s": (fill_secs * 10.0).round() / 10.0,
            "redis_used_memory_mb": (used as f64 / 1e5).round() / 10.0,
            "store_page_ms": {"first": first_page, "last": deep_page, "filter_1_in_1000": filtered_page},
            "filter_1_in_1000_every_match": {"found": found, "ms": (filtered_walk * 10.0).round() / 10.0},
            "read_every_entry": {"entries": every, "s": (read_all_secs * 100.0).round() / 100.0},
            "dashboard_page_ms": {"first": dash_first, "last": dash_deep, "filter_1_in_1000": dash_filtered, "overview": dash_overview},
            "cli_dlq_list_page_ms": cli,
            "note": "medians; a page is 50 runs; a filtered page examines at most 5,000 entries and hands back a cursor; the CLI figure is a whole gcrun process (start, connect, one page)",
        })
    );
    Ok(())
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
