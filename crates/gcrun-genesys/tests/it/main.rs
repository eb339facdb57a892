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
use gcrun_harness::{EmulatorHandle, spawn_emulator};

pub use gcrun_emulator::fixtures::demo::{CLIENT_ID, CLIENT_SECRET, LOOKUP, ORDER_FLOW};

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
