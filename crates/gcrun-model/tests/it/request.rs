use gcrun_model::{Flavor, RequestLimits, RunRequest, Target};
use serde_json::json;

fn parse(doc: serde_json::Value) -> Result<RunRequest, gcrun_model::Violations> {
    RunRequest::parse(&doc, &RequestLimits::default())
}

fn codes(doc: serde_json::Value) -> Vec<(String, String)> {
    let v = parse(doc).unwrap_err();
    v.into_iter().map(|v| (v.path, v.code)).collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(p, c)| (p.to_string(), c.to_string())).collect()
}

#[test]
fn a_valid_request_round_trips_through_its_wire_form() {
    let doc = json!({
        "flavor": "runs", "actionId": "custom_-_3f1e", "inputs": {"customerId": "42", "amount": 3.5, "vip": true, "note": null},
        "webhookUrl": "https://crm.example/hooks", "runName": "nightly-42", "idempotencyKey": "k-1",
        "metadata": {"batch": "nightly"}
    });
    let req = parse(doc.clone()).unwrap();
    assert_eq!(req.flavor(), Flavor::Runs);
    assert_eq!(req.target(), &Target::Action { id: "custom_-_3f1e".into() });
    assert_eq!(req.webhook_url().unwrap().as_str(), "https://crm.example/hooks");
    assert_eq!(req.idempotency_key(), Some("k-1"));
    assert_eq!(req.metadata()["batch"], "nightly");
    assert_eq!(req.to_value(), doc);
    assert_eq!(parse(req.to_value()).unwrap(), req);
}

#[test]
fn workflow_requests_name_a_flow_and_may_pin_a_version() {
    // Flow inputs are named `Flow.<Variable>`: the data-action name rules do
    // not apply, flatness and sizes do.
    let req = parse(json!({"flavor": "workflow", "flowId": "5b0c", "inputs": {"Flow.x": "1", "orgId": "o"}})).unwrap();
    assert_eq!(req.inputs().len(), 2);
    let v = parse(json!({"flavor": "workflow", "flowId": "5b0c", "inputs": {"Flow.x": {"a": 1}}})).unwrap_err();
    assert_eq!(v.into_iter().map(|v| v.code).collect::<Vec<_>>(), vec!["flat_value"]);
    let req = parse(json!({"flavor": "workflow", "flowId": "5b0c", "flowVersion": "3.0"})).unwrap();
    assert_eq!(req.target(), &Target::Flow { id: "5b0c".into(), version: Some("3.0".into()) });
    assert!(req.inputs().is_empty());
}

#[test]
fn every_shape_problem_is_reported_at_once() {
    let got = codes(json!({
        "flavor": "runs", "flowId": "x", "inputs": [], "webhookUrl": 7, "runName": "", "metadata": {"a": 1}, "webhookURL": "typo"
    }));
    assert_eq!(
        got,
        pairs(&[
            ("/webhookURL", "unknown_field"),
            ("/flowId", "not_allowed"),
            ("/actionId", "required"),
            ("/inputs", "type"),
            ("/webhookUrl", "type"),
            ("/runName", "empty"),
            ("/metadata/a", "type"),
        ])
    );
}

#[test]
fn flavor_is_required_and_must_be_known() {
    assert_eq!(codes(json!({"actionId": "a"})), pairs(&[("/flavor", "required")]));
    let v = parse(json!({"flavor": "async", "actionId": "a"})).unwrap_err();
    assert_eq!(v.0[0].code, "enum");
    assert!(v.0[0].message.contains("runs, execute, workflow"), "{}", v.0[0].message);
    assert_eq!(codes(json!({"flavor": 1})), pairs(&[("/flavor", "type")]));
}

#[test]
fn the_document_must_be_an_object_of_valid_json() {
    assert_eq!(codes(json!([1])), pairs(&[("", "type")]));
    let v = RunRequest::parse_json(b"{\"flavor\": ", &RequestLimits::default()).unwrap_err();
    assert_eq!(v.0[0].code, "invalid_json");
}

#[test]
fn ids_that_would_bend_a_url_path_are_refused() {
    assert_eq!(codes(json!({"flavor": "execute", "actionId": "a/../b"})), pairs(&[("/actionId", "id_format")]));
    assert_eq!(codes(json!({"flavor": "execute", "actionId": ""})), pairs(&[("/actionId", "empty")]));
    assert_eq!(codes(json!({"flavor": "execute", "actionId": "x".repeat(257)})), pairs(&[("/actionId", "too_long")]));
    assert_eq!(
        codes(json!({"flavor": "workflow", "flowId": "f", "actionId": "a"})),
        pairs(&[("/actionId", "not_allowed")])
    );
}

