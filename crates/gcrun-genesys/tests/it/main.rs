//! The client against the emulator over real HTTP: every endpoint of every
//! flavor, every error class, Retry-After, the single-flight token, token
//! expiry mid-run and the one renewal on 401.
#![allow(clippy::unwrap_used)]

mod auth;
mod endpoints;
mod errors;
mod region;

use std::time::Duration;

use gcrun_emulator::{EmulatorConfig, Timings};
use gcrun_genesys::{ClientConfig, Credentials, Environment, GenesysClient};
use gcrun_test_support::{EmulatorHandle, spawn_emulator};

pub const CLIENT_ID: &str = "gcrun-demo-client";
pub const CLIENT_SECRET: &str = "gcrun-demo-secret";
pub const LOOKUP: &str = "custom_-_3c1f5a2e-7b4d-4c8e-9a61-2f0d8b7e5c41";
pub const ORDER_FLOW: &str = "7f3a9c1e-5b2d-4f8a-9e6c-1d3b5a7c9e20";

pub fn quick() -> EmulatorConfig {
    EmulatorConfig {
        timings: Timings {
            queued_for: Duration::from_millis(100),
            running_for: Duration::from_millis(250),
            execute_for: Duration::from_millis(5),
        },
        ..EmulatorConfig::default()
    }
}

/// The emulator and a client pointed at it the way users do it: the base
/// URL as `GENESYSCLOUD_REGION`.
pub async fn spawn(config: EmulatorConfig) -> (EmulatorHandle, GenesysClient) {
    spawn_with(config, CLIENT_SECRET, ClientConfig::default()).await
}

pub async fn spawn_with(config: EmulatorConfig, secret: &str, client: ClientConfig) -> (EmulatorHandle, GenesysClient) {
    let emu = spawn_emulator(config).await;
    let env = Environment::parse(&emu.base_url()).unwrap();
    let client = GenesysClient::new(env, Credentials::new(CLIENT_ID, secret), &client).unwrap();
    (emu, client)
}

pub fn lookup_inputs(customer: &str) -> serde_json::Map<String, serde_json::Value> {
    serde_json::json!({"customerId": customer, "channel": "chat"}).as_object().unwrap().clone()
}
