//! Fuzz target `api_json`: any bytes as the JSON body of every OpenAPI request type; parsing
//! either fails with an error or yields a body whose conversion (`JobBody::to_record`,
//! `LifecycleJson::to_lifecycle`, `validate_expression`) fails with a typed error or succeeds;
//! never a panic. A job body that converts must survive `from_record` unchanged in meaning
//! (converting again gives the same record).

use ferrojob::api::{
    validate_expression, CreateApp, InstanceQuery, JobBody, LogQuery, PageQuery, RunJob,
    ValidateRequest,
};
use ferrojob::server::AppId;

/// A fixed "now" so runs are reproducible: 2026-03-28T23:00:00Z (before Berlin's DST change).
const NOW: i64 = 1_774_738_800_000;

/// Feeds one fuzz input to the code under test; must never panic.
pub fn run(data: &[u8]) {
    if let Ok(body) = serde_json::from_slice::<JobBody>(data) {
        match body.to_record(AppId(1)) {
            Ok(record) => {
                let again = JobBody::from_record(&record)
                    .to_record(AppId(1))
                    .map_err(|e| e.to_string());
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
}
