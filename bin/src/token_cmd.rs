//! `ferrojob token create|list|revoke`: an app's API tokens (needs the admin token or an
//! `admin` token of the app).

use anyhow::Result;
use ferrojob::api::{CreateToken, TokenRole};

use crate::fmt_ms;
use crate::remote::{print_json, runtime, AppArg, Conn};

/// `ferrojob token ...`
#[derive(Debug, clap::Subcommand)]
pub enum TokenCmd {
    /// Create an API token; prints it (this is the only time it is shown).
    Create {
        #[command(flatten)]
        app: AppArg,
        /// What it is for.
        #[arg(long)]
        name: String,
        /// read (GET only), operate (runs, stops, retries, enable/disable) or admin
        /// (definitions and tokens).
        #[arg(long)]
        role: TokenRole,
        /// Seconds until it stops working (default: never).
        #[arg(long)]
        expires_in_secs: Option<u64>,
    },
    /// List the app's tokens (never the tokens themselves).
    List {
        #[command(flatten)]
        app: AppArg,
    },
    /// Revoke a token: it stops working at once.
    Revoke {
        #[command(flatten)]
        app: AppArg,
        /// The token's id.
        id: u64,
    },
}

pub fn token(conn: &Conn, cmd: &TokenCmd) -> Result<()> {
    let client = conn.client()?;
    runtime()?.block_on(async {
        match cmd {
            TokenCmd::Create {
                app,
                name,
                role,
                expires_in_secs,
            } => {
                let req = CreateToken {
                    name: name.clone(),
                    role: *role,
                    expires_in_secs: *expires_in_secs,
                };
                let created = client.create_token(&app.app, &req).await?;
                if conn.json() {
                    return print_json(&created);
                }
                println!("{}", created.token);
                eprintln!(
                    "token {} ({}) created; it is shown only now",
                    created.view.id, created.view.role
                );
                Ok(())
            }
            TokenCmd::List { app } => {
                let list = client.list_tokens(&app.app).await?;
                if conn.json() {
                    return print_json(&list);
                }
                println!(
                    "{:>16}  {:<8}  {:<24}  {:<20}  EXPIRES",
                    "ID", "ROLE", "NAME", "CREATED"
                );
                for t in &list.items {
                    println!(
                        "{:>16}  {:<8}  {:<24}  {:<20}  {}",
                        t.id,
                        t.role,
                        t.name,
                        fmt_ms(t.created_at),
                        t.expires_at.map_or_else(|| "never".to_owned(), fmt_ms)
                    );
                }
                Ok(())
            }
            TokenCmd::Revoke { app, id } => {
                client.revoke_token(&app.app, *id).await?;
                if !conn.json() {
                    println!("token {id} revoked");
                }
                Ok(())
            }
        }
    })
}
