//! Several Genesys orgs in one deployment: each tenant has its keys under
//! its own hash tag, its own queues, limiter and workers; ingest clients
//! reach only the tenants they are bound to.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use gcrun_emulator::{EmulatorConfig, Limits, Timings};
use gcrun_harness::RedisCluster;
use gcrun_model::{RunId, RunStatus, Tenant};
use gcrun_producer::ingest::IngestConfig;
use gcrun_tests::{LOOKUP, Redis, Stack, limiter};
use gcrun_worker::RunSettings;
use serde_json::{Value, json};

fn lookups(n: usize, prefix: &str) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"flavor": "runs", "actionId": LOOKUP, "inputs": {"customerId": format!("{prefix}{i}"), "channel": "chat"}}))
        .collect()
}

/// Two tenant names whose hash tags sit on different nodes of `cluster`.
fn tenants_on_two_shards(cluster: &RedisCluster) -> (Tenant, Tenant) {
    let names: Vec<Tenant> = (0..20).map(|i| Tenant::parse(&format!("org{i}")).unwrap()).collect();
    let first = &names[0];
    let node = cluster.node_of(&first.tag());
    let other = names.iter().find(|t| cluster.node_of(&t.tag()) != node).expect("some tag on another node");
    (first.clone(), other.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_backlog_of_ten_thousand_runs_does_not_delay_another_tenant_on_the_cluster() {
    let emulator = EmulatorConfig {
        timings: Timings {
            queued_for: Duration::from_millis(50),
            running_for: Duration::from_millis(200),
            execute_for: Duration::from_millis(10),
        },
        // Genesys's own limits stay out of the way: each tenant's limiter
        // is what binds.
        limits: Limits { executions_per_window: None, max_concurrent: Some(500), ..Limits::default() },
        seed: 9,
        ..EmulatorConfig::default()
    };
    let cluster = RedisCluster::start(3);
    let (bulk, live) = tenants_on_two_shards(&cluster);
    let stack = Stack::start_on(emulator, Duration::from_secs(600), Redis::Cluster(cluster)).await;
    let fast = RunSettings { poll_interval: Duration::from_millis(20), ..RunSettings::default() };

    // The bulk tenant: 5 concurrent executions; 10,000 runs queued first.
    let mut settings = stack.worker_settings(limiter(60_000, 100, 5), fast.clone());
    settings.tenant = bulk.clone();
    let bulk_worker = stack.start_worker_from(settings).await;
    let backlog = stack.producer.for_tenant(&bulk).enqueue_batch(&lookups(10_000, "b")).await.unwrap();
    assert!(backlog.iter().all(Result::is_ok));

    // The live tenant: 20 concurrent executions, 60 runs sent after.
    let mut settings = stack.worker_settings(limiter(60_000, 100, 20), fast);
    settings.tenant = live.clone();
    let live_worker = stack.start_worker_from(settings).await;
    let sent = Instant::now();
    let results = stack.producer.for_tenant(&live).enqueue_batch(&lookups(60, "l")).await.unwrap();
    let ids: Vec<RunId> = results.iter().map(|r| r.as_ref().unwrap().run_id).collect();
    let live_store = stack.store.of_tenant(&live);
    let took = gcrun_harness::wait_until("the live tenant's runs to end", Duration::from_secs(120), || async {
        for id in &ids {
            if !live_store.get_run(id).await.ok()??.status.is_terminal() {
                return None;
            }
        }
        Some(sent.elapsed())
    })
    .await;
    let bulk_store = stack.store.of_tenant(&bulk);
    let bulk_counts = bulk_store.counts().await.unwrap();
    let bulk_done = bulk_counts.get("completed").copied().unwrap_or(0);
    live_worker.stop().await;
    bulk_worker.stop().await;

    // Every live run completed, at the pace of its own limit: 60 runs of
    // about a quarter second, 20 at a time, want about 1 s; behind the
    // backlog, at 5 at a time, they would wait about 500 s.
    let mut by_status: HashMap<RunStatus, usize> = HashMap::new();
    for id in &ids {
        *by_status.entry(live_store.get_run(id).await.unwrap().unwrap().status).or_default() += 1;
    }
    assert_eq!(by_status.get(&RunStatus::Completed), Some(&60), "{by_status:?}");
    assert!(took < Duration::from_secs(20), "the live tenant's 60 runs took {took:?} behind the other's backlog");
    assert!(bulk_done < 5_000, "the backlog was still there while the live runs ran ({bulk_done} done)");

    // Each tenant sees only its own runs, and neither is the default's.
    let live_page = live_store.runs_page(&Default::default(), &Default::default()).await.unwrap();
    assert!(!live_page.runs.is_empty() && live_page.runs.iter().all(|r| ids.contains(&r.id)));
    assert_eq!(stack.store.runs_len().await.unwrap(), 0, "nothing in the default tenant");

    // Their keys sit on two different shards.
    let Redis::Cluster(cluster) = &stack.redis else { unreachable!() };
    let per_node = cluster.keys_per_node();
    assert!(per_node.iter().filter(|k| **k > 0).count() >= 2, "{per_node:?}");

    // The live tenant's webhooks name it.
    let sink = stack.sink.lock().unwrap();
    let live_hooks: Vec<&Value> = sink
        .accepted
        .iter()
        .map(|d| &d.body)
        .filter(|b| b["runId"].as_str().is_some_and(|r| ids.iter().any(|i| i.to_string() == r)))
        .collect();
    assert_eq!(live_hooks.len(), 60);
    assert!(live_hooks.iter().all(|b| b["tenant"] == live.as_str()));
    println!(
        "tenants: {} 60 runs in {:.2} s beside {}'s backlog of 10,000 ({bulk_done} of it done meanwhile); keys per node {per_node:?}",
        live,
        took.as_secs_f64(),
        bulk
    );
}

#[tokio::test]
async fn ingest_clients_reach_only_the_tenants_they_are_bound_to() {
    let stack = Stack::start(EmulatorConfig::default(), Duration::from_secs(60)).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let clients = gcrun_producer::ingest::parse_clients("crm@acme=tok-a,both@acme+beta=tok-b,old=tok-d").unwrap();
    assert_eq!(clients[1].tenants, vec![Tenant::parse("acme").unwrap(), Tenant::parse("beta").unwrap()]);
    let config = IngestConfig { clients, ..IngestConfig::default() };
    tokio::spawn(gcrun_producer::ingest::serve(listener, stack.producer.clone(), config, std::future::pending()));
    let http = reqwest::Client::new();
    let doc = &lookups(1, "x")[0];
    let post = |token: &'static str, tenant: Option<&'static str>| {
        let mut req = http.post(format!("{base}/v1/runs")).bearer_auth(token).json(doc);
        if let Some(t) = tenant {
            req = req.header("gcrun-tenant", t);
        }
        req.send()
    };

    // No header: the client's first tenant; a tenant not its own: 403; a
    // malformed name: 400 naming the header. Nothing written for either.
    let r = post("tok-a", None).await.unwrap();
    assert_eq!(r.status(), 202);
    let a_run: RunId = r.json::<Value>().await.unwrap()["runId"].as_str().unwrap().parse().unwrap();
    let acme = stack.store.of_tenant(&Tenant::parse("acme").unwrap());
    assert!(acme.get_run(&a_run).await.unwrap().is_some());
    assert!(stack.store.get_run(&a_run).await.unwrap().is_none(), "not in the default tenant");
    let r = post("tok-a", Some("beta")).await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "tenant_forbidden");
    let r = post("tok-a", Some("Not A Tenant")).await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["violations"][0]["path"], "/headers/gcrun-tenant");
    let beta = stack.store.of_tenant(&Tenant::parse("beta").unwrap());
    assert_eq!(beta.runs_len().await.unwrap(), 0);

    // A client of two tenants picks one; it finds its runs in either
    // without naming it; another client never sees them.
    let r = post("tok-b", Some("beta")).await.unwrap();
    assert_eq!(r.status(), 202);
    let b_run: String = r.json::<Value>().await.unwrap()["runId"].as_str().unwrap().to_string();
    assert_eq!(beta.runs_len().await.unwrap(), 1);
    let get = |token: &'static str, id: &str| http.get(format!("{base}/v1/runs/{id}")).bearer_auth(token).send();
    assert_eq!(get("tok-b", &b_run).await.unwrap().status(), 200);
    assert_eq!(get("tok-a", &b_run).await.unwrap().status(), 404);
    assert_eq!(get("old", &b_run).await.unwrap().status(), 401);
    assert_eq!(get("tok-d", &b_run).await.unwrap().status(), 404);
    // A client bound to no tenant writes the default tenant, as before.
    assert_eq!(post("tok-d", None).await.unwrap().status(), 202);
    assert_eq!(stack.store.runs_len().await.unwrap(), 1);
    let r = http
        .post(format!("{base}/v1/runs/{b_run}/cancel"))
        .bearer_auth("tok-b")
        .header("gcrun-tenant", "acme")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "named the wrong tenant: no such run there");
    let r = http.post(format!("{base}/v1/runs/{b_run}/cancel")).bearer_auth("tok-b").send().await.unwrap();
    assert_eq!(r.status(), 202);

    // An ingest of its own tenant (GCRUN_TENANT=acme): its unbound clients
    // write there, not to the default tenant.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let own = format!("http://{}", listener.local_addr().unwrap());
    let config = IngestConfig {
        clients: gcrun_producer::ingest::parse_clients("solo=tok-s").unwrap(),
        ..IngestConfig::default()
    };
    let producer = stack.producer.for_tenant(&Tenant::parse("acme").unwrap());
    tokio::spawn(gcrun_producer::ingest::serve(listener, producer, config, std::future::pending()));
    let r = http.post(format!("{own}/v1/runs")).bearer_auth("tok-s").json(doc).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let s_run: RunId = r.json::<Value>().await.unwrap()["runId"].as_str().unwrap().parse().unwrap();
    assert!(acme.get_run(&s_run).await.unwrap().is_some(), "in the ingest's own tenant");
    let r = http.get(format!("{own}/v1/runs/{s_run}")).bearer_auth("tok-s").send().await.unwrap();
    assert_eq!(r.status(), 200);
}
