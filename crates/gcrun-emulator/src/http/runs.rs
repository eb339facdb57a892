//! The `runs` flavor (the spec's asynchronous contract).

#![allow(clippy::result_large_err)]

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::actions::validate_inputs;
use super::error::{
    Cid, entity_not_found, error_body, json_response, parse_object, rfc3339, too_many_requests, unknown_action,
};
use crate::fixtures::render_output;
use crate::state::{Emulator, Fault, Phase, Run, RunKind, lock};

pub(super) fn run_json(run: &Run, now: Instant, transient: Option<&str>) -> Value {
    let RunKind::Action { definition_id } = &run.kind else { return Value::Null };
    let phase = run.phase(now);
    let q = run.queued_for;
    let mut v = json!({
        "id": run.id,
        "definitionId": definition_id,
        "mode": "async",
        "createdAt": rfc3339(run.created),
    });
    let (status, updated) = match phase {
        Phase::Queued => ("queued", run.created),
        Phase::Running => ("running", run.at(q)),
        Phase::Done => (if run.outcome.is_ok() { "completed" } else { "failed" }, run.at(q + run.running_for)),
    };
    if let Some(code) = transient {
        // A transient run error: the run is not over, whatever its clock says.
        v["status"] = json!(if phase == Phase::Queued { "queued" } else { "running" });
        v["updatedAt"] = json!(rfc3339(time::OffsetDateTime::now_utc()));
        v["error"] = json!({"code": code, "message": "The action's compute was not available; the run will continue."});
        return v;
    }
    v["status"] = json!(status);
    v["updatedAt"] = json!(rfc3339(updated));
    if phase == Phase::Done {
        v["completedAt"] = json!(rfc3339(updated));
        match &run.outcome {
            Ok(outputs) => v["outputs"] = outputs.clone(),
            Err((code, message)) => v["error"] = json!({"code": code, "message": message}),
        }
    }
    v
}

/// `POST /api/v2/actions/runs`: the spec's asynchronous contract.
pub(super) async fn submit_run(State(em): State<Emulator>, Cid(cid): Cid, body: Bytes) -> Response {
    let cid = cid.as_ref();
    let doc = match parse_object(cid, &body) {
        Ok(doc) => doc,
        Err(r) => return r,
    };
    let bad = |message: &str| error_body(cid, StatusCode::BAD_REQUEST, "bad.request", message);
    let Some(definition_id) = doc.get("definitionId").and_then(Value::as_str) else {
        return bad("definitionId is required and must be a string");
    };
    match doc.get("mode") {
        None => {}
        Some(Value::String(m)) if m == "async" => {}
        Some(_) => return bad("mode must be \"async\""),
    }
    let run_name = match doc.get("runName") {
        None | Some(Value::Null) => None,
        Some(Value::String(n)) => Some(n.clone()),
        Some(_) => return bad("runName must be a string"),
    };
    let inputs = match doc.get("inputs") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return bad("inputs must be a JSON object"),
    };
    let Some((action, _)) = em.0.actions.get(definition_id) else { return unknown_action(cid, definition_id) };
    if let Err(r) = validate_inputs(&em, cid, definition_id, &inputs) {
        return r;
    }
    let output = action.output.as_ref().map_or_else(|| json!({}), |t| render_output(t, &inputs));
    let run =
        em.new_run(RunKind::Action { definition_id: definition_id.to_string() }, run_name.clone(), &inputs, output);
    if let Err(limited) = em.admit(Some(run.ends_at())) {
        return too_many_requests(cid, limited);
    }
    em.note_run_name(run_name.as_deref());
    let body = run_json(&run, Instant::now(), None);
    lock(&em.0.runs).insert(run.id.clone(), run);
    json_response(StatusCode::CREATED, body)
}

/// `GET /api/v2/actions/runs/{runId}`.
pub(super) async fn get_run(State(em): State<Emulator>, Cid(cid): Cid, Path(id): Path<String>) -> Response {
    let now = Instant::now();
    let mut runs = lock(&em.0.runs);
    let Some(run) = runs.get_mut(&id).filter(|r| matches!(r.kind, RunKind::Action { .. })) else {
        drop(runs);
        return entity_not_found(cid.as_ref(), "Run", &id);
    };
    let transient = if run.transient_left > 0 {
        run.transient_left -= 1;
        Some(run.transient_code.clone())
    } else {
        None
    };
    let snapshot = run.clone();
    drop(runs);
    let transient = transient.or_else(|| {
        em.roll(Fault::RunError).then(|| if fastrand::bool() { "compute_unavailable" } else { "timeout" }.to_string())
    });
    json_response(StatusCode::OK, run_json(&snapshot, now, transient.as_deref()))
}
