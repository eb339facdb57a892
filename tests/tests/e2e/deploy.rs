//! What `deploy/` ships, checked offline: the alert rules with promtool
//! (Debian's prometheus package), and every metric the rules and the
//! Grafana dashboard name exists in what a worker exports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn promtool() -> String {
    if let Ok(p) = std::env::var("GCRUN_PROMTOOL") {
        return p;
    }
    for c in ["/usr/bin/promtool", "/usr/local/bin/promtool"] {
        if Path::new(c).exists() {
            return c.into();
        }
    }
    panic!("promtool not found: install Debian's prometheus package (scripts/test does) or set GCRUN_PROMTOOL");
}

fn run(args: &[&str]) -> String {
    let out = Command::new(promtool()).args(args).current_dir(deploy().join("prometheus")).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

/// Every sample name a worker's /metrics can carry: counters with
/// `_total`, histograms with `_bucket`, `_sum` and `_count`.
fn exported() -> BTreeSet<String> {
    use gcrun_worker::metrics::{Metrics, QueueLabels, QueueNameLabels};
    // A family shows once it has a child: give each one, as traffic would.
    let m = Metrics::new();
    m.run_ended("runs", "completed", Some(1.0));
    m.api("submit", "2xx");
    m.retry("poll", "timeout");
    m.webhook("delivered");
    m.limiter_wait("rate");
    m.queue_depth.get_or_create(&QueueLabels { queue: "submit".into(), state: "ready".into() }).set(0);
    m.queue_oldest_ready.get_or_create(&QueueNameLabels { queue: "submit".into() }).set(0.0);
    let text = m.encode();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else { continue };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else { continue };
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_string());
            }
        }
    }
    names
}

/// The `gcrun_*` names a text mentions.
fn mentioned(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("gcrun_") {
        let tail = &rest[i..];
        let end =
            tail.find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')).unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    assert!(run(&["check", "rules", "alerts.yaml"]).contains("SUCCESS: 7 rules found"));
    assert!(run(&["test", "rules", "alerts.test.yaml"]).contains("SUCCESS"));
}

#[test]
fn the_rules_and_the_grafana_dashboard_name_only_metrics_a_worker_exports() {
    let exported = exported();
    assert!(exported.contains("gcrun_runs_total") && exported.contains("gcrun_limiter_slots_held"), "{exported:?}");
    let rules = std::fs::read_to_string(deploy().join("prometheus/alerts.yaml")).unwrap();
    let used = mentioned(&rules);
    assert!(used.len() >= 7, "{used:?}");
    let unknown: Vec<_> = used.difference(&exported).collect();
    assert!(unknown.is_empty(), "alerts.yaml names metrics no worker exports: {unknown:?}");

    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(deploy().join("grafana/gcrun.json")).unwrap()).unwrap();
    let panels = dash["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    let mut exprs = String::new();
    for p in panels {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "panel ids are unique");
        assert_eq!(p["datasource"]["uid"], "${datasource}", "every panel reads the chosen Prometheus");
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{} has no query", p["title"]);
        for t in targets {
            exprs.push_str(t["expr"].as_str().unwrap());
            exprs.push('\n');
        }
    }
    let used = mentioned(&exprs);
    let unknown: Vec<_> = used.difference(&exported).collect();
    assert!(unknown.is_empty(), "the dashboard names metrics no worker exports: {unknown:?}");
    // The signals the alerts watch are all on the dashboard too.
    for m in [
        "gcrun_dead_letter_size",
        "gcrun_api_requests_total",
        "gcrun_queue_oldest_ready_seconds",
        "gcrun_webhooks_total",
    ] {
        assert!(used.contains(m), "the dashboard shows {m}");
    }
}
