//! The Quartz cron parser: text in, [`Fields`] or a [`FieldError`] naming the field and why.
//!
//! ```text
//!   expression = field{6} [year]          fields separated by whitespace
//!   field      = "?" | item ("," item)*   "?" only in day-of-month / day-of-week, alone
//!   item       = "*" ["/" step]
//!              | value ["-" value] ["/" step]      a-b wraps when a > b (FRI-MON, 22-2)
//!              | day-of-month: "L" | "L-" n | "LW" | "L-" n "W" | n "W"
//!              | day-of-week:  "L" | value "L" | value "#" k   (an `L` item only alone)
//!   value      = digits | JAN..DEC (month) | SUN..SAT (day-of-week), any case
//! ```
//!
//! The parser works on `&str` with `split`/`strip_*` only (no byte indexing), bounds the
//! expression's length and every number's digits, and so cannot panic on any input.

use super::days::{DayOfMonth, DayOfWeek, DaySpec};
use super::field::{Bits, CronField, YearSet};
use super::Fields;

/// Longest expression accepted, in bytes. Real expressions are under 100; the bound keeps
/// hostile input from costing more than a few microseconds.
pub(crate) const MAX_EXPRESSION_LEN: usize = 1024;

/// Why a cron expression was rejected: the field (if one is to blame) and a reason a user can act
/// on, e.g. `8 is out of range 1-7 (1 = SUN, or SUN-SAT)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldError {
    pub(crate) field: Option<CronField>,
    pub(crate) reason: String,
}

fn err<T>(field: CronField, reason: impl Into<String>) -> Result<T, FieldError> {
    Err(FieldError {
        field: Some(field),
        reason: reason.into(),
    })
}

/// Parses a whole Quartz expression.
pub(crate) fn parse(expr: &str) -> Result<Fields, FieldError> {
    let whole = |reason: String| FieldError {
        field: None,
        reason,
    };
    if expr.len() > MAX_EXPRESSION_LEN {
        return Err(whole(format!(
            "it is {} bytes long; the limit is {MAX_EXPRESSION_LEN}",
            expr.len()
        )));
    }
    let parts: Vec<&str> = expr.split_whitespace().collect();
    let (sec, min, hour, dom, month, dow, year) = match parts.as_slice() {
        [s, mi, h, dom, mo, dow] => (*s, *mi, *h, *dom, *mo, *dow, None),
        [s, mi, h, dom, mo, dow, y] => (*s, *mi, *h, *dom, *mo, *dow, Some(*y)),
        [] => return Err(whole("the expression is empty; expected 6 or 7 fields (seconds minutes hours day-of-month month day-of-week [year])".into())),
        other => {
            let hint = if other.len() == 5 {
                "; Quartz cron starts with a seconds field, so prefix `0 ` to fire at second 0 of each match"
            } else {
                ""
            };
            return Err(whole(format!(
                "expected 6 or 7 fields (seconds minutes hours day-of-month month day-of-week [year]) separated by spaces, found {}{hint}",
                other.len()
            )));
        }
    };
    let seconds = plain_field(CronField::Seconds, sec)?;
    let minutes = plain_field(CronField::Minutes, min)?;
    let hours = plain_field(CronField::Hours, hour)?;
    let months = plain_field(CronField::Month, month)?;
    let years = match year {
        None => YearSet::all(),
        Some(text) => {
            let mut set = YearSet::EMPTY;
            for_each_item(CronField::Year, text, |item| {
                range_item(CronField::Year, item, &mut |v| set.insert(v))
            })?;
            set
        }
    };
    let dom = day_of_month(dom)?;
    let dow = day_of_week(dow)?;
    let days = match (dom, dow) {
        (None, None) => DaySpec::Every,
        (Some(dom), None) => DaySpec::Month(dom),
        (None, Some(dow)) => DaySpec::Week(dow),
        (Some(_), Some(_)) => {
            return err(
                CronField::DayOfWeek,
                "it cannot restrict the day together with day-of-month; put `?` in one of the two (e.g. `0 0 12 ? * MON` or `0 0 12 15 * ?`)",
            )
        }
    };
    Ok(Fields {
        seconds,
        minutes,
        hours,
        days,
        months,
        years,
    })
}

