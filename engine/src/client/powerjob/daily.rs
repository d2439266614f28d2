//! PowerJob's DAILY_TIME_INTERVAL expression in ferrojob's terms: weekdays counted from
//! Sunday as Quartz does, `DAYS` written as hours.

use serde_json::{Map, Value};

use super::Notes;

/// The PowerJob weekday `d` (1 = Monday … 7 = Sunday) as Quartz counts it (1 = Sunday … 7 =
/// Saturday); `None` outside 1–7.
pub fn powerjob_to_quartz_weekday(d: i64) -> Option<i64> {
    (1..=7).contains(&d).then_some(d % 7 + 1)
}

/// PowerJob's DAILY_TIME_INTERVAL JSON in ferrojob's terms: weekdays renumbered, `DAYS`
/// written as hours.
pub(super) fn convert_daily(expr: &str, notes: &mut Notes) -> Result<String, String> {
    let mut map: Map<String, Value> = serde_json::from_str(expr)
        .map_err(|e| format!("timeExpression: not a DAILY_TIME_INTERVAL JSON object: {e}"))?;
    if let Some(days) = map.get_mut("daysOfWeek") {
        let Value::Array(list) = days else {
            return Err("timeExpression.daysOfWeek: expected an array".into());
        };
        let mut converted = Vec::with_capacity(list.len());
        for d in list.iter() {
            let q = d
                .as_i64()
                .and_then(powerjob_to_quartz_weekday)
                .ok_or_else(|| format!("timeExpression.daysOfWeek: {d} is not 1 to 7"))?;
            converted.push(q);
        }
        converted.sort_unstable();
        converted.dedup();
        if !converted.is_empty() {
            notes.push((
                "timeExpression.daysOfWeek".into(),
                format!("{days} (1 = Monday) written as {converted:?} (1 = Sunday)"),
            ));
        }
        *days = Value::from(converted);
    }
    let unit = map
        .get("intervalUnit")
        .and_then(Value::as_str)
        .map(|u| u.trim().to_ascii_uppercase());
    match unit.as_deref() {
        Some("DAYS") => {
            let days = map
                .get("interval")
                .and_then(|v| {
                    v.as_u64()
                        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                })
                .ok_or("timeExpression.interval: not a whole number")?;
            map.insert("interval".into(), Value::from(days.saturating_mul(24)));
            map.insert("intervalUnit".into(), Value::from("HOURS"));
        }
        Some(u @ ("NANOSECONDS" | "MICROSECONDS")) => {
            return Err(format!(
                "timeExpression.intervalUnit {u}: ferrojob fires whole seconds"
            ))
        }
        _ => {}
    }
    serde_json::to_string(&map).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weekdays_move_from_monday_first_to_sunday_first() {
        let table = [(1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (6, 7), (7, 1)];
        for (powerjob, quartz) in table {
            assert_eq!(
                powerjob_to_quartz_weekday(powerjob),
                Some(quartz),
                "{powerjob}"
            );
        }
        assert_eq!(powerjob_to_quartz_weekday(0), None);
        assert_eq!(powerjob_to_quartz_weekday(8), None);
    }

    #[test]
    fn daily_days_are_written_in_hours() {
        let mut notes = Vec::new();
        let out = convert_daily(
            r#"{"interval":1,"intervalUnit":"DAYS","startTimeOfDay":"00:00:00","endTimeOfDay":"23:59:59"}"#,
            &mut notes,
        )
        .unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["interval"], 24);
        assert_eq!(v["intervalUnit"], "HOURS");
    }
}
