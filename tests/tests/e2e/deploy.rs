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

/// A located tool: its variable, else the first candidate on `PATH`.
fn tool(var: &str, name: &str) -> Option<String> {
    if let Ok(p) = std::env::var(var) {
        return Some(p);
    }
    let out = Command::new("sh").arg("-c").arg(format!("command -v {name}")).output().ok()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !path.is_empty()).then_some(path)
}

/// Every document of a YAML file, as JSON (PyYAML, which
/// kubernetes-validate brings).
fn yaml_docs(path: &Path) -> Vec<serde_json::Value> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, yaml, json; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "reading {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn kubernetes_validate(files: &[PathBuf]) -> (bool, String) {
    let bin = tool("GCRUN_KUBERNETES_VALIDATE", "kubernetes-validate")
        .expect("kubernetes-validate not found: scripts/test installs it from PyPI (or set GCRUN_KUBERNETES_VALIDATE)");
    let out = Command::new(bin).args(["--strict", "-k", "1.30.0"]).args(files).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn k8s() -> PathBuf {
    deploy().join("k8s")
}

fn base_docs() -> Vec<serde_json::Value> {
    let mut docs = Vec::new();
    for entry in std::fs::read_dir(k8s().join("base")).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() != "kustomization.yaml" {
            docs.extend(yaml_docs(&path));
        }
    }
    docs
}

fn find<'a>(docs: &'a [serde_json::Value], kind: &str, name: &str) -> &'a serde_json::Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

