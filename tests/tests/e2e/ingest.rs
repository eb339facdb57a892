use std::time::Duration;

use gcrun_emulator::EmulatorConfig;
use gcrun_producer::ingest::{IngestClient, IngestConfig};
use gcrun_tests::{LOOKUP, Stack};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn dbsize(stack: &Stack) -> i64 {
    let mut conn = stack.store.connection();
    redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap()
}

#[tokio::test]
async fn ingest_refuses_bad_tokens_and_bodies_before_redis() {
    let stack = Stack::start(EmulatorConfig::default(), Duration::from_secs(60)).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let config = IngestConfig {
        clients: vec![IngestClient::parse("t0ken-1", 1).unwrap()],
        body_limit: 64 * 1024,
        ..IngestConfig::default()
    };
    tokio::spawn(gcrun_producer::ingest::serve(listener, stack.producer.clone(), config, std::future::pending()));
    let http = reqwest::Client::new();
    let valid = json!({"flavor": "runs", "actionId": LOOKUP, "inputs": {"customerId": "1", "channel": "chat"}});

    for token in [None, Some("wrong"), Some("t0ken-1x")] {
        let mut req = http.post(format!("{base}/v1/runs")).json(&valid);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{token:?}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
    }
    let bad =
        json!({"flavor": "runs", "inputs": {"nested": {"a": 1}, "orgId": "x"}, "webhookUrl": "ftp://x", "extra": 1});
    let r = http.post(format!("{base}/v1/runs")).bearer_auth("t0ken-1").json(&bad).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    let mut paths: Vec<&str> =
        body["violations"].as_array().unwrap().iter().map(|v| v["path"].as_str().unwrap()).collect();
    paths.sort();
    assert_eq!(paths, vec!["/actionId", "/extra", "/inputs/nested", "/inputs/orgId", "/webhookUrl"]);
    let r = http.post(format!("{base}/v1/runs")).bearer_auth("t0ken-1").body("{oops").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r =
        http.post(format!("{base}/v1/runs")).bearer_auth("t0ken-1").body(vec![b'x'; 100 * 1024]).send().await.unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(dbsize(&stack).await, 0, "nothing reached Redis");

    // A valid request is accepted with its Location; the same idempotency
    // key returns the same run.
    let mut doc = valid.clone();
    doc["idempotencyKey"] = json!("crm-1");
    let r = http.post(format!("{base}/v1/runs")).bearer_auth("t0ken-1").json(&doc).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let first: Value = r.json().await.unwrap();
    assert_eq!(location, format!("/v1/runs/{}", first["runId"].as_str().unwrap()));
    let r = http.post(format!("{base}/v1/runs")).bearer_auth("t0ken-1").json(&doc).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let second: Value = r.json().await.unwrap();
    assert_eq!((second["runId"].clone(), second["existing"].clone()), (first["runId"].clone(), json!(true)));
    let record: Value =
        http.get(format!("{base}{location}")).bearer_auth("t0ken-1").send().await.unwrap().json().await.unwrap();
    assert_eq!(record["status"], "accepted");
    assert_eq!(record["transitions"][0]["to"], "accepted");
    assert_eq!(http.get(format!("{base}{location}")).send().await.unwrap().status(), 401);
    // The auth scheme is case-insensitive (RFC 9110 §11.1).
    let r = http.get(format!("{base}{location}")).header("authorization", "bearer t0ken-1").send().await.unwrap();
    assert_eq!(r.status(), 200);

    let batch = json!({"runs": [valid, {"flavor": "nope"}]});
    let r = http.post(format!("{base}/v1/runs/batch")).bearer_auth("t0ken-1").json(&batch).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let body: Value = r.json().await.unwrap();
    assert_eq!((body["accepted"].as_u64(), body["rejected"].as_u64()), (Some(1), Some(1)));
    assert_eq!(body["results"][1]["violations"][0]["path"], "/flavor");

    // The generated document describes what is served: each body above
    // validates against the schema the document gives it.
    let spec: Value = http.get(format!("{base}/v1/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert_eq!(spec["openapi"], "3.1.0");
    assert!(spec["paths"]["/v1/runs"]["post"].is_object());
    assert!(spec["components"]["securitySchemes"]["bearer"].is_object());
    let conforms = |schema: &str, body: &Value| {
        let root = json!({"$ref": format!("#/components/schemas/{schema}"), "components": spec["components"]});
        let validator = jsonschema::validator_for(&root).unwrap();
        let errors: Vec<String> = validator.iter_errors(body).map(|e| format!("{}: {e}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{schema}: {errors:?}\n{body:#}");
    };
    conforms("RunView", &record);
    conforms("Accepted", &first);
    conforms("BatchResult", &body);
    conforms("RunRequest", &doc);
    let invalid: Value = http
        .post(format!("{base}/v1/runs"))
        .bearer_auth("t0ken-1")
        .json(&json!({"flavor": "runs"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    conforms("Invalid", &invalid);
}

/// Script calls so far (`EVALSHA` and `EVAL`), from `INFO commandstats`.
async fn script_calls(stack: &Stack) -> u64 {
    let per_node = gcrun_tests::info(stack, "commandstats").await;
    per_node
        .iter()
        .flat_map(|info| info.lines())
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .filter_map(|l| l.split(',').next()?.split("calls=").nth(1)?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn a_batch_records_each_run_with_its_job_in_one_script_and_a_resend_adds_nothing() {
    let stack = Stack::start(EmulatorConfig::default(), Duration::from_secs(60)).await;
    let docs: Vec<Value> = (0..1_200)
        .map(|i| json!({"flavor": "runs", "actionId": LOOKUP, "inputs": {"customerId": format!("c{i}")}, "idempotencyKey": format!("k{i}")}))
        .collect();
    let before = script_calls(&stack).await;
    let results = stack.producer.enqueue_batch(&docs).await.unwrap();
    assert_eq!(script_calls(&stack).await - before, 1_200, "one script per run: its record and its job together");
    let ids: Vec<_> = results.iter().map(|r| r.as_ref().unwrap().run_id).collect();
    assert!(results.iter().all(|r| !r.as_ref().unwrap().existing));
    let depth = stack.queues.depth(&stack.queues.names.submit).await.unwrap();
    assert_eq!(depth.ready, 1_200);
    let records = stack.records(&ids).await;
    assert!(records.values().all(|r| r.enqueued && r.status == gcrun_model::RunStatus::Accepted));
    // Sent again (say, after a timeout): the same runs, no new job.
    let again = stack.producer.enqueue_batch(&docs).await.unwrap();
    assert!(again.iter().zip(&ids).all(|(r, id)| r.as_ref().is_ok_and(|e| e.existing && e.run_id == *id)));
    assert_eq!(stack.queues.depth(&stack.queues.names.submit).await.unwrap().ready, 1_200);
}

#[tokio::test]
async fn each_client_has_its_own_runs_keys_and_rate_and_a_reused_key_with_another_body_is_a_conflict() {
    let stack = Stack::start(EmulatorConfig::default(), Duration::from_secs(60)).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let clients = ["alice=t0ken-alice", "bob=t0ken-bob", "carol=t0ken-carol"];
    let config = IngestConfig {
        clients: clients.iter().enumerate().map(|(i, c)| IngestClient::parse(c, i + 1).unwrap()).collect(),
        rate_per_minute: 60, // one a second, a burst of 6
        request_timeout: Duration::from_secs(1),
        ..IngestConfig::default()
    };
    tokio::spawn(gcrun_producer::ingest::serve(listener, stack.producer.clone(), config, std::future::pending()));
    let http = reqwest::Client::new();
    let post = |token: &'static str, doc: Value| {
        let http = http.clone();
        let url = format!("{base}/v1/runs");
        async move {
            let r = http.post(url).bearer_auth(token).json(&doc).send().await.unwrap();
            let status = r.status().as_u16();
            let retry_after = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
            (status, r.json::<Value>().await.unwrap_or(Value::Null), retry_after)
        }
    };
    let doc = |customer: &str| json!({"flavor": "runs", "actionId": LOOKUP, "inputs": {"customerId": customer, "channel": "chat"}, "idempotencyKey": "k1"});

    // Keys are per client: bob's "k1" is not alice's.
    let (status, alice, _) = post("t0ken-alice", doc("a1")).await;
    assert_eq!(status, 202, "{alice}");
    let (status, bob, _) = post("t0ken-bob", doc("b1")).await;
    assert_eq!(status, 202, "{bob}");
    assert_ne!(alice["runId"], bob["runId"]);
    // The same key and body: the same run. Another body: a conflict, both digests.
    let (status, again, _) = post("t0ken-alice", doc("a1")).await;
    assert_eq!((status, again["runId"].clone(), again["existing"].clone()), (200, alice["runId"].clone(), json!(true)));
    let (status, conflict, _) = post("t0ken-alice", doc("a2")).await;
    assert_eq!(status, 409, "{conflict}");
    assert_eq!(
        (conflict["error"].as_str(), conflict["runId"].clone()),
        (Some("idempotency_conflict"), alice["runId"].clone())
    );
    let (a, b) = (conflict["existingDigest"].as_str().unwrap(), conflict["requestDigest"].as_str().unwrap());
    assert!(a.len() == 64 && b.len() == 64 && a != b, "{conflict}");

    // A client reads only its own runs; another's is as absent as none.
    let run = |token: &'static str, id: &Value| {
        let url = format!("{base}/v1/runs/{}", id.as_str().unwrap());
        let http = http.clone();
        async move { http.get(url).bearer_auth(token).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(run("t0ken-alice", &alice["runId"]).await, 200);
    assert_eq!(run("t0ken-bob", &alice["runId"]).await, 404);
    let id: gcrun_model::RunId = alice["runId"].as_str().unwrap().parse().unwrap();
    assert_eq!(stack.store.get_run(&id).await.unwrap().unwrap().client.as_deref(), Some("alice"));

    // Carol's rate is her own: after her burst she is told when to come back.
    let mut statuses = Vec::new();
    for i in 0..8 {
        statuses.push(post("t0ken-carol", doc(&format!("c{i}"))).await);
    }
    let limited: Vec<_> = statuses.iter().filter(|(s, _, _)| *s == 429).collect();
    assert!(!limited.is_empty() && statuses[..6].iter().all(|(s, _, _)| *s != 429), "{statuses:?}");
    assert!(limited.iter().all(|(_, _, after)| after.as_deref().is_some_and(|a| a.parse::<u64>().unwrap() >= 1)));
    assert_eq!(run("t0ken-bob", &bob["runId"]).await, 200, "bob is not limited by carol");

    // A sender that stalls mid-body is cut off after the request timeout.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = "POST /v1/runs HTTP/1.1\r\nhost: x\r\nauthorization: Bearer t0ken-bob\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"flavor\":";
    slow.write_all(head.as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(started.elapsed() >= Duration::from_millis(900), "cut off only after the timeout");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // A sender that dribbles its headers is cut off too (hyper's header
    // read timeout, with a timer installed): the connection closes.
    let mut dribbler = tokio::net::TcpStream::connect(addr).await.unwrap();
    let started = std::time::Instant::now();
    dribbler.write_all(b"POST /v1/runs HTTP/1.1\r\nhost: x\r\n").await.unwrap();
    let mut buf = vec![0u8; 512];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            // More header bytes, never the end of the head.
            if dribbler.write_all(b"x-slow: 1\r\n").await.is_err() {
                return;
            }
            match tokio::time::timeout(Duration::from_millis(200), dribbler.read(&mut buf)).await {
                Ok(Ok(_)) | Ok(Err(_)) => return, // answered or closed
                Err(_) => {}                      // still open: dribble on
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a connection dribbling its headers stays open");
    assert!(started.elapsed() >= Duration::from_millis(900), "cut off only after the timeout");
}

#[tokio::test]
async fn an_upstream_correlation_id_stays_with_the_run_and_a_long_poll_answers_when_it_ends() {
    let stack = Stack::start(EmulatorConfig::default(), Duration::from_secs(60)).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let config =
        IngestConfig { clients: vec![IngestClient::parse("crm=t0ken-1", 1).unwrap()], ..IngestConfig::default() };
    tokio::spawn(gcrun_producer::ingest::serve(listener, stack.producer.clone(), config, std::future::pending()));
    let http = reqwest::Client::new();
    let doc = json!({"flavor": "runs", "actionId": LOOKUP, "inputs": {"customerId": "c1", "channel": "chat"}});
    let post = |doc: &Value, headers: &[(&str, &str)]| {
        let mut req = http.post(format!("{base}/v1/runs")).bearer_auth("t0ken-1").json(doc);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send()
    };

    // X-Correlation-ID wins over traceparent; a traceparent alone is kept;
    // a malformed X-Correlation-ID is refused with the header named.
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = post(&doc, &[("x-correlation-id", "crm-order-77"), ("traceparent", trace)]).await.unwrap();
    assert_eq!(r.status(), 202);
    let with_id: Value = r.json().await.unwrap();
    let mut other = doc.clone();
    other["inputs"]["customerId"] = json!("c2");
    let by_trace: Value = post(&other, &[("traceparent", trace)]).await.unwrap().json().await.unwrap();
    let r = post(&doc, &[("x-correlation-id", "has spaces")]).await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["violations"][0]["path"], "/headers/x-correlation-id");
    let ignored: Value = post(&other, &[("traceparent", "00-zz-00-01")]).await.unwrap().json().await.unwrap();

    let id = with_id["runId"].as_str().unwrap().to_string();
    let get = |id: &str, wait: Option<u64>| {
        let mut url = format!("{base}/v1/runs/{id}");
        if let Some(w) = wait {
            url.push_str(&format!("?wait={w}"));
        }
        http.get(url).bearer_auth("t0ken-1").send()
    };
    let now: Value = get(&id, None).await.unwrap().json().await.unwrap();
    assert_eq!(now["status"], "accepted", "no worker yet: without a wait the answer is at once");
    assert_eq!(now["upstreamCorrelationId"], "crm-order-77");
    let traced: Value = get(by_trace["runId"].as_str().unwrap(), None).await.unwrap().json().await.unwrap();
    assert_eq!(traced["upstreamCorrelationId"], trace);
    let plain: Value = get(ignored["runId"].as_str().unwrap(), None).await.unwrap().json().await.unwrap();
    assert!(plain.get("upstreamCorrelationId").is_none(), "a malformed traceparent is ignored: {plain}");

    // A long-poll started before any worker answers once the run ended.
    let waiting = tokio::spawn(get(&id, Some(20)));
    let worker = stack.start_worker(gcrun_tests::limiter(60_000, 100, 100)).await;
    let ended: Value = waiting.await.unwrap().unwrap().json().await.unwrap();
    assert_eq!(ended["status"], "completed", "{ended}");

    // The correlation id is in the audit trail and the webhook.
    let run: gcrun_model::RunId = id.parse().unwrap();
    let audit = stack.store.audit_for(&run).await.unwrap();
    assert_eq!(audit[0].get("correlation").map(String::as_str), Some("crm-order-77"));
    let hook = gcrun_harness::wait_until("the webhook", Duration::from_secs(20), || async {
        stack.sink.lock().unwrap().accepted.iter().find(|d| d.body["runId"] == id.as_str()).map(|d| d.body.clone())
    })
    .await;
    assert_eq!(hook["upstreamCorrelationId"], "crm-order-77");
    worker.stop().await;
}
