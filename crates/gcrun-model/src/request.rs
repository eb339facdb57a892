//! The run request: what an upstream system asks gcrun to do.
//!
//! Requests arrive as JSON (HTTP ingest, `gcrun enqueue`, a job payload read
//! back from Redis) or are built in Rust with [`RunRequest::builder`]. Both
//! end in [`RunRequest::parse`], which checks the shape *and* the contract
//! rules and reports every violation with its JSON-Pointer path. A
//! [`RunRequest`] value is therefore always valid: its fields are private and
//! only `parse` makes one.
//!
//! Wire shape (camelCase, unknown fields are violations, not silently
//! dropped, so a typo such as `webhookURL` is caught):
//!
//! ```json
//! { "flavor": "runs", "actionId": "custom_-_...", "inputs": {"customerId": "42"},
//!   "webhookUrl": "https://crm.example/hooks/gcrun", "runName": "nightly-42",
//!   "idempotencyKey": "crm-42-2026-12-01", "metadata": {"batch": "nightly"} }
//! { "flavor": "workflow", "flowId": "5b0c...", "flowVersion": "3.0", "inputs": {} }
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};
use url::Url;

use crate::ids::Flavor;
use crate::rules::RequestLimits;
use crate::violation::{Violation, Violations, pointer_token};

/// What a run executes: a data action (flavors `runs` and `execute`) or an
/// Architect flow (flavor `workflow`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Action { id: String },
    Flow { id: String, version: Option<String> },
}

impl Target {
    /// The action or flow id.
    pub fn id(&self) -> &str {
        match self {
            Target::Action { id } | Target::Flow { id, .. } => id,
        }
    }
}

/// A webhook URL as operators, logs and views may see it: its query (where
/// receivers put tokens) replaced by a marker.
pub fn redacted_url(url: &Url) -> String {
    let query = if url.query().is_some() { "?[redacted]" } else { "" };
    format!("{}{}{query}", url.origin().ascii_serialization(), url.path())
}

/// A validated run request. Built only by [`RunRequest::parse`] (directly or
/// through the builder), so holding one means every rule passed. `Debug`
/// shows the webhook URL without its query.
#[derive(Clone, PartialEq)]
pub struct RunRequest {
    flavor: Flavor,
    target: Target,
    inputs: Map<String, Value>,
    webhook_url: Option<Url>,
    run_name: Option<String>,
    idempotency_key: Option<String>,
    metadata: BTreeMap<String, String>,
    include_secure_data: bool,
}

impl std::fmt::Debug for RunRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunRequest")
            .field("flavor", &self.flavor)
            .field("target", &self.target)
            // Names only: input values may be a secure action's data.
            .field("inputs", &self.inputs.keys().collect::<Vec<_>>())
            .field("webhook_url", &self.webhook_url.as_ref().map(redacted_url))
            .field("run_name", &self.run_name)
            .field("idempotency_key", &self.idempotency_key)
            .field("metadata", &self.metadata)
            .field("include_secure_data", &self.include_secure_data)
            .finish()
    }
}

/// The fields of a request document, in the order of [`RunRequestDoc`].
pub const FIELDS: [&str; 10] = [
    "flavor",
    "actionId",
    "flowId",
    "flowVersion",
    "inputs",
    "webhookUrl",
    "runName",
    "idempotencyKey",
    "metadata",
    "includeSecureData",
];

/// The wire shape of a run request, as the OpenAPI document describes it.
/// Requests are checked by [`RunRequest::parse`] (every violation at once,
/// which serde's first-error decoding cannot do), so this type only
/// describes them; tests hold its fields to [`FIELDS`] and to what
/// [`RunRequest::to_value`] writes, so the document cannot drift.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = RunRequest)]
pub struct RunRequestDoc {
    pub flavor: Flavor,
    /// The data action to run (flavors `runs` and `execute`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_id: Option<String>,
    /// The Architect flow to run (flavor `workflow`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_version: Option<String>,
    /// Flat values (string, number, boolean or null), checked against the
    /// action's input contract by the worker.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub inputs: Map<String, Value>,
    /// Where the completion webhook goes (http or https).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(format = "uri")]
    pub webhook_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_name: Option<String>,
    /// The same key returns the same run and enqueues nothing new.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Strings carried to the webhook and the audit trail.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// For a secure data action (Genesys marks it `secure`): send its
    /// outputs in the webhook and keep its inputs and outputs for the
    /// record's retention. By default they are erased when the run ends and
    /// the webhook carries neither.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub include_secure_data: bool,
}

