use std::time::Duration;

use gcrun_emulator::EmulatorConfig;
use serde_json::Value;

use crate::{App, CLIENT_ID, CLIENT_SECRET, LOOKUP, Reply, keys};

async fn token_request(app: &App, id: &str, secret: &str, grant: &str) -> Reply {
    Reply::from(
        app.http
            .post(app.url("/oauth/token"))
            .basic_auth(id, Some(secret))
            .form(&[("grant_type", grant)])
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn client_credentials_grant_returns_a_bearer_token() {
    let app = App::demo().await;
    let r = token_request(&app, CLIENT_ID, CLIENT_SECRET, "client_credentials").await;
    assert_eq!(r.status, 200);
    assert_eq!(keys(&r.body), vec!["access_token", "expires_in", "token_type"]);
    assert_eq!(r.body["token_type"], "bearer");
    assert_eq!(r.body["expires_in"], 86_400);
    assert!(r.body["access_token"].as_str().unwrap().len() >= 32);
    assert!(r.header("inin-correlation-id").is_some());
}

#[tokio::test]
async fn bad_credentials_get_the_oauth_error_shape() {
    let app = App::demo().await;
    for (id, secret) in [(CLIENT_ID, "wrong"), ("nobody", CLIENT_SECRET)] {
        let r = token_request(&app, id, secret, "client_credentials").await;
        assert_eq!(r.status, 401);
        assert_eq!(keys(&r.body), vec!["description", "error", "error_description"]);
        assert_eq!(r.body["error"], "invalid_client");
    }
    let r = Reply::from(
        app.http.post(app.url("/oauth/token")).form(&[("grant_type", "client_credentials")]).send().await.unwrap(),
    )
    .await;
    assert_eq!((r.status, r.body["error"].as_str()), (401, Some("invalid_client")));
    let r = token_request(&app, CLIENT_ID, CLIENT_SECRET, "password").await;
    assert_eq!((r.status, r.body["error"].as_str()), (400, Some("unsupported_grant_type")));
    let stats = app.emu.emulator.stats();
    assert_eq!(stats.token_requests_refused, 4);
    assert_eq!(stats.tokens_issued, 1, "only App::start's token");
}

#[tokio::test]
async fn the_api_wants_a_valid_unexpired_bearer_token() {
    let config = EmulatorConfig { token_ttl: Duration::from_secs(1), ..EmulatorConfig::default() };
    let app = App::start(config).await;
    let path = format!("/api/v2/integrations/actions/{LOOKUP}");
    assert_eq!(app.get(&path).await.status, 200);

    let r = Reply::from(app.http.get(app.url(&path)).send().await.unwrap()).await;
    r.assert_error(401, "authentication.required");
    let r = Reply::from(app.http.get(app.url(&path)).bearer_auth("made-up").send().await.unwrap()).await;
    r.assert_error(401, "bad.credentials");

    // Expiry: wait (with a deadline) until the 1 s token is refused.
    let token = app.token.clone();
    let expired = gcrun_harness::wait_until("the token to expire", Duration::from_secs(5), || {
        let req = app.http.get(app.url(&path)).bearer_auth(&token);
        async move {
            let r = Reply::from(req.send().await.unwrap()).await;
            (r.status == 401).then_some(r)
        }
    })
    .await;
    expired.assert_error(401, "bad.credentials");
}

#[tokio::test]
async fn revoking_tokens_makes_the_next_call_401() {
    let app = App::demo().await;
    let path = format!("/api/v2/integrations/actions/{LOOKUP}");
    assert_eq!(app.get(&path).await.status, 200);
    let r = app.http.post(app.url("/emulator/tokens/revoke")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    app.get(&path).await.assert_error(401, "bad.credentials");
    let fresh = app.fetch_token().await;
    let r = app.http.get(app.url(&path)).bearer_auth(fresh).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["id"], LOOKUP);
}
