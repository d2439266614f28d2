//! `ferrojob calendar ...`: an app's calendars (named sets of excluded dates that jobs and
//! workflows do not fire on), through the Rust client.

use anyhow::{Context, Result};
use ferrojob::api::{CalendarBody, CalendarView};

use crate::fmt_ms;
use crate::remote::{print_json, runtime, AppArg, Conn};

/// `ferrojob calendar ...`
#[derive(Debug, clap::Subcommand)]
pub enum CalendarCmd {
    /// The app's calendars, by name.
    List {
        #[command(flatten)]
        app: AppArg,
    },
    /// One calendar with its excluded dates.
    Get {
        #[command(flatten)]
        app: AppArg,
        /// The calendar's name.
        name: String,
    },
    /// Create or replace a calendar (the whole calendar: dates not given are no longer
    /// excluded).
    Put {
        #[command(flatten)]
        app: AppArg,
        /// The calendar's name: 1 to 64 bytes of letters, digits, '_', '-', '.'.
        name: String,
        /// IANA time zone the dates are read in (default UTC).
        #[arg(long)]
        zone: Option<String>,
        /// An excluded date (2026-12-25) or inclusive range (2026-12-24..2026-12-26); repeat
        /// for more.
        #[arg(long = "exclude", value_name = "DATE[..DATE]")]
        exclude: Vec<String>,
        /// A file of excluded dates and ranges, one a line (blank lines and `#` comments
        /// ignored), added to `--exclude`.
        #[arg(long, value_name = "PATH")]
        file: Option<std::path::PathBuf>,
        /// Free text for people.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Delete a calendar (refused while a job or workflow names it).
    Delete {
        #[command(flatten)]
        app: AppArg,
        /// The calendar's name.
        name: String,
    },
}

/// The dates of a `--file`: one a line, blank lines and `#` comments ignored.
pub fn dates_of_file(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

fn calendar_line(c: &CalendarView) -> String {
    let shown: Vec<&str> = c.excluded.iter().take(6).map(String::as_str).collect();
    let more = c.excluded.len().saturating_sub(shown.len());
    let more = if more > 0 {
        format!(" (+{more} more)")
    } else {
        String::new()
    };
    format!(
        "{:<24} {:<20} {}{more}",
        c.name,
        c.time_zone,
        shown.join(" ")
    )
}

/// Runs one `ferrojob calendar` command.
pub fn calendar(conn: &Conn, cmd: &CalendarCmd) -> Result<()> {
    let client = conn.client()?;
    runtime()?.block_on(async {
        match cmd {
            CalendarCmd::List { app } => {
                let list = client.list_calendars(&app.app).await?;
                if conn.json() {
                    return print_json(&list);
                }
                for c in &list.items {
                    println!("{}", calendar_line(c));
                }
                Ok(())
            }
            CalendarCmd::Get { app, name } => {
                let c = client.get_calendar(&app.app, name).await?;
                if conn.json() {
                    return print_json(&c);
                }
                println!("name:        {}", c.name);
                println!("time zone:   {}", c.time_zone);
                if !c.description.is_empty() {
                    println!("description: {}", c.description);
                }
                println!("updated:     {}", fmt_ms(c.updated_at));
                println!("excluded:");
                for e in &c.excluded {
                    println!("  {e}");
                }
                Ok(())
            }
            CalendarCmd::Put {
                app,
                name,
                zone,
                exclude,
                file,
                description,
            } => {
                let mut excluded = exclude.clone();
                if let Some(path) = file {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    excluded.extend(dates_of_file(&text));
                }
                let body = CalendarBody {
                    time_zone: zone.clone(),
                    excluded,
                    description: description.clone(),
                };
                let view = client.put_calendar(&app.app, name, &body).await?;
                if conn.json() {
                    return print_json(&view);
                }
                println!(
                    "calendar {} set ({} excluded entries, {})",
                    view.name,
                    view.excluded.len(),
                    view.time_zone
                );
                Ok(())
            }
            CalendarCmd::Delete { app, name } => {
                client.delete_calendar(&app.app, name).await?;
                if !conn.json() {
                    println!("calendar {name} deleted");
                }
                Ok(())
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dates_file_skips_blank_lines_and_comments() {
        let text = "# French bank holidays\n2026-12-25\n\n2026-12-31..2027-01-01  # new year\n";
        assert_eq!(
            dates_of_file(text),
            ["2026-12-25", "2026-12-31..2027-01-01"]
        );
    }
}
