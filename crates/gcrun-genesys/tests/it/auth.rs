use std::time::Duration;

use gcrun_emulator::EmulatorConfig;
use gcrun_genesys::{ApiErrorKind, ClientConfig, Credentials};
use gcrun_harness::wait_until;
use gcrun_model::{ErrorClass, Flavor, Target};

use crate::{CLIENT_SECRET, LOOKUP, lookup_inputs, quick, spawn, spawn_with};

fn api_401s(stats: &gcrun_emulator::Stats) -> u64 {
    stats.requests.iter().filter(|(k, _)| k.contains("/api/v2/")).filter_map(|(_, by)| by.get("401")).sum()
}

#[tokio::test]
async fn a_hundred_concurrent_callers_cause_exactly_one_token_request() {
    let (emu, client) = spawn(quick()).await;
    let calls = (0..100).map(|_| {
        let client = client.clone();
        tokio::spawn(async move { client.get_action(LOOKUP).await })
    });
    for call in futures_util::future::join_all(calls).await {
        call.unwrap().unwrap();
    }
    let stats = emu.emulator.stats();
    assert_eq!(stats.tokens_issued, 1);
    assert_eq!(stats.requests["POST /oauth/token"]["200"], 1);
    assert_eq!(client.tokens().tokens_fetched(), 1);
    assert_eq!(stats.requests["GET /api/v2/integrations/actions/{actionId}"]["200"], 100);
}

#[tokio::test]
async fn a_token_expiring_mid_run_is_renewed_before_it_is_refused() {
    // Tokens live 2 s; the run takes about 3 s; polls go on throughout.
    let mut config = quick();
    config.token_ttl = Duration::from_secs(2);
    config.timings.running_for = Duration::from_millis(3_000);
    let (emu, client) = spawn(config).await;
    let api = client.run_api(Flavor::Runs);
    let target = Target::Action { id: LOOKUP.into() };
    let inputs = lookup_inputs("exp");
    let run =
        api.submit(gcrun_genesys::SubmitRequest { target: &target, inputs: &inputs, run_name: "exp" }).await.unwrap();
    let id = run.remote_id.unwrap();
    wait_until("the run to complete", Duration::from_secs(10), || async {
        api.status(&id).await.unwrap().phase.is_terminal().then_some(())
    })
    .await;
    let stats = emu.emulator.stats();
    assert!(stats.tokens_issued >= 2, "renewed during the run: {}", stats.tokens_issued);
    assert_eq!(api_401s(&stats), 0, "renewal happened before expiry, so no call was refused");
}

#[tokio::test]
async fn a_401_renews_the_token_once_and_retries() {
    let (emu, client) = spawn(quick()).await;
    client.get_action(LOOKUP).await.unwrap();
    emu.emulator.revoke_tokens();
    let calls = (0..20).map(|_| {
        let client = client.clone();
        tokio::spawn(async move { client.get_action(LOOKUP).await })
    });
    for call in futures_util::future::join_all(calls).await {
        call.unwrap().unwrap();
    }
    let stats = emu.emulator.stats();
    assert_eq!(stats.tokens_issued, 2, "twenty refused callers share one renewal");
    assert_eq!(api_401s(&stats), 20);
}

#[tokio::test]
async fn a_second_401_after_renewal_is_fatal() {
    // Tokens that expire at once: every call is refused.
    let config = EmulatorConfig { token_ttl: Duration::ZERO, ..quick() };
    let (emu, client) = spawn(config).await;
    let err = client.get_action(LOOKUP).await.unwrap_err();
    assert_eq!((err.kind, err.status, err.code()), (ApiErrorKind::Http, Some(401), Some("bad.credentials")));
    assert_eq!(err.class, ErrorClass::Fatal);
    assert_eq!(emu.emulator.stats().tokens_issued, 2, "one renewal, not a loop");
}

#[tokio::test]
async fn a_bad_secret_surfaces_the_servers_error_description() {
    let (emu, client) = spawn_with(quick(), "not-the-secret", ClientConfig::default()).await;
    let err = client.get_action(LOOKUP).await.unwrap_err();
    assert_eq!((err.kind, err.status, err.class), (ApiErrorKind::Auth, Some(401), ErrorClass::Fatal));
    let oauth = err.oauth.clone().unwrap();
    assert_eq!(oauth.error.as_deref(), Some("invalid_client"));
    let text = err.to_string();
    assert!(text.contains("client not found or secret invalid"), "{text}");
    assert!(!text.contains("not-the-secret") && !format!("{err:?}").contains("not-the-secret"));
    assert_eq!(emu.emulator.stats().token_requests_refused, 1);
}

#[tokio::test]
async fn secrets_and_tokens_never_show_in_debug_output() {
    let (emu, client) = spawn(quick()).await;
    client.get_action(LOOKUP).await.unwrap();
    let creds = Credentials::new("my-client", CLIENT_SECRET);
    let shown = format!("{creds:?} {client:?} {:?}", client.tokens());
    assert!(shown.contains("my-client"));
    assert!(!shown.contains(CLIENT_SECRET), "{shown}");
    // The token the emulator issued: fetch another with the same client's
    // credentials and make sure no token-looking value is printed.
    let _ = emu;
    assert!(!shown.to_lowercase().contains("bearer"), "{shown}");
    let token = client.tokens().get().await.unwrap();
    assert!(!shown.contains(token.expose()), "{shown}");
    assert!(!format!("{token:?}").contains(token.expose()));
}
