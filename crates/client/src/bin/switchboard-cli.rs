//! `switchboard-cli`: listen to a channel or send to it from a terminal or a script.
//!
//!   switchboard-cli listen room1                 # every event as a JSON line
//!   switchboard-cli send room1 '{"text":"hi"}'   # prints the outcome; exit 1 if refused
//!   switchboard-cli --url wss://chat.example.com/rt/cli listen room1   # over TLS
//!   switchboard-cli webhooks status --admin-key KEY   # pending, dead, delivered per endpoint
//!   switchboard-cli webhooks replay --admin-key KEY   # deliver dead events again

use clap::{Parser, Subcommand};
use switchboard_client::admin::Admin;
use switchboard_client::{cli, ClientError};

#[derive(Parser)]
#[command(
    name = "switchboard-cli",
    about = "Listen to and send to Switchboard channels"
)]
struct Cli {
    /// Realtime endpoint of the server.
    #[arg(long, default_value = "ws://127.0.0.1:3000/rt/cli", global = true)]
    url: String,
    /// Token that signs the socket in.
    #[arg(long, global = true, env = "SWITCHBOARD_TOKEN")]
    token: Option<String>,
    /// PEM file of a certificate authority to trust for wss:// besides the system's.
    #[arg(long, global = true, value_name = "PATH", env = "SWITCHBOARD_CA_FILE")]
    ca_file: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Join a channel and print every event as a JSON line.
    Listen {
        channel: String,
        /// Also take part in presence.
        #[arg(long)]
        presence: bool,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<usize>,
    },
    /// Send one JSON message to a channel and print the outcome.
    Send { channel: String, message: String },
    /// Webhook delivery, through the admin API (needs an admin key).
    Webhooks {
        /// One of the server's `admin_keys`.
        #[arg(long, env = "SWITCHBOARD_ADMIN_KEY", hide_env_values = true)]
        admin_key: String,
        #[command(subcommand)]
        action: Webhooks,
    },
}

#[derive(Subcommand)]
enum Webhooks {
    /// Print every endpoint with its pending, dead and delivered events.
    Status,
    /// Deliver the dead events (those past their give-up age) again, in order.
    Replay {
        /// Only this endpoint's (by its `name`); every endpoint's when absent.
        #[arg(long)]
        endpoint: Option<String>,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = Cli::parse();
    if let Some(path) = &cli.ca_file {
        if let Err(err) = switchboard_client::tls::add_ca_file(path) {
            eprintln!("switchboard-cli: {err}");
            std::process::exit(2);
        }
    }
    let token = cli.token.as_deref();
    let result = match cli.command {
        Command::Webhooks { admin_key, action } => {
            webhooks(&cli.url, &admin_key, action).await;
            return;
        }
        Command::Listen {
            channel,
            presence,
            count,
        } => {
            cli::listen(
                &cli.url,
                token,
                &channel,
                presence,
                count,
                &mut std::io::stdout().lock(),
            )
            .await
        }
        Command::Send { channel, message } => {
            match cli::send(&cli.url, token, &channel, &message).await {
                Ok(outcome) => {
                    println!("{outcome}");
                    if outcome["status"] != "ok" {
                        std::process::exit(1);
                    }
                    Ok(())
                }
                Err(err) => Err(err),
            }
        }
    };
    if let Err(err) = result {
        eprintln!("switchboard-cli: {err}");
        eprintln!(
            "is the server running at {}? pass --url to point elsewhere",
            cli.url
        );
        std::process::exit(2);
    }
}

/// `webhooks status|replay`: prints the server's JSON answer; exit 1 when the server refuses,
/// 2 when it cannot be reached.
async fn webhooks(url: &str, key: &str, action: Webhooks) {
    let outcome = match Admin::new(url, key) {
        Ok(admin) => match action {
            Webhooks::Status => admin.webhooks().await,
            Webhooks::Replay { endpoint } => admin.replay_webhooks(endpoint.as_deref()).await,
        },
        Err(err) => Err(err),
    };
    match outcome {
        Ok(answer) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&answer).unwrap_or_default()
            );
        }
        Err(ClientError::Http {
            status,
            code,
            message,
        }) => {
            eprintln!("switchboard-cli: the server refused: {message} (HTTP {status}, {code})");
            if status == 401 {
                eprintln!(
                    "pass one of the server's admin_keys with --admin-key or SWITCHBOARD_ADMIN_KEY"
                );
            }
            std::process::exit(1);
        }
        Err(err) => {
            eprintln!("switchboard-cli: {err}");
            eprintln!("is the server running at {url}? pass --url to point elsewhere");
            std::process::exit(2);
        }
    }
}
