//! The emulator over real HTTP: every endpoint's shape (field names, status
//! codes, headers), limits, faults and statistics.
#![allow(clippy::unwrap_used)]

mod actions;
mod errors;
mod faults;
mod flavors;
mod limits;
mod oauth;

use gcrun_emulator::EmulatorConfig;
use gcrun_harness::{EmulatorHandle, spawn_emulator};
use serde_json::Value;

pub use gcrun_emulator::fixtures::demo::{CALLBACK, CLIENT_ID, CLIENT_SECRET, LOOKUP, ORDER_FLOW};

/// A running emulator and a plain HTTP client holding a valid token.
#[derive(Debug)]
pub struct App {
    pub emu: EmulatorHandle,
    pub http: reqwest::Client,
    pub token: String,
}

impl App {
    pub async fn start(config: EmulatorConfig) -> Self {
        let emu = spawn_emulator(config).await;
        let http = reqwest::Client::new();
        let mut app = App { emu, http, token: String::new() };
        app.token = app.fetch_token().await;
        app
    }

    pub async fn demo() -> Self {
        Self::start(EmulatorConfig::default()).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.emu.base_url())
    }

    pub async fn fetch_token(&self) -> String {
        let r = self
            .http
            .post(self.url("/oauth/token"))
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string()
    }

    pub async fn get(&self, path: &str) -> Reply {
        Reply::from(self.http.get(self.url(path)).bearer_auth(&self.token).send().await.unwrap()).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        Reply::from(self.http.post(self.url(path)).bearer_auth(&self.token).json(&body).send().await.unwrap()).await
    }
}

/// A response read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub async fn from(r: reqwest::Response) -> Self {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let bytes = r.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
        Reply { status, headers, body }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the answer is a Genesys ErrorBody with `status` and `code`,
    /// whose `contextId` is the `ININ-Correlation-ID` header.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{:?}", self.body);
        assert_eq!(self.body["status"], status, "{:?}", self.body);
        assert_eq!(self.body["code"], code, "{:?}", self.body);
        assert!(self.body["message"].as_str().is_some_and(|m| !m.is_empty()), "{:?}", self.body);
        let cid = self.header("inin-correlation-id").expect("correlation header");
        assert_eq!(self.body["contextId"], cid);
    }
}

pub fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort();
    k
}
