//! The operator side: `gcrun runs`, `gcrun dlq`, `gcrun stats`, `gcrun
//! audit`. Each command calls the producer's `Operator` or the store and
//! prints: a table for people, `--json` (one object per line) for scripts.
//!
//! Exit codes: 0 done, 1 failed (Redis unreachable, ...), 2 bad usage or a
//! refused confirmation, 3 not found, 4 invalid input (`check`).

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use gcrun_model::timestamp::{parse_moment, rfc3339_ms};
use gcrun_model::{Flavor, RunId, RunStatus};
use gcrun_producer::now_ms;
use gcrun_producer::operator::{Actor, Operator, Selection};
use gcrun_store::{AuditEntry, PageRequest, RunFilter, RunRecord, RunView, Store};
use serde_json::json;

use crate::worker_cmd::RedisArgs;

/// A command's failure with the exit code it means.
#[derive(Debug)]
pub struct Exit {
    pub code: i32,
    pub message: String,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

pub const USAGE: i32 = 2;
pub const NOT_FOUND: i32 = 3;
pub const INVALID: i32 = 4;

pub fn exit(code: i32, message: impl Into<String>) -> anyhow::Error {
    Exit { code, message: message.into() }.into()
}

/// Who acts and why, as `--by` (default `$USER`) and `--reason-text` say.
fn actor(by: Option<String>, reason: Option<String>) -> Actor {
    Actor { by: by.or_else(|| std::env::var("USER").ok()).unwrap_or_default(), reason: reason.unwrap_or_default() }
}

fn moment(s: &str) -> Result<u64, String> {
    parse_moment(s, now_ms())
}

fn pair(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("`{s}` is not KEY=VALUE"))?;
    Ok((k.to_string(), v.to_string()))
}

/// Filters shared by the run and dead-letter commands.
#[derive(Args, Debug, Clone)]
pub struct FilterArgs {
    #[arg(long)]
    status: Option<RunStatus>,
    #[arg(long)]
    flavor: Option<Flavor>,
    /// Action or flow id.
    #[arg(long)]
    target: Option<String>,
    /// Substring of the stored reason (case-insensitive).
    #[arg(long)]
    reason: Option<String>,
    /// The ingest client that sent the run.
    #[arg(long)]
    client: Option<String>,
    /// Metadata the request carries, KEY=VALUE (repeat: all must match).
    #[arg(long = "meta", value_parser = pair)]
    metadata: Vec<(String, String)>,
    /// From this moment: RFC 3339 or a span back from now (15m, 2h, 7d).
    /// Dead letters: when they were dead-lettered; runs: when accepted.
    #[arg(long, value_parser = moment)]
    since: Option<u64>,
    /// Only entries dead-lettered in the last N seconds (as --since Ns).
    #[arg(long, conflicts_with = "since")]
    since_secs: Option<u64>,
    /// Before this moment (same forms as --since).
    #[arg(long, value_parser = moment)]
    until: Option<u64>,
    /// At most this many runs.
    #[arg(long)]
    limit: Option<usize>,
}

impl FilterArgs {
    pub fn filter(&self) -> RunFilter {
        RunFilter {
            status: self.status,
            flavor: self.flavor,
            target: self.target.clone(),
            reason_contains: self.reason.clone(),
            client: self.client.clone(),
            metadata: self.metadata.clone(),
            since_ms: self.since.or(self.since_secs.map(|s| now_ms().saturating_sub(s * 1000))),
            until_ms: self.until,
            limit: self.limit,
        }
    }
}

/// Paging of a listing.
#[derive(Args, Debug, Clone)]
pub struct PageArgs {
    /// Runs per page.
    #[arg(long, default_value_t = 50)]
    page_size: usize,
    /// Start after this cursor (printed at the end of a page).
    #[arg(long)]
    after: Option<String>,
    /// Newest first.
    #[arg(long)]
    newest_first: bool,
    /// Every page, not just the first.
    #[arg(long)]
    all: bool,
}

