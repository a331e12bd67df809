//! `switchboard-loadgen`: drives a running Switchboard server over real sockets and prints one
//! JSON line per run with its parameters and results.
//!
//! Scenarios:
//! - `history`: new connections join a channel at a fixed rate (open loop), each asking for the
//!   channel's recent messages; reports join→history latency.
//! - `publish`: publishers send as fast as the server acknowledges (a window of messages in
//!   flight each); reports acknowledged messages per second and send→ok latency.
//! - `cursors`: rooms of users that all send volatile cursor updates at a fixed rate and
//!   receive each other's; reports deliveries per second, send→receive latency and how many
//!   updates the server coalesced.
//! - `fanout`: rooms of subscribers with one publisher each, against Switchboard, a plain
//!   WebSocket broadcast server or Socket.IO; latency, loss, duplicates, order, CPU per 1,000
//!   deliveries and memory per connection.
//! - `storm`: thousands of subscribers and acknowledged publishers through a server restart
//!   (the bench script kills and restarts it); reports how long until every socket is back
//!   and caught up, the server's peak CPU and memory meanwhile, and loss, duplicates, order.
//! - `channels`: pairs of sockets sharing 100 channels each (100,000 channels by default);
//!   reports memory per channel and per membership, join latency, then messages on a share of
//!   the channels.

mod channels;
mod cursors;
mod fanout;
mod history;
mod order;
mod peer;
mod publish;
mod reconnect;
mod report;
mod storm;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "switchboard-loadgen", about = "Load generator for Switchboard")]
struct Cli {
    /// Realtime endpoint of the server under test (ws:// or wss://).
    #[arg(long, default_value = "ws://127.0.0.1:3000/rt/loadgen", global = true)]
    url: String,
    /// PEM file of a certificate authority to trust for wss:// besides the system's.
    #[arg(long, global = true, value_name = "PATH", env = "SWITCHBOARD_CA_FILE")]
    ca_file: Option<std::path::PathBuf>,
    /// How long to measure, in seconds.
    #[arg(long, default_value_t = 10, global = true)]
    duration: u64,
    /// Process id of the server, to report its CPU time and memory; several, comma-separated
    /// (the nodes of a cluster, its Redis), are added up.
    #[arg(long, global = true, value_delimiter = ',')]
    server_pid: Vec<u32>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Joins per second, each fetching the channel's latest messages.
    History(history::Options),
    /// Durable publish throughput.
    Publish(publish::Options),
    /// Every member of every room sending cursor updates.
    Cursors(cursors::Options),
    /// Rooms of subscribers, one publisher each, against Switchboard or a peer server.
    Fanout(fanout::Options),
    /// Every socket through a server restart: reconnect, resume, resend.
    Storm(storm::Options),
    /// Many two-member channels: memory per channel and membership, join latency, messages.
    Channels(channels::Options),
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Some(path) = &cli.ca_file {
        if let Err(err) = switchboard_client::tls::add_ca_file(path) {
            eprintln!("switchboard-loadgen: {err}");
            std::process::exit(1);
        }
    }
    let run = report::Run::new(&cli.url, cli.duration, cli.server_pid);
    let outcome = match cli.scenario {
        Scenario::History(options) => history::run(&run, options).await,
        Scenario::Publish(options) => publish::run(&run, options).await,
        Scenario::Cursors(options) => cursors::run(&run, options).await,
        Scenario::Fanout(options) => fanout::run(&run, options).await,
        Scenario::Storm(options) => storm::run(&run, options).await,
        Scenario::Channels(options) => channels::run(&run, options).await,
    };
    match outcome {
        Ok(line) => println!("{line}"),
        Err(err) => {
            eprintln!("switchboard-loadgen: {err}");
            eprintln!(
                "is the server running at {}? start it with scripts/run or pass --url",
                cli.url
            );
            std::process::exit(1);
        }
    }
}
