use std::time::Duration;

use gcrun_genesys::types::{ActionQuery, ActionRunRequest, FlowLaunchRequest};
use gcrun_genesys::{RemotePhase, SubmitRequest};
use gcrun_harness::wait_until;
use gcrun_model::{Flavor, Target};
use serde_json::{Map, json};

use crate::{LOOKUP, ORDER_FLOW, lookup_inputs, quick, spawn};

#[tokio::test]
async fn get_action_reads_the_contract() {
    let (_emu, client) = spawn(quick()).await;
    let action = client.get_action(LOOKUP).await.unwrap();
    assert_eq!(action.id, LOOKUP);
    assert_eq!(action.name.as_deref(), Some("Lookup customer"));
    assert_eq!(action.category.as_deref(), Some("CRM"));
    let schema = action.input_schema().unwrap();
    assert_eq!(schema["required"], json!(["customerId", "channel"]));
    assert!(action.contract.unwrap().output.unwrap().success_schema.is_some());
}

#[tokio::test]
async fn list_actions_follows_every_page() {
    let (emu, client) = spawn(quick()).await;
    let page = client.list_actions(&ActionQuery { page_size: Some(3), ..ActionQuery::default() }, 1).await.unwrap();
    assert_eq!((page.entities.len(), page.page_count, page.total), (3, Some(2), Some(4)));
    assert!(page.next_uri.is_some());
    let all = client.list_all_actions(&ActionQuery { page_size: Some(1), ..ActionQuery::default() }).await.unwrap();
    assert_eq!(all.len(), 4);
    let crm =
        client.list_all_actions(&ActionQuery { category: Some("CRM".into()), ..ActionQuery::default() }).await.unwrap();
    assert_eq!(crm.len(), 2);
    assert_eq!(emu.emulator.stats().requests["GET /api/v2/integrations/actions"]["200"], 1 + 4 + 1);
}

#[tokio::test]
async fn runs_endpoints_submit_and_read() {
    let (_emu, client) = spawn(quick()).await;
    let body = ActionRunRequest {
        definition_id: LOOKUP.into(),
        mode: "async".into(),
        run_name: Some("r-1".into()),
        inputs: lookup_inputs("c-1"),
    };
    let run = client.submit_action_run(&body).await.unwrap();
    assert_eq!(run.status, "queued");
    assert_eq!(run.definition_id.as_deref(), Some(LOOKUP));
    let done = wait_until("the run to complete", Duration::from_secs(5), || async {
        let r = client.get_action_run(&run.id).await.unwrap();
        (r.status == "completed").then_some(r)
    })
    .await;
    assert_eq!(done.outputs.unwrap()["customerId"], "c-1");
    assert!(done.completed_at.is_some());
}

#[tokio::test]
async fn flow_endpoints_launch_and_read() {
    let (_emu, client) = spawn(quick()).await;
    let body = FlowLaunchRequest {
        flow_id: ORDER_FLOW.into(),
        flow_version: None,
        input_data: json!({"Flow.OrderId": "o-1"}).as_object().unwrap().clone(),
        name: Some("n-1".into()),
    };
    let launched = client.launch_flow(&body).await.unwrap();
    assert_eq!((launched.name.as_deref(), launched.flow_version.as_deref()), (Some("n-1"), Some("4.0")));
    let exec = client.get_flow_execution(&launched.id).await.unwrap();
    assert_eq!(exec.status, "RUNNING");
    let done = wait_until("the flow to complete", Duration::from_secs(5), || async {
        let e = client.get_flow_execution(&launched.id).await.unwrap();
        (e.status == "COMPLETED").then_some(e)
    })
    .await;
    assert_eq!(done.output_data.unwrap()["Flow.OrderId"], "o-1");
}

#[tokio::test]
async fn execute_returns_the_action_output() {
    let (_emu, client) = spawn(quick()).await;
    let out = client.execute_action(LOOKUP, &lookup_inputs("c-2"), false).await.unwrap();
    assert_eq!(out, json!({"customerId": "c-2", "tier": "gold", "openCases": 2}));
    let flat = client.execute_action(LOOKUP, &lookup_inputs("c-2"), true).await.unwrap();
    assert_eq!(flat["customerId"], "c-2");
}