#[test]
fn contract_rules_flat_values_names_and_reserved_words() {
    let got = codes(json!({"flavor": "runs", "actionId": "a", "inputs": {
        "nested": {"a": 1}, "list": [1], "1st": "x", "bad name": "y", "orgId": "o", "rawRequest": "r", "ok_name-2": "fine"
    }}));
    let mut got = got;
    got.sort();
    assert_eq!(
        got,
        pairs(&[
            ("/inputs/1st", "name_pattern"),
            ("/inputs/bad name", "name_pattern"),
            ("/inputs/list", "flat_value"),
            ("/inputs/nested", "flat_value"),
            ("/inputs/orgId", "reserved_name"),
            ("/inputs/rawRequest", "reserved_name"),
        ])
    );
}

#[test]
fn contract_rules_can_be_switched_off() {
    let limits = RequestLimits {
        require_flat_inputs: false,
        enforce_name_pattern: false,
        reserved_names: vec![],
        ..RequestLimits::default()
    };
    let doc = json!({"flavor": "runs", "actionId": "a", "inputs": {"nested": {"a": 1}, "1st": "x", "orgId": "o"}});
    assert!(RunRequest::parse(&doc, &limits).is_ok());
}

#[test]
fn string_length_counts_characters_not_bytes() {
    let limits = RequestLimits::default();
    let ok = "é".repeat(10_000); // 20,000 bytes, 10,000 characters
    assert!(RunRequest::parse(&json!({"flavor": "runs", "actionId": "a", "inputs": {"s": ok}}), &limits).is_ok());
    let v =
        RunRequest::parse(&json!({"flavor": "runs", "actionId": "a", "inputs": {"s": "x".repeat(10_001)}}), &limits)
            .unwrap_err();
    assert_eq!(v.0.len(), 1);
    assert_eq!((v.0[0].path.as_str(), v.0[0].code.as_str()), ("/inputs/s", "string_too_long"));
    assert!(v.0[0].message.contains("10001") && v.0[0].message.contains("10000"), "{}", v.0[0].message);
}

#[test]
fn total_payload_size_is_limited() {
    let limits = RequestLimits { max_payload_bytes: 100, max_string_chars: 1_000, ..RequestLimits::default() };
    let ok = json!({"flavor": "runs", "actionId": "a", "inputs": {"a": "x".repeat(80)}});
    assert!(RunRequest::parse(&ok, &limits).is_ok());
    let big = json!({"flavor": "runs", "actionId": "a", "inputs": {"a": "x".repeat(60), "b": "y".repeat(60)}});
    let v = RunRequest::parse(&big, &limits).unwrap_err();
    assert_eq!((v.0[0].path.as_str(), v.0[0].code.as_str()), ("/inputs", "payload_too_large"));
}

#[test]
fn webhook_urls_must_be_http_without_credentials() {
    let base = |url: &str| json!({"flavor": "execute", "actionId": "a", "webhookUrl": url});
    assert_eq!(codes(base("ftp://x.example/h")), pairs(&[("/webhookUrl", "url_scheme")]));
    assert_eq!(codes(base("not a url")), pairs(&[("/webhookUrl", "invalid_url")]));
    assert_eq!(codes(base("https://user:pw@x.example/h")), pairs(&[("/webhookUrl", "url_credentials")]));
    assert!(parse(base("https://hooks.example/h")).is_ok());
}

#[test]
fn webhook_urls_naming_internal_addresses_are_refused_unless_allowed() {
    let base = |url: &str| json!({"flavor": "execute", "actionId": "a", "webhookUrl": url});
    for internal in [
        "http://127.0.0.1:9000/h",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.7/h",
        "http://[::1]/h",
        "http://[fd00:ec2::254]/h",
        "http://localhost/h",
        "http://api.localhost./h",
    ] {
        assert_eq!(codes(base(internal)), pairs(&[("/webhookUrl", "url_address")]), "{internal}");
        let allowed = RequestLimits { webhook_private_addresses: true, ..RequestLimits::default() };
        assert!(RunRequest::parse(&base(internal), &allowed).is_ok(), "{internal} with the opt-in");
    }
    // A name is not resolved at the door (no I/O); the worker checks the
    // addresses it resolves to.
    assert!(parse(base("http://internal.example/h")).is_ok());
}

