//! `gcrun.toml`: every setting the environment takes, in a file.
//!
//! Keys are the environment variables' names (any case), so the README's
//! configuration table serves both:
//!
//! ```toml
//! REDIS_URL = "redis://redis.internal:6379/"
//! GENESYSCLOUD_REGION = "eu-west-1"
//! GCRUN_RATE_PER_MINUTE = 2000
//! GCRUN_WEBHOOK_ALLOWED_HOSTS = ["crm.example", "hooks.example"]
//! ```
//!
//! Precedence: a flag, then the environment, then the file, then the
//! built-in default. The file becomes the arguments' defaults, so clap
//! applies that order itself. The file is `--config PATH`, else
//! `$GCRUN_CONFIG`, else `./gcrun.toml` when it exists. Unknown keys are an
//! error, so a typo does not silently leave a default in place.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Command;

/// Which file to read, if any.
pub fn locate(args: &[String]) -> Option<PathBuf> {
    let mut iter = args.iter();
    while let Some(a) = iter.next() {
        if a == "--config" {
            return iter.next().map(PathBuf::from);
        }
        if let Some(p) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(p));
        }
    }
    if let Some(p) = std::env::var_os("GCRUN_CONFIG") {
        return Some(PathBuf::from(p));
    }
    let local = PathBuf::from("gcrun.toml");
    local.exists().then_some(local)
}

/// Reads the file into `ENV_NAME → value`.
pub fn load(path: &PathBuf) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let table: toml::Table = toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?;
    let mut out = BTreeMap::new();
    for (key, value) in table {
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .into_iter()
                .map(|i| match i {
                    toml::Value::String(s) => s,
                    toml::Value::Integer(n) => n.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    other => other.type_str().to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
            other => bail!(
                "{}: `{key}` must be a string, number, boolean or array, not {}",
                path.display(),
                other.type_str()
            ),
        };
        out.insert(key.to_ascii_uppercase(), text);
    }
    Ok(out)
}

/// Every environment name any argument of `cmd` (or its subcommands) reads.
fn env_names(cmd: &Command, out: &mut HashSet<String>) {
    for arg in cmd.get_arguments() {
        if let Some(env) = arg.get_env() {
            out.insert(env.to_string_lossy().into_owned());
        }
    }
    for sub in cmd.get_subcommands() {
        env_names(sub, out);
    }
}

/// Makes the file's values the defaults of the arguments that read the
/// same environment names.
pub fn apply(cmd: Command, values: &BTreeMap<String, String>) -> Result<Command> {
    let mut known = HashSet::new();
    env_names(&cmd, &mut known);
    known.insert("GCRUN_CONFIG".into());
    let unknown: Vec<&String> = values.keys().filter(|k| !known.contains(*k)).collect();
    if !unknown.is_empty() {
        let mut names: Vec<&String> = known.iter().collect();
        names.sort();
        bail!(
            "unknown setting(s) in the config file: {}; known: {}",
            unknown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
            names.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(with_defaults(cmd, values))
}

fn with_defaults(mut cmd: Command, values: &BTreeMap<String, String>) -> Command {
    let ids: Vec<(String, String)> = cmd
        .get_arguments()
        .filter_map(|a| {
            let env = a.get_env()?.to_string_lossy().into_owned();
            values.get(&env).map(|v| (a.get_id().to_string(), v.clone()))
        })
        .collect();
    for (id, value) in ids {
        // Parsed once per process; leaking gives clap the 'static str it wants.
        let value: &'static str = value.leak();
        // Secrets hide their environment value in --help; hide the file's too.
        cmd = cmd.mut_arg(id, |a| {
            let secret = a.is_hide_env_values_set();
            a.default_value(value).required(false).hide_default_value(secret)
        });
    }
    let subs: Vec<String> = cmd.get_subcommands().map(|s| s.get_name().to_string()).collect();
    for name in subs {
        cmd = cmd.mut_subcommand(name, |sub| with_defaults(sub, values));
    }
    cmd
}
