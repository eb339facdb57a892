use gcrun_model::InputSchema;
use serde_json::{Map, Value, json};

fn inputs(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

fn contract() -> InputSchema {
    InputSchema::compile(&json!({
        "$schema": "http://json-schema.org/draft-04/schema#",
        "title": "Lookup", "type": "object", "additionalProperties": false,
        "required": ["customerId", "channel"],
        "properties": {
            "customerId": {"type": "string", "maxLength": 8},
            "channel": {"type": "string", "enum": ["voice", "chat", "email"]},
            "amount": {"type": "number", "minimum": 0},
            "attempts": {"type": "integer"},
            "vip": {"type": "boolean"}
        }
    }))
    .unwrap()
}

#[test]
fn a_conforming_input_has_no_violations() {
    let v = contract()
        .validate(&inputs(json!({"customerId": "42", "channel": "chat", "amount": 1.5, "attempts": 2, "vip": false})));
    assert!(v.is_empty(), "{v}");
}

#[test]
fn every_violation_is_reported_with_its_path_and_keyword() {
    let v = contract().validate(&inputs(json!({
        "customerId": "123456789", "amount": -1, "attempts": 1.5, "vip": "yes", "extra": 1
    })));
    let mut got: Vec<_> = v.iter().map(|v| (v.path.as_str(), v.code.as_str())).collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("/inputs/amount", "minimum"),
            ("/inputs/attempts", "type"),
            ("/inputs/channel", "required"),
            ("/inputs/customerId", "maxLength"),
            ("/inputs/extra", "additionalProperties"),
            ("/inputs/vip", "type"),
        ]
    );
}

#[test]
fn enum_violations_name_the_allowed_values() {
    let v = contract().validate(&inputs(json!({"customerId": "1", "channel": "fax"})));
    assert_eq!(v.len(), 1);
    assert_eq!((v.0[0].path.as_str(), v.0[0].code.as_str()), ("/inputs/channel", "enum"));
    assert!(v.0[0].message.contains("voice"), "{}", v.0[0].message);
}

#[test]
fn schemas_without_a_draft_are_read_as_draft_04() {
    // Draft-04 `exclusiveMaximum` is a boolean; later drafts reject that form.
    let s = InputSchema::compile(&json!({
        "type": "object", "properties": {"n": {"type": "number", "maximum": 5, "exclusiveMaximum": true}}
    }))
    .unwrap();
    assert!(s.validate(&inputs(json!({"n": 4}))).is_empty());
    assert_eq!(s.validate(&inputs(json!({"n": 5}))).0[0].code, "exclusiveMaximum");
}

#[test]
fn an_unusable_schema_is_a_schema_error_not_a_violation() {
    let err = InputSchema::compile(&json!({"type": "no-such-type"})).unwrap_err();
    assert!(err.to_string().contains("not a usable JSON Schema"), "{err}");
}

#[test]
fn remote_refs_are_never_fetched() {
    let err = InputSchema::compile(&json!({"$ref": "http://127.0.0.1:9/evil.json"}));
    assert!(err.is_err());
}
