//! Action contracts for the submit step: this process's cache, then the
//! cache shared by every worker in Redis, then Genesys.
//!
//! A miss is single-flight within a process (one fetch while the other
//! submits of that moment wait for it), so a burst of runs for one action
//! asks Genesys once, not once per run. A cached entry that does not parse
//! is treated as a miss and fetched again: it never turns into "no schema",
//! which would let inputs through unvalidated.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gcrun_genesys::{ApiError, GenesysClient};
use gcrun_model::InputSchema;
use gcrun_store::{Store, StoreError};
use serde_json::Value;

use crate::metrics::Metrics;
use crate::step::submit::Contract;

/// The endpoint label of definition reads in metrics.
const ENDPOINT: &str = "GET /api/v2/integrations/actions/{actionId}";

/// What the submit step needs of a definition: its compiled input schema
/// (`None`: it declares none) and whether the action is secure.
type Compiled = (Option<Arc<InputSchema>>, bool);

/// A compiled contract and when it was read.
type Cached = (Instant, Compiled);

/// The contract cache of one process.
#[derive(Debug)]
pub struct Definitions {
    ttl: Duration,
    local: Mutex<HashMap<String, Cached>>,
    fetching: tokio::sync::Mutex<()>,
}

impl Definitions {
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, local: Mutex::new(HashMap::new()), fetching: tokio::sync::Mutex::new(()) }
    }

    fn local(&self, action_id: &str) -> Option<Compiled> {
        let local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        local.get(action_id).filter(|(at, _)| at.elapsed() < self.ttl).map(|(_, s)| s.clone())
    }

    /// The action's input contract.
    pub async fn contract(
        &self,
        store: &Store,
        genesys: &GenesysClient,
        metrics: &Metrics,
        action_id: &str,
        now: u64,
    ) -> Result<Contract, StoreError> {
        if let Some(schema) = self.local(action_id) {
            return Ok(contract_of(schema));
        }
        let _single_flight = self.fetching.lock().await;
        if let Some(schema) = self.local(action_id) {
            return Ok(contract_of(schema));
        }
        // Shared as `{"inputSchema": ..., "secure": ...}`; anything else (an
        // entry from an older release, a corrupt one) is a miss.
        let shared = store
            .cached_definition(action_id, now)
            .await?
            .and_then(|json| serde_json::from_str::<Value>(&json).ok())
            .and_then(|v| Some((v.get("inputSchema")?.clone(), v.get("secure")?.as_bool()?)));
        let (schema_json, secure) = match shared {
            Some(found) => found,
            None => match fetch(genesys, metrics, action_id).await {
                Ok((schema, secure)) => {
                    let ttl = self.ttl.as_millis() as u64;
                    let entry = serde_json::json!({"inputSchema": schema, "secure": secure});
                    store.cache_definition(action_id, &entry.to_string(), ttl, now).await?;
                    (schema, secure)
                }
                Err(e) => return Ok(Contract::Unreadable(e)),
            },
        };
        let compiled = match compile(&schema_json).map(|schema| (schema, secure)) {
            Ok(compiled) => compiled,
            Err(why) => return Ok(Contract::Invalid(why)),
        };
        self.local
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(action_id.to_string(), (Instant::now(), compiled.clone()));
        Ok(contract_of(compiled))
    }
}

/// The action's input schema as Genesys has it (`null`: none declared),
/// and whether it is secure.
async fn fetch(genesys: &GenesysClient, metrics: &Metrics, action_id: &str) -> Result<(Value, bool), ApiError> {
    let fetched = genesys.get_action(action_id).await;
    metrics.api(ENDPOINT, &crate::metrics::result_label(&fetched));
    let action = fetched?;
    Ok((action.input_schema().cloned().unwrap_or(Value::Null), action.secure.unwrap_or(false)))
}

fn compile(schema: &Value) -> Result<Option<Arc<InputSchema>>, String> {
    if schema.is_null() {
        return Ok(None);
    }
    InputSchema::compile(schema).map(|s| Some(Arc::new(s))).map_err(|e| e.to_string())
}

/// The contract straight from Genesys, with no cache (for `run-now`).
pub async fn fetch_contract(genesys: &GenesysClient, metrics: &Metrics, action_id: &str) -> Contract {
    match fetch(genesys, metrics, action_id).await {
        Err(e) => Contract::Unreadable(e),
        Ok((schema, secure)) => match compile(&schema) {
            Ok(compiled) => contract_of((compiled, secure)),
            Err(why) => Contract::Invalid(why),
        },
    }
}

fn contract_of((schema, secure): Compiled) -> Contract {
    Contract::Read { schema, secure }
}
