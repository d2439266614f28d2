//! Fuzz target `api_json`: any bytes as the JSON body of every OpenAPI request type; parsing
//! either fails with an error or yields a body whose conversion (`api_convert::job_record`,
//! `LifecycleJson::to_lifecycle`, `validate_expression`) fails with a typed error or succeeds;
//! never a panic. A job body that converts must survive `api_convert::job_body` unchanged in
//! meaning (converting again gives the same record).
//!
//! Workflow bodies: a [`WorkflowDef`] that parses must serialize and parse back to
//! itself, and validate (against a fixed set of existing jobs and workflows) to a DAG or a
//! typed error with a message; a [`RunWorkflow`] must round-trip too (its `init_params`
//! exactly when they hold no floating-point number, which serde_json need not read back
//! bit-for-bit).

use ferrojob::api::{
    validate_expression, CreateApp, InstanceQuery, JobBody, LogQuery, PageQuery, RunJob,
    RunWorkflow, ValidateRequest, WorkflowDef, WorkflowInstanceQuery,
};
use ferrojob::ids::AppId;
use ferrojob::server::api_convert::{job_body, job_record};

/// A fixed "now" so runs are reproducible: 2026-03-28T23:00:00Z (before Berlin's DST change).
const NOW: i64 = 1_774_738_800_000;

/// Feeds one fuzz input to the code under test; must never panic.
pub fn run(data: &[u8]) {
    if let Ok(body) = serde_json::from_slice::<JobBody>(data) {
        match job_record(&body, AppId(1)) {
            Ok(record) => {
                let again = job_record(&job_body(&record), AppId(1)).map_err(|e| e.to_string());
                assert_eq!(again.as_ref().ok(), Some(&record), "{again:?}");
            }
            Err(e) => assert!(!e.message.is_empty()),
        }
    }
    if let Ok(req) = serde_json::from_slice::<ValidateRequest>(data) {
        if let Ok(resp) = validate_expression(&req, NOW) {
            assert!(resp.next.len() <= req.count.unwrap_or(5) as usize);
        }
    }
    let _ = serde_json::from_slice::<RunJob>(data);
    let _ = serde_json::from_slice::<CreateApp>(data);
    let _ = serde_json::from_slice::<PageQuery>(data);
    let _ = serde_json::from_slice::<InstanceQuery>(data);
    let _ = serde_json::from_slice::<LogQuery>(data);
    let _ = serde_json::from_slice::<WorkflowInstanceQuery>(data);
    if let Ok(def) = serde_json::from_slice::<WorkflowDef>(data) {
        let text = serde_json::to_string(&def).map_err(|e| e.to_string());
        let back = text
            .as_deref()
            .map_err(Clone::clone)
            .and_then(|t| serde_json::from_str::<WorkflowDef>(t).map_err(|e| e.to_string()));
        assert_eq!(back.as_ref().ok(), Some(&def), "{back:?}");
        // Jobs 1 to 9 and workflows 1 to 3 exist.
        match def.validate(
            |job| (1..10).contains(&job.get()),
            |wf| (1..4).contains(&wf.get()),
        ) {
            Ok(dag) => assert!(!dag.is_empty() && dag.topo_order().len() == dag.len()),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
    if let Ok(run) = serde_json::from_slice::<RunWorkflow>(data) {
        let text = serde_json::to_string(&run).map_err(|e| e.to_string());
        let back = text
            .as_deref()
            .map_err(Clone::clone)
            .and_then(|t| serde_json::from_str::<RunWorkflow>(t).map_err(|e| e.to_string()));
        let back = match back {
            Ok(b) => b,
            Err(e) => panic!("a parsed RunWorkflow does not parse back: {e}"),
        };
        assert_eq!(back.delay_ms, run.delay_ms);
        if !run.init_params.as_ref().is_some_and(has_float) {
            assert_eq!(back.init_params, run.init_params);
        }
    }
}

/// Whether `v` holds a floating-point number anywhere.
fn has_float(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Number(n) => n.is_f64(),
        serde_json::Value::Array(a) => a.iter().any(has_float),
        serde_json::Value::Object(m) => m.values().any(has_float),
        _ => false,
    }
}
