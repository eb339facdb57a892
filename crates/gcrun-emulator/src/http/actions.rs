//! Action definitions and the synchronous `execute` flavor.

#![allow(clippy::result_large_err)]

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::CorrelationId;
use super::error::{
    Cid, error_body, error_body_with, invalid_inputs, json_response, parse_object, too_many_requests, unknown_action,
};
use crate::directives::Directives;
use crate::fixtures::render_output;
use crate::state::{Emulator, lock};

pub(super) fn action_json(a: &crate::fixtures::ActionFixture, with_contract: bool) -> Value {
    let mut v = json!({
        "id": a.id,
        "name": a.name,
        "selfUri": format!("/api/v2/integrations/actions/{}", a.id),
    });
    let obj = v.as_object_mut().expect("json! object");
    for (key, value) in [
        ("integrationId", a.integration_id.clone().map(Value::String)),
        ("category", a.category.clone().map(Value::String)),
        ("version", a.version.map(Value::from)),
        ("secure", a.secure.map(Value::Bool)),
        ("config", a.config.clone()),
    ] {
        if let Some(value) = value {
            obj.insert(key.into(), value);
        }
    }
    if with_contract {
        obj.insert("contract".into(), a.contract.clone());
    }
    v
}

/// `GET /api/v2/integrations/actions?pageSize&pageNumber&category&name`.
pub(super) async fn list_actions(
    State(em): State<Emulator>,
    Cid(cid): Cid,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let number = |key: &str, default: u64, max: u64| -> Result<u64, Response> {
        match q.get(key) {
            None => Ok(default),
            Some(raw) => match raw.parse::<u64>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(error_body(
                    cid.as_ref(),
                    StatusCode::BAD_REQUEST,
                    "bad.request",
                    &format!("{key} must be a whole number from 1 to {max}"),
                )),
            },
        }
    };
    let (page_size, page_number) = match (number("pageSize", 25, 500), number("pageNumber", 1, 1_000_000)) {
        (Ok(s), Ok(n)) => (s, n),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let category = q.get("category").map(|c| c.to_lowercase());
    let name = q.get("name").map(|n| n.to_lowercase());
    let mut matching: Vec<_> =
        em.0.actions
            .values()
            .map(|(a, _)| a)
            .filter(|a| category.as_ref().is_none_or(|c| a.category.as_ref().is_some_and(|ac| ac.to_lowercase() == *c)))
            .filter(|a| name.as_ref().is_none_or(|n| a.name.to_lowercase().contains(n.as_str())))
            .collect();
    matching.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    let total = matching.len() as u64;
    let page_count = total.div_ceil(page_size).max(1);
    let entities: Vec<Value> = matching
        .iter()
        .skip(((page_number - 1) * page_size) as usize)
        .take(page_size as usize)
        .map(|a| action_json(a, false))
        .collect();
    let uri = |n: u64| format!("/api/v2/integrations/actions?pageSize={page_size}&pageNumber={n}");
    let mut body = json!({
        "entities": entities,
        "pageSize": page_size,
        "pageNumber": page_number,
        "total": total,
        "pageCount": page_count,
        "firstUri": uri(1),
        "selfUri": uri(page_number),
        "lastUri": uri(page_count),
    });
    if page_number < page_count {
        body["nextUri"] = json!(uri(page_number + 1));
    }
    if page_number > 1 {
        body["previousUri"] = json!(uri(page_number - 1));
    }
    json_response(StatusCode::OK, body)
}

/// `GET /api/v2/integrations/actions/{actionId}?expand=contract`.
pub(super) async fn get_action(
    State(em): State<Emulator>,
    Cid(cid): Cid,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some((action, _)) = em.0.actions.get(&id) else { return unknown_action(cid.as_ref(), &id) };
    let with_contract = q.get("expand").is_some_and(|e| e.split(',').any(|x| x.trim() == "contract"));
    json_response(StatusCode::OK, action_json(action, with_contract))
}

/// Validates inputs against an action's input schema; `Err` is the 400.
pub(super) fn validate_inputs(
    em: &Emulator,
    cid: Option<&CorrelationId>,
    id: &str,
    inputs: &Map<String, Value>,
) -> Result<(), Response> {
    if let Some((_, Some(schema))) = em.0.actions.get(id) {
        let violations = schema.validate(inputs);
        if !violations.is_empty() {
            return Err(invalid_inputs(cid, &violations));
        }
    }
    Ok(())
}

/// Ends an execute call's concurrency slot even if the handler is dropped
/// (client gone) mid-sleep.
struct Executing(Emulator);

impl Drop for Executing {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// `POST /api/v2/integrations/actions/{actionId}/execute`: synchronous.
pub(super) async fn execute_action(
    State(em): State<Emulator>,
    Cid(cid): Cid,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let cid = cid.as_ref();
    let Some((action, _)) = em.0.actions.get(&id) else { return unknown_action(cid, &id) };
    let inputs = match parse_object(cid, &body) {
        Ok(inputs) => inputs,
        Err(r) => return r,
    };
    if let Err(r) = validate_inputs(&em, cid, &id, &inputs) {
        return r;
    }
    let d = Directives::from_inputs(&inputs);
    if let Some((n, code)) = &d.transient {
        let key = format!("{id}\u{0}{}", String::from_utf8_lossy(&body));
        let mut left = lock(&em.0.execute_transients);
        let remaining = left.entry(key).or_insert(*n);
        if *remaining > 0 {
            *remaining -= 1;
            drop(left);
            let (status, gcode) = if code == "timeout" {
                (StatusCode::GATEWAY_TIMEOUT, "gateway.timeout")
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, "service.unavailable")
            };
            return error_body(cid, status, gcode, &format!("The action could not run now ({code}); try again."));
        }
    }
    if let Err(limited) = em.admit(None) {
        return too_many_requests(cid, limited);
    }
    let _slot = Executing(em.clone());
    em.note_execute(&id, &body);
    tokio::time::sleep(d.slow.unwrap_or(em.0.timings.execute_for)).await;
    if let Some(code) = d.fail {
        // Real action failures always carry an `ACTION.*` detail code; any
        // other requested code goes into the message.
        let (detail, message) = if code.starts_with("ACTION.") {
            (code, "The action failed.".to_string())
        } else if code.is_empty() {
            (
                "ACTION.REMOTE_ENDPOINT".to_string(),
                "The action failed: the remote endpoint answered with an error.".to_string(),
            )
        } else {
            ("ACTION.REMOTE_ENDPOINT".to_string(), format!("The action failed: the remote endpoint answered {code}."))
        };
        return error_body_with(
            cid,
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({
                "code": "internal.server.error",
                "message": message,
                "details": [{"errorCode": detail, "entityId": id, "entityName": action.name}],
            }),
        );
    }
    let outputs = action.output.as_ref().map_or_else(|| json!({}), |t| render_output(t, &inputs));
    let outputs = if q.get("flatten").is_some_and(|f| f == "true") { flatten(&outputs) } else { outputs };
    json_response(StatusCode::OK, outputs)
}

/// `?flatten=true`: nested objects become dotted keys.
pub(super) fn flatten(value: &Value) -> Value {
    fn walk(prefix: &str, v: &Value, out: &mut Map<String, Value>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(&key, v, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), other.clone());
            }
        }
    }
    let mut out = Map::new();
    walk("", value, &mut out);
    Value::Object(out)
}
