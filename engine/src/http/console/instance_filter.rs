//! The instances page's filters: job, status and a time range over the trigger or the finish
//! time, read from the query string into an [`InstanceQuery`] and written back into the
//! "Older" link so that paging keeps them.
//!
//! A bound is typed as epoch milliseconds, RFC 3339, or the `YYYY-MM-DDTHH:MM[:SS]` a
//! `datetime-local` input sends (read as UTC, the zone every time on the console is shown in),
//! or a bare `YYYY-MM-DD` (midnight UTC).

use chrono::{NaiveDate, NaiveDateTime};

use super::form::{parse_wire, wire, Fields};
use crate::api::InstanceQuery;
use crate::ids::JobId;
use crate::model::InstanceStatus;
use crate::time_expression::EpochMs;

/// Which instant of an instance the range applies to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum TimeField {
    /// When it was (or is to be) triggered.
    #[default]
    Trigger,
    /// When it finished (unfinished instances never match a bounded range).
    Finished,
}

impl TimeField {
    /// Its value in the query string and the select.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TimeField::Trigger => "trigger",
            TimeField::Finished => "finished",
        }
    }
}

/// The filters as typed (shown again in the form) and as understood.
#[derive(Debug, Default)]
pub(crate) struct InstanceFilter {
    /// The job id field as typed.
    pub(crate) job_id: String,
    /// The status field as typed.
    pub(crate) status: String,
    /// The range's start as typed.
    pub(crate) from: String,
    /// The range's end as typed.
    pub(crate) to: String,
    /// Which instant the range bounds.
    pub(crate) time: TimeField,
    job: Option<JobId>,
    state: Option<InstanceStatus>,
    from_ms: Option<EpochMs>,
    to_ms: Option<EpochMs>,
}

/// An instant typed in a filter field; `None` when it is none of the accepted forms.
pub(crate) fn parse_instant(text: &str) -> Option<EpochMs> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<i64>() {
        return Some(ms);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_millis());
    }
    for format in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
}

impl InstanceFilter {
    /// Reads the filters from a query string; the error names the field that is not valid.
    pub(crate) fn parse(q: &Fields) -> Result<InstanceFilter, &'static str> {
        let typed = |name| q.get(name).unwrap_or("").to_owned();
        let mut f = InstanceFilter {
            job_id: typed("job_id"),
            status: typed("status"),
            from: typed("from"),
            to: typed("to"),
            ..InstanceFilter::default()
        };
        f.job = match q.get("job_id") {
            None => None,
            Some(v) => Some(JobId(v.parse().map_err(|_| "job_id")?)),
        };
        f.state = match q.get("status") {
            None => None,
            Some(v) => Some(parse_wire(v).ok_or("status")?),
        };
        f.time = match q.get("time") {
            None | Some("trigger") => TimeField::Trigger,
            Some("finished") => TimeField::Finished,
            Some(_) => return Err("time"),
        };
        f.from_ms = match q.get("from") {
            None => None,
            Some(v) => Some(parse_instant(v).ok_or("from")?),
        };
        f.to_ms = match q.get("to") {
            None => None,
            Some(v) => Some(parse_instant(v).ok_or("to")?),
        };
        Ok(f)
    }

    /// The API query for one page.
    pub(crate) fn query(&self, limit: u32, cursor: Option<u64>) -> InstanceQuery {
        let mut q = InstanceQuery {
            job_id: self.job,
            status: self.state,
            limit: Some(limit),
            cursor,
            ..InstanceQuery::default()
        };
        match self.time {
            TimeField::Trigger => (q.trigger_from, q.trigger_to) = (self.from_ms, self.to_ms),
            TimeField::Finished => (q.finished_from, q.finished_to) = (self.from_ms, self.to_ms),
        }
        q
    }

    /// The link to the page after `cursor` with the same filters (bounds as epoch ms).
    pub(crate) fn older_href(&self, cursor: u64) -> String {
        let mut href = format!("/instances?cursor={cursor}");
        if let Some(id) = self.job {
            href.push_str(&format!("&job_id={}", id.0));
        }
        if let Some(st) = self.state {
            href.push_str(&format!("&status={}", wire(&st)));
        }
        if self.from_ms.is_some() || self.to_ms.is_some() {
            href.push_str(&format!("&time={}", self.time.as_str()));
        }
        if let Some(ms) = self.from_ms {
            href.push_str(&format!("&from={ms}"));
        }
        if let Some(ms) = self.to_ms {
            href.push_str(&format!("&to={ms}"));
        }
        href
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, want: Option<EpochMs>) {
        assert_eq!(parse_instant(text), want, "{text:?}");
    }

    #[test]
    fn instants_are_read_in_every_accepted_form() {
        check("0", Some(0));
        check(" -5 ", Some(-5));
        check("1765065600000", Some(1_765_065_600_000));
        check("2025-12-07T00:00:00Z", Some(1_765_065_600_000));
        check("2025-12-07T01:00:00+01:00", Some(1_765_065_600_000));
        check("2025-12-07T00:00", Some(1_765_065_600_000));
        check("2025-12-07T00:00:01", Some(1_765_065_601_000));
        check("2025-12-07 00:00:01", Some(1_765_065_601_000));
        check("2025-12-07", Some(1_765_065_600_000));
        check("yesterday", None);
        check("2025-13-01", None);
        check("2025-12-07T25:00", None);
    }

    fn parsed(query: &str) -> Result<InstanceFilter, &'static str> {
        InstanceFilter::parse(&Fields::parse(query.as_bytes()).unwrap_or_default())
    }

    #[test]
    fn the_range_goes_to_the_chosen_time_and_back_into_the_older_link() {
        // (query string, trigger range, finished range, older link after cursor 9)
        type Range = (Option<EpochMs>, Option<EpochMs>);
        let cases: [(&str, Range, Range, &str); 5] = [
            ("", (None, None), (None, None), "/instances?cursor=9"),
            (
                "from=10&to=20",
                (Some(10), Some(20)),
                (None, None),
                "/instances?cursor=9&time=trigger&from=10&to=20",
            ),
            (
                "time=finished&from=2025-12-07",
                (None, None),
                (Some(1_765_065_600_000), None),
                "/instances?cursor=9&time=finished&from=1765065600000",
            ),
            (
                "time=finished&job_id=3&status=FAILED",
                (None, None),
                (None, None),
                "/instances?cursor=9&job_id=3&status=FAILED",
            ),
            (
                "time=trigger&to=2025-12-07T00:00",
                (None, Some(1_765_065_600_000)),
                (None, None),
                "/instances?cursor=9&time=trigger&to=1765065600000",
            ),
        ];
        for (query, trigger, finished, older) in cases {
            let f = parsed(query).unwrap();
            let q = f.query(50, Some(9));
            assert_eq!((q.trigger_from, q.trigger_to), trigger, "{query}");
            assert_eq!((q.finished_from, q.finished_to), finished, "{query}");
            assert_eq!(f.older_href(9), older, "{query}");
            // The link reads back to the same query.
            let again = parsed(older.trim_start_matches("/instances?")).unwrap();
            assert_eq!(again.query(50, Some(9)), q, "{older}");
        }
    }

    #[test]
    fn a_bad_field_is_named() {
        for (query, field) in [
            ("job_id=x", "job_id"),
            ("status=NOPE", "status"),
            ("time=started", "time"),
            ("from=soon", "from"),
            ("to=2025-02-30", "to"),
        ] {
            assert_eq!(parsed(query).unwrap_err(), field, "{query}");
        }
    }
}
