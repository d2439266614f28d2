//! Property test: CRON's `next_after` against a brute-force scan.
//!
//! Expressions are drawn from the whole Quartz syntax as a small syntax tree, rendered to text
//! for the parser, and evaluated directly by a *model* written independently of the engine:
//! every field is a predicate on a value (ranges as "offset from the start, modulo the field's
//! span"), `nW` is "the Monday–Friday day of the month closest to n", `LW` "a weekday with no
//! weekday after it in the month", and so on. The scan walks UTC minutes, reads the wall clock
//! in the zone and applies the DST contract literally: a local time fires at its first reading;
//! local times skipped by a gap fire at the first instant after it. Zones: UTC, Europe/Berlin,
//! America/New_York and Australia/Lord_Howe (whose DST shift is 30 minutes).

use chrono::{DateTime, Datelike, NaiveDate, Offset, TimeZone, Timelike};
use chrono_tz::Tz;
use ferrojob::time_expression::{TimeExpression, TimeExpressionType};
use proptest::prelude::*;

/// One plain list item of a field.
#[derive(Debug, Clone)]
enum Item {
    Any,
    AnyStep(u32),
    Val(u32),
    Range(u32, u32),
    RangeStep(u32, u32, u32),
    ValStep(u32, u32),
}

#[derive(Debug, Clone)]
enum DomItem {
    Plain(Item),
    Last(u32),
    LastWeekday,
    /// `L-nW`.
    LastMinusNearest(u32),
    Nearest(u32),
}

#[derive(Debug, Clone)]
enum DowItem {
    Plain(Item),
    LastOf(u32),
    Nth(u32, u32),
}