#[derive(Subcommand, Debug)]
pub enum RunsCommand {
    /// Show a run's record with its transitions.
    Get {
        #[command(flatten)]
        redis: RedisArgs,
        run_id: RunId,
        /// Print JSON (the default for this command).
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        json: bool,
    },
    /// Runs per status, and each queue's depth.
    Counts {
        #[command(flatten)]
        redis: RedisArgs,
    },
    /// List runs, newest first by default, a page at a time.
    List {
        #[command(flatten)]
        redis: RedisArgs,
        #[command(flatten)]
        filter: FilterArgs,
        #[command(flatten)]
        page: PageArgs,
        /// Oldest first.
        #[arg(long, conflicts_with = "newest_first")]
        oldest_first: bool,
        #[arg(long)]
        json: bool,
    },
    /// Cancel runs that have not ended: each one's next step ends it
    /// `cancelled` and sends its webhook. A call already made to Genesys
    /// is not undone.
    Cancel {
        #[command(flatten)]
        redis: RedisArgs,
        #[arg(required = true)]
        run_ids: Vec<RunId>,
        /// Who cancels (recorded with the run); default $USER.
        #[arg(long)]
        by: Option<String>,
        /// Why (recorded with the run).
        #[arg(long)]
        reason_text: Option<String>,
    },
    /// Follow transitions live, as they happen.
    Tail {
        #[command(flatten)]
        redis: RedisArgs,
        /// Only moves to this status.
        #[arg(long)]
        to: Option<RunStatus>,
        /// Only this run.
        #[arg(long)]
        run: Option<RunId>,
        /// Only runs of this flavor (reads each run's record once).
        #[arg(long)]
        flavor: Option<Flavor>,
        /// Only runs of this action or flow (reads each run's record once).
        #[arg(long)]
        target: Option<String>,
        /// Start after this audit id instead of now (`0` for the oldest kept).
        #[arg(long)]
        from: Option<String>,
        /// Stop after this many transitions.
        #[arg(long)]
        count: Option<usize>,
        /// Stop after this many seconds.
        #[arg(long)]
        for_secs: Option<u64>,
        #[arg(long)]
        json: bool,
    },
}

fn table_row(r: &RunRecord) -> String {
    format!(
        "{}  {:<10} {:<8} {:<48} {}  {}",
        r.id,
        r.status,
        r.flavor,
        r.target,
        rfc3339_ms(r.created_ms),
        r.last_error.as_deref().unwrap_or("-")
    )
}

/// Walks pages of a listing, printing each run; returns how many.
async fn print_pages(
    store: &Store,
    dlq: bool,
    filter: &RunFilter,
    page: &PageArgs,
    newest_first: bool,
    json: bool,
) -> Result<usize> {
    let mut after = page.after.clone();
    let mut shown = 0;
    let mut unreadable = 0;
    loop {
        let size = filter.limit.map_or(page.page_size, |l| l.saturating_sub(shown).min(page.page_size));
        if size == 0 {
            return Ok(shown);
        }
        let req = PageRequest { after: after.as_deref(), limit: size, newest_first, budget: 5_000.max(size) };
        let got = if dlq { store.dlq_page(filter, &req).await? } else { store.runs_page(filter, &req).await? };
        for r in &got.runs {
            if json {
                println!("{}", serde_json::to_string(&RunView::from(r))?);
            } else {
                println!("{}", table_row(r));
            }
        }
        for (id, reason) in &got.unreadable {
            if json {
                println!("{}", json!({"runId": id, "unreadable": true, "lastError": reason}));
            } else {
                println!("{id}  unreadable record  {reason}");
            }
        }
        shown += got.runs.len();
        unreadable += got.unreadable.len();
        let done = |shown| {
            if unreadable > 0 && !json {
                eprintln!(
                    "{unreadable} entr(ies) have a record that can no longer be read (purge them, or look by hand)"
                );
            }
            Ok(shown)
        };
        match got.next {
            Some(next) if page.all => after = Some(next),
            Some(next) => {
                eprintln!("more: --after {next}");
                return done(shown);
            }
            None => return done(shown),
        }
    }
}