/// Splits a field into its comma-separated items, rejecting `?` (outside the day fields'
/// special handling) and empty items.
fn for_each_item(
    field: CronField,
    text: &str,
    mut each: impl FnMut(&str) -> Result<(), FieldError>,
) -> Result<(), FieldError> {
    for item in text.split(',') {
        if item.is_empty() {
            return err(field, format!("`{text}` has an empty list item"));
        }
        if item == "?" {
            return if matches!(field, CronField::DayOfMonth | CronField::DayOfWeek) {
                err(field, "`?` must be the whole field, not part of a list")
            } else {
                err(
                    field,
                    "`?` is only allowed in day-of-month and day-of-week; use `*` for every value",
                )
            };
        }
        each(item)?;
    }
    Ok(())
}

/// A field of plain items only (seconds, minutes, hours, month) as a bit mask.
fn plain_field(field: CronField, text: &str) -> Result<Bits, FieldError> {
    let mut bits: Bits = 0;
    for_each_item(field, text, |item| {
        range_item(field, item, &mut |v| bits |= 1 << v)
    })?;
    Ok(bits)
}

/// Whether the day field leaves the day unrestricted (`?` or `*`).
fn unrestricted(text: &str) -> bool {
    text == "?" || text == "*"
}

fn day_of_month(text: &str) -> Result<Option<DayOfMonth>, FieldError> {
    const F: CronField = CronField::DayOfMonth;
    if unrestricted(text) {
        return Ok(None);
    }
    let mut dom = DayOfMonth::default();
    for_each_item(F, text, |item| {
        if item.eq_ignore_ascii_case("L") {
            dom.last_minus |= 1;
        } else if item.eq_ignore_ascii_case("LW") {
            dom.last_minus_weekday |= 1;
        } else if let Some(rest) = item.strip_prefix("L-").or_else(|| item.strip_prefix("l-")) {
            let (n, weekday) = match rest.strip_suffix('W').or_else(|| rest.strip_suffix('w')) {
                Some(n) => (n, true),
                None => (rest, false),
            };
            let n = number(F, n)?;
            if n > 30 {
                return err(F, format!("in `{item}` the offset {n} is out of range 0-30 (`L-n` is n days before the last day)"));
            }
            if weekday {
                dom.last_minus_weekday |= 1 << n;
            } else {
                dom.last_minus |= 1 << n;
            }
        } else if let Some(n) = item.strip_suffix('W').or_else(|| item.strip_suffix('w')) {
            let n = number(F, n).map_err(|_| FieldError {
                field: Some(F),
                reason: format!("`{item}` is not `nW` with a day n in 1-31 (the weekday nearest to day n), nor `LW` or `L-nW`"),
            })?;
            if !(1..=31).contains(&n) {
                return err(F, format!("in `{item}` the day {n} is out of range 1-31"));
            }
            dom.nearest_weekday |= 1 << n;
        } else {
            range_item(F, item, &mut |v| dom.plain |= 1 << v)?;
        }
        Ok(())
    })?;
    Ok(Some(dom))
}

fn day_of_week(text: &str) -> Result<Option<DayOfWeek>, FieldError> {
    const F: CronField = CronField::DayOfWeek;
    if unrestricted(text) {
        return Ok(None);
    }
    let mut dow = DayOfWeek::default();
    if text.contains(',') && text.split(',').any(|item| item.ends_with(['L', 'l'])) {
        // As Quartz: "Support for specifying 'L' with other days of the week is not
        // implemented". `6L,MON` has no reading both tools would agree on.
        return err(
            F,
            format!("`{text}`: `L` and `nL` cannot be listed with other days of the week"),
        );
    }
    for_each_item(F, text, |item| {
        if item.eq_ignore_ascii_case("L") {
            // Quartz: `L` alone in day-of-week is the last day of the week, Saturday.
            dow.plain |= 1 << 7;
        } else if let Some((n, k)) = item.split_once('#') {
            let n = value(F, n)?;
            let k = number(F, k)?;
            if !(1..=5).contains(&k) {
                return err(F, format!("in `{item}` the occurrence {k} is out of range 1-5 (`n#k` is the k-th weekday n of the month)"));
            }
            if let Some(slot) = dow.nth.get_mut(k as usize) {
                *slot |= 1 << n;
            }
        } else if let Some(n) = item
            .strip_suffix('L')
            .or_else(|| item.strip_suffix('l'))
            .filter(|n| !n.is_empty())
        {
            let n = value(F, n)?;
            dow.last |= 1 << n;
        } else {
            range_item(F, item, &mut |v| dow.plain |= 1 << v)?;
        }
        Ok(())
    })?;
    Ok(Some(dow))
}

