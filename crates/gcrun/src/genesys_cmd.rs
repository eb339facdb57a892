//! Subcommands that talk to Genesys Cloud (or the emulator) directly.

use std::time::Duration;

use anyhow::Result;
use clap::{Args, Subcommand};
use gcrun_genesys::types::ActionQuery;
use gcrun_genesys::{ClientConfig, Credentials, Environment, GenesysClient};
use gcrun_model::{Flavor, RequestLimits, RunRequest};
use gcrun_store::RunRecord;
use gcrun_worker::WorkerConfig;
use serde_json::{Map, Value, json};

/// Where Genesys Cloud is and who we are, from the standard variables.
#[derive(Args, Debug)]
pub struct GenesysArgs {
    /// Region code (eu-west-1), domain (mypurecloud.ie) or base URL
    /// (http://127.0.0.1:8089 for the emulator).
    #[arg(long, env = "GENESYSCLOUD_REGION")]
    region: String,
    #[arg(long, env = "GENESYSCLOUD_OAUTHCLIENT_ID")]
    client_id: String,
    /// The client secret. Read from the environment; never printed.
    #[arg(long, env = "GENESYSCLOUD_OAUTHCLIENT_SECRET", hide_env_values = true)]
    client_secret: Option<String>,
    /// A file holding the client secret (a mounted Secret).
    #[arg(long, env = "GENESYSCLOUD_OAUTHCLIENT_SECRET_FILE", conflicts_with = "client_secret")]
    client_secret_file: Option<std::path::PathBuf>,
}

impl GenesysArgs {
    fn client(&self) -> Result<GenesysClient> {
        let env = Environment::parse(&self.region)?;
        let creds = match (&self.client_secret, &self.client_secret_file) {
            (_, Some(path)) => {
                Credentials::from_source(self.client_id.clone(), gcrun_genesys::SecretSource::file(path)?)
            }
            (Some(secret), None) => Credentials::new(self.client_id.clone(), secret.clone()),
            (None, None) => {
                anyhow::bail!("GENESYSCLOUD_OAUTHCLIENT_SECRET or GENESYSCLOUD_OAUTHCLIENT_SECRET_FILE is required")
            }
        };
        Ok(GenesysClient::new(env, creds, &ClientConfig::default())?)
    }
}

