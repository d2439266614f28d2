//! PowerJob's processor as ferrojob's: the official shell and http processors, the
//! user's mapping for any other, and the http processor's params rewritten with PowerJob's
//! defaults made explicit.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{enum_name, ImportOptions, Notes};

/// The ferrojob processor and params of a PowerJob processor, or why there is none.
pub(super) fn processor(
    kind: Option<&Value>,
    info: &str,
    params: String,
    options: &ImportOptions,
    notes: &mut Notes,
) -> Result<(String, String), String> {
    let kind = match kind {
        None | Some(Value::Null) => "BUILT_IN".to_owned(),
        Some(v) => enum_name(
            "processorType",
            v,
            &[
                (1, "BUILT_IN"),
                (2, "SHELL"),
                (3, "PYTHON"),
                (4, "EXTERNAL"),
            ],
        )?,
    };
    if let Some(mapped) = options.processors.get(info) {
        return Ok((mapped.clone(), params));
    }
    let official = matches!(kind.as_str(), "BUILT_IN" | "EMBEDDED_JAVA");
    if official && info.ends_with(".processors.impl.script.ShellProcessor") {
        let script = params.trim_start();
        if script.starts_with("http://") || script.starts_with("https://") {
            return Err(
                "ShellProcessor downloads its script from a URL; ferrojob's shell runs the \
                 params as the script"
                    .into(),
            );
        }
        return Ok(("shell".into(), params));
    }
    if official && info.ends_with(".processors.impl.HttpProcessor") {
        let converted = http_params(&params, notes)?;
        return Ok(("http".into(), converted));
    }
    Err(format!(
        "processor {kind} {info:?} has no ferrojob equivalent; write one and map it (e.g. \
         --processor '{info}=NAME')"
    ))
}

/// PowerJob `HttpProcessor` params as the ferrojob `http` processor's.
fn http_params(params: &str, notes: &mut Notes) -> Result<String, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct PowerJobHttp {
        #[serde(default)]
        method: Option<String>,
        #[serde(default)]
        url: Option<String>,
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        body: Option<String>,
        #[serde(default)]
        headers: Option<BTreeMap<String, String>>,
        #[serde(default)]
        timeout: Option<u64>,
    }
    let p: PowerJobHttp = serde_json::from_str(params)
        .map_err(|e| format!("jobParams: not HttpProcessor params: {e}"))?;
    let mut url = p.url.unwrap_or_default().trim().to_owned();
    if url.is_empty() {
        return Err("jobParams.url is empty".into());
    }
    if !url.starts_with("http") {
        url = format!("http://{url}");
    }
    if url.starts_with("https") {
        return Err("jobParams.url is https; ferrojob's http processor speaks plain HTTP".into());
    }
    let method = p.method.unwrap_or_default().trim().to_ascii_uppercase();
    let method = match method.as_str() {
        "POST" | "PUT" | "DELETE" => method,
        _ => "GET".to_owned(),
    };
    let mut out = Map::new();
    out.insert("url".into(), Value::from(url));
    out.insert("method".into(), Value::from(method.clone()));
    let mut headers = p.headers.unwrap_or_default();
    if method != "GET" {
        let body = p
            .body
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| "{}".into());
        let media = p.media_type.filter(|m| !m.trim().is_empty()).or_else(|| {
            serde_json::from_str::<Value>(&body)
                .is_ok()
                .then(|| "application/json".to_owned())
        });
        if let Some(media) = media {
            if !headers
                .keys()
                .any(|k| k.eq_ignore_ascii_case("content-type"))
            {
                headers.insert("Content-Type".into(), media);
            }
        }
        out.insert("body".into(), Value::from(body));
    }
    if !headers.is_empty() {
        out.insert(
            "headers".into(),
            serde_json::to_value(headers).map_err(|e| e.to_string())?,
        );
    }
    let timeout_s = p.timeout.unwrap_or(60);
    out.insert(
        "timeout_ms".into(),
        Value::from(timeout_s.saturating_mul(1000)),
    );
    notes.push((
        "processorInfo".into(),
        "HttpProcessor: PowerJob succeeds on status 200 only, ferrojob's http on any 2xx".into(),
    ));
    serde_json::to_string(&out).map_err(|e| e.to_string())
}
