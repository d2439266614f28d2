//! The subset of JSON Schema that `openapi.json` uses, enough to validate real values against
//! its schemas, and a check that it refuses what it should.

use serde::Serialize;
use serde_json::{json, Value};

use super::fixtures::instance;
use super::{doc, resolve, schema};
use crate::model::InstanceStatus;

fn type_matches(ty: &str, v: &Value) -> bool {
    match ty {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        other => panic!("unknown type {other}"),
    }
}

/// The subset of JSON Schema the document uses: `$ref`, `type` (one or a list), `enum`,
/// `properties`, `required`, `additionalProperties: false`, `items`, `minimum`, `maximum`,
/// `minLength`. Returns the first violation, with the JSON path of the value.
pub(super) fn validate(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        return validate(doc, resolve(doc, r), v, at);
    }
    if let Some(ty) = schema.get("type") {
        let ok = match ty {
            Value::String(t) => type_matches(t, v),
            Value::Array(ts) => ts.iter().any(|t| type_matches(t.as_str().unwrap(), v)),
            _ => panic!("bad type in schema at {at}"),
        };
        if !ok {
            return Err(format!("{at}: {v} is not of type {ty}"));
        }
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        if !values.contains(v) {
            return Err(format!("{at}: {v} is not one of {values:?}"));
        }
    }
    if let Some(n) = v.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            if n < min {
                return Err(format!("{at}: {v} < minimum {min}"));
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            if n > max {
                return Err(format!("{at}: {v} > maximum {max}"));
            }
        }
    }
    if let (Some(s), Some(min)) = (v.as_str(), schema.get("minLength").and_then(Value::as_u64)) {
        if (s.chars().count() as u64) < min {
            return Err(format!("{at}: {v} shorter than {min}"));
        }
    }
    if let Some(items) = v.as_array() {
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                validate(doc, item_schema, item, &format!("{at}[{i}]"))?;
            }
        }
    }
    if let Some(object) = v.as_object() {
        let props = schema.get("properties").and_then(Value::as_object);
        for required in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = required.as_str().unwrap();
            if !object.contains_key(key) {
                return Err(format!("{at}: required `{key}` is missing"));
            }
        }
        for (key, value) in object {
            match props.and_then(|p| p.get(key)) {
                Some(s) => validate(doc, s, value, &format!("{at}.{key}"))?,
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Err(format!("{at}: `{key}` is not in the schema"));
                }
                None => {}
            }
        }
    }
    Ok(())
}

pub(super) fn conforms<T: Serialize>(doc: &Value, name: &str, value: &T) {
    let v = serde_json::to_value(value).unwrap();
    if let Err(e) = validate(doc, &schema(doc, name), &v, name) {
        panic!("a real {name} does not match its schema: {e}\n{v:#}");
    }
}

#[test]
fn the_validator_refuses_what_it_should() {
    let d = doc();
    let s = schema(&d, "Instance");
    let mut v = serde_json::to_value(instance(InstanceStatus::Running)).unwrap();
    assert!(validate(&d, &s, &v, "i").is_ok());
    v["extra"] = json!(1);
    assert!(validate(&d, &s, &v, "i").is_err());
    let mut v = serde_json::to_value(instance(InstanceStatus::Running)).unwrap();
    v["status"] = json!("NOPE");
    assert!(validate(&d, &s, &v, "i").is_err());
    v.as_object_mut().unwrap().remove("status");
    assert!(validate(&d, &s, &v, "i").is_err());
    let mut v = serde_json::to_value(instance(InstanceStatus::Running)).unwrap();
    v["id"] = json!(-1);
    assert!(validate(&d, &s, &v, "i").is_err());
    v["id"] = json!("1");
    assert!(validate(&d, &s, &v, "i").is_err());
}