impl RunRequest {
    /// Starts a request in Rust. Nothing is checked until
    /// [`RunRequestBuilder::build`].
    pub fn builder(flavor: Flavor, target_id: impl Into<String>) -> RunRequestBuilder {
        let mut doc = Map::new();
        doc.insert("flavor".into(), Value::String(flavor.as_str().into()));
        let key = if flavor.targets_action() { "actionId" } else { "flowId" };
        doc.insert(key.into(), Value::String(target_id.into()));
        doc.insert("inputs".into(), Value::Object(Map::new()));
        RunRequestBuilder { doc }
    }

    /// Parses JSON bytes; a syntax error is one violation at the root.
    pub fn parse_json(bytes: &[u8], limits: &RequestLimits) -> Result<RunRequest, Violations> {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(value) => Self::parse(&value, limits),
            Err(e) => Err(Violations(vec![Violation::new(
                "",
                "invalid_json",
                format!("request body is not valid JSON: {e}"),
            )])),
        }
    }

    /// Checks a request document and returns every violation found.
    pub fn parse(doc: &Value, limits: &RequestLimits) -> Result<RunRequest, Violations> {
        let mut v = Violations::default();
        let Some(obj) = doc.as_object() else {
            return Err(Violations(vec![Violation::new("", "type", "a run request must be a JSON object")]));
        };
        for key in obj.keys() {
            if !FIELDS.contains(&key.as_str()) {
                v.push(Violation::new(
                    format!("/{}", pointer_token(key)),
                    "unknown_field",
                    format!("unknown field `{key}`; expected one of: {}", FIELDS.join(", ")),
                ));
            }
        }

        let flavor = match obj.get("flavor") {
            None | Some(Value::Null) => {
                v.push(Violation::new("/flavor", "required", "`flavor` is required (runs, execute or workflow)"));
                None
            }
            Some(Value::String(s)) => match s.parse::<Flavor>() {
                Ok(f) => Some(f),
                Err(msg) => {
                    v.push(Violation::new("/flavor", "enum", msg));
                    None
                }
            },
            Some(_) => {
                v.push(Violation::new("/flavor", "type", "`flavor` must be a string"));
                None
            }
        };

        let action_id = opt_string(obj, "actionId", &mut v);
        let flow_id = opt_string(obj, "flowId", &mut v);
        let flow_version = opt_string(obj, "flowVersion", &mut v);
        let target = flavor.and_then(|flavor| target_for(flavor, action_id, flow_id, flow_version, limits, &mut v));

        let inputs = match obj.get("inputs") {
            None | Some(Value::Null) => Some(Map::new()),
            Some(Value::Object(m)) => {
                let action_contract = flavor.is_none_or(Flavor::targets_action);
                v.extend(limits.check_inputs("/inputs", m, action_contract));
                Some(m.clone())
            }
            Some(_) => {
                v.push(Violation::new("/inputs", "type", "`inputs` must be a JSON object"));
                None
            }
        };

        let webhook_url = opt_string(obj, "webhookUrl", &mut v).and_then(|s| check_webhook_url(&s, limits, &mut v));

        let run_name = opt_string(obj, "runName", &mut v);
        if let Some(name) = &run_name {
            check_text("/runName", name, limits.max_run_name_chars, &mut v);
        }
        let idempotency_key = opt_string(obj, "idempotencyKey", &mut v);
        if let Some(key) = &idempotency_key {
            check_text("/idempotencyKey", key, limits.max_idempotency_key_chars, &mut v);
        }
        let metadata = check_metadata(obj.get("metadata"), limits, &mut v);
        let include_secure_data = match obj.get("includeSecureData") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                v.push(Violation::new("/includeSecureData", "type", "`includeSecureData` must be a boolean"));
                false
            }
        };

        match (flavor, target, inputs) {
            (Some(flavor), Some(target), Some(inputs)) if v.is_empty() => Ok(RunRequest {
                flavor,
                target,
                inputs,
                webhook_url,
                run_name,
                idempotency_key,
                metadata,
                include_secure_data,
            }),
            _ => Err(v),
        }
    }

    pub fn flavor(&self) -> Flavor {
        self.flavor
    }
    pub fn target(&self) -> &Target {
        &self.target
    }
    pub fn inputs(&self) -> &Map<String, Value> {
        &self.inputs
    }
    /// The request document as views show it: the webhook URL's query
    /// redacted.
    pub fn to_shown_doc(&self) -> RunRequestDoc {
        let mut doc = self.to_doc();
        doc.webhook_url = self.webhook_url.as_ref().map(redacted_url);
        doc
    }

    pub fn webhook_url(&self) -> Option<&Url> {
        self.webhook_url.as_ref()
    }
    pub fn run_name(&self) -> Option<&str> {
        self.run_name.as_deref()
    }
    pub fn idempotency_key(&self) -> Option<&str> {
        self.idempotency_key.as_deref()
    }
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }
    /// The run asked for a secure action's data to be kept and sent.
    pub fn include_secure_data(&self) -> bool {
        self.include_secure_data
    }

    /// This request with its inputs erased (a secure action's, once the run
    /// has ended).
    pub fn without_inputs(&self) -> RunRequest {
        RunRequest { inputs: Map::new(), ..self.clone() }
    }

    /// Checks this request again under `limits` (a worker's limits may be
    /// stricter than those of the producer that accepted it).
    pub fn revalidate(&self, limits: &RequestLimits) -> Result<(), Violations> {
        Self::parse(&self.to_value(), limits).map(|_| ())
    }

    /// The wire document as a typed value (what APIs render).
    pub fn to_doc(&self) -> RunRequestDoc {
        let (action_id, flow_id, flow_version) = match &self.target {
            Target::Action { id } => (Some(id.clone()), None, None),
            Target::Flow { id, version } => (None, Some(id.clone()), version.clone()),
        };
        RunRequestDoc {
            flavor: self.flavor,
            action_id,
            flow_id,
            flow_version,
            inputs: self.inputs.clone(),
            webhook_url: self.webhook_url.as_ref().map(Url::to_string),
            run_name: self.run_name.clone(),
            idempotency_key: self.idempotency_key.clone(),
            metadata: self.metadata.clone(),
            include_secure_data: self.include_secure_data,
        }
    }

    /// The wire document; `parse(to_value())` gives back an equal request.
    pub fn to_value(&self) -> Value {
        let mut doc = Map::new();
        doc.insert("flavor".into(), Value::String(self.flavor.as_str().into()));
        match &self.target {
            Target::Action { id } => {
                doc.insert("actionId".into(), Value::String(id.clone()));
            }
            Target::Flow { id, version } => {
                doc.insert("flowId".into(), Value::String(id.clone()));
                if let Some(version) = version {
                    doc.insert("flowVersion".into(), Value::String(version.clone()));
                }
            }
        }
        doc.insert("inputs".into(), Value::Object(self.inputs.clone()));
        if let Some(url) = &self.webhook_url {
            doc.insert("webhookUrl".into(), Value::String(url.to_string()));
        }
        if let Some(name) = &self.run_name {
            doc.insert("runName".into(), Value::String(name.clone()));
        }
        if let Some(key) = &self.idempotency_key {
            doc.insert("idempotencyKey".into(), Value::String(key.clone()));
        }
        if !self.metadata.is_empty() {
            let meta = self.metadata.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
            doc.insert("metadata".into(), Value::Object(meta));
        }
        if self.include_secure_data {
            doc.insert("includeSecureData".into(), Value::Bool(true));
        }
        Value::Object(doc)
    }
}

