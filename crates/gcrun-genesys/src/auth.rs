//! OAuth client credentials and the token every task shares.
//!
//! One [`TokenCache`] per client serves all tasks of a process. It is
//! single-flight: however many tasks find the token missing or stale at
//! once, exactly one request goes to the token endpoint and the others wait
//! for its answer. The token is renewed before it expires (60 s early, as
//! the Go SDK does, or half its lifetime for short-lived tokens), and
//! thrown away on a 401 so the next caller fetches a fresh one.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gcrun_model::ErrorClass;
use gcrun_secrets::SecretSource;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};
use url::Url;

use crate::error::{ApiError, ApiErrorKind, OAuthErrorBody};

/// An OAuth client id and secret. `Debug` shows the id and hides the
/// secret; nothing in gcrun prints the secret.
#[derive(Clone)]
pub struct Credentials {
    pub client_id: String,
    client_secret: SecretSource,
}

impl Credentials {
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        Self::from_source(client_id, SecretSource::value(client_secret.into()))
    }

    /// The secret from a source: a file (a mounted Kubernetes Secret) is
    /// read again at each token request once it changed, so a rotated
    /// secret is used from the next token on, with no restart.
    pub fn from_source(client_id: impl Into<String>, client_secret: SecretSource) -> Self {
        Self { client_id: client_id.into(), client_secret }
    }

    /// The secret as it is now.
    pub fn client_secret(&self) -> Result<SecretString, gcrun_secrets::SecretError> {
        self.client_secret.current()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("client_id", &self.client_id).field("client_secret", &"[redacted]").finish()
    }
}

/// An access token handed to a caller, with the generation it belongs to,
/// so a caller that saw a 401 can throw away exactly that token and not a
/// newer one another task already fetched.
#[derive(Clone)]
pub struct AccessToken {
    pub(crate) value: SecretString,
    pub(crate) generation: u64,
}

impl AccessToken {
    pub fn expose(&self) -> &str {
        self.value.expose_secret()
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken").field("generation", &self.generation).finish_non_exhaustive()
    }
}

struct Cached {
    token: AccessToken,
    refresh_at: Instant,
    expires_at: Instant,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// The shared, single-flight token cache.
pub struct TokenCache {
    http: reqwest::Client,
    token_url: Url,
    credentials: Credentials,
    current: RwLock<Option<Cached>>,
    /// Held while a token request is in flight: the single-flight gate.
    refreshing: Mutex<()>,
    generation: AtomicU64,
    fetched: AtomicU64,
    /// The last failed fetch: callers that waited at the gate while it
    /// failed get its error instead of each asking again in turn.
    /// With the secret it was made with: once a rotated secret is in the
    /// file, the failure is not answered from memory any more.
    last_failure: std::sync::Mutex<Option<(Instant, ApiError, Option<SecretString>)>>,
}

/// How long a failed token fetch is answered from memory.
const FAILURE_MEMORY: Duration = Duration::from_secs(1);

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("token_url", &self.token_url.as_str())
            .field("credentials", &self.credentials)
            .field("tokens_fetched", &self.tokens_fetched())
            .finish_non_exhaustive()
    }
}

/// Renew this long before expiry (the Go SDK's 60 s), but never more than
/// half the token's lifetime, so a 5-minute or test token is still used.
fn refresh_margin(lifetime: Duration) -> Duration {
    Duration::from_secs(60).min(lifetime / 2)
}

impl TokenCache {
    pub fn new(http: reqwest::Client, login_base: &Url, credentials: Credentials) -> Arc<Self> {
        let token_url = login_base.join("oauth/token").unwrap_or_else(|_| login_base.clone());
        Arc::new(Self {
            http,
            token_url,
            credentials,
            current: RwLock::new(None),
            refreshing: Mutex::new(()),
            generation: AtomicU64::new(0),
            fetched: AtomicU64::new(0),
            last_failure: std::sync::Mutex::new(None),
        })
    }

    /// How many tokens this cache has fetched (for tests and metrics).
    pub fn tokens_fetched(&self) -> u64 {
        self.fetched.load(Ordering::Relaxed)
    }

