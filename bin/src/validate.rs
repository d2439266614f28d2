//! `ferrojob validate`: the next trigger times of a time expression.

use anyhow::{bail, Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use ferrojob::time_expression::{TimeExpression, TimeExpressionType};

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
    let times = expression.next_n(
        after.timestamp_millis(),
        after.timestamp_millis(),
        args.count,
    );
    let tz = expression.time_zone();
    for at in &times {
        let Some(utc) = DateTime::<Utc>::from_timestamp_millis(*at) else {
            bail!("trigger time {at} ms is outside the representable range");
        };
        println!(
            "{}",
            utc.with_timezone(&tz)
                .to_rfc3339_opts(SecondsFormat::AutoSi, true)
        );
    }
    if times.len() < args.count {
        eprintln!(
            "note: the expression has only {} trigger time(s) after {}",
            times.len(),
            after.to_rfc3339_opts(SecondsFormat::AutoSi, true)
        );
    }
    Ok(())
}