#[derive(Debug, Clone)]
enum Days {
    /// Rendered as (day-of-month, day-of-week): `?`/`*` combinations.
    Every(&'static str, &'static str),
    Month(Vec<DomItem>, &'static str),
    Week(&'static str, Vec<DowItem>),
}

#[derive(Debug, Clone)]
struct Expr {
    seconds: Vec<Item>,
    minutes: Vec<Item>,
    hours: Vec<Item>,
    days: Days,
    months: Vec<Item>,
    years: Option<(u32, u32)>,
    /// Render month and weekday values as names, and in lower case.
    names: bool,
    lower: bool,
}

#[derive(Clone, Copy)]
struct Span {
    min: u32,
    max: u32,
}

const SEC: Span = Span { min: 0, max: 59 };
const HOUR: Span = Span { min: 0, max: 23 };
const DOM: Span = Span { min: 1, max: 31 };
const MONTH: Span = Span { min: 1, max: 12 };
const DOW: Span = Span { min: 1, max: 7 };

impl Span {
    fn len(self) -> u32 {
        self.max - self.min + 1
    }
}

fn item_matches(item: &Item, f: Span, x: u32) -> bool {
    let off = |a: u32| (x + f.len() - a) % f.len();
    let width = |a: u32, b: u32| (b + f.len() - a) % f.len();
    match *item {
        Item::Any => true,
        Item::AnyStep(n) => (x - f.min).is_multiple_of(n),
        Item::Val(v) => x == v,
        Item::Range(a, b) => off(a) <= width(a, b),
        Item::RangeStep(a, b, n) => off(a) <= width(a, b) && off(a) % n == 0,
        Item::ValStep(a, n) => x >= a && (x - a).is_multiple_of(n),
    }
}

fn field_matches(items: &[Item], f: Span, x: u32) -> bool {
    items.iter().any(|i| item_matches(i, f, x))
}

fn render_value(v: u32, f: Span, e: &Expr) -> String {
    const MONTHS: [&str; 12] = [
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ];
    const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
    let name = match (f.min, f.max) {
        (1, 12) if e.names => MONTHS.get(v as usize - 1).copied(),
        (1, 7) if e.names => DAYS.get(v as usize - 1).copied(),
        _ => None,
    };
    match name {
        Some(n) if e.lower => n.to_lowercase(),
        Some(n) => n.to_string(),
        None => v.to_string(),
    }
}

fn render_item(item: &Item, f: Span, e: &Expr) -> String {
    let v = |x| render_value(x, f, e);
    match *item {
        Item::Any => "*".into(),
        Item::AnyStep(n) => format!("*/{n}"),
        Item::Val(a) => v(a),
        Item::Range(a, b) => format!("{}-{}", v(a), v(b)),
        Item::RangeStep(a, b, n) => format!("{}-{}/{n}", v(a), v(b)),
        Item::ValStep(a, n) => format!("{}/{n}", v(a)),
    }
}

fn render_list(items: &[Item], f: Span, e: &Expr) -> String {
    items
        .iter()
        .map(|i| render_item(i, f, e))
        .collect::<Vec<_>>()
        .join(",")
}

impl Expr {
    fn render(&self) -> String {
        let (dom, dow) = match &self.days {
            Days::Every(a, b) => (a.to_string(), b.to_string()),
            Days::Month(items, other) => {
                let dom: Vec<String> = items
                    .iter()
                    .map(|i| match i {
                        DomItem::Plain(p) => render_item(p, DOM, self),
                        DomItem::Last(0) => "L".into(),
                        DomItem::Last(n) => format!("L-{n}"),
                        DomItem::LastWeekday => "LW".into(),
                        DomItem::LastMinusNearest(n) => format!("L-{n}W"),
                        DomItem::Nearest(n) => format!("{n}W"),
                    })
                    .collect();
                (dom.join(","), other.to_string())
            }
            Days::Week(other, items) => {
                let dow: Vec<String> = items
                    .iter()
                    .map(|i| match i {
                        DowItem::Plain(p) => render_item(p, DOW, self),
                        DowItem::LastOf(n) => format!("{}L", render_value(*n, DOW, self)),
                        DowItem::Nth(n, k) => format!("{}#{k}", render_value(*n, DOW, self)),
                    })
                    .collect();
                (other.to_string(), dow.join(","))
            }
        };
        let mut s = format!(
            "{} {} {} {dom} {} {dow}",
            render_list(&self.seconds, SEC, self),
            render_list(&self.minutes, SEC, self),
            render_list(&self.hours, HOUR, self),
            render_list(&self.months, MONTH, self),
        );
        if let Some((a, b)) = self.years {
            s.push_str(&format!(" {a}-{b}"));
        }
        s
    }

    /// Whether the wall-clock date matches the month, year and day fields.
    fn date_matches(&self, date: NaiveDate) -> bool {
        let (y, m, d) = (date.year() as u32, date.month(), date.day());
        if let Some((a, b)) = self.years {
            if y < a || y > b {
                return false;
            }
        }
        if !(1970..=2099).contains(&y) || !field_matches(&self.months, MONTH, m) {
            return false;
        }
        let dim = days_in_month(date);
        let wd = |day: u32| {
            NaiveDate::from_ymd_opt(date.year(), m, day)
                .unwrap()
                .weekday()
                .number_from_sunday()
        };
        let is_weekday = |day: u32| (2..=6).contains(&wd(day));
        // The Monday-Friday day of the month closest to `n`.
        let nearest = |n: u32| {
            (1..=dim)
                .filter(|x| is_weekday(*x))
                .min_by_key(|x| x.abs_diff(n))
        };
        match &self.days {
            Days::Every(..) => true,
            Days::Month(items, _) => items.iter().any(|i| match i {
                DomItem::Plain(p) => item_matches(p, DOM, d),
                DomItem::Last(n) => d + n == dim,
                DomItem::LastWeekday => is_weekday(d) && (d + 1..=dim).all(|x| !is_weekday(x)),
                DomItem::Nearest(n) => *n <= dim && nearest(*n) == Some(d),
                DomItem::LastMinusNearest(n) => *n < dim && nearest(dim - n) == Some(d),
            }),
            Days::Week(_, items) => items.iter().any(|i| match i {
                DowItem::Plain(p) => item_matches(p, DOW, wd(d)),
                DowItem::LastOf(n) => wd(d) == *n && d + 7 > dim,
                DowItem::Nth(n, k) => wd(d) == *n && (d - 1) / 7 + 1 == *k,
            }),
        }
    }
}

fn days_in_month(date: NaiveDate) -> u32 {
    let (y, m) = (date.year(), date.month());
    let next = if m == 12 {
        NaiveDate::from_ymd_opt(y + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(y, m + 1, 1)
    };
    next.unwrap().pred_opt().unwrap().day()
}

/// Wall-clock reading (local seconds) of `tz` at `utc_s`.
fn local(tz: Tz, utc_s: i64) -> i64 {
    let t = DateTime::from_timestamp(utc_s, 0).unwrap();
    utc_s
        + i64::from(
            tz.offset_from_utc_datetime(&t.naive_utc())
                .fix()
                .local_minus_utc(),
        )
}

/// The first `limit` fires strictly after `after_s` and up to `end_s` (seconds), by walking UTC
/// minutes. Offsets are whole minutes in the zones used.
fn brute_force(e: &Expr, tz: Tz, after_s: i64, end_s: i64, limit: usize) -> Vec<i64> {
    let mut fires = Vec::new();
    let mut m = (after_s - 3 * 3600).div_euclid(60) * 60;
    let mut max_seen = local(tz, m - 60);
    let mut prev_local = max_seen;
    let mut day_cache: Option<(i64, bool)> = None;
    let mut matches_local = |lt: i64| -> bool {
        let day = lt.div_euclid(86_400);
        let ok = match day_cache {
            Some((d, ok)) if d == day => ok,
            _ => {
                let date = DateTime::from_timestamp(day * 86_400, 0)
                    .unwrap()
                    .date_naive();
                let ok = e.date_matches(date);
                day_cache = Some((day, ok));
                ok
            }
        };
        if !ok {
            return false;
        }
        let t = DateTime::from_timestamp(lt, 0).unwrap();
        field_matches(&e.hours, HOUR, t.hour())
            && field_matches(&e.minutes, SEC, t.minute())
            && field_matches(&e.seconds, SEC, t.second())
    };
    while m <= end_s && fires.len() < limit {
        let lm = local(tz, m);
        let push = |t: i64, fires: &mut Vec<i64>| {
            if t > after_s && t <= end_s && fires.last() != Some(&t) {
                fires.push(t);
            }
        };
        if lm > prev_local + 60 {
            // A gap: local times [prev_local + 60, lm) are never read; any match fires at m.
            let skipped = (prev_local + 60..lm).any(&mut matches_local);
            if skipped {
                push(m, &mut fires);
            }
        }
        if lm > max_seen {
            for s in 0..60 {
                if matches_local(lm + s) {
                    push(m + s, &mut fires);
                }
            }
            max_seen = lm;
        }
        prev_local = lm;
        m += 60;
    }
    fires.truncate(limit);
    fires
}

fn item(f: Span) -> impl Strategy<Value = Item> {
    let v = f.min..=f.max;
    prop_oneof![
        2 => Just(Item::Any),
        1 => (1..f.len()).prop_map(Item::AnyStep),
        4 => v.clone().prop_map(Item::Val),
        2 => (v.clone(), v.clone()).prop_map(|(a, b)| Item::Range(a, b)),
        1 => (v.clone(), v.clone(), 1..f.len()).prop_map(|(a, b, n)| Item::RangeStep(a, b, n)),
        1 => (v, 1..f.len()).prop_map(|(a, n)| Item::ValStep(a, n)),
    ]
}

fn list(f: Span) -> impl Strategy<Value = Vec<Item>> {
    prop::collection::vec(item(f), 1..=3)
}

fn days() -> impl Strategy<Value = Days> {
    let unrestricted = prop_oneof![Just("?"), Just("*")];
    let dom_item = prop_oneof![
        3 => item(DOM).prop_map(DomItem::Plain),
        1 => (0u32..=30).prop_map(DomItem::Last),
        1 => Just(DomItem::LastWeekday),
        1 => (0u32..=30).prop_map(DomItem::LastMinusNearest),
        2 => (1u32..=31).prop_map(DomItem::Nearest),
    ];
    let dow_item = prop_oneof![
        3 => item(DOW).prop_map(DowItem::Plain),
        1 => (1u32..=7).prop_map(DowItem::LastOf),
        2 => (1u32..=7, 1u32..=5).prop_map(|(n, k)| DowItem::Nth(n, k)),
    ];
    prop_oneof![
        1 => prop_oneof![Just(Days::Every("?", "*")), Just(Days::Every("*", "?")), Just(Days::Every("*", "*"))],
        2 => (prop::collection::vec(dom_item, 1..=3), unrestricted.clone()).prop_map(|(i, o)| Days::Month(i, o)),
        // An `nL` item only alone (a list with one is refused, as in Quartz).
        2 => (unrestricted, prop::collection::vec(dow_item, 1..=3)).prop_map(|(o, mut i)| {
            if let Some(p) = i.iter().position(|x| matches!(x, DowItem::LastOf(_))) {
                i = vec![i.swap_remove(p)];
            }
            Days::Week(o, i)
        }),
    ]
}

fn expr() -> impl Strategy<Value = Expr> {
    let years = prop_oneof![
        4 => Just(None),
        1 => (2024u32..=2028, 0u32..=2).prop_map(|(a, w)| Some((a, a + w))),
    ];
    // Few fires per day, so that the compared fires reach across days and DST transitions.
    let seconds = prop_oneof![
        3 => Just(vec![Item::Val(0)]),
        2 => (0u32..60).prop_map(|v| vec![Item::Val(v)]),
        1 => list(SEC),
    ];
    let minutes = prop_oneof![
        2 => (0u32..60).prop_map(|v| vec![Item::Val(v)]),
        1 => (0u32..30, prop::sample::select(vec![10u32, 15, 20, 30])).prop_map(|(a, n)| vec![Item::ValStep(a, n)]),
        1 => list(SEC),
    ];
    // Often the hours around the transitions (01:00-03:59 local).
    let hours = prop_oneof![
        2 => (0u32..=4, 0u32..=3).prop_map(|(a, w)| vec![Item::Range(a, a + w)]),
        1 => (1u32..=3).prop_map(|v| vec![Item::Val(v)]),
        2 => list(HOUR),
    ];
    (
        seconds,
        minutes,
        hours,
        days(),
        list(MONTH),
        years,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(seconds, minutes, hours, days, months, years, names, lower)| Expr {
                seconds,
                minutes,
                hours,
                days,
                months,
                years,
                names,
                lower,
            },
        )
}

/// DST transitions (UTC seconds) of the zones used, so that many cases start near one.
const TRANSITIONS: [i64; 8] = [
    1_774_746_000, // 2026-03-29T01:00Z Berlin spring forward
    1_792_890_000, // 2026-10-25T01:00Z Berlin fall back
    1_772_953_200, // 2026-03-08T07:00Z New York spring forward
    1_793_512_800, // 2026-11-01T06:00Z New York fall back
    1_743_210_000, // 2025-03-30T01:00Z Berlin spring forward
    1_762_063_200, // 2025-11-02T06:00Z New York fall back
    1_775_314_800, // 2026-04-04T15:00Z Lord Howe fall back by 30 minutes
    1_791_041_400, // 2026-10-03T15:30Z Lord Howe spring forward by 30 minutes
];

fn after() -> impl Strategy<Value = i64> {
    prop_oneof![
        // Near a DST transition, to the millisecond.
        3 => (prop::sample::select(TRANSITIONS.to_vec()), -86_400_000i64..=3_600_000).prop_map(|(t, d)| t * 1000 + d),
        // Anywhere in 2024-2027.
        1 => 1_704_067_200_000i64..1_830_297_600_000,
    ]
}

fn zone() -> impl Strategy<Value = Tz> {
    prop::sample::select(vec![
        Tz::UTC,
        Tz::Europe__Berlin,
        Tz::America__New_York,
        Tz::Australia__Lord_Howe,
    ])
}

/// Window searched by the brute force, in days, and the fires compared.
const WINDOW_DAYS: i64 = 12;
const FIRES: usize = 40;

fn compare(e: &Expr, tz: Tz, after: i64) -> Result<(), TestCaseError> {
    let text = e.render();
    let parsed = TimeExpression::parse(TimeExpressionType::Cron, &text, Some(tz.name()))
        .map_err(|err| TestCaseError::fail(format!("{text}: {err}")))?;
    let after_s = after.div_euclid(1000);
    let end_s = after_s + WINDOW_DAYS * 86_400;
    let want: Vec<i64> = brute_force(e, tz, after_s, end_s, FIRES);
    let got: Vec<i64> = parsed
        .next_n(0, after, FIRES)
        .into_iter()
        .map(|t| {
            assert_eq!(t % 1000, 0, "fires are whole seconds");
            t / 1000
        })
        .filter(|t| *t <= end_s)
        .collect();
    let show = |v: &[i64]| -> Vec<String> {
        v.iter()
            .map(|t| {
                DateTime::from_timestamp(*t, 0)
                    .unwrap()
                    .with_timezone(&tz)
                    .to_rfc3339()
            })
            .collect()
    };
    prop_assert_eq!(
        show(&got),
        show(&want),
        "`{}` in {} after {}",
        text,
        tz.name(),
        DateTime::from_timestamp_millis(after).unwrap()
    );
    Ok(())
}

/// 128 cases (a few seconds in a debug build); `PROPTEST_CASES=N` runs more.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(128)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn cron_matches_brute_force(e in expr(), tz in zone(), after in after()) {
        compare(&e, tz, after)?;
    }
}