#[test]
fn the_kubernetes_manifests_validate_against_the_schemas_and_a_broken_one_does_not() {
    let files: Vec<PathBuf> = std::fs::read_dir(k8s().join("base"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != "kustomization.yaml")
        .collect();
    let (ok, text) = kubernetes_validate(&files);
    assert!(ok, "{text}");
    for kind in [
        "deployment/gcrun-worker",
        "deployment/gcrun-ingest",
        "poddisruptionbudget/gcrun-worker",
        "networkpolicy/gcrun-worker",
        "service/gcrun-ingest",
        "configmap/gcrun-config",
    ] {
        assert!(text.contains(&format!("passed for resource {kind}")), "{kind} was not validated:\n{text}");
    }
    // The validator is no rubber stamp: a wrong field type fails.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    let worker = std::fs::read_to_string(k8s().join("base/worker-pdb.yaml")).unwrap();
    std::fs::write(&broken, worker.replace("minAvailable: 1", "minAvailable: [1]")).unwrap();
    let (ok, text) = kubernetes_validate(&[broken]);
    assert!(!ok, "a broken manifest passed:\n{text}");

    // The overlays render with kustomize and validate too.
    if let Some(kubectl) = tool("GCRUN_KUBECTL", "kubectl") {
        // `overlay` rendered, checked against the schemas, as documents.
        let rendered = |overlay: &str| {
            let out = Command::new(&kubectl).args(["kustomize"]).arg(k8s().join("overlays").join(overlay)).output();
            let out = out.unwrap();
            assert!(out.status.success(), "{overlay}: {}", String::from_utf8_lossy(&out.stderr));
            let file = dir.path().join(format!("{overlay}.yaml"));
            std::fs::write(&file, &out.stdout).unwrap();
            let (ok, text) = kubernetes_validate(std::slice::from_ref(&file));
            assert!(ok, "{overlay}: {text}");
            yaml_docs(&file)
        };
        let docs = rendered("example");
        for d in &docs {
            if d["kind"] != "Namespace" {
                assert_eq!(d["metadata"]["namespace"], "gcrun", "{}", d["metadata"]["name"]);
            }
        }
        assert_eq!(find(&docs, "ScaledObject", "gcrun-worker")["spec"]["maxReplicaCount"], 8);
        assert_eq!(find(&docs, "ConfigMap", "gcrun-config")["data"]["GENESYSCLOUD_REGION"], "us-east-1");
        let image =
            find(&docs, "Deployment", "gcrun-worker")["spec"]["template"]["spec"]["containers"][0]["image"].clone();
        assert_eq!(image, "registry.example/platform/gcrun:0.1.0");

        // A second org's workers: their own namespace and tenant, scaled on
        // their own series, and no second ingest.
        let docs = rendered("tenant-acme");
        assert!(docs.iter().all(|d| d["kind"] == "Namespace" || d["metadata"]["namespace"] == "gcrun-acme"));
        assert!(!docs.iter().any(|d| d["metadata"]["name"].as_str().is_some_and(|n| n.contains("ingest"))));
        assert_eq!(find(&docs, "ConfigMap", "gcrun-config")["data"]["GCRUN_TENANT"], "acme");
        for t in find(&docs, "ScaledObject", "gcrun-worker")["spec"]["triggers"].as_array().unwrap() {
            assert!(t["metadata"]["query"].as_str().unwrap().contains("tenant=\"acme\""), "{t}");
        }
    } else {
        eprintln!("kubectl not found: the overlay was not rendered (the base was validated)");
    }
}

#[test]
fn the_custom_kinds_have_what_their_crds_require_and_point_at_what_exists() {
    let docs = base_docs();
    let exported = exported();
    // KEDA's ScaledObject: scaleTargetRef.name and triggers (type, metadata)
    // are required; each Prometheus trigger needs serverAddress, query and
    // threshold. The target and the metrics must exist.
    let so = find(&docs, "ScaledObject", "gcrun-worker");
    assert_eq!(so["apiVersion"], "keda.sh/v1alpha1");
    let target = so["spec"]["scaleTargetRef"]["name"].as_str().unwrap();
    find(&docs, "Deployment", target);
    let triggers = so["spec"]["triggers"].as_array().unwrap();
    assert!(!triggers.is_empty());
    for t in triggers {
        assert_eq!(t["type"], "prometheus");
        let m = &t["metadata"];
        assert!(m["serverAddress"].as_str().unwrap().starts_with("http"));
        assert!(m["threshold"].as_str().unwrap().parse::<f64>().is_ok(), "a threshold is a number in a string");
        let unknown: Vec<_> = mentioned(m["query"].as_str().unwrap()).difference(&exported).cloned().collect();
        assert!(unknown.is_empty(), "the scaler queries metrics no worker exports: {unknown:?}");
    }
    assert!(so["spec"]["minReplicaCount"].as_u64().unwrap() >= 1);
    // The Prometheus Operator's ServiceMonitor: selector and endpoints, and
    // they must name a Service and a port that exist.
    let sm = find(&docs, "ServiceMonitor", "gcrun-worker");
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    let service = find(&docs, "Service", "gcrun-worker-metrics");
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&service["metadata"]["labels"][k], v, "the ServiceMonitor selects the metrics Service");
    }
    let port = sm["spec"]["endpoints"][0]["port"].as_str().unwrap();
    assert!(service["spec"]["ports"].as_array().unwrap().iter().any(|p| p["name"] == port));
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
}