#[test]
fn metadata_is_bounded() {
    let limits = RequestLimits { max_metadata_entries: 2, max_metadata_chars: 4, ..RequestLimits::default() };
    let doc = json!({"flavor": "execute", "actionId": "a", "metadata": {"a": "1", "b": "12345", "toolong": "1"}});
    let v = RunRequest::parse(&doc, &limits).unwrap_err();
    let got: Vec<_> = v.into_iter().map(|v| (v.path, v.code)).collect();
    assert_eq!(
        got,
        pairs(&[("/metadata", "too_many_entries"), ("/metadata/b", "too_long"), ("/metadata/toolong", "key_length")])
    );
}

#[test]
fn the_flow_version_length_is_a_configurable_limit() {
    let doc = json!({"flavor": "workflow", "flowId": "f", "flowVersion": "1.2.3"});
    let tight = RequestLimits { max_flow_version_chars: 3, ..RequestLimits::default() };
    let v = RunRequest::parse(&doc, &tight).unwrap_err();
    assert_eq!(v.into_iter().map(|v| (v.path, v.code)).collect::<Vec<_>>(), pairs(&[("/flowVersion", "too_long")]));
    let long = json!({"flavor": "workflow", "flowId": "f", "flowVersion": "9".repeat(100)});
    let roomy = RequestLimits { max_flow_version_chars: 128, ..RequestLimits::default() };
    assert!(RunRequest::parse(&long, &roomy).is_ok());
    assert!(RunRequest::parse(&long, &RequestLimits::default()).is_err(), "64 by default");
}

#[test]
fn the_builder_applies_the_same_rules() {
    let limits = RequestLimits::default();
    let req = RunRequest::builder(Flavor::Execute, "custom_-_1")
        .input("customerId", "42")
        .input("amount", 10)
        .run_name("r")
        .metadata("source", "crm")
        .build(&limits)
        .unwrap();
    assert_eq!(req.inputs()["amount"], json!(10));
    let v = RunRequest::builder(Flavor::Execute, "custom_-_1").input("orgId", "x").build(&limits).unwrap_err();
    assert!(v.contains("/inputs/orgId", "reserved_name"));
}

#[test]
fn pointer_paths_escape_slashes_and_tildes() {
    let v = parse(json!({"flavor": "runs", "actionId": "a", "inputs": {"a/b~c": "x"}})).unwrap_err();
    assert_eq!(v.0[0].path, "/inputs/a~1b~0c");
}

#[test]
fn the_documented_shape_is_the_parsed_shape() {
    use gcrun_model::RunRequestDoc;
    use gcrun_model::request::FIELDS;
    let full = json!({
        "flavor": "workflow", "flowId": "f", "flowVersion": "2.0", "inputs": {"Flow.X": "1"},
        "webhookUrl": "https://hooks.example.com/x", "runName": "n", "idempotencyKey": "k", "metadata": {"a": "b"},
        "includeSecureData": true
    });
    let request = RunRequest::parse(&full, &RequestLimits::default()).unwrap();
    let doc = request.to_doc();
    // What the parser writes back decodes into the documented type (which
    // refuses unknown fields), and the two agree field by field.
    let decoded: RunRequestDoc = serde_json::from_value(request.to_value()).unwrap();
    assert_eq!(decoded, doc);
    assert_eq!(serde_json::to_value(&doc).unwrap(), request.to_value());
    let action = json!({"flavor": "runs", "actionId": "a", "inputs": {}});
    let named: Vec<String> = serde_json::to_value(RunRequestDoc {
        action_id: Some("a".into()),
        ..serde_json::from_value::<RunRequestDoc>(action).unwrap()
    })
    .unwrap()
    .as_object()
    .unwrap()
    .keys()
    .cloned()
    .collect();
    for key in named {
        assert!(FIELDS.contains(&key.as_str()), "{key} is documented but not parsed");
    }
    // Every parsed field is documented: the full example used all of them but `actionId`.
    let mut documented: Vec<&str> = full.as_object().unwrap().keys().map(String::as_str).collect();
    documented.push("actionId");
    documented.sort_unstable();
    let mut parsed = FIELDS.to_vec();
    parsed.sort_unstable();
    assert_eq!(documented, parsed);
}

#[test]
fn include_secure_data_is_a_boolean_and_debug_shows_input_names_not_values() {
    let v = parse(json!({"flavor": "runs", "actionId": "a", "includeSecureData": "yes"})).unwrap_err();
    assert_eq!((v.0[0].path.as_str(), v.0[0].code.as_str()), ("/includeSecureData", "type"));
    let r = parse(json!({"flavor": "runs", "actionId": "a", "inputs": {"card": "4111-s3cret"}})).unwrap();
    assert!(!r.include_secure_data());
    let shown = format!("{r:?}");
    assert!(shown.contains("card") && !shown.contains("4111-s3cret"), "{shown}");
    assert!(r.without_inputs().inputs().is_empty());
}