#[derive(Subcommand, Debug)]
pub enum ActionsCommand {
    /// List actions (all pages).
    List {
        #[command(flatten)]
        genesys: GenesysArgs,
        #[arg(long)]
        category: Option<String>,
        #[arg(long)]
        name: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one action with its contract, as JSON.
    Get {
        #[command(flatten)]
        genesys: GenesysArgs,
        action_id: String,
    },
}

pub async fn actions(cmd: ActionsCommand) -> Result<()> {
    match cmd {
        ActionsCommand::List { genesys, category, name, json } => {
            let client = genesys.client()?;
            let query = ActionQuery { category, name, page_size: Some(100) };
            let all = client.list_all_actions(&query).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                println!("{:<48} {:<12} NAME", "ID", "CATEGORY");
                for a in &all {
                    println!(
                        "{:<48} {:<12} {}",
                        a.id,
                        a.category.as_deref().unwrap_or("-"),
                        a.name.as_deref().unwrap_or("-")
                    );
                }
                println!("{} action(s)", all.len());
            }
        }
        ActionsCommand::Get { genesys, action_id } => {
            let action = genesys.client()?.get_action(&action_id).await?;
            println!("{}", serde_json::to_string_pretty(&action)?);
        }
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct RunNowArgs {
    #[command(flatten)]
    genesys: GenesysArgs,
    /// runs, execute or workflow.
    #[arg(long, default_value = "execute")]
    flavor: Flavor,
    /// The action (runs, execute) or flow (workflow) id.
    target: String,
    /// A string input, NAME=VALUE.
    #[arg(long = "input", short = 'i', value_parser = parse_input)]
    inputs: Vec<(String, Value)>,
    /// A typed input, NAME=JSON (42, 3.5, true, null, "text").
    #[arg(long = "json-input", short = 'j', value_parser = parse_json_input)]
    json_inputs: Vec<(String, Value)>,
    /// Give up polling after this many seconds.
    #[arg(long, default_value_t = 120)]
    deadline_secs: u64,
}

fn parse_input(s: &str) -> Result<(String, Value), String> {
    let (name, raw) = s.split_once('=').ok_or_else(|| format!("`{s}` is not NAME=VALUE"))?;
    Ok((name.to_string(), Value::String(raw.to_string())))
}

fn parse_json_input(s: &str) -> Result<(String, Value), String> {
    let (name, raw) = s.split_once('=').ok_or_else(|| format!("`{s}` is not NAME=JSON"))?;
    let value = serde_json::from_str::<Value>(raw).map_err(|e| format!("`{raw}` is not JSON: {e}"))?;
    Ok((name.to_string(), value))
}

/// `gcrun run-now`: the worker's own steps (contract check, submit, polls
/// with backoff), driven in this process with the record in memory.
pub async fn run_now(args: RunNowArgs) -> Result<()> {
    let client = args.genesys.client()?;
    let inputs: Map<String, Value> = args.inputs.into_iter().chain(args.json_inputs).collect();
    let request = RunRequest::builder(args.flavor, &args.target)
        .inputs(inputs)
        .build(&RequestLimits::default())
        .map_err(|v| anyhow::anyhow!("invalid request: {v}"))?;
    let policy = WorkerConfig { default_webhook_url: None, ..WorkerConfig::default() };
    let deadline = Duration::from_secs(args.deadline_secs);
    let progress = |rec: &RunRecord| {
        if let Some(t) = rec.transitions.last() {
            eprintln!("{}: {}", t.to, t.cause);
        }
    };
    let rec = gcrun_worker::local::run_now(client, policy, &request, deadline, progress).await?;
    let mut out = json!({
        "runId": rec.id,
        "remoteRunId": rec.remote_id,
        "flavor": rec.flavor,
        "status": rec.status,
        "durationSeconds": rec.duration_ms().map(|ms| ms as f64 / 1000.0),
        "polls": rec.poll_attempts,
        "transitions": gcrun_store::RunView::from(&rec).transitions,
    });
    match (&rec.outputs, &rec.error) {
        (Some(outputs), _) if rec.status.is_success() => out["outputs"] = outputs.clone(),
        (_, Some(error)) => out["error"] = serde_json::to_value(error)?,
        _ => {}
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    if !rec.status.is_success() {
        if let Some(reason) = &rec.last_error {
            eprintln!("{}: {reason}", rec.status);
        }
        std::process::exit(3);
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    genesys: GenesysArgs,
    /// The action id.
    action_id: String,
    /// A string input, NAME=VALUE.
    #[arg(long = "input", short = 'i', value_parser = parse_input)]
    inputs: Vec<(String, Value)>,
    /// A typed input, NAME=JSON (42, 3.5, true, null, "text").
    #[arg(long = "json-input", short = 'j', value_parser = parse_json_input)]
    json_inputs: Vec<(String, Value)>,
    /// Print the verdict as JSON.
    #[arg(long)]
    json: bool,
}

/// `gcrun check`: the door's checks and the action's live input contract,
/// with every violation printed; nothing runs. Exit 0 valid, 4 invalid.
/// A secure action's violations are shown without their messages, which
/// may quote the input.
pub async fn check(args: CheckArgs) -> Result<()> {
    let inputs: Map<String, Value> = args.inputs.into_iter().chain(args.json_inputs).collect();
    let mut violations = match RunRequest::builder(Flavor::Execute, &args.action_id)
        .inputs(inputs.clone())
        .build(&RequestLimits::default())
    {
        Ok(_) => gcrun_model::Violations::default(),
        Err(v) => v,
    };
    let action = args.genesys.client()?.get_action(&args.action_id).await?;
    let secure = action.secure.unwrap_or(false);
    let contract = match action.input_schema() {
        None => "none declared",
        Some(schema) => {
            let schema = gcrun_model::InputSchema::compile(schema)
                .map_err(|e| anyhow::anyhow!("the action's contract cannot be used: {e}"))?;
            for v in schema.validate(&inputs).iter() {
                violations.push(v.clone());
            }
            "checked"
        }
    };
    let shown: Vec<Value> = violations
        .iter()
        .map(|v| {
            let mut j = json!({"path": v.path, "code": v.code});
            if !secure {
                j["message"] = json!(v.message);
            }
            j
        })
        .collect();
    if args.json {
        println!(
            "{}",
            json!({"actionId": args.action_id, "valid": shown.is_empty(), "secure": secure, "contract": contract, "violations": shown})
        );
    } else if shown.is_empty() {
        println!("valid: {} inputs pass the door and the action's contract ({contract})", inputs.len());
    } else {
        for v in &shown {
            println!(
                "{}  {}  {}",
                v["path"].as_str().unwrap_or_default(),
                v["code"].as_str().unwrap_or_default(),
                v.get("message").and_then(Value::as_str).unwrap_or("(secure action: message withheld)")
            );
        }
    }
    if !shown.is_empty() {
        return Err(crate::ops_cmd::exit(crate::ops_cmd::INVALID, format!("{} violation(s)", shown.len())));
    }
    Ok(())
}