impl Serialize for RunRequest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(serializer)
    }
}

/// Builds a [`RunRequest`] in Rust; [`build`](Self::build) runs the same
/// checks as JSON parsing, so both doors accept exactly the same requests.
#[derive(Debug, Clone)]
pub struct RunRequestBuilder {
    doc: Map<String, Value>,
}

impl RunRequestBuilder {
    pub fn input(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        if let Some(Value::Object(inputs)) = self.doc.get_mut("inputs") {
            inputs.insert(name.into(), value.into());
        }
        self
    }
    pub fn inputs(mut self, inputs: Map<String, Value>) -> Self {
        self.doc.insert("inputs".into(), Value::Object(inputs));
        self
    }
    pub fn flow_version(mut self, version: impl Into<String>) -> Self {
        self.doc.insert("flowVersion".into(), Value::String(version.into()));
        self
    }
    pub fn webhook_url(mut self, url: impl Into<String>) -> Self {
        self.doc.insert("webhookUrl".into(), Value::String(url.into()));
        self
    }
    pub fn run_name(mut self, name: impl Into<String>) -> Self {
        self.doc.insert("runName".into(), Value::String(name.into()));
        self
    }
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.doc.insert("idempotencyKey".into(), Value::String(key.into()));
        self
    }
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let meta = self.doc.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(meta) = meta {
            meta.insert(key.into(), Value::String(value.into()));
        }
        self
    }
    /// See [`RunRequestDoc::include_secure_data`].
    pub fn include_secure_data(mut self, include: bool) -> Self {
        self.doc.insert("includeSecureData".into(), Value::Bool(include));
        self
    }
    pub fn build(self, limits: &RequestLimits) -> Result<RunRequest, Violations> {
        RunRequest::parse(&Value::Object(self.doc), limits)
    }
}

