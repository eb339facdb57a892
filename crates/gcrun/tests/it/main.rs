//! The `gcrun` binary as users run it: real processes, real HTTP.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_gcrun");
const LOOKUP: &str = "custom_-_3c1f5a2e-7b4d-4c8e-9a61-2f0d8b7e5c41";

/// `gcrun emulator` on port 0; killed on drop.
struct EmulatorProcess {
    child: Child,
    url: String,
}

impl EmulatorProcess {
    fn start(extra: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(["emulator", "--listen", "127.0.0.1:0", "--queued-ms", "50", "--running-ms", "100"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().rsplit(' ').next().unwrap().to_string();
        assert!(url.starts_with("http://127.0.0.1:"), "{line}");
        Self { child, url }
    }

    fn gcrun(&self, args: &[&str], secret: &str) -> std::process::Output {
        Command::new(BIN)
            .args(args)
            .env("GENESYSCLOUD_REGION", &self.url)
            .env("GENESYSCLOUD_OAUTHCLIENT_ID", "gcrun-demo-client")
            .env("GENESYSCLOUD_OAUTHCLIENT_SECRET", secret)
            .env_remove("RUST_BACKTRACE")
            .output()
            .unwrap()
    }
}

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn gcrun_emulator_serves_the_reference_shapes() {
    let emu = EmulatorProcess::start(&[]);
    let http = reqwest::Client::new();
    let token: Value = http
        .post(format!("{}/oauth/token", emu.url))
        .basic_auth("gcrun-demo-client", Some("gcrun-demo-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(token["token_type"], "bearer");
    let r = http
        .get(format!("{}/api/v2/integrations/actions/{LOOKUP}?expand=contract", emu.url))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("inin-correlation-id"));
    let action: Value = r.json().await.unwrap();
    assert!(action["contract"]["input"]["inputSchema"].is_object());
}

#[test]
fn the_client_secret_can_come_from_a_file_and_not_from_both() {
    let emu = EmulatorProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret");
    std::fs::write(&file, "gcrun-demo-secret\n").unwrap();
    let run = |with_value: bool| {
        let mut cmd = Command::new(BIN);
        cmd.args(["actions", "list"])
            .env("GENESYSCLOUD_REGION", &emu.url)
            .env("GENESYSCLOUD_OAUTHCLIENT_ID", "gcrun-demo-client")
            .env("GENESYSCLOUD_OAUTHCLIENT_SECRET_FILE", &file)
            .env_remove("GENESYSCLOUD_OAUTHCLIENT_SECRET");
        if with_value {
            cmd.env("GENESYSCLOUD_OAUTHCLIENT_SECRET", "gcrun-demo-secret");
        }
        cmd.output().unwrap()
    };
    let out = run(false);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("4 action(s)"));
    let both = run(true);
    assert_eq!(both.status.code(), Some(2), "a secret given twice is a usage error");
    assert!(String::from_utf8_lossy(&both.stderr).contains("cannot be used with"));
}

#[test]
fn actions_list_and_run_now_work_against_the_emulator() {
    let emu = EmulatorProcess::start(&[]);
    let out = emu.gcrun(&["actions", "list"], "gcrun-demo-secret");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Lookup customer") && text.contains("4 action(s)"), "{text}");

    for (flavor, target, inputs) in [
        ("runs", LOOKUP, vec!["-i", "customerId=42", "-i", "channel=chat"]),
        ("execute", LOOKUP, vec!["-i", "customerId=42", "-i", "channel=chat"]),
        ("workflow", "7f3a9c1e-5b2d-4f8a-9e6c-1d3b5a7c9e20", vec!["-i", "Flow.OrderId=o-1"]),
    ] {
        let mut args = vec!["run-now", "--flavor", flavor, target];
        args.extend(inputs);
        let out = emu.gcrun(&args, "gcrun-demo-secret");
        assert!(out.status.success(), "{flavor}: {}", String::from_utf8_lossy(&out.stderr));
        let result: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(result["status"], "completed", "{flavor}: {result}");
        assert_eq!(result["flavor"], flavor);
    }
}

#[test]
fn run_now_rejects_contract_violations_before_submitting() {
    let emu = EmulatorProcess::start(&[]);
    let out = emu.gcrun(
        &["run-now", "--flavor", "runs", LOOKUP, "-j", "customerId=42", "-i", "channel=fax"],
        "gcrun-demo-secret",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/inputs/customerId") && err.contains("/inputs/channel"), "{err}");
}

#[test]
fn a_bad_secret_or_region_is_a_clear_one_line_error_without_the_secret() {
    let emu = EmulatorProcess::start(&[]);
    let out = emu.gcrun(&["actions", "list"], "hunter2-wrong");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid_client") && err.contains("secret invalid"), "{err}");
    assert!(!err.contains("hunter2-wrong"), "{err}");

    let out = Command::new(BIN)
        .args(["actions", "list"])
        .env("GENESYSCLOUD_REGION", "us-gov-1")
        .env("GENESYSCLOUD_OAUTHCLIENT_ID", "x")
        .env("GENESYSCLOUD_OAUTHCLIENT_SECRET", "y")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("us-gov-1") && err.contains("eu-west-1"), "{err}");
}

#[test]
fn emulator_flags_are_checked() {
    let out = Command::new(BIN)
        .args(["emulator", "--listen", "127.0.0.1:0", "--faults", "{\"rate429\": 2}"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("rate429"));
    let out = Command::new(BIN)
        .args(["emulator", "--listen", "127.0.0.1:0", "--fixtures", "/nonexistent.json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.json"));
}

#[test]
fn help_does_not_print_the_secret_from_the_environment() {
    let out = Command::new(BIN)
        .args(["actions", "list", "--help"])
        .env("GENESYSCLOUD_OAUTHCLIENT_SECRET", "very-secret-value")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("GENESYSCLOUD_OAUTHCLIENT_SECRET"));
    assert!(!text.contains("very-secret-value"), "{text}");
}

#[test]
fn the_demo_runs_end_to_end_and_accounts_for_every_run() {
    let out = Command::new(BIN)
        .args(["demo", "--runs", "45", "--timeout-secs", "120"])
        .env_remove("GCRUN_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("== gcrun demo summary"), "{stdout}");
    let line = stdout.lines().find(|l| l.starts_with("accounted for")).unwrap();
    assert!(line.trim_end().ends_with(" 45"), "{line}");
    assert!(stdout.contains("webhooks verified (unique)"), "{stdout}");
    assert!(stdout.contains("rejected: "), "the batch has invalid inputs, dead-lettered with reasons:\n{stdout}");
}

#[tokio::test]
async fn a_worker_process_serves_health_readiness_and_metrics_and_stops_on_sigterm() {
    let redis = gcrun_harness::RedisServer::start();
    let emu = EmulatorProcess::start(&[]);
    let mut child = Command::new(BIN)
        .args(["worker", "--admin-listen", "127.0.0.1:0"])
        .env("REDIS_URL", redis.url())
        .env("GENESYSCLOUD_REGION", &emu.url)
        .env("GENESYSCLOUD_OAUTHCLIENT_ID", "gcrun-demo-client")
        .env("GENESYSCLOUD_OAUTHCLIENT_SECRET", "gcrun-demo-secret")
        .env("GCRUN_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let admin = line.trim().rsplit(' ').next().unwrap().to_string();
    let http = reqwest::Client::new();
    assert_eq!(http.get(format!("{admin}/healthz")).send().await.unwrap().status(), 200);
    let ready = gcrun_harness::wait_until("readiness", std::time::Duration::from_secs(10), || {
        let req = http.get(format!("{admin}/readyz"));
        async move { req.send().await.ok().filter(|r| r.status() == 200) }
    })
    .await;
    assert_eq!(ready.status(), 200);
    let metrics = http.get(format!("{admin}/metrics")).send().await.unwrap().text().await.unwrap();
    for name in ["gcrun_queue_depth{queue=\"poll\",state=\"scheduled\"}", "gcrun_dead_letter_size"] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "graceful exit: {exit}");
}

#[test]
fn settings_come_from_gcrun_toml_with_the_environment_winning() {
    let emu = EmulatorProcess::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let path = dir.join("gcrun.toml");
    std::fs::write(
        &path,
        format!(
            "GENESYSCLOUD_REGION = \"{}\"\ngenesyscloud_oauthclient_id = \"gcrun-demo-client\"\nGENESYSCLOUD_OAUTHCLIENT_SECRET = \"gcrun-demo-secret\"\n",
            emu.url
        ),
    )
    .unwrap();
    let run = |envs: &[(&str, &str)], args: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(&dir).args(args).env_remove("RUST_BACKTRACE");
        for k in
            ["GENESYSCLOUD_REGION", "GENESYSCLOUD_OAUTHCLIENT_ID", "GENESYSCLOUD_OAUTHCLIENT_SECRET", "GCRUN_CONFIG"]
        {
            cmd.env_remove(k);
        }
        cmd.envs(envs.iter().copied());
        cmd.output().unwrap()
    };
    // ./gcrun.toml is read by default.
    let out = run(&[], &["actions", "list"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The environment beats the file...
    let out = run(&[("GENESYSCLOUD_OAUTHCLIENT_SECRET", "env-wins")], &["actions", "list"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid_client"));
    // ...and a flag beats both.
    let out = run(&[("GENESYSCLOUD_REGION", "mars-1")], &["actions", "list", "--region", &emu.url]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The secret from the file never shows in --help.
    let out = run(&[], &["actions", "list", "--help"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("gcrun-demo-secret"));
    // A typo is an error naming it.
    std::fs::write(dir.join("typo.toml"), "GCRUN_RATE_PER_MINTUE = 10\n").unwrap();
    let out = run(&[], &["--config", "typo.toml", "actions", "list"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("GCRUN_RATE_PER_MINTUE"));
}
