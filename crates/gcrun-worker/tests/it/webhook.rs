use gcrun_model::{Flavor, RunId, RunStatus, Transition};
use gcrun_store::{RunRecord, WebhookState};
use gcrun_worker::webhook::{self, WebhookSecret};
use serde_json::json;

#[test]
fn signatures_match_the_standard_webhooks_example() {
    // The example from the Standard Webhooks specification.
    let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let body = br#"{"test": 2432232314}"#;
    let sig = secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body);
    assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    assert!(secret.verify("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body, &format!("v1,bm9wZQ== {sig}")));
    assert!(!secret.verify("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_331, body, &sig), "timestamp is signed");
    assert!(!secret.verify("msg_other", 1_614_265_330, body, &sig), "id is signed");
    assert!(!secret.verify("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, b"{}", &sig), "body is signed");
}

#[test]
fn secrets_are_checked_and_never_shown() {
    assert!(WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
    assert!(WebhookSecret::parse("whsec_not base64!").is_err());
    let err = WebhookSecret::parse("whsec_###").unwrap_err().to_string();
    assert!(!err.contains("###"));
    let (secret, text) = WebhookSecret::generate();
    assert!(text.starts_with("whsec_"));
    assert!(!format!("{secret:?}").contains(&text[6..]));
    assert!(WebhookSecret::parse(&text).is_ok());
}

fn record(status: RunStatus) -> RunRecord {
    RunRecord {
        id: RunId::new(),
        status,
        flavor: Flavor::Runs,
        target: "custom_-_a".into(),
        request: gcrun_model::RunRequest::builder(Flavor::Runs, "custom_-_a")
            .metadata("batch", "b1")
            .build(&gcrun_model::RequestLimits::default())
            .unwrap(),
        remote_id: Some("remote-1".into()),
        remote_status: Some("completed".into()),
        created_ms: 1_000,
        updated_ms: 3_500,
        submitted_ms: Some(1_200),
        completed_ms: Some(3_500),
        deadline_ms: 100_000,
        poll_attempts: 2,
        retries: 0,
        last_error: None,
        correlation_id: None,
        outputs: Some(json!({"tier": "gold"})),
        error: None,
        webhook: WebhookState { status: None, attempts: 0, epoch: 0, last_error: None, delivered_ms: None },
        enqueued: true,
        client: None,
        digest: None,
        upstream_correlation: None,
        cancel_requested: None,
        held: None,
        expected_ms: None,
        first_poll_aim_ms: None,
        secure: false,
        transitions: vec![
            Transition { from: None, to: RunStatus::Accepted, at_ms: 1_000, cause: "accepted".into() },
            Transition { from: Some(RunStatus::Accepted), to: RunStatus::Validated, at_ms: 1_100, cause: "ok".into() },
            Transition {
                from: Some(RunStatus::Validated),
                to: RunStatus::Submitted,
                at_ms: 1_200,
                cause: "submitted".into(),
            },
            Transition { from: Some(RunStatus::Submitted), to: status, at_ms: 3_500, cause: "done".into() },
        ],
        attempts: Vec::new(),
    }
}

#[test]
fn the_body_carries_the_spec_fields_and_the_extras() {
    let r = record(RunStatus::Completed);
    let body = webhook::body(&r, 4_000);
    assert_eq!(body["event"], "data_action_run_completed");
    assert_eq!(body["runId"], r.id.to_string());
    assert_eq!(body["status"], "completed");
    assert_eq!(body["durationSeconds"], 2.5);
    assert_eq!(body["success"], true);
    assert_eq!(body["audit"]["runId"], r.id.to_string());
    assert_eq!(body["audit"]["definitionId"], "custom_-_a");
    assert_eq!(body["audit"]["transitions"].as_array().unwrap().len(), 4);
    assert_eq!(body["audit"]["transitions"][1]["from"], "accepted");
    assert_eq!(body["audit"]["timestamp"], "1970-01-01T00:00:04Z");
    assert_eq!(body["outputs"], json!({"tier": "gold"}));
    assert_eq!((body["flavor"].as_str(), body["remoteRunId"].as_str()), (Some("runs"), Some("remote-1")));
    assert_eq!(body["metadata"]["batch"], "b1");

    let mut failed = record(RunStatus::Failed);
    failed.outputs = None;
    failed.error = Some(gcrun_model::RunError::new("crm_down", "x"));
    let body = webhook::body(&failed, 4_000);
    assert_eq!((body["success"].as_bool(), body["error"]["code"].as_str()), (Some(false), Some("crm_down")));
    assert!(body.get("outputs").is_none());
}

#[test]
fn a_secure_runs_webhook_says_so_and_carries_its_outputs_only_if_asked() {
    let mut rec = record(RunStatus::Completed);
    rec.secure = true;
    rec.outputs = None; // erased at its end
    rec.last_error = Some("completed: details withheld (secure action)".into());
    let body = gcrun_worker::webhook::body(&rec, 4_000);
    assert_eq!((body["secure"].clone(), body["dataWithheld"].clone()), (json!(true), json!(true)));
    assert!(body.get("outputs").is_none() && body.get("error").is_none(), "{body}");
    rec.request = gcrun_model::RunRequest::builder(Flavor::Runs, "custom_-_a")
        .include_secure_data(true)
        .build(&gcrun_model::RequestLimits::default())
        .unwrap();
    rec.outputs = Some(json!({"score": 87}));
    let body = gcrun_worker::webhook::body(&rec, 4_000);
    assert_eq!((body["dataWithheld"].clone(), body["outputs"].clone()), (json!(false), json!({"score": 87})));
}

#[test]
fn the_event_id_is_stable_per_ending() {
    let r = record(RunStatus::Completed);
    assert_eq!(webhook::event_id(&r), webhook::event_id(&r.clone()));
    let mut again = r.clone();
    again.completed_ms = Some(9_999); // requeued and ended again: a new event
    assert_ne!(webhook::event_id(&r), webhook::event_id(&again));
    assert!(webhook::event_id(&r).starts_with(&r.id.to_string()));
}

#[test]
fn while_a_secret_rotates_both_sign_and_a_receiver_knowing_either_verifies() {
    use base64::Engine;
    let new =
        format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(b"the-new-signing-key-32-bytes-ok!"));
    let old =
        format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(b"the-old-signing-key-32-bytes-ok!"));
    let other =
        format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(b"somebody-else-entirely-32-bytes!"));
    let rotating = WebhookSecret::parse(&format!("{new}, {old}")).unwrap();
    let header = rotating.sign("msg_1", 1_700_000_000, b"{}");
    assert_eq!(header.split(' ').count(), 2, "one v1 signature per secret: {header}");
    for receiver in [&new, &old] {
        assert!(WebhookSecret::parse(receiver).unwrap().verify("msg_1", 1_700_000_000, b"{}", &header));
    }
    assert!(!WebhookSecret::parse(&other).unwrap().verify("msg_1", 1_700_000_000, b"{}", &header));
    assert!(WebhookSecret::parse(&format!("{new},not-a-secret")).is_err(), "every listed secret must parse");
    assert!(!format!("{rotating:?}").contains("whsec") && !format!("{rotating:?}").contains(&new[6..12]));
}