fn opt_string(obj: &Map<String, Value>, key: &str, v: &mut Violations) -> Option<String> {
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            v.push(Violation::new(format!("/{key}"), "type", format!("`{key}` must be a string")));
            None
        }
    }
}

fn target_for(
    flavor: Flavor,
    action_id: Option<String>,
    flow_id: Option<String>,
    flow_version: Option<String>,
    limits: &RequestLimits,
    v: &mut Violations,
) -> Option<Target> {
    if flavor.targets_action() {
        if flow_id.is_some() {
            v.push(Violation::new("/flowId", "not_allowed", format!("`flowId` is for flavor workflow, not {flavor}")));
        }
        if flow_version.is_some() {
            v.push(Violation::new(
                "/flowVersion",
                "not_allowed",
                format!("`flowVersion` is for flavor workflow, not {flavor}"),
            ));
        }
        match action_id {
            None => {
                v.push(Violation::new("/actionId", "required", format!("`actionId` is required for flavor {flavor}")));
                None
            }
            Some(id) => check_id("/actionId", &id, limits, v).then_some(Target::Action { id }),
        }
    } else {
        if action_id.is_some() {
            v.push(Violation::new(
                "/actionId",
                "not_allowed",
                "`actionId` is for flavors runs and execute, not workflow",
            ));
        }
        if let Some(version) = &flow_version {
            check_text("/flowVersion", version, limits.max_flow_version_chars, v);
        }
        match flow_id {
            None => {
                v.push(Violation::new("/flowId", "required", "`flowId` is required for flavor workflow"));
                None
            }
            Some(id) => check_id("/flowId", &id, limits, v).then_some(Target::Flow { id, version: flow_version }),
        }
    }
}