/// Drives a run through the one trait, as the pipeline will.
async fn drive(
    client: &gcrun_genesys::GenesysClient,
    flavor: Flavor,
    target: Target,
    inputs: Map<String, serde_json::Value>,
) -> RemotePhase {
    let api = client.run_api(flavor);
    assert_eq!(api.flavor(), flavor);
    let first = api.submit(SubmitRequest { target: &target, inputs: &inputs, run_name: "gcrun-run-1" }).await.unwrap();
    if first.phase.is_terminal() {
        assert!(first.remote_id.is_none(), "only execute finishes at submit");
        return first.phase;
    }
    let id = first.remote_id.unwrap();
    wait_until("a terminal phase", Duration::from_secs(5), || async {
        let s = api.status(&id).await.unwrap();
        s.phase.is_terminal().then_some(s.phase)
    })
    .await
}

#[tokio::test]
async fn one_trait_drives_all_three_flavors() {
    let (emu, client) = spawn(quick()).await;
    let action = Target::Action { id: LOOKUP.into() };
    let flow = Target::Flow { id: ORDER_FLOW.into(), version: Some("4.0".into()) };
    for flavor in [Flavor::Runs, Flavor::Execute] {
        match drive(&client, flavor, action.clone(), lookup_inputs("x")).await {
            RemotePhase::Completed { outputs } => assert_eq!(outputs["customerId"], "x", "{flavor}"),
            other => panic!("{flavor}: {other:?}"),
        }
    }
    let inputs = json!({"Flow.OrderId": "o-2"}).as_object().unwrap().clone();
    assert!(matches!(drive(&client, Flavor::Workflow, flow.clone(), inputs).await, RemotePhase::Completed { .. }));

    let mut failing = lookup_inputs("x");
    failing.insert("note".into(), json!("emulator:fail=crm_down"));
    match drive(&client, Flavor::Runs, action.clone(), failing.clone()).await {
        RemotePhase::Failed { code, .. } => assert_eq!(code, "crm_down"),
        other => panic!("{other:?}"),
    }
    let flow_fail = json!({"Flow.X": "emulator:fail"}).as_object().unwrap().clone();
    match drive(&client, Flavor::Workflow, flow.clone(), flow_fail).await {
        RemotePhase::Failed { code, .. } => assert_eq!(code, "FAILED"),
        other => panic!("{other:?}"),
    }
    // execute reports a failed action as a fatal error, not a phase.
    let err = client
        .run_api(Flavor::Execute)
        .submit(SubmitRequest { target: &action, inputs: &failing, run_name: "r" })
        .await
        .unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    // runName is sent: the emulator saw the same name on every submission.
    assert!(emu.emulator.stats().duplicate_run_names.contains_key("gcrun-run-1"));

    // A flavor refuses a target of the other kind; execute has nothing to poll.
    let err = client
        .run_api(Flavor::Workflow)
        .submit(SubmitRequest { target: &action, inputs: &Map::new(), run_name: "r" })
        .await;
    assert!(!err.unwrap_err().is_retryable());
    let err =
        client.run_api(Flavor::Runs).submit(SubmitRequest { target: &flow, inputs: &Map::new(), run_name: "r" }).await;
    assert!(!err.unwrap_err().is_retryable());
    assert!(!client.run_api(Flavor::Execute).status("x").await.unwrap_err().is_retryable());
}

#[tokio::test]
async fn transient_run_errors_are_a_phase_to_poll_through() {
    let (_emu, client) = spawn(quick()).await;
    let api = client.run_api(Flavor::Runs);
    let mut inputs = lookup_inputs("t");
    inputs.insert("note".into(), json!("emulator:transient=2"));
    let target = Target::Action { id: LOOKUP.into() };
    let run = api.submit(SubmitRequest { target: &target, inputs: &inputs, run_name: "t" }).await.unwrap();
    let id = run.remote_id.unwrap();
    for _ in 0..2 {
        let s = api.status(&id).await.unwrap();
        assert_eq!(s.phase, RemotePhase::Transient { code: "compute_unavailable".into(), message: s.phase_message() });
        assert!(!s.phase.is_terminal());
    }
}

trait PhaseMessage {
    fn phase_message(&self) -> String;
}

impl PhaseMessage for gcrun_genesys::RemoteRun {
    fn phase_message(&self) -> String {
        match &self.phase {
            RemotePhase::Transient { message, .. } | RemotePhase::Failed { message, .. } => message.clone(),
            _ => String::new(),
        }
    }
}
