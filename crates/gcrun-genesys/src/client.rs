//! [`GenesysClient`]: every Genesys Cloud call gcrun makes.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use url::Url;

use crate::auth::{Credentials, TokenCache};
use crate::error::{ApiError, ApiErrorKind};
use crate::region::Environment;
use crate::types::{
    Action, ActionPage, ActionQuery, ActionRun, ActionRunRequest, FlowExecution, FlowLaunchRequest, FlowLaunchResponse,
};

/// HTTP settings. Defaults suit a worker: synchronous data actions may take
/// up to 60 s on Genesys's side, so the request timeout sits above that.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(65),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 64,
        }
    }
}

/// A Genesys Cloud client. Cheap to clone: clones share the connection
/// pool and the token.
#[derive(Debug, Clone)]
pub struct GenesysClient {
    http: reqwest::Client,
    env: Environment,
    tokens: Arc<TokenCache>,
}

impl GenesysClient {
    /// Builds the HTTP client (rustls, gzip, kept-alive pool, a
    /// `gcrun/<version>` user agent) and the token cache.
    pub fn new(env: Environment, credentials: Credentials, config: &ClientConfig) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("gcrun/", env!("CARGO_PKG_VERSION")))
            .gzip(true)
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .build()
            .map_err(|e| {
                ApiError::bare(
                    ApiErrorKind::Transport,
                    "build HTTP client".into(),
                    e.to_string(),
                    gcrun_model::ErrorClass::Fatal,
                )
            })?;
        let tokens = TokenCache::new(http.clone(), &env.login, credentials);
        Ok(Self { http, env, tokens })
    }

    pub fn environment(&self) -> &Environment {
        &self.env
    }

    /// The shared token cache (for tests and metrics).
    pub fn tokens(&self) -> &TokenCache {
        &self.tokens
    }

    /// `GET /api/v2/integrations/actions/{actionId}?expand=contract`.
    pub async fn get_action(&self, action_id: &str) -> Result<Action, ApiError> {
        let url = self.url(&["api", "v2", "integrations", "actions", action_id]);
        self.call(
            Method::GET,
            url,
            &[("expand", "contract")],
            None::<&()>,
            "GET /api/v2/integrations/actions/{actionId}",
        )
        .await
    }

    /// One page of `GET /api/v2/integrations/actions` (pages count from 1).
    pub async fn list_actions(&self, query: &ActionQuery, page_number: u32) -> Result<ActionPage, ApiError> {
        let url = self.url(&["api", "v2", "integrations", "actions"]);
        let page_size = query.page_size.unwrap_or(25).to_string();
        let page_number = page_number.to_string();
        let mut params: Vec<(&str, &str)> = vec![("pageSize", &page_size), ("pageNumber", &page_number)];
        if let Some(category) = &query.category {
            params.push(("category", category));
        }
        if let Some(name) = &query.name {
            params.push(("name", name));
        }
        self.call(Method::GET, url, &params, None::<&()>, "GET /api/v2/integrations/actions").await
    }

    /// Every action matching `query`, following `pageCount`.
    pub async fn list_all_actions(&self, query: &ActionQuery) -> Result<Vec<Action>, ApiError> {
        let mut all = Vec::new();
        let mut page = 1;
        loop {
            let got = self.list_actions(query, page).await?;
            let count = got.page_count.unwrap_or(1);
            let empty = got.entities.is_empty();
            all.extend(got.entities);
            if empty || page >= count {
                return Ok(all);
            }
            page += 1;
        }
    }

    /// `POST /api/v2/actions/runs` (the spec's asynchronous contract).
    pub async fn submit_action_run(&self, body: &ActionRunRequest) -> Result<ActionRun, ApiError> {
        let url = self.url(&["api", "v2", "actions", "runs"]);
        self.call(Method::POST, url, &[], Some(body), "POST /api/v2/actions/runs").await
    }

    /// `GET /api/v2/actions/runs/{runId}`.
    pub async fn get_action_run(&self, run_id: &str) -> Result<ActionRun, ApiError> {
        let url = self.url(&["api", "v2", "actions", "runs", run_id]);
        self.call(Method::GET, url, &[], None::<&()>, "GET /api/v2/actions/runs/{runId}").await
    }

    /// `POST /api/v2/integrations/actions/{actionId}/execute`: the real,
    /// synchronous data-action call. The answer is the action's output.
    pub async fn execute_action(
        &self,
        action_id: &str,
        inputs: &Map<String, Value>,
        flatten: bool,
    ) -> Result<Value, ApiError> {
        let url = self.url(&["api", "v2", "integrations", "actions", action_id, "execute"]);
        let query: &[(&str, &str)] = if flatten { &[("flatten", "true")] } else { &[] };
        self.call(Method::POST, url, query, Some(inputs), "POST /api/v2/integrations/actions/{actionId}/execute").await
    }

    /// `POST /api/v2/flows/executions`: launches an Architect workflow.
    pub async fn launch_flow(&self, body: &FlowLaunchRequest) -> Result<FlowLaunchResponse, ApiError> {
        let url = self.url(&["api", "v2", "flows", "executions"]);
        self.call(Method::POST, url, &[], Some(body), "POST /api/v2/flows/executions").await
    }

    /// `GET /api/v2/flows/executions/{flowExecutionId}`.
    pub async fn get_flow_execution(&self, execution_id: &str) -> Result<FlowExecution, ApiError> {
        let url = self.url(&["api", "v2", "flows", "executions", execution_id]);
        self.call(Method::GET, url, &[], None::<&()>, "GET /api/v2/flows/executions/{flowExecutionId}").await
    }

    /// Joins percent-encoded path segments onto the API base, so an id can
    /// never change which endpoint is called.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.env.api.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// One authenticated call: bearer token from the shared cache; on a 401
    /// the token is dropped, a fresh one fetched and the call retried once.
    async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        query: &[(&str, &str)],
        body: Option<&B>,
        endpoint: &'static str,
    ) -> Result<T, ApiError> {
        let name = || endpoint.to_string();
        let mut renewed = false;
        loop {
            let token = self.tokens.get().await?;
            let mut request = self.http.request(method.clone(), url.clone()).bearer_auth(token.expose());
            if !query.is_empty() {
                request = request.query(query);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request.send().await.map_err(|e| ApiError::transport(name(), &e))?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let bytes = response.bytes().await.map_err(|e| ApiError::transport(name(), &e))?;
            if status == 401 && !renewed {
                tracing::info!(endpoint, "access token refused (401); renewing once");
                self.tokens.invalidate(&token).await;
                renewed = true;
                continue;
            }
            if !(200..300).contains(&status) {
                let err = ApiError::from_response(name(), status, &headers, &bytes);
                tracing::debug!(error = %err, "Genesys Cloud call failed");
                return Err(err);
            }
            let parse_from: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
            return serde_json::from_slice(parse_from)
                .map_err(|e| ApiError::decode(name(), status, &headers, &bytes, &e));
        }
    }
}
