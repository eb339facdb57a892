//! Architect workflow executions (the `workflow` flavor).

#![allow(clippy::result_large_err)]

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::error::{Cid, entity_not_found, error_body, json_response, parse_object, rfc3339, too_many_requests};
use crate::fixtures::render_output;
use crate::state::{Emulator, Phase, RunKind, lock};

pub(super) async fn launch_flow(State(em): State<Emulator>, Cid(cid): Cid, body: Bytes) -> Response {
    let cid = cid.as_ref();
    let doc = match parse_object(cid, &body) {
        Ok(doc) => doc,
        Err(r) => return r,
    };
    let bad = |message: &str| error_body(cid, StatusCode::BAD_REQUEST, "bad.request", message);
    let Some(flow_id) = doc.get("flowId").and_then(Value::as_str) else {
        return bad("flowId is required and must be a string");
    };
    let inputs = match doc.get("inputData") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return bad("inputData must be a JSON object"),
    };
    let name = match doc.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(n)) => Some(n.clone()),
        Some(_) => return bad("name must be a string"),
    };
    let Some(flow) = em.0.flows.get(flow_id) else {
        return entity_not_found(cid, "Flow", flow_id);
    };
    match doc.get("flowVersion") {
        None | Some(Value::Null) => {}
        Some(Value::String(v)) if *v == flow.version => {}
        Some(v) => {
            return bad(&format!("flow {flow_id} has no version {v}; the published version is {}", flow.version));
        }
    }
    let output = flow.output.as_ref().map_or_else(|| json!({}), |t| render_output(t, &inputs));
    let kind = RunKind::Flow { flow_id: flow_id.to_string(), flow_version: flow.version.clone() };
    let run = em.new_run(kind, name.clone(), &inputs, output);
    if let Err(limited) = em.admit(Some(run.ends_at())) {
        return too_many_requests(cid, limited);
    }
    em.note_run_name(name.as_deref());
    let body = json!({
        "id": run.id,
        "name": name.clone().unwrap_or_else(|| flow.name.clone()),
        "flowVersion": flow.version,
        "selfUri": format!("/api/v2/flows/executions/{}", run.id),
    });
    lock(&em.0.runs).insert(run.id.clone(), run);
    json_response(StatusCode::OK, body)
}

/// `GET /api/v2/flows/executions/{flowExecutionId}`.
pub(super) async fn get_flow_execution(State(em): State<Emulator>, Cid(cid): Cid, Path(id): Path<String>) -> Response {
    let run = lock(&em.0.runs).get(&id).cloned();
    let Some((run, RunKind::Flow { flow_version, flow_id })) = run.map(|r| (r.clone(), r.kind)) else {
        return entity_not_found(cid.as_ref(), "Flow execution", &id);
    };
    let flow_name = em.0.flows.get(&flow_id).map(|f| f.name.clone()).unwrap_or_default();
    let mut v = json!({
        "id": run.id,
        "name": run.name.clone().unwrap_or(flow_name),
        "flowVersion": flow_version,
        "dateLaunched": rfc3339(run.created),
        "status": "RUNNING",
        "selfUri": format!("/api/v2/flows/executions/{}", run.id),
    });
    if run.phase(Instant::now()) == Phase::Done {
        v["dateCompleted"] = json!(rfc3339(run.at(run.queued_for + run.running_for)));
        match &run.outcome {
            Ok(outputs) => {
                v["status"] = json!("COMPLETED");
                v["completionReason"] = json!("Completed");
                v["outputData"] = outputs.clone();
            }
            Err((code, message)) => {
                v["status"] = json!("FAILED");
                v["completionReason"] = json!(message);
                v["flowErrorInfo"] = json!({"message": message, "code": code});
            }
        }
    }
    json_response(StatusCode::OK, v)
}