pub async fn runs(cmd: RunsCommand) -> Result<()> {
    match cmd {
        RunsCommand::Get { redis, run_id, json } => {
            let (store, _) = redis.open().await?;
            let record = store
                .get_run_with_history(&run_id)
                .await?
                .ok_or_else(|| exit(NOT_FOUND, format!("run {run_id} not found")))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&RunView::from(&record))?);
            } else {
                print_detail(&record);
            }
        }
        RunsCommand::Counts { redis } => {
            let (store, queues) = redis.open().await?;
            let mut counts: Vec<(String, i64)> = store.counts().await?.into_iter().collect();
            counts.sort();
            for (status, n) in counts {
                println!("{status:<12} {n}");
            }
            for q in queues.names.all() {
                let d = queues.depth(q).await?;
                println!(
                    "{q:<18} ready {} scheduled {} in-flight {} dead {}",
                    d.ready, d.scheduled, d.in_flight, d.dead
                );
            }
        }
        RunsCommand::List { redis, filter, page, oldest_first, json } => {
            let (store, _) = redis.open().await?;
            let newest_first = !oldest_first;
            let n = print_pages(&store, false, &filter.filter(), &page, newest_first, json).await?;
            if !json {
                eprintln!("{n} run(s) shown");
            }
        }
        RunsCommand::Cancel { redis, run_ids, by, reason_text } => {
            let (store, queues) = redis.open().await?;
            let operator = Operator::new(store, queues);
            let actor = actor(by, reason_text);
            let mut missing = 0;
            for id in &run_ids {
                match operator.cancel(id, &actor).await {
                    Ok(gcrun_producer::operator::Cancel::Requested) => println!("cancelling {id}"),
                    Ok(gcrun_producer::operator::Cancel::Ended(status)) => println!("{id} had already ended: {status}"),
                    Err(gcrun_producer::operator::OperatorError::Store(gcrun_store::StoreError::NotFound(_))) => {
                        eprintln!("{id}: no such run");
                        missing += 1;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if missing > 0 {
                return Err(exit(NOT_FOUND, format!("{missing} run(s) not found")));
            }
        }
        RunsCommand::Tail { redis, to, run, flavor, target, from, count, for_secs, json } => {
            let (store, _) = redis.open().await?;
            tail(&store, TailFilter { to, run, flavor, target }, from, count, for_secs, json).await?;
        }
    }
    Ok(())
}

struct TailFilter {
    to: Option<RunStatus>,
    run: Option<RunId>,
    flavor: Option<Flavor>,
    target: Option<String>,
}

async fn tail(
    store: &Store,
    f: TailFilter,
    from: Option<String>,
    count: Option<usize>,
    for_secs: Option<u64>,
    json: bool,
) -> Result<()> {
    let mut after = match from {
        Some(id) => id,
        None => store.audit_last_id().await?,
    };
    let stop_at = for_secs.map(|s| std::time::Instant::now() + Duration::from_secs(s));
    // Each run's flavor and target, read once.
    let mut seen: std::collections::HashMap<String, Option<(Flavor, String)>> = Default::default();
    let mut printed = 0;
    loop {
        let block = stop_at.map_or(Duration::from_secs(5), |t| {
            t.saturating_duration_since(std::time::Instant::now()).min(Duration::from_secs(5))
        });
        if block.is_zero() {
            return Ok(());
        }
        for e in store.audit_follow(&after, block).await? {
            after = e.id.clone();
            if f.to.is_some_and(|s| s.as_str() != e.to) || f.run.is_some_and(|r| r.to_string() != e.run) {
                continue;
            }
            if f.flavor.is_some() || f.target.is_some() {
                if !seen.contains_key(&e.run) {
                    let rec = match e.run.parse::<RunId>() {
                        Ok(id) => store.get_run(&id).await.ok().flatten(),
                        Err(_) => None,
                    };
                    seen.insert(e.run.clone(), rec.map(|r| (r.flavor, r.target)));
                }
                let Some(Some((flavor, target))) = seen.get(&e.run) else { continue };
                if f.flavor.is_some_and(|x| x != *flavor) || f.target.as_ref().is_some_and(|t| t != target) {
                    continue;
                }
            }
            print_audit(&e, json)?;
            printed += 1;
            if count.is_some_and(|c| printed >= c) {
                return Ok(());
            }
        }
    }
}

fn print_audit(e: &AuditEntry, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(e)?);
    } else {
        let from = if e.from.is_empty() { "-" } else { e.from.as_str() };
        println!("{}  {}  {from:>10} -> {:<10} {}", rfc3339_ms(e.at_ms), e.run, e.to, e.cause);
    }
    std::io::stdout().flush()?;
    Ok(())
}

