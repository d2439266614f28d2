//! The sequence numbers of one instance's reports.

/// Numbers one instance's reports: `base + 1`, `base + 2`, ..., and nothing after the final
/// report. The server drops a report whose number is not above the last it applied, so the
/// numbers must strictly increase within one dispatch (`ScheduleJob::report_seq_base`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReportSeq {
    last: u64,
    finished: bool,
}

impl ReportSeq {
    pub(crate) fn new(base: u64) -> Self {
        ReportSeq {
            last: base,
            finished: false,
        }
    }

    /// The number of the next report; `None` once the final report has been numbered (and
    /// when the sequence would overflow, which a server never asks for).
    pub(crate) fn next(&mut self, is_final: bool) -> Option<u64> {
        if self.finished {
            return None;
        }
        self.last = self.last.checked_add(1)?;
        self.finished = is_final;
        Some(self.last)
    }

    /// Whether the final report has been numbered.
    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_the_base_and_stops_after_the_final_report() {
        let mut s = ReportSeq::new(7);
        assert_eq!(s.next(false), Some(8));
        assert_eq!(s.next(false), Some(9));
        assert_eq!(s.next(true), Some(10));
        assert!(s.is_finished());
        assert_eq!(s.next(false), None);
        assert_eq!(s.next(true), None);
        let mut top = ReportSeq::new(u64::MAX);
        assert_eq!(top.next(false), None);
    }
}
