//! Which days of a month a cron expression allows: day-of-month (`15`, `L`, `L-3`, `LW`,
//! `L-3W`, `15W`)
//! or day-of-week (`MON-FRI`, `6L`, `6#3`), reduced to a bit mask of the month's days.
//!
//! Quartz lets only one of the two fields restrict the day (the other is `?`), so a month's
//! days are those of whichever field restricts them, or every day when neither does.

use super::field::Bits;
use crate::time_expression::civil::{days_in_month, weekday};

/// The day-of-month field, as a union of the forms its list items take.
///
/// Invariant: `plain` and `nearest_weekday` use bits 1–31 only; `last_minus` and
/// `last_minus_weekday` bits 0–30.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct DayOfMonth {
    /// Plain days (`1,15`, `1-10/2`).
    pub(crate) plain: Bits,
    /// `L-n` offsets from the last day: bit `n` set means `L-n` (`L` is `L-0`).
    pub(crate) last_minus: Bits,
    /// `L-nW`: bit `n` set means the weekday (Monday–Friday) nearest to day `L-n`, without
    /// leaving the month (`LW`, the month's last weekday, is `L-0W`).
    pub(crate) last_minus_weekday: Bits,
    /// `nW`: the weekday nearest to day `n`, without leaving the month.
    pub(crate) nearest_weekday: Bits,
}

/// The day-of-week field, as a union of the forms its list items take (Quartz numbering:
/// 1 = SUN ... 7 = SAT).
///
/// Invariant: every mask uses bits 1–7 only; `nth` has entries for k = 1–5 at indices 1–5.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct DayOfWeek {
    /// Plain weekdays (`MON-FRI`, `1,7`).
    pub(crate) plain: u8,
    /// `nL`: the last weekday `n` of the month.
    pub(crate) last: u8,
    /// `n#k`: bit `n` of `nth[k]` set means the k-th weekday `n` of the month.
    pub(crate) nth: [u8; 6],
}

/// The day restriction of a whole expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum DaySpec {
    /// Neither field restricts the day (`*` or `?` in both).
    Every,
    /// Day-of-month restricts, day-of-week is `?` or `*`.
    Month(DayOfMonth),
    /// Day-of-week restricts, day-of-month is `?` or `*`.
    Week(DayOfWeek),
}

/// Weekday (1 = SUN ... 7 = SAT) that is `delta` days after weekday `wd`.
fn add_days(wd: u32, delta: u32) -> u32 {
    (wd - 1 + delta) % 7 + 1
}

impl DaySpec {
    /// The days (bits 1–31) of `month` (1–12) of `year` that the expression allows.
    pub(crate) fn mask(&self, year: i32, month: u32) -> Bits {
        let last = days_in_month(year, month);
        let valid: Bits = ((1 << (last + 1)) - 1) & !1;
        match self {
            DaySpec::Every => valid,
            DaySpec::Month(dom) => dom.mask(year, month, last) & valid,
            DaySpec::Week(dow) => dow.mask(year, month, last) & valid,
        }
    }
}

impl DayOfMonth {
    fn mask(&self, year: i32, month: u32, last: u32) -> Bits {
        let mut mask = self.plain;
        let mut offsets = self.last_minus;
        while offsets != 0 {
            let n = offsets.trailing_zeros();
            offsets &= offsets - 1;
            if n < last {
                mask |= 1 << (last - n);
            }
        }
        let first_wd = weekday(year, month, 1);
        let wd_of = |day: u32| add_days(first_wd, day - 1);
        // The weekday nearest to day `n` (1..=last) without leaving the month.
        let nearest = |n: u32| match wd_of(n) {
            // Saturday: the Friday before, unless that leaves the month (then Monday).
            7 if n == 1 => 3,
            7 => n - 1,
            // Sunday: the Monday after, unless that leaves the month (then Friday).
            1 if n == last => n - 2,
            1 => n + 1,
            _ => n,
        };
        let mut from_last = self.last_minus_weekday;
        while from_last != 0 {
            let n = from_last.trailing_zeros();
            from_last &= from_last - 1;
            if n < last {
                mask |= 1 << nearest(last - n);
            }
        }
        let mut days = self.nearest_weekday;
        while days != 0 {
            let n = days.trailing_zeros();
            days &= days - 1;
            // Like a plain day 31 in a 30-day month: a month without day n has no match.
            if n <= last {
                mask |= 1 << nearest(n);
            }
        }
        mask
    }
}

impl DayOfWeek {
    fn mask(&self, year: i32, month: u32, last: u32) -> Bits {
        let first_wd = weekday(year, month, 1);
        let mut mask: Bits = 0;
        // Plain weekdays: the week's pattern (bit i = day 1 + i) repeated five times covers
        // days 1-35; `DaySpec::mask` cuts it to the month.
        if self.plain != 0 {
            // Bit j of `by_weekday` is weekday j + 1; day 1 + i has weekday first_wd + i, so the
            // pattern is `by_weekday` rotated right (within 7 bits) by first_wd - 1.
            let by_weekday = Bits::from(self.plain >> 1);
            let r = first_wd - 1;
            let week = ((by_weekday >> r) | (by_weekday << (7 - r))) & 0x7f;
            mask |= (week | week << 7 | week << 14 | week << 21 | week << 28) << 1;
        }
        let last_wd = add_days(first_wd, last - 1);
        let mut lasts = self.last;
        while lasts != 0 {
            let n = lasts.trailing_zeros();
            lasts &= lasts - 1;
            // Days back from the last day to weekday n.
            let back = (last_wd + 7 - n) % 7;
            mask |= 1 << (last - back);
        }
        for (k, set) in (0u32..).zip(self.nth.iter()) {
            let mut set = *set;
            while set != 0 {
                let n = set.trailing_zeros();
                set &= set - 1;
                let first = 1 + (n + 7 - first_wd) % 7;
                let day = first + 7 * (k.saturating_sub(1));
                if k >= 1 && day <= last {
                    mask |= 1 << day;
                }
            }
        }
        mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn days(mask: Bits) -> Vec<u32> {
        (1..=31).filter(|d| mask & (1 << d) != 0).collect()
    }

    #[test]
    fn nearest_weekday_stays_in_the_month() {
        // 2022-01-01 is a Saturday: 1W is Monday the 3rd.
        let dom = DaySpec::Month(DayOfMonth {
            nearest_weekday: 1 << 1,
            ..Default::default()
        });
        assert_eq!(days(dom.mask(2022, 1)), vec![3]);
        // 2022-07-31 is a Sunday: 31W is Friday the 29th.
        let dom = DaySpec::Month(DayOfMonth {
            nearest_weekday: 1 << 31,
            ..Default::default()
        });
        assert_eq!(days(dom.mask(2022, 7)), vec![29]);
        // 31W in a 30-day month matches nothing.
        assert_eq!(days(dom.mask(2022, 6)), Vec::<u32>::new());
    }

    #[test]
    fn nth_and_last_weekdays() {
        // November 2026: Fridays are 6, 13, 20, 27.
        let mut dow = DayOfWeek::default();
        dow.nth[3] = 1 << 6;
        assert_eq!(days(DaySpec::Week(dow).mask(2026, 11)), vec![20]);
        let dow = DayOfWeek {
            last: 1 << 6,
            ..Default::default()
        };
        assert_eq!(days(DaySpec::Week(dow).mask(2026, 11)), vec![27]);
    }
}
