//! The operators' dashboard in a real headless browser (Debian's chromium
//! driven through chromedriver): sign in with an operator token, filter
//! the dead letters the pipeline produced, requeue one and see it
//! complete, purge with confirmation; an upstream client's token refused.
//! A screenshot lands in the build's tmp directory, out of the repository.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use gcrun_dashboard::{DashboardConfig, OperatorToken};
use gcrun_emulator::{EmulatorConfig, Faults};
use gcrun_harness::{free_port, wait_until};
use gcrun_model::{RunStatus, WebhookStatus};
use gcrun_producer::ingest::{IngestClient, IngestConfig};
use gcrun_producer::operator::Operator;
use gcrun_tests::Stack;
use serde_json::json;

const OPERATOR: &str = "alice=operator-token-0123456789";
const CLIENT: &str = "crm=client-token-0123456789";

/// chromedriver on a free port, and a headless chromium session through
/// it; both end with the test.
struct Browser {
    driver: Child,
    client: Client,
}

fn located(var: &str, candidates: &[&str]) -> String {
    if let Ok(p) = std::env::var(var) {
        return p;
    }
    for c in candidates {
        if std::path::Path::new(c).exists() {
            return (*c).to_string();
        }
    }
    panic!(
        "{} not found: install Debian's chromium and chromium-driver (scripts/test does) or set {var}",
        candidates[0]
    );
}