#[test]
fn the_worker_deployment_keeps_the_rules_a_worker_needs() {
    let docs = base_docs();
    let config = find(&docs, "ConfigMap", "gcrun-config");
    let shutdown: u64 = config["data"]["GCRUN_SHUTDOWN_TIMEOUT_SECS"].as_str().unwrap().parse().unwrap();
    // The default tenant's workers scale on the default tenant's series
    // (no tenant label), not every tenant's.
    for t in find(&docs, "ScaledObject", "gcrun-worker")["spec"]["triggers"].as_array().unwrap() {
        assert!(t["metadata"]["query"].as_str().unwrap().contains("tenant=\"\""), "{t}");
    }
    let worker = find(&docs, "Deployment", "gcrun-worker");
    let pod = &worker["spec"]["template"]["spec"];
    assert!(pod["terminationGracePeriodSeconds"].as_u64().unwrap() > shutdown, "grace outlasts the shutdown timeout");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    let env = c["env"].as_array().unwrap();
    let var = |name: &str| env.iter().find(|e| e["name"] == name).unwrap_or_else(|| panic!("no {name}")).clone();
    assert_eq!(var("HOSTNAME")["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name", "worker names carry the pod's");
    let mount = c["volumeMounts"][0]["mountPath"].as_str().unwrap();
    for file in ["GENESYSCLOUD_OAUTHCLIENT_SECRET_FILE", "GCRUN_WEBHOOK_SECRET_FILE"] {
        assert!(var(file)["value"].as_str().unwrap().starts_with(mount), "{file} is read from the mounted Secret");
    }
    assert!(env.iter().all(|e| e.get("value").is_none_or(|v| !v.as_str().unwrap_or_default().contains("CHANGE-ME"))));
    // Every setting named is one `gcrun worker` reads.
    let help = Command::new(gcrun_tests::gcrun_binary()).args(["worker", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let mut names: Vec<String> = config["data"].as_object().unwrap().keys().cloned().collect();
    names.extend(env.iter().map(|e| e["name"].as_str().unwrap().to_string()));
    for name in names {
        // The pod's name, and ingest's own address (the ConfigMap is shared).
        if name == "HOSTNAME" || name == "GCRUN_INGEST_LISTEN" {
            continue;
        }
        assert!(help.contains(&format!("[env: {name}")), "gcrun worker does not read {name}");
    }
}

#[test]
fn the_compose_file_wires_every_service_and_the_dockerfile_builds_what_the_tests_build() {
    let compose = yaml_docs(&deploy().join("compose.yaml")).remove(0);
    let services = compose["services"].as_object().unwrap();
    for name in ["redis", "emulator", "worker-1", "worker-2", "ingest"] {
        assert!(services.contains_key(name), "compose has {name}");
    }
    let redis = services["redis"]["command"].as_array().unwrap();
    assert!(redis.iter().any(|a| a == "--appendonly"), "Redis keeps an AOF");
    for name in ["emulator", "worker-1", "worker-2", "ingest"] {
        let s = &services[name];
        let sub = s["command"][0].as_str().unwrap();
        let out = Command::new(gcrun_tests::gcrun_binary()).args([sub, "--help"]).output().unwrap();
        assert!(out.status.success(), "`gcrun {sub}` exists");
        if name != "emulator" {
            assert_eq!(s["environment"]["REDIS_URL"], "redis://redis:6379/");
            assert_eq!(s["environment"]["GENESYSCLOUD_REGION"], "http://emulator:8089");
        }
    }
    assert!(
        services["ingest"]["environment"]["GCRUN_OPERATOR_TOKENS"].as_str().unwrap().split('=').nth(1).unwrap().len()
            >= 16
    );

    let dockerfile = std::fs::read_to_string(deploy().join("Dockerfile")).unwrap();
    // The image's binary is built with the profile and flags the demo uses.
    assert!(dockerfile.contains("cargo build --release --locked -p gcrun"));
    let demo = std::fs::read_to_string(deploy().join("../scripts/demo")).unwrap();
    assert!(demo.contains("--release --locked -p gcrun"));
    let runtime = dockerfile.rsplit("AS runtime").next().unwrap();
    assert!(runtime.contains("USER 65532:65532"), "the runtime image runs as non-root");
    assert!(runtime.contains("HEALTHCHECK") && runtime.contains("\"probe\""));
    assert!(runtime.contains("org.opencontainers.image.title"));
}

#[test]
fn gcrun_probe_is_a_health_check_that_can_fail() {
    let mut emulator = Command::new(gcrun_tests::gcrun_binary())
        .args(["emulator", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(emulator.stdout.take().unwrap()), &mut line).unwrap();
    let base = line.trim().rsplit(' ').next().unwrap().to_string();
    let probe = |url: &str| Command::new(gcrun_tests::gcrun_binary()).args(["probe", url]).output().unwrap();
    let up = probe(&format!("{base}/emulator/stats"));
    let missing = probe(&format!("{base}/no-such-page"));
    let _ = emulator.kill();
    let _ = emulator.wait();
    let closed = probe(&format!("{base}/emulator/stats"));
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    assert!(!missing.status.success(), "a 404 is not healthy");
    assert!(!closed.status.success(), "nothing listening is not healthy");
}

/// Runs `cmd`, returning whether it succeeded and what it printed.
fn output(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn the_image_builds_from_scratch_without_a_registry_and_its_filesystem_runs_gcrun() {
    let Some(buildah) = tool("GCRUN_BUILDAH", "buildah") else {
        panic!("buildah not found: install Debian's buildah package (scripts/test does)");
    };
    let dir = tempfile::tempdir().unwrap();
    let tag = "localhost/gcrun:test";
    let archive = dir.path().join("gcrun.oci.tar");
    let (ok, text) = output(
        Command::new(deploy().join("build-image-offline"))
            .arg(gcrun_tests::gcrun_binary())
            .arg(tag)
            .arg(&archive)
            .env("BUILDAH_ROOT", dir.path())
            .env(
                "PATH",
                format!("{}:{}", Path::new(&buildah).parent().unwrap().display(), std::env::var("PATH").unwrap()),
            ),
    );
    assert!(ok, "{text}");
    assert!(std::fs::metadata(&archive).unwrap().len() > 1_000_000, "an OCI archive with the binary in it");
    let b = |args: &[&str]| {
        let mut c = Command::new(&buildah);
        c.args(["--storage-driver", "vfs", "--root"]).arg(dir.path().join("root"));
        c.arg("--runroot").arg(dir.path().join("run")).args(args);
        c
    };
    let (ok, text) = output(&mut b(&["inspect", "--type", "image", tag]));
    assert!(ok, "{text}");
    let image: serde_json::Value = serde_json::from_str(&text[text.find('{').unwrap()..]).unwrap();
    let config = &image["Docker"]["config"];
    // What deploy/Dockerfile's runtime says, so both images run alike.
    let dockerfile = std::fs::read_to_string(deploy().join("Dockerfile")).unwrap();
    assert_eq!(config["User"], "65532:65532");
    assert!(dockerfile.contains("USER 65532:65532"));
    assert_eq!(config["Entrypoint"], serde_json::json!(["/usr/local/bin/gcrun"]));
    assert_eq!(config["Cmd"], serde_json::json!(["worker"]));
    assert_eq!(
        config["Healthcheck"]["Test"],
        serde_json::json!(["CMD", "/usr/local/bin/gcrun", "probe", "http://127.0.0.1:9464/healthz"])
    );
    assert!(dockerfile.contains(r#"CMD ["/usr/local/bin/gcrun", "probe", "http://127.0.0.1:9464/healthz"]"#));
    assert_eq!(config["Labels"]["org.opencontainers.image.title"], "gcrun");
    assert_eq!(config["Labels"]["org.opencontainers.image.version"], env!("CARGO_PKG_VERSION"));

    // No container runs here, but the image's own filesystem must run gcrun
    // as its user: every library is in it (chroot needs root).
    let is_root = output(Command::new("id").arg("-u")).1.trim() == "0";
    if !is_root {
        eprintln!("not root: the image's filesystem was not run with chroot");
        return;
    }
    let (ok, ctr) = output(&mut b(&["from", "--quiet", tag]));
    assert!(ok, "{ctr}");
    let ctr = ctr.trim().lines().last().unwrap().to_string();
    let (ok, mount) = output(&mut b(&["mount", &ctr]));
    assert!(ok, "{mount}");
    let root = mount.trim().lines().last().unwrap().to_string();
    let chrooted = |args: &[&str]| {
        output(Command::new("chroot").args(["--userspec=65532:65532", &root, "/usr/local/bin/gcrun"]).args(args))
    };
    let (ok, text) = chrooted(&["--version"]);
    assert!(ok && text.contains(env!("CARGO_PKG_VERSION")), "{text}");
    // Its health check, run from the image, tells a live server from a dead one.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
    });
    let (ok, text) = chrooted(&["probe", &format!("http://127.0.0.1:{port}/healthz")]);
    assert!(ok, "{text}");
    server.join().unwrap();
    let (ok, _) = chrooted(&["probe", &format!("http://127.0.0.1:{}/healthz", gcrun_harness::free_port())]);
    assert!(!ok, "a probe of nothing fails");
    let _ = output(&mut b(&["umount", &ctr]));
    let _ = output(&mut b(&["rm", &ctr]));
}