/// Ids end up as URL path segments, so whitespace, `/` and control
/// characters are refused even though the client percent-encodes segments:
/// an id like `a/../b` is a mistake, never a real Genesys id.
fn check_id(path: &str, id: &str, limits: &RequestLimits, v: &mut Violations) -> bool {
    let before = v.len();
    if id.is_empty() {
        v.push(Violation::new(path, "empty", "id must not be empty"));
    } else if id.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '?' | '#' | '%')) {
        v.push(Violation::new(
            path,
            "id_format",
            "id must not contain whitespace, control characters, `/`, `?`, `#` or `%`",
        ));
    }
    if id.chars().count() > limits.max_id_chars {
        v.push(Violation::new(path, "too_long", format!("id is longer than {} characters", limits.max_id_chars)));
    }
    v.len() == before
}

fn check_text(path: &str, text: &str, max_chars: usize, v: &mut Violations) {
    if text.is_empty() {
        v.push(Violation::new(path, "empty", "must not be empty"));
    }
    if text.chars().count() > max_chars {
        v.push(Violation::new(path, "too_long", format!("longer than {max_chars} characters")));
    }
    if text.chars().any(char::is_control) {
        v.push(Violation::new(path, "control_characters", "must not contain control characters"));
    }
}

fn check_webhook_url(raw: &str, limits: &RequestLimits, v: &mut Violations) -> Option<Url> {
    const PATH: &str = "/webhookUrl";
    if raw.len() > limits.max_url_chars {
        v.push(Violation::new(PATH, "too_long", format!("URL is longer than {} characters", limits.max_url_chars)));
        return None;
    }
    let url = match Url::parse(raw) {
        Ok(url) => url,
        Err(e) => {
            v.push(Violation::new(PATH, "invalid_url", format!("not a valid absolute URL: {e}")));
            return None;
        }
    };
    let before = v.len();
    if !matches!(url.scheme(), "http" | "https") {
        v.push(Violation::new(
            PATH,
            "url_scheme",
            format!("scheme `{}` is not allowed; use http or https", url.scheme()),
        ));
    }
    if url.host().is_none() {
        v.push(Violation::new(PATH, "invalid_url", "URL has no host"));
    }
    if !limits.webhook_private_addresses {
        let internal = match url.host() {
            Some(url::Host::Ipv4(ip)) => !crate::egress::is_public_v4(ip),
            Some(url::Host::Ipv6(ip)) => !crate::egress::is_public_v6(ip),
            Some(url::Host::Domain(d)) => {
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                d == "localhost" || d.ends_with(".localhost")
            }
            None => false,
        };
        if internal {
            v.push(Violation::new(
                PATH,
                "url_address",
                "webhooks go to public addresses only (loopback, private, link-local and reserved addresses are refused)",
            ));
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Credentials in a URL end up in logs and records; webhooks are
        // authenticated by their signature instead.
        v.push(Violation::new(
            PATH,
            "url_credentials",
            "URL must not carry credentials; receivers verify the webhook signature instead",
        ));
    }
    (v.len() == before).then_some(url)
}

fn check_metadata(value: Option<&Value>, limits: &RequestLimits, v: &mut Violations) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let obj = match value {
        None | Some(Value::Null) => return out,
        Some(Value::Object(obj)) => obj,
        Some(_) => {
            v.push(Violation::new("/metadata", "type", "`metadata` must be an object of strings"));
            return out;
        }
    };
    if obj.len() > limits.max_metadata_entries {
        v.push(Violation::new(
            "/metadata",
            "too_many_entries",
            format!("metadata has {} entries; the limit is {}", obj.len(), limits.max_metadata_entries),
        ));
    }
    for (key, value) in obj {
        let path = format!("/metadata/{}", pointer_token(key));
        if key.is_empty() || key.chars().count() > limits.max_metadata_chars {
            v.push(Violation::new(
                &path,
                "key_length",
                format!("metadata keys must have 1 to {} characters", limits.max_metadata_chars),
            ));
        }
        match value {
            Value::String(s) if s.chars().count() <= limits.max_metadata_chars => {
                out.insert(key.clone(), s.clone());
            }
            Value::String(_) => v.push(Violation::new(
                &path,
                "too_long",
                format!("longer than {} characters", limits.max_metadata_chars),
            )),
            _ => v.push(Violation::new(&path, "type", "metadata values must be strings")),
        }
    }
    out
}