/// A run as a person reads it: the request (secrets masked), the error,
/// the webhook, every transition.
fn print_detail(r: &RunRecord) {
    let view = RunView::from(r);
    println!("run        {}", r.id);
    println!("status     {}", r.status);
    println!("flavor     {}  {}", r.flavor, r.target);
    if let Some(c) = &r.client {
        println!("client     {c}");
    }
    println!("accepted   {}", view.created_at);
    if let Some(s) = &view.submitted_at {
        println!("submitted  {s}");
    }
    if let Some(c) = &view.completed_at {
        println!("ended      {c}");
    }
    if let Some(id) = &r.remote_id {
        println!("remote id  {id}");
    }
    println!("polls      {}   retries {}", r.poll_attempts, r.retries);
    println!("last error {}", r.last_error.as_deref().unwrap_or("-"));
    println!("correlation {}", r.correlation_id.as_deref().unwrap_or("-"));
    if let Some(w) = &view.webhook {
        println!(
            "webhook    {} after {} attempt(s){}",
            serde_json::to_value(w.status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
            w.attempts,
            w.last_error.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
        );
    }
    println!("request    {}", serde_json::to_string(&view.request).unwrap_or_default());
    if !view.attempts.is_empty() {
        println!("failed attempts (retried):");
        for a in &view.attempts {
            let corr = a.correlation_id.as_ref().map(|c| format!(" [correlation {c}]")).unwrap_or_default();
            println!("  {}  {:<6} {}{corr}", a.at, a.stage, a.error);
        }
    }
    println!("transitions:");
    for t in &view.transitions {
        let from = t.from.map_or("-".to_string(), |f| f.to_string());
        println!("  {}  {from:>10} -> {:<10} {}", t.at, t.to, t.cause);
    }
}

#[derive(Subcommand, Debug)]
pub enum DlqCommand {
    /// List dead-lettered runs with their reasons, oldest first, a page at
    /// a time.
    List {
        #[command(flatten)]
        redis: RedisArgs,
        #[command(flatten)]
        filter: FilterArgs,
        #[command(flatten)]
        page: PageArgs,
        #[arg(long)]
        json: bool,
    },
    /// One dead-lettered run: its request (secrets masked), errors,
    /// webhook and every transition.
    Show {
        #[command(flatten)]
        redis: RedisArgs,
        run_id: RunId,
        #[arg(long)]
        json: bool,
    },
    /// Put matching runs back to `accepted` and enqueue them again. A run
    /// that was submitted before resumes polling; it is not submitted twice.
    Requeue {
        #[command(flatten)]
        redis: RedisArgs,
        #[command(flatten)]
        filter: FilterArgs,
        /// Requeue exactly these runs (ignores the filter).
        #[arg(long = "run")]
        runs: Vec<RunId>,
        /// List what would be requeued; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Who requeues (recorded in each run's history); default $USER.
        #[arg(long)]
        by: Option<String>,
        /// Why (recorded in each run's history).
        #[arg(long)]
        reason_text: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Delete matching runs for good. Asks first unless --yes.
    Purge {
        #[command(flatten)]
        redis: RedisArgs,
        #[command(flatten)]
        filter: FilterArgs,
        /// List what would be purged; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Purge without asking (required when not on a terminal).
        #[arg(long)]
        yes: bool,
    },
    /// Webhooks that could not be delivered; `--requeue` sends them again.
    Webhooks {
        #[command(flatten)]
        redis: RedisArgs,
        #[arg(long)]
        requeue: bool,
    },
    /// Jobs in the queues' own dead sets (malformed jobs, poison jobs),
    /// oldest first, a page at a time; `--requeue` runs the page again
    /// under fresh ids, `--purge --yes` drops it (each re-checked as still
    /// dead when it is acted on).
    Jobs {
        #[command(flatten)]
        redis: RedisArgs,
        /// Only this queue (submit, poll or webhook).
        #[arg(long)]
        queue: Option<String>,
        #[arg(long, default_value_t = 0)]
        offset: usize,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long, conflicts_with = "purge")]
        requeue: bool,
        #[arg(long)]
        purge: bool,
        /// Confirms a purge.
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        json: bool,
    },
}