impl Browser {
    async fn start() -> Self {
        let chromedriver = located("GCRUN_CHROMEDRIVER", &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]);
        let chromium = located("GCRUN_CHROMIUM", &["/usr/bin/chromium", "/usr/bin/chromium-browser"]);
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        wait_until("chromedriver to answer", Duration::from_secs(20), || async {
            http.get(format!("{url}/status")).send().await.ok().filter(|r| r.status().is_success()).map(|_| ())
        })
        .await;
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"binary": chromium, "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--window-size=1366,900"]}),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await
            .expect("a chromium session");
        Self { driver, client }
    }

    async fn text(&self, css: &str) -> String {
        self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).text().await.unwrap()
    }

    /// Waits until the element `css` holds `wanted` (pages load after a click).
    async fn wait_text(&self, css: &str, wanted: &str) {
        wait_until(&format!("{css} to read {wanted:?}"), Duration::from_secs(15), || async {
            match self.client.find(Locator::Css(css)).await {
                Ok(e) => e.text().await.ok().filter(|t| t.contains(wanted)).map(|_| ()),
                Err(_) => None,
            }
        })
        .await;
    }

    async fn stop(mut self) {
        let _ = self.client.close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Ingest with the dashboard, in this process, on a free port.
async fn serve(stack: &Stack) -> String {
    serve_tenants(stack, vec![gcrun_model::Tenant::default()]).await
}

/// [`serve`], the dashboard showing `tenants`.
async fn serve_tenants(stack: &Stack, tenants: Vec<gcrun_model::Tenant>) -> String {
    let client = IngestClient::parse(CLIENT, 1).unwrap();
    let config = DashboardConfig {
        operators: vec![OperatorToken::parse(OPERATOR).unwrap()],
        client_tokens: vec![client.token.clone()],
        tenants,
        ..DashboardConfig::default()
    };
    let operator = Operator::new(stack.store.clone(), stack.queues.clone());
    let app = gcrun_producer::ingest::router(
        stack.producer.clone(),
        IngestConfig { clients: vec![client], ..IngestConfig::default() },
    )
    .merge(gcrun_dashboard::router(operator, config).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(gcrun_producer::ingest::serve_app(listener, app, Duration::from_secs(30), std::future::pending()));
    url
}

async fn sign_in(b: &Browser, base: &str, token: &str) {
    b.client.goto(&format!("{base}/ops")).await.unwrap();
    // Not signed in: the dashboard sends the browser to sign in.
    wait_until("the sign-in page", Duration::from_secs(10), || async {
        b.client.current_url().await.ok().filter(|u| u.path() == "/ops/login").map(|_| ())
    })
    .await;
    b.client.find(Locator::Id("token")).await.unwrap().send_keys(token).await.unwrap();
    b.client.find(Locator::Id("sign-in")).await.unwrap().click().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_filters_the_dead_letters_requeues_one_sees_it_complete_and_purges_with_confirmation() {
    let stack = Stack::start(EmulatorConfig::default(), Duration::from_secs(60)).await;
    let (_rejected, died) = stack.dead_letters().await;
    stack.emu.emulator.set_faults(Faults::default()).unwrap();
    let base = serve(&stack).await;
    let b = Browser::start().await;

    sign_in(&b, &base, OPERATOR.split_once('=').unwrap().1).await;
    b.wait_text("#operator", "alice").await;
    assert_eq!(b.text("#card-dead-letters").await, "5");

    // The dead-letter browser, filtered to the runs a failing Genesys killed.
    b.client.goto(&format!("{base}/ops/dlq")).await.unwrap();
    b.wait_text("#total", "5 in all").await;
    b.client.find(Locator::Id("f-status")).await.unwrap().select_by_value("dead").await.unwrap();
    b.client.find(Locator::Id("apply")).await.unwrap().click().await.unwrap();
    wait_until("the filtered list", Duration::from_secs(10), || async {
        let rows = b.client.find_all(Locator::Css("#runs tbody tr[data-run]")).await.ok()?;
        (rows.len() == 2).then_some(())
    })
    .await;
    assert!(b.text("#runs").await.contains("503"), "the stored reason is shown");

    // Requeue one of them, saying why.
    let target = died[0];
    b.client.find(Locator::Css(&format!("tr[data-run='{target}'] input.pick"))).await.unwrap().click().await.unwrap();
    b.client.find(Locator::Id("reason-text")).await.unwrap().send_keys("Genesys recovered").await.unwrap();
    b.client.find(Locator::Id("requeue-selected")).await.unwrap().click().await.unwrap();
    b.wait_text("#notice", "1 run(s) requeued").await;

    let worker = stack.start_worker_from(stack.impatient()).await;
    wait_until("the requeued run to complete with its webhook", Duration::from_secs(30), || async {
        let r = stack.store.get_run(&target).await.unwrap().unwrap();
        (r.status == RunStatus::Completed && r.webhook.status == Some(WebhookStatus::Delivered)).then_some(())
    })
    .await;
    worker.stop().await;

    // Its page shows both lives and who requeued it.
    b.client.goto(&format!("{base}/ops/runs/{target}")).await.unwrap();
    b.wait_text("#run-status", "completed").await;
    let timeline = b.text("#timeline").await;
    assert!(timeline.contains("requeued by alice: Genesys recovered"), "{timeline}");
    assert!(timeline.find("dead").unwrap() < timeline.find("requeued by alice").unwrap(), "{timeline}");
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-run.png");
    std::fs::write(&shot, b.client.screenshot().await.unwrap()).unwrap();
    eprintln!("screenshot: {}", shot.display());

    // Purge the rejected ones: a confirmation that names them first.
    b.client.goto(&format!("{base}/ops/dlq?status=rejected")).await.unwrap();
    b.wait_text("#total", "4 in all").await;
    b.client.find(Locator::Id("purge-all")).await.unwrap().click().await.unwrap();
    b.wait_text("h1", "Purge 3 run(s) for good?").await;
    assert_eq!(stack.store.dlq_len().await.unwrap(), 4, "nothing is purged before it is confirmed");
    b.client.find(Locator::Id("confirm-purge")).await.unwrap().click().await.unwrap();
    b.wait_text("#notice", "3 run(s) purged").await;
    assert_eq!(stack.store.dlq_len().await.unwrap(), 1);
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-dlq.png");
    std::fs::write(&shot, b.client.screenshot().await.unwrap()).unwrap();

    // Pause the webhook queue from the overview, see it shown, resume it.
    b.client.goto(&format!("{base}/ops")).await.unwrap();
    b.client.find(Locator::Id("p-kind")).await.unwrap().select_by_value("queue").await.unwrap();
    b.client.find(Locator::Id("p-value")).await.unwrap().send_keys("webhook").await.unwrap();
    b.client.find(Locator::Id("p-reason")).await.unwrap().send_keys("receiver maintenance").await.unwrap();
    b.client.find(Locator::Id("pause")).await.unwrap().click().await.unwrap();
    b.wait_text("#notice", "paused queue:webhook").await;
    let banner = b.text(".pause[data-pause='queue:webhook']").await;
    assert!(banner.contains("by alice: receiver maintenance"), "{banner}");
    assert!(stack.queues.depth(&stack.queues.names.webhook).await.unwrap().paused.is_some());
    b.client
        .find(Locator::Css(".pause[data-pause='queue:webhook'] button.resume"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait_text("#notice", "resumed queue:webhook").await;
    assert!(stack.queues.depth(&stack.queues.names.webhook).await.unwrap().paused.is_none());
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_clients_token_is_refused_and_forms_need_their_session() {
    let stack = Stack::start(EmulatorConfig::default(), Duration::from_secs(60)).await;
    let base = serve(&stack).await;
    let b = Browser::start().await;
    sign_in(&b, &base, CLIENT.split_once('=').unwrap().1).await;
    b.wait_text("#error", "upstream client's token").await;
    assert_eq!(b.client.current_url().await.unwrap().path(), "/ops/login", "still signing in");
    b.client.goto(&format!("{base}/ops/dlq")).await.unwrap();
    assert_eq!(b.client.current_url().await.unwrap().path(), "/ops/login", "no session was given");
    b.stop().await;

    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let client_token = CLIENT.split_once('=').unwrap().1;
    let operator_token = OPERATOR.split_once('=').unwrap().1;
    let r = http.get(format!("{base}/ops/dlq")).bearer_auth(client_token).send().await.unwrap();
    assert_eq!(r.status(), 401, "a client's bearer token opens nothing");
    let r = http.get(format!("{base}/ops/dlq")).bearer_auth(operator_token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let r = http.get(format!("{base}/v1/runs/{}", gcrun_model::RunId::new())).bearer_auth(operator_token).send().await;
    assert_eq!(r.unwrap().status(), 401, "an operator token is not an ingest client's");

    // A signed-in browser's cookie without the page's CSRF token cannot
    // change anything (a form posted from another site).
    let login = http.post(format!("{base}/ops/login")).form(&[("token", operator_token)]).send().await.unwrap();
    assert_eq!(login.status(), 303);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    assert!(login.headers()["set-cookie"].to_str().unwrap().contains("HttpOnly; SameSite=Strict"));
    let forged = http
        .post(format!("{base}/ops/dlq/purge"))
        .header("cookie", &cookie)
        .form(&[("all", "1"), ("confirm", "yes")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let tampered = cookie.replace("alice.", "bob.");
    let r = http.get(format!("{base}/ops")).header("cookie", tampered).send().await.unwrap();
    assert_eq!(r.status(), 303, "a cookie edited by hand is no session");

    // One token cannot be both.
    let same = DashboardConfig {
        operators: vec![OperatorToken::parse("ops=client-token-0123456789").unwrap()],
        client_tokens: vec![IngestClient::parse(CLIENT, 1).unwrap().token],
        ..DashboardConfig::default()
    };
    let refused = gcrun_dashboard::router(Operator::new(stack.store.clone(), stack.queues.clone()), same);
    assert!(refused.unwrap_err().0.contains("also an ingest client's token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_switches_tenants_and_acts_on_the_tenant_the_page_shows() {
    use gcrun_model::Tenant;
    let stack = Stack::start(EmulatorConfig::default(), Duration::from_secs(60)).await;
    let acme = Tenant::parse("acme").unwrap();
    // Runs the contract rejects: two in the default tenant, one in acme,
    // each rejected by a worker of its own tenant.
    let bad = json!({"flavor": "runs", "actionId": gcrun_tests::LOOKUP, "inputs": {"customerId": 42}});
    let mut ids = Vec::new();
    for (tenant, n) in [(Tenant::default(), 2), (acme.clone(), 1)] {
        let producer = stack.producer.for_tenant(&tenant);
        for _ in 0..n {
            ids.push((tenant.clone(), producer.enqueue_value(&bad).await.unwrap().run_id));
        }
        let mut settings = stack.impatient();
        settings.tenant = tenant.clone();
        let worker = stack.start_worker_from(settings).await;
        let store = stack.store.of_tenant(&tenant);
        wait_until("the tenant's runs to be rejected", Duration::from_secs(30), || async {
            (store.dlq_len().await.ok()? == n).then_some(())
        })
        .await;
        worker.stop().await;
    }
    let acme_run = ids.iter().find(|(t, _)| *t == acme).unwrap().1;

    let base = serve_tenants(&stack, vec![Tenant::default(), acme.clone()]).await;

    let b = Browser::start().await;
    sign_in(&b, &base, OPERATOR.split_once('=').unwrap().1).await;
    b.wait_text("#tenant", "default").await;
    assert_eq!(b.text("#card-dead-letters").await, "2");
    b.client.find(Locator::Css("a[data-tenant='acme']")).await.unwrap().click().await.unwrap();
    b.wait_text("#tenant", "acme").await;
    assert_eq!(b.text("#card-dead-letters").await, "1");
    // The navigation keeps to the tenant; its dead letters are its own.
    b.client.find(Locator::Css("header nav a[href^='/ops/dlq']")).await.unwrap().click().await.unwrap();
    b.wait_text("#total", "1 in all").await;
    b.client.find(Locator::Css(&format!("tr[data-run='{acme_run}'] input.pick"))).await.unwrap().click().await.unwrap();
    b.client.find(Locator::Id("requeue-selected")).await.unwrap().click().await.unwrap();
    b.wait_text("#notice", "1 run(s) requeued").await;
    assert!(b.client.current_url().await.unwrap().query().unwrap_or("").contains("tenant=acme"));
    b.wait_text("#tenant", "acme").await;
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-tenants.png");
    std::fs::write(&shot, b.client.screenshot().await.unwrap()).unwrap();
    b.stop().await;

    // The requeue acted on acme alone.
    assert_eq!(stack.store.of_tenant(&acme).dlq_len().await.unwrap(), 0);
    assert_eq!(stack.store.dlq_len().await.unwrap(), 2, "the default tenant's dead letters are untouched");
    let history = stack.store.of_tenant(&acme).get_run_with_history(&acme_run).await.unwrap().unwrap();
    assert!(history.transitions.iter().any(|t| t.cause.contains("requeued by alice")), "{:?}", history.transitions);
    // A tenant the dashboard does not serve is no page at all.
    let http = reqwest::Client::new();
    let token = OPERATOR.split_once('=').unwrap().1;
    let r = http.get(format!("{base}/ops/dlq?tenant=nope")).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), 404);
}