    /// A token that is not due for renewal, fetching one if needed.
    pub async fn get(&self) -> Result<AccessToken, ApiError> {
        if let Some(token) = self.fresh().await {
            return Ok(token);
        }
        let _flight = self.refreshing.lock().await;
        // Another task may have fetched while this one waited at the gate.
        if let Some(token) = self.fresh().await {
            return Ok(token);
        }
        let secret_now = self.credentials.client_secret().ok();
        let same_secret = |a: &Option<SecretString>, b: &Option<SecretString>| match (a, b) {
            (Some(a), Some(b)) => a.expose_secret() == b.expose_secret(),
            (None, None) => true,
            _ => false,
        };
        let recent_failure = self
            .last_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|(at, _, secret)| at.elapsed() < FAILURE_MEMORY && same_secret(secret, &secret_now))
            .map(|(_, e, _)| e.clone());
        let fetched = match recent_failure {
            Some(err) => Err(err),
            None => {
                let result = self.fetch().await;
                if let Err(err) = &result {
                    *self.last_failure.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some((Instant::now(), err.clone(), secret_now));
                }
                result
            }
        };
        match fetched {
            Ok(token) => Ok(token),
            Err(err) => {
                // A failed early renewal is no reason to stop while the old
                // token is still valid.
                let current = self.current.read().await;
                match current.as_ref() {
                    Some(c) if Instant::now() < c.expires_at && err.is_retryable() => {
                        tracing::warn!(error = %err, "token renewal failed; using the current token until it expires");
                        Ok(c.token.clone())
                    }
                    _ => Err(err),
                }
            }
        }
    }

    /// Forgets `token` after the API refused it with a 401, unless a newer
    /// token has already replaced it.
    pub async fn invalidate(&self, token: &AccessToken) {
        let mut current = self.current.write().await;
        if current.as_ref().is_some_and(|c| c.token.generation == token.generation) {
            *current = None;
        }
    }

    async fn fresh(&self) -> Option<AccessToken> {
        let current = self.current.read().await;
        current.as_ref().filter(|c| Instant::now() < c.refresh_at).map(|c| c.token.clone())
    }

    async fn fetch(&self) -> Result<AccessToken, ApiError> {
        let endpoint = "POST /oauth/token".to_string();
        let sent_at = Instant::now();
        self.fetched.fetch_add(1, Ordering::Relaxed);
        // Read at each token request: a rotated secret file is used from the
        // next token on. Unreadable (mid-rotation, say): retried.
        let secret = self.credentials.client_secret().map_err(|e| {
            auth_error(ApiError::bare(
                ApiErrorKind::Transport,
                endpoint.clone(),
                format!("the client secret could not be read: {e}"),
                ErrorClass::Retryable { after: None },
            ))
        })?;
        let response = self
            .http
            .post(self.token_url.clone())
            .basic_auth(&self.credentials.client_id, Some(secret.expose_secret()))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .map_err(|e| auth_error(ApiError::transport(endpoint.clone(), &e)))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| auth_error(ApiError::transport(endpoint.clone(), &e)))?;
        if !(200..300).contains(&status) {
            let mut err = ApiError::from_response(endpoint, status, &headers, &body);
            err.kind = ApiErrorKind::Auth;
            err.oauth = serde_json::from_slice::<OAuthErrorBody>(&body).ok().filter(|o| o.error.is_some());
            if err.oauth.is_some() {
                err.raw_body = None;
            }
            // Bad credentials do not get better by asking again.
            if matches!(status, 400 | 401 | 403) {
                err.class = ErrorClass::Fatal;
            }
            return Err(err);
        }
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| auth_error(ApiError::decode(endpoint, status, &headers, b"<token response withheld>", &e)))?;
        let lifetime = Duration::from_secs(parsed.expires_in.unwrap_or(86_400));
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let token = AccessToken { value: SecretString::from(parsed.access_token), generation };
        let cached = Cached {
            token: token.clone(),
            refresh_at: sent_at + lifetime - refresh_margin(lifetime),
            expires_at: sent_at + lifetime,
        };
        *self.current.write().await = Some(cached);
        tracing::debug!(generation, expires_in_s = lifetime.as_secs(), "fetched a new access token");
        Ok(token)
    }
}

fn auth_error(mut err: ApiError) -> ApiError {
    err.kind = ApiErrorKind::Auth;
    err
}
