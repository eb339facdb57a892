//! Subcommands that talk to Genesys Cloud (or the emulator) directly.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use gcrun_genesys::types::ActionQuery;
use gcrun_genesys::{ClientConfig, Credentials, Environment, GenesysClient, RemotePhase, SubmitRequest};
use gcrun_model::{Flavor, InputSchema, Jitter, RequestLimits, RetrySchedule, RunId, RunRequest};
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
    client_secret: String,
}

impl GenesysArgs {
    fn client(&self) -> Result<GenesysClient> {
        let env = Environment::parse(&self.region)?;
        let creds = Credentials::new(self.client_id.clone(), self.client_secret.clone());
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

pub async fn run_now(args: RunNowArgs) -> Result<()> {
    let client = args.genesys.client()?;
    let inputs: Map<String, Value> = args.inputs.into_iter().chain(args.json_inputs).collect();
    let request = RunRequest::builder(args.flavor, &args.target)
        .inputs(inputs)
        .build(&RequestLimits::default())
        .map_err(|v| anyhow::anyhow!("invalid request: {v}"))?;
    if args.flavor.targets_action() {
        let action = client.get_action(&args.target).await?;
        if let Some(schema) = action.input_schema() {
            let violations = InputSchema::compile(schema)?.validate(request.inputs());
            if !violations.is_empty() {
                bail!("inputs do not match the action's contract: {violations}");
            }
        }
    }
    let api = client.run_api(args.flavor);
    let run_id = RunId::new().to_string();
    let started = Instant::now();
    let submitted = api
        .submit(SubmitRequest { target: request.target(), inputs: request.inputs(), run_name: &run_id })
        .await
        .context("submit")?;
    let schedule = RetrySchedule::default();
    let mut jitter = Jitter::from_entropy();
    let mut state = submitted;
    let mut attempt = 0;
    while !state.phase.is_terminal() {
        if started.elapsed() > Duration::from_secs(args.deadline_secs) {
            bail!("run {run_id} still {} after {} s", state.remote_status, args.deadline_secs);
        }
        tokio::time::sleep(schedule.delay(attempt, &mut jitter)).await;
        attempt += 1;
        let remote_id = state.remote_id.clone().context("remote run has no id to poll")?;
        state = match api.status(&remote_id).await {
            Ok(s) => s,
            Err(e) if e.is_retryable() => {
                eprintln!("poll failed, retrying: {e}");
                tokio::time::sleep(e.retry_after.unwrap_or_default()).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
    }
    let (status, detail) = match &state.phase {
        RemotePhase::Completed { outputs } => ("completed", json!({"outputs": outputs})),
        RemotePhase::Failed { code, message } => ("failed", json!({"error": {"code": code, "message": message}})),
        _ => ("unknown", Value::Null),
    };
    let mut out = json!({
        "runId": run_id,
        "remoteRunId": state.remote_id,
        "flavor": args.flavor,
        "status": status,
        "durationSeconds": started.elapsed().as_secs_f64(),
        "polls": attempt,
    });
    if let (Some(out), Value::Object(detail)) = (out.as_object_mut(), detail) {
        out.extend(detail);
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    if status != "completed" {
        std::process::exit(3);
    }
    Ok(())
}
