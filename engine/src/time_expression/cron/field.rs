//! The seven fields of a Quartz cron expression, their ranges and names, and the bit sets that
//! hold the values each field allows.

use std::fmt;

/// One field of a Quartz cron expression, in the order they are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CronField {
    /// Field 1: seconds, 0–59.
    Seconds,
    /// Field 2: minutes, 0–59.
    Minutes,
    /// Field 3: hours, 0–23.
    Hours,
    /// Field 4: day of the month, 1–31, plus `?`, `L`, `L-n`, `LW`, `nW`.
    DayOfMonth,
    /// Field 5: month, 1–12 or `JAN`–`DEC`.
    Month,
    /// Field 6: day of the week, 1–7 (1 = SUN) or `SUN`–`SAT`, plus `?`, `L`, `nL`, `n#k`.
    DayOfWeek,
    /// Field 7 (optional): year, 1970–2099.
    Year,
}

impl CronField {
    /// The fields in the order they are written.
    pub const ALL: [CronField; 7] = [
        CronField::Seconds,
        CronField::Minutes,
        CronField::Hours,
        CronField::DayOfMonth,
        CronField::Month,
        CronField::DayOfWeek,
        CronField::Year,
    ];

    /// Smallest value the field allows.
    pub fn min(self) -> u32 {
        match self {
            CronField::Seconds | CronField::Minutes | CronField::Hours => 0,
            CronField::DayOfMonth | CronField::Month | CronField::DayOfWeek => 1,
            CronField::Year => 1970,
        }
    }

    /// Largest value the field allows.
    pub fn max(self) -> u32 {
        match self {
            CronField::Seconds | CronField::Minutes => 59,
            CronField::Hours => 23,
            CronField::DayOfMonth => 31,
            CronField::Month => 12,
            CronField::DayOfWeek => 7,
            CronField::Year => 2099,
        }
    }

    /// Number of values in the field's range.
    pub(crate) fn span(self) -> u32 {
        self.max() - self.min() + 1
    }

    /// How the range is written in error messages, e.g. `1-7 (1 = SUN)`.
    pub(crate) fn range_text(self) -> &'static str {
        match self {
            CronField::Seconds | CronField::Minutes => "0-59",
            CronField::Hours => "0-23",
            CronField::DayOfMonth => "1-31",
            CronField::Month => "1-12 (or JAN-DEC)",
            CronField::DayOfWeek => "1-7 (1 = SUN, or SUN-SAT)",
            CronField::Year => "1970-2099",
        }
    }

    /// The value of a three-letter name (`JAN`, `fri`) in this field, if it has names.
    pub(crate) fn value_of_name(self, name: &str) -> Option<u32> {
        const MONTHS: [&str; 12] = [
            "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
        ];
        const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
        let names: &[&str] = match self {
            CronField::Month => &MONTHS,
            CronField::DayOfWeek => &WEEKDAYS,
            _ => return None,
        };
        let pos = names.iter().position(|n| n.eq_ignore_ascii_case(name))?;
        // `pos` < 12, so the cast is exact; names start at value 1.
        Some(pos as u32 + 1)
    }
}

impl fmt::Display for CronField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CronField::Seconds => "seconds",
            CronField::Minutes => "minutes",
            CronField::Hours => "hours",
            CronField::DayOfMonth => "day-of-month",
            CronField::Month => "month",
            CronField::DayOfWeek => "day-of-week",
            CronField::Year => "year",
        })
    }
}

/// A set of small integers (0–63) as a bit mask: bit `v` set iff `v` is allowed.
pub(crate) type Bits = u64;

/// The smallest value `>= from` in `bits`, if any.
#[inline]
pub(crate) fn next_bit(bits: Bits, from: u32) -> Option<u32> {
    if from >= 64 {
        return None;
    }
    let rest = bits >> from;
    if rest == 0 {
        None
    } else {
        Some(from + rest.trailing_zeros())
    }
}

/// Years 1970–2099 as a bit set over `year - 1970` (130 bits in three words).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct YearSet([u64; 3]);

impl YearSet {
    /// No year.
    pub(crate) const EMPTY: YearSet = YearSet([0; 3]);

    /// Every year 1970–2099.
    pub(crate) fn all() -> YearSet {
        let mut set = YearSet::EMPTY;
        for year in 1970..=2099 {
            set.insert(year);
        }
        set
    }

    /// Adds `year`; years outside 1970–2099 are ignored (the parser never passes one).
    pub(crate) fn insert(&mut self, year: u32) {
        let Some(off) = year.checked_sub(1970).filter(|o| *o < 130) else {
            return;
        };
        if let Some(word) = self.0.get_mut((off / 64) as usize) {
            *word |= 1 << (off % 64);
        }
    }

    /// The smallest year `>= from` in the set, if any.
    #[inline]
    pub(crate) fn next(&self, from: i32) -> Option<i32> {
        let mut off = u32::try_from(from.max(1970) - 1970).ok()?;
        while off < 130 {
            let word = *self.0.get((off / 64) as usize)?;
            if let Some(bit) = next_bit(word, off % 64) {
                return Some((off / 64 * 64 + bit) as i32 + 1970);
            }
            off = (off / 64 + 1) * 64;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_bit_finds_the_next_value() {
        assert_eq!(next_bit(0b1010, 0), Some(1));
        assert_eq!(next_bit(0b1010, 2), Some(3));
        assert_eq!(next_bit(0b1010, 4), None);
        assert_eq!(next_bit(u64::MAX, 63), Some(63));
        assert_eq!(next_bit(u64::MAX, 64), None);
    }

    #[test]
    fn year_set_spans_three_words() {
        let mut set = YearSet::EMPTY;
        assert_eq!(set.next(1970), None);
        set.insert(2099);
        set.insert(2000);
        set.insert(1970);
        set.insert(2100); // ignored
        assert_eq!(set.next(1900), Some(1970));
        assert_eq!(set.next(1971), Some(2000));
        assert_eq!(set.next(2001), Some(2099));
        assert_eq!(set.next(2100), None);
        assert_eq!(YearSet::all().next(2034), Some(2034));
    }

    #[test]
    fn names_are_case_insensitive() {
        assert_eq!(CronField::Month.value_of_name("jan"), Some(1));
        assert_eq!(CronField::Month.value_of_name("Dec"), Some(12));
        assert_eq!(CronField::DayOfWeek.value_of_name("SUN"), Some(1));
        assert_eq!(CronField::DayOfWeek.value_of_name("sat"), Some(7));
        assert_eq!(CronField::Hours.value_of_name("MON"), None);
    }
}
