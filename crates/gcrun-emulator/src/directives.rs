//! Input-driven outcomes: a test asks for a failure by what it sends.
//!
//! Any string input that starts with `emulator:` carries `;`-separated
//! directives, for example `"note": "emulator:transient=2;slow=1500"`:
//!
//! | directive         | effect                                                        |
//! |-------------------|---------------------------------------------------------------|
//! | `fail`            | the run fails (`runs`: error `action_failed`; `execute`: 500 `ACTION.REMOTE_ENDPOINT`; `workflow`: `FAILED`) |
//! | `fail=CODE`       | as `fail`, with that error code (`execute`: an `ACTION.*` code becomes the detail code, any other goes into the message) |
//! | `transient=N`     | the first N polls (`runs`) or calls (`execute`) answer a transient error |
//! | `transient=N/CODE`| as above with `compute_unavailable` (default) or `timeout`    |
//! | `slow=MS`         | the run takes MS milliseconds (running time, or execute latency) |
//! | `never`           | the run never finishes (for deadline tests)                   |
//!
//! Unknown directives are ignored, so real text that happens to start with
//! `emulator:` cannot break a run.

use std::time::Duration;

use serde_json::{Map, Value};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directives {
    pub fail: Option<String>,
    pub transient: Option<(u32, String)>,
    pub slow: Option<Duration>,
    pub never: bool,
}

impl Directives {
    pub fn from_inputs(inputs: &Map<String, Value>) -> Self {
        let mut d = Directives::default();
        for value in inputs.values() {
            let Some(rest) = value.as_str().and_then(|s| s.strip_prefix("emulator:")) else { continue };
            for item in rest.split(';').map(str::trim) {
                let (name, arg) = item.split_once('=').map_or((item, None), |(n, a)| (n, Some(a)));
                match (name, arg) {
                    ("fail", None) => d.fail = Some(String::new()),
                    ("fail", Some(code)) => d.fail = Some(code.to_string()),
                    ("transient", Some(arg)) => {
                        let (n, code) = arg.split_once('/').unwrap_or((arg, "compute_unavailable"));
                        if let Ok(n) = n.parse() {
                            d.transient = Some((n, code.to_string()));
                        }
                    }
                    ("slow", Some(ms)) => {
                        if let Ok(ms) = ms.parse() {
                            d.slow = Some(Duration::from_millis(ms));
                        }
                    }
                    ("never", None) => d.never = true,
                    _ => {}
                }
            }
        }
        d
    }
}
