//! `ferrojob validate`: the next trigger times of a time expression.

use anyhow::{bail, Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use ferrojob::calendar::{preview, Calendar};
use ferrojob::time_expression::{EpochMs, TimeExpression, TimeExpressionType};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Expression type: cron, fixed-rate, fixed-delay or daily-time-interval.
    #[arg(long = "type", value_name = "TYPE")]
    kind: String,
    /// The expression: a Quartz cron string, a period in milliseconds, or a daily-time-interval
    /// JSON object.
    #[arg(long)]
    expr: String,
    /// IANA time zone of a cron or daily-time-interval expression (default UTC).
    #[arg(long)]
    tz: Option<String>,
    /// Print trigger times strictly after this RFC 3339 instant (default: now). Fixed rates
    /// and delays count from it.
    #[arg(long)]
    after: Option<String>,
    /// How many trigger times to print.
    #[arg(long, default_value_t = 5)]
    count: usize,
    /// A date (2026-12-25) or inclusive range (2026-12-24..2026-12-26) to exclude, read in
    /// `--tz`, as a calendar would (repeat for more): excluded trigger times are printed as
    /// skipped and do not count toward `--count`.
    #[arg(long = "exclude", value_name = "DATE[..DATE]")]
    exclude: Vec<String>,
}

pub fn run(args: &Args) -> Result<()> {
    let kind: TimeExpressionType = args
        .kind
        .parse()
        .with_context(|| format!("--type {}", args.kind))?;
    // The library's error names the expression, the offending field and why.
    let expression = TimeExpression::parse(kind, &args.expr, args.tz.as_deref())?;
    let after = match &args.after {
        Some(text) => DateTime::parse_from_rfc3339(text)
            .with_context(|| format!("--after '{text}' is not an RFC 3339 instant"))?
            .with_timezone(&Utc),
        None => Utc::now(),
    };
    if matches!(kind, TimeExpressionType::Api | TimeExpressionType::Workflow) {
        bail!(
            "{} jobs have no trigger times of their own: they run only when triggered",
            args.kind
        );
    }
    let calendar = if args.exclude.is_empty() {
        None
    } else {
        Some(Calendar::new(
            args.tz.as_deref().unwrap_or_default(),
            &args.exclude,
        )?)
    };
    let after_ms = after.timestamp_millis();
    let p = preview(
        &expression,
        calendar.as_ref(),
        after_ms,
        after_ms,
        args.count,
    );
    let tz = expression.time_zone();
    // Both lists ascending: merged, each time printed once, the skipped ones marked.
    let mut all: Vec<(EpochMs, bool)> = p.fires.iter().map(|t| (*t, false)).collect();
    all.extend(p.skipped.iter().take(args.count).map(|t| (*t, true)));
    all.sort_unstable();
    for (at, skipped) in &all {
        let Some(utc) = DateTime::<Utc>::from_timestamp_millis(*at) else {
            bail!("trigger time {at} ms is outside the representable range");
        };
        let text = utc
            .with_timezone(&tz)
            .to_rfc3339_opts(SecondsFormat::AutoSi, true);
        if *skipped {
            println!("{text} skipped (excluded)");
        } else {
            println!("{text}");
        }
    }
    let times = p.fires;
    if times.len() < args.count {
        let why = if p.skipped.is_empty() {
            ""
        } else {
            " outside the excluded dates (within the trigger times examined)"
        };
        eprintln!(
            "note: the expression has only {} trigger time(s){why} after {}",
            times.len(),
            after.to_rfc3339_opts(SecondsFormat::AutoSi, true)
        );
    }
    Ok(())
}
