//! Operator sign-in: tokens, signed session cookies, CSRF tokens.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, header};
use hmac::{KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};

use crate::App;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

pub const COOKIE: &str = "gcrun_ops";

/// One operator: a name (recorded in what they requeue) and a token
/// (never shown).
#[derive(Clone)]
pub struct OperatorToken {
    pub name: String,
    pub token: SecretString,
}

impl std::fmt::Debug for OperatorToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorToken").field("name", &self.name).field("token", &"[redacted]").finish()
    }
}

impl OperatorToken {
    /// `name=token`, as `GCRUN_OPERATOR_TOKENS` lists them.
    pub fn parse(entry: &str) -> Result<Self, String> {
        let (name, token) = entry.trim().split_once('=').ok_or("an operator token is written name=token")?;
        let (name, token) = (name.trim(), token.trim());
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.') {
            return Err("an operator's name is letters, digits, '.', '_' or '-'".into());
        }
        if token.len() < 16 {
            return Err(format!("operator {name}'s token is shorter than 16 characters"));
        }
        Ok(Self { name: name.to_string(), token: SecretString::from(token.to_string()) })
    }
}

/// The operators of a `GCRUN_OPERATOR_TOKENS` value: comma-separated
/// `name=token`, each name once.
pub fn parse_operators(text: &str) -> Result<Vec<OperatorToken>, String> {
    let ops =
        text.split(',').filter(|t| !t.trim().is_empty()).map(OperatorToken::parse).collect::<Result<Vec<_>, _>>()?;
    let mut names: Vec<&str> = ops.iter().map(|o| o.name.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!("operator {} is named twice", w[0]));
    }
    Ok(ops)
}

/// Byte-wise comparison whose time depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn same_secret(a: &SecretString, b: &SecretString) -> bool {
    constant_time_eq(a.expose_secret().as_bytes(), b.expose_secret().as_bytes())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sign(token: &SecretString, message: &str) -> String {
    let mut mac = HmacSha256::new_from_slice(token.expose_secret().as_bytes()).expect("HMAC takes keys of any length");
    mac.update(message.as_bytes());
    hex(&mac.finalize().into_bytes())
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Who is signed in, and the session's CSRF token.
#[derive(Debug, Clone)]
pub struct Session {
    pub operator: String,
    pub csrf: String,
    /// Signed in with a bearer token rather than a cookie (no CSRF risk).
    pub bearer: bool,
}

/// What a token given at sign-in is.
pub enum Verdict {
    Operator(OperatorToken),
    /// An upstream client's token: not for the dashboard.
    Client,
    Unknown,
}

impl App {
    /// The operators now: from the file when there is one (a file that no
    /// longer parses admits nobody, and says why in the log).
    fn operators(&self) -> std::sync::Arc<Vec<OperatorToken>> {
        match &self.config.operators_from {
            Some(file) => file.current().unwrap_or_else(|e| {
                tracing::error!(error = %e, "the operators' file cannot be used");
                std::sync::Arc::new(Vec::new())
            }),
            None => std::sync::Arc::new(self.config.operators.clone()),
        }
    }

    /// Checks a token against every operator's (each compared, so the
    /// time taken does not tell which matched).
    pub fn verdict(&self, given: &str) -> Verdict {
        let mut found = None;
        for op in self.operators().iter() {
            if constant_time_eq(op.token.expose_secret().as_bytes(), given.as_bytes()) {
                found = Some(op.clone());
            }
        }
        let client = self
            .config
            .client_tokens
            .iter()
            .fold(false, |acc, t| acc | constant_time_eq(t.expose_secret().as_bytes(), given.as_bytes()));
        match found {
            Some(op) => Verdict::Operator(op),
            None if client => Verdict::Client,
            None => Verdict::Unknown,
        }
    }

    /// The cookie value for `op`, valid for the session's lifetime.
    pub fn session_cookie(&self, op: &OperatorToken) -> String {
        let expires = now_ms() + self.config.session_ttl.as_millis() as u64;
        let body = format!("{}.{expires}", op.name);
        let value = format!("{body}.{}", sign(&op.token, &body));
        let secure = if self.config.secure_cookie { "; Secure" } else { "" };
        format!(
            "{COOKIE}={value}; Path=/ops; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            self.config.session_ttl.as_secs()
        )
    }

    pub fn clear_cookie(&self) -> String {
        format!("{COOKIE}=; Path=/ops; HttpOnly; SameSite=Strict; Max-Age=0")
    }

    /// The session a request carries: a valid, unexpired cookie, or an
    /// operator's bearer token.
    pub fn session(&self, headers: &HeaderMap) -> Option<Session> {
        if let Some(token) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
        {
            return match self.verdict(token) {
                Verdict::Operator(op) => Some(Session { operator: op.name, csrf: String::new(), bearer: true }),
                _ => None,
            };
        }
        let value = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .find(|(k, _)| *k == COOKIE)
            .map(|(_, v)| v.to_string())?;
        let (body, mac) = value.rsplit_once('.')?;
        let (name, expires) = body.rsplit_once('.')?;
        let operators = self.operators();
        let op = operators.iter().find(|o| o.name == name)?;
        if !constant_time_eq(sign(&op.token, body).as_bytes(), mac.as_bytes()) {
            return None;
        }
        if expires.parse::<u64>().ok()? <= now_ms() {
            return None;
        }
        Some(Session { operator: op.name.clone(), csrf: sign(&op.token, &format!("csrf|{value}")), bearer: false })
    }
}

impl Session {
    /// Whether a form's CSRF token is this session's.
    pub fn csrf_ok(&self, given: Option<&str>) -> bool {
        self.bearer || given.is_some_and(|g| constant_time_eq(g.as_bytes(), self.csrf.as_bytes()))
    }
}
