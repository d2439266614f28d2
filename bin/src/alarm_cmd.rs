//! `ferrojob alarm ...`: an app's alarm channels and its alarms with their delivery history,
//! through the Rust client.

use anyhow::Result;
use ferrojob::alarm::channel::ChannelKind;
use ferrojob::api::{AlarmView, ChannelBody, PageQuery};

use crate::fmt_ms;
use crate::remote::{print_json, print_page, runtime, AppArg, Conn};

/// `ferrojob alarm ...`
#[derive(Debug, clap::Subcommand)]
pub enum AlarmCmd {
    /// The app's alarms, newest first, with their delivery status and attempts.
    List {
        #[command(flatten)]
        app: AppArg,
        /// Page size (1 to 1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// `--cursor` printed by the previous page.
        #[arg(long)]
        cursor: Option<u64>,
    },
    /// Create or replace a channel that job rules name in `alarm.channels`.
    SetChannel {
        #[command(flatten)]
        app: AppArg,
        /// The channel's name.
        name: String,
        /// WEBHOOK, SLACK, DINGTALK, FEISHU, WECOM or EMAIL.
        #[arg(long, default_value = "WEBHOOK", value_parser = parse_kind)]
        kind: ChannelKind,
        /// The http:// or https:// URL alarms are posted to (`--url` is the server's); for EMAIL,
        /// `smtp://[user@]host[:port]?from=ADDR&to=ADDR[,ADDR...]` (STARTTLS; `smtps://` for
        /// TLS; `&tls=none` for a trusted local relay).
        #[arg(long)]
        endpoint: String,
        /// Sign requests with HMAC-SHA256 under this key (X-Ferrojob-Signature; DingTalk and
        /// Feishu: the robot's signing secret); for EMAIL, the SMTP password.
        #[arg(long, env = "FERROJOB_CHANNEL_SECRET", hide_env_values = true)]
        secret: Option<String>,
    },
    /// The app's channels.
    Channels {
        #[command(flatten)]
        app: AppArg,
    },
    /// Send a test alarm to a channel now.
    Test {
        #[command(flatten)]
        app: AppArg,
        /// The channel's name.
        name: String,
    },
}

fn parse_kind(s: &str) -> Result<ChannelKind, String> {
    serde_json::from_value(serde_json::Value::String(s.to_ascii_uppercase())).map_err(|_| {
        format!("unknown channel kind {s:?}: WEBHOOK, SLACK, DINGTALK, FEISHU, WECOM or EMAIL")
    })
}

fn alarm_line(a: &AlarmView) -> String {
    let last = a
        .attempts
        .last()
        .map(|t| format!(" last={}:{}", t.channel, t.detail))
        .unwrap_or_default();
    format!(
        "{} {:<9} {} attempts={}{} {}",
        fmt_ms(a.raised_at),
        a.status,
        a.id,
        a.attempt_count,
        last,
        a.message
    )
}

/// Runs one `ferrojob alarm` command.
pub fn alarm(conn: &Conn, cmd: &AlarmCmd) -> Result<()> {
    let client = conn.client()?;
    runtime()?.block_on(async {
        match cmd {
            AlarmCmd::List { app, limit, cursor } => {
                let query = PageQuery {
                    limit: Some(*limit),
                    cursor: *cursor,
                };
                let page = client.list_alarms(&app.app, query).await?;
                print_page(
                    conn.json(),
                    &page,
                    &page.items,
                    page.next_cursor,
                    alarm_line,
                )
            }
            AlarmCmd::SetChannel {
                app,
                name,
                kind,
                endpoint,
                secret,
            } => {
                let body = ChannelBody {
                    kind: *kind,
                    url: endpoint.clone(),
                    secret: secret.clone(),
                };
                let view = client.put_channel(&app.app, name, &body).await?;
                if conn.json() {
                    return print_json(&view);
                }
                println!("channel {} set", view.name);
                Ok(())
            }
            AlarmCmd::Channels { app } => {
                let list = client.list_channels(&app.app).await?;
                if conn.json() {
                    return print_json(&list);
                }
                for c in &list.items {
                    let signed = if c.signed { " signed" } else { "" };
                    let kind = serde_json::to_string(&c.kind)?;
                    println!(
                        "{:<20} {:<10} {}{signed}",
                        c.name,
                        kind.trim_matches('"'),
                        c.url
                    );
                }
                Ok(())
            }
            AlarmCmd::Test { app, name } => {
                let r = client.test_channel(&app.app, name).await?;
                if conn.json() {
                    return print_json(&r);
                }
                if r.delivered {
                    println!("delivered ({})", r.detail);
                    Ok(())
                } else {
                    anyhow::bail!("not delivered: {}", r.detail)
                }
            }
        }
    })
}