/// Asks on the terminal; refuses when there is none (a script must say
/// `--yes`).
fn confirm(question: &str) -> Result<()> {
    if !std::io::stdin().is_terminal() {
        return Err(exit(USAGE, format!("{question}: not confirmed (add --yes when not on a terminal)")));
    }
    eprint!("{question} Type `yes` to go on: ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if answer.trim() != "yes" {
        return Err(exit(USAGE, "not confirmed; nothing was purged"));
    }
    Ok(())
}

pub async fn dlq(cmd: DlqCommand) -> Result<()> {
    let now = now_ms();
    match cmd {
        DlqCommand::List { redis, filter, page, json } => {
            let (store, _) = redis.open().await?;
            let newest_first = page.newest_first;
            let n = print_pages(&store, true, &filter.filter(), &page, newest_first, json).await?;
            if !json {
                eprintln!("{n} run(s) shown of {} in the dead-letter set", store.dlq_len().await?);
            }
        }
        DlqCommand::Show { redis, run_id, json } => {
            let (store, _) = redis.open().await?;
            let record = store
                .get_run_with_history(&run_id)
                .await?
                .ok_or_else(|| exit(NOT_FOUND, format!("run {run_id} not found")))?;
            if !record.status.is_dead_lettered() {
                eprintln!("note: run {run_id} is {}, not in the dead-letter set", record.status);
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&RunView::from(&record))?);
            } else {
                print_detail(&record);
            }
        }
        DlqCommand::Requeue { redis, filter, runs, dry_run, by, reason_text, json } => {
            let (store, queues) = redis.open().await?;
            let selection = if runs.is_empty() { Selection::Matching(filter.filter()) } else { Selection::Runs(runs) };
            let operator = Operator::new(store, queues);
            if dry_run {
                let would = operator.preview(&selection).await?;
                for r in &would {
                    println!("would requeue {}", table_row(r));
                }
                eprintln!("{} run(s) would be requeued (dry run: nothing changed)", would.len());
                return Ok(());
            }
            let who = actor(by, reason_text);
            let requeued = operator.requeue_runs_by(&selection, now, &who).await?;
            for r in &requeued {
                if json {
                    println!("{}", json!({"requeued": r.id}));
                } else {
                    println!("requeued {}", r.id);
                }
            }
            eprintln!("{} run(s) requeued", requeued.len());
        }
        DlqCommand::Purge { redis, filter, dry_run, yes } => {
            let (store, queues) = redis.open().await?;
            let operator = Operator::new(store, queues);
            let listed = operator.preview(&Selection::Matching(filter.filter())).await?;
            if dry_run {
                for r in &listed {
                    println!("would purge {}", table_row(r));
                }
                eprintln!("{} run(s) would be purged (dry run: nothing changed)", listed.len());
                return Ok(());
            }
            if !yes {
                confirm(&format!("Purge {} dead-lettered run(s) for good?", listed.len()))?;
            }
            let ids: Vec<RunId> = listed.iter().map(|r| r.id).collect();
            let n = operator.purge_ids(&ids).await?;
            eprintln!("{n} run(s) purged");
        }
        DlqCommand::Webhooks { redis, requeue } => {
            let (store, queues) = redis.open().await?;
            let operator = Operator::new(store, queues);
            let dead = operator.dead_webhooks().await?;
            if requeue {
                let ids: Vec<RunId> = dead.iter().map(|(id, _)| *id).collect();
                for id in operator.requeue_webhooks(&ids).await? {
                    println!("requeued webhook of {id}");
                }
            } else {
                for (id, reason) in dead {
                    println!("{id}  {reason}");
                }
            }
        }
        DlqCommand::Jobs { redis, queue, offset, limit, requeue, purge, yes, json } => {
            if purge && !yes {
                return Err(exit(USAGE, "--purge drops dead jobs for good: add --yes to confirm"));
            }
            let (_, queues) = redis.open().await?;
            let names: Vec<String> = match queue {
                Some(q) if queues.names.all().contains(&q.as_str()) => vec![q],
                Some(q) => return Err(exit(USAGE, format!("no queue named `{q}` (submit, poll or webhook)"))),
                None => queues.names.all().iter().map(|q| q.to_string()).collect(),
            };
            for q in &names {
                let page = queues.dead_jobs(q, offset, limit).await?;
                let ids: Vec<String> = page.iter().map(|j| j.id.clone()).collect();
                if requeue {
                    println!("{q}: requeued {} of {} listed", queues.requeue_dead(q, &ids).await?, ids.len());
                } else if purge {
                    println!("{q}: purged {} of {} listed", queues.purge_dead(q, &ids).await?, ids.len());
                } else if json {
                    for job in page {
                        println!("{}", serde_json::json!({ "queue": q, "job": job }));
                    }
                } else {
                    for job in page {
                        println!(
                            "{q} {}  died={}  payload={}  reason={}",
                            job.id,
                            rfc3339_ms(job.died_ms),
                            job.payload.unwrap_or_default(),
                            job.reason.unwrap_or_default()
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct PauseArgs {
    #[command(flatten)]
    redis: RedisArgs,
    /// `queue` (submit, poll or webhook: no worker takes its jobs),
    /// `flavor` (runs, execute or workflow) or `action` (an action or flow
    /// id): no new run of it is submitted, runs already submitted go on.
    kind: String,
    value: String,
    /// Who pauses (shown with the pause); default $USER.
    #[arg(long)]
    by: Option<String>,
    /// Why (shown with the pause).
    #[arg(long)]
    reason_text: Option<String>,
}

pub async fn pause(args: PauseArgs, resume: bool) -> Result<()> {
    let what = gcrun_producer::operator::Pause::parse(&args.kind, &args.value).map_err(|e| exit(USAGE, e))?;
    let (store, queues) = args.redis.open().await?;
    let operator = Operator::new(store, queues);
    if resume {
        let r = operator.resume(&what).await?;
        if !r.was_paused {
            eprintln!("{what} was not paused");
        }
        println!("resumed {what}; {} parked run(s) sent on", r.unparked);
    } else {
        let actor = actor(args.by, args.reason_text);
        operator.pause(&what, &actor, now_ms()).await?;
        println!("paused {what}");
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct PausesArgs {
    #[command(flatten)]
    redis: RedisArgs,
    #[arg(long)]
    json: bool,
}

pub async fn pauses(args: PausesArgs) -> Result<()> {
    let (store, queues) = args.redis.open().await?;
    let operator = Operator::new(store, queues);
    let pauses = operator.pauses().await?;
    let parked = operator.parked().await?;
    if args.json {
        println!("{}", json!({"pauses": pauses, "parkedRuns": parked}));
        return Ok(());
    }
    for p in &pauses {
        println!("{:<40} since {}  by {}  {}", p.what, p.since, p.by, p.reason);
    }
    eprintln!("{} pause(s); {parked} run(s) parked by holds", pauses.len());
    Ok(())
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    #[command(flatten)]
    redis: RedisArgs,
    /// The window of recent runs the rates and percentiles cover (15m, 2h, 1d).
    #[arg(long, default_value = "1h")]
    window: String,
    /// Look at most at this many of the window's newest runs.
    #[arg(long, default_value_t = 10_000)]
    sample: usize,
    #[arg(long)]
    json: bool,
}

pub async fn stats(args: StatsArgs) -> Result<()> {
    let now = now_ms();
    let since = parse_moment(&args.window, now).map_err(|e| exit(USAGE, format!("--window: {e}")))?;
    let (store, queues) = args.redis.open().await?;
    let s = Operator::new(store, queues).stats(now, Duration::from_millis(now - since), args.sample).await?;
    if args.json {
        println!("{}", serde_json::to_string(&s)?);
        return Ok(());
    }
    let secs = |ms: Option<u64>| ms.map_or("-".to_string(), |ms| format!("{:.1}s", ms as f64 / 1000.0));
    let pct = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{:.1}%", r * 100.0));
    let dur = |d: Option<f64>| d.map_or("-".to_string(), |d| format!("{d:.2}s"));
    println!("QUEUE      READY  SCHEDULED  IN-FLIGHT  DEAD  OLDEST-READY");
    for q in &s.queues {
        println!(
            "{:<10} {:>5}  {:>9}  {:>9}  {:>4}  {}",
            q.name.rsplit(':').next().unwrap_or(&q.name),
            q.ready,
            q.scheduled,
            q.in_flight,
            q.dead,
            secs(q.oldest_ready_ms)
        );
    }
    println!();
    let counts: Vec<String> = s.counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!("runs now: {}", counts.join(", "));
    println!("dead-letter set: {} run(s); dead webhooks: {}", s.dead_letters, s.dead_webhooks);
    for p in &s.pauses {
        println!(
            "PAUSED {} since {} by {}{}",
            p.what,
            p.since,
            p.by,
            if p.reason.is_empty() { String::new() } else { format!(": {}", p.reason) }
        );
    }
    if s.parked_runs > 0 {
        println!("{} run(s) parked by holds, sent on when they are resumed", s.parked_runs);
    }
    let w = &s.window;
    println!();
    println!(
        "last {}: {} run(s){}; success {}; duration p50 {} p95 {} p99 {}",
        args.window,
        w.runs,
        if w.sampled { " (the newest, sampled)" } else { "" },
        pct(w.success_rate),
        dur(w.duration_p50),
        dur(w.duration_p95),
        dur(w.duration_p99)
    );
    println!(
        "webhooks: {} delivered, {} dead, {} pending; delivery {}",
        w.webhooks_delivered,
        w.webhooks_dead,
        w.webhooks_pending,
        pct(w.webhook_delivery_rate)
    );
    println!();
    for l in &s.limiters {
        println!(
            "limiter {}: {} held of {}, {} waiting for a slot, {} waiting for the rate ({}/min){}",
            l.status.name,
            l.status.held,
            l.limits.get("maxConcurrent").unwrap_or(&json!("?")),
            l.status.waiting,
            l.status.reserved,
            l.limits.get("ratePerMinute").unwrap_or(&json!("?")),
            l.status.paused_for_ms.map(|ms| format!(", PAUSED {:.1}s more", ms as f64 / 1000.0)).unwrap_or_default()
        );
    }
    let r = &s.retention;
    let trimmed: Vec<String> = r.trimmed.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!(
        "retention: ended runs {}h, dead-lettered {}h, idempotency keys {}h; audit {} of ~{} kept{}",
        r.ended_run_secs / 3600,
        r.dead_run_secs / 3600,
        r.idempotency_secs / 3600,
        r.audit_entries,
        r.audit_cap,
        r.audit_oldest_at.as_ref().map(|a| format!(" (oldest {a})")).unwrap_or_default()
    );
    println!("trimmed by retention: {}", if trimmed.is_empty() { "nothing yet".into() } else { trimmed.join(", ") });
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Every transition in a time range as JSON Lines, oldest first. Resume
    /// an interrupted export with --after and the last id printed.
    Export {
        #[command(flatten)]
        redis: RedisArgs,
        /// From this moment: RFC 3339 or a span back from now (15m, 2h, 7d).
        #[arg(long, value_parser = moment)]
        since: Option<u64>,
        /// Before this moment.
        #[arg(long, value_parser = moment)]
        until: Option<u64>,
        /// Resume after this entry id (ignores --since).
        #[arg(long)]
        after: Option<String>,
    },
}

pub async fn audit(cmd: AuditCommand) -> Result<()> {
    let AuditCommand::Export { redis, since, until, after } = cmd;
    let (store, _) = redis.open().await?;
    let mut after = after;
    let mut n = 0usize;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    loop {
        let page = store.audit_page(after.as_deref(), since, until, 1_000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        for e in &page {
            serde_json::to_writer(&mut out, e)?;
            out.write_all(b"\n")?;
        }
        n += page.len();
    }
    out.flush().context("writing the export")?;
    match after {
        Some(last) => eprintln!("{n} entr(ies) exported; resume with --after {last}"),
        None => eprintln!("no entries in that range"),
    }
    Ok(())
}