/// A plain item: `*`, `*/n`, `a`, `a-b`, `a/n`, `a-b/n`. Calls `add` with every value.
fn range_item(field: CronField, item: &str, add: &mut dyn FnMut(u32)) -> Result<(), FieldError> {
    let (base, step) = match item.split_once('/') {
        Some((base, step)) => (base, Some(step_value(field, item, step)?)),
        None => (item, None),
    };
    let (lo, hi) = if base == "*" {
        (field.min(), field.max())
    } else if let Some((a, b)) = base.split_once('-') {
        let (a, b) = (value(field, a)?, value(field, b)?);
        if a > b && field == CronField::Year {
            return err(
                field,
                format!("the range `{base}` runs backwards; write the earlier year first"),
            );
        }
        (a, b)
    } else {
        let a = value(field, base)?;
        match step {
            // `a/n`: from a to the end of the range, every n.
            Some(_) => (a, field.max()),
            None => (a, a),
        }
    };
    let span = field.span();
    let (off_lo, off_hi) = (lo - field.min(), hi - field.min());
    // A range with lo > hi wraps around the end of the field (FRI-MON, 22-2).
    let len = (off_hi + span - off_lo) % span + 1;
    let step = step.unwrap_or(1) as usize;
    for i in (0..len).step_by(step) {
        add(field.min() + (off_lo + i) % span);
    }
    Ok(())
}

/// The `n` of `/n`: at least 1 and smaller than the field's span.
fn step_value(field: CronField, item: &str, text: &str) -> Result<u32, FieldError> {
    let n = number(field, text)?;
    if n == 0 || n >= field.span() {
        return err(
            field,
            format!(
                "in `{item}` the step {n} is out of range 1-{}",
                field.span() - 1
            ),
        );
    }
    Ok(n)
}

/// A value of the field: a number in its range or (month, day-of-week) a three-letter name.
fn value(field: CronField, text: &str) -> Result<u32, FieldError> {
    if text.is_empty() {
        return err(field, "a value is missing (around a `-`, `/`, `#` or `,`)");
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        let n = number(field, text)?;
        if n < field.min() || n > field.max() {
            return err(field, format!("{n} is out of range {}", field.range_text()));
        }
        return Ok(n);
    }
    if let Some(n) = field.value_of_name(text) {
        return Ok(n);
    }
    let expected = match field {
        CronField::Month => "a month number 1-12 or name JAN-DEC",
        CronField::DayOfWeek => "a weekday number 1-7 (1 = SUN) or name SUN-SAT",
        CronField::DayOfMonth => "a day 1-31, `L`, `L-n`, `LW`, `L-nW` or `nW`",
        _ => "a number",
    };
    err(field, format!("`{text}` is not {expected}"))
}

/// A non-negative decimal number of at most 9 digits.
fn number(field: CronField, text: &str) -> Result<u32, FieldError> {
    if text.is_empty() {
        return err(field, "a number is missing (around a `-`, `/`, `#` or `,`)");
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return err(field, format!("`{text}` is not a number"));
    }
    if text.len() > 9 {
        return err(field, format!("`{text}` is too large"));
    }
    text.parse::<u32>()
        .or_else(|_| err(field, format!("`{text}` is not a number")))
}
