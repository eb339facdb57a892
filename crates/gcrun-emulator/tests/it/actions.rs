use gcrun_emulator::{EmulatorConfig, Fixtures};
use serde_json::json;

use crate::{App, LOOKUP, keys};

#[tokio::test]
async fn get_action_with_contract_has_the_reference_fields() {
    let app = App::demo().await;
    let r = app.get(&format!("/api/v2/integrations/actions/{LOOKUP}?expand=contract")).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        keys(&r.body),
        vec!["category", "contract", "id", "integrationId", "name", "secure", "selfUri", "version"]
    );
    assert_eq!(r.body["selfUri"], format!("/api/v2/integrations/actions/{LOOKUP}"));
    let schema = &r.body["contract"]["input"]["inputSchema"];
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-04/schema#");
    assert_eq!(schema["required"], json!(["customerId", "channel"]));
    assert!(r.body["contract"]["output"]["successSchema"].is_object());
    assert!(r.body.get("output").is_none(), "the emulator-only output template is never served");

    let r = app.get(&format!("/api/v2/integrations/actions/{LOOKUP}")).await;
    assert!(r.body.get("contract").is_none(), "no contract without expand=contract");
}

#[tokio::test]
async fn unknown_actions_are_404_error_bodies() {
    let app = App::demo().await;
    let r = app.get("/api/v2/integrations/actions/custom_-_nope").await;
    r.assert_error(404, "not.found");
    assert_eq!(r.body["entityId"], "custom_-_nope");
}

#[tokio::test]
async fn listing_pages_and_filters() {
    let app = App::demo().await;
    let r = app.get("/api/v2/integrations/actions").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        (r.body["total"].as_u64(), r.body["pageCount"].as_u64(), r.body["pageSize"].as_u64()),
        (Some(4), Some(1), Some(25))
    );
    assert!(r.body.get("nextUri").is_none());
    assert!(r.body["entities"][0].get("contract").is_none());

    let mut seen = Vec::new();
    for page in 1..=4 {
        let r = app.get(&format!("/api/v2/integrations/actions?pageSize=1&pageNumber={page}")).await;
        assert_eq!(r.body["pageCount"], 4);
        assert_eq!(r.body["pageNumber"], page);
        assert_eq!(r.body.get("nextUri").is_some(), page < 4);
        assert_eq!(r.body.get("previousUri").is_some(), page > 1);
        seen.push(r.body["entities"][0]["name"].as_str().unwrap().to_string());
    }
    assert_eq!(seen, vec!["Create callback", "Lookup customer", "Score lead", "Update case"]);

    let r = app.get("/api/v2/integrations/actions?category=crm").await;
    assert_eq!(r.body["total"], 2);
    let r = app.get("/api/v2/integrations/actions?name=lead").await;
    assert_eq!(r.body["entities"][0]["name"], "Score lead");
    app.get("/api/v2/integrations/actions?pageSize=0").await.assert_error(400, "bad.request");
    app.get("/api/v2/integrations/actions?pageNumber=x").await.assert_error(400, "bad.request");
}

#[tokio::test]
async fn fixture_files_are_checked_when_loaded() {
    assert!(Fixtures::from_json(gcrun_emulator::fixtures::DEMO_FIXTURES).is_ok());
    let no_clients = r#"{"clients": [], "actions": []}"#;
    assert!(Fixtures::from_json(no_clients).unwrap_err().to_string().contains("client"));
    let dup = r#"{"clients": [{"clientId": "a", "clientSecret": "b"}],
        "actions": [{"id": "x", "name": "a", "contract": {}}, {"id": "x", "name": "b", "contract": {}}]}"#;
    assert!(Fixtures::from_json(dup).unwrap_err().to_string().contains("duplicate"));
    let bad_schema = r#"{"clients": [{"clientId": "a", "clientSecret": "b"}],
        "actions": [{"id": "x", "name": "a", "contract": {"input": {"inputSchema": {"type": 5}}}}]}"#;
    assert!(Fixtures::from_json(bad_schema).is_err());
    let typo = r#"{"clients": [{"clientId": "a", "clientSecret": "b"}], "actoins": []}"#;
    assert!(Fixtures::from_json(typo).is_err());
    // Debug of a client fixture never shows its secret.
    let f = Fixtures::demo();
    assert!(!format!("{f:?}").contains("gcrun-demo-secret"));
    let _ = EmulatorConfig::default();
}

#[test]
fn the_demo_ids_name_what_the_demo_fixtures_hold() {
    use gcrun_emulator::fixtures::demo;
    let f = Fixtures::demo();
    let actions: Vec<&str> = f.actions.iter().map(|a| a.id.as_str()).collect();
    for id in [demo::LOOKUP, demo::CALLBACK, demo::SCORE, demo::CASE] {
        assert!(actions.contains(&id), "{id} in {actions:?}");
    }
    let flows: Vec<&str> = f.flows.iter().map(|fl| fl.id.as_str()).collect();
    assert!(flows.contains(&demo::ORDER_FLOW) && flows.contains(&demo::SURVEY_FLOW), "{flows:?}");
    assert!(f.clients.iter().any(|c| c.client_id == demo::CLIENT_ID));
}
