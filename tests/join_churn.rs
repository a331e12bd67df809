//! Opening channels does its I/O under the channel's own activation, never under a lock that
//! all channels share: many sockets opening new channels do not hold up a busy room. A test
//! binary of its own, so no other test competes for the CPU while it measures.

mod support;

use serde_json::json;
use std::time::{Duration, Instant};
use support::{TestServer, WAIT};
use switchboard_client::Client;
use switchboard_protocol::Action;

/// Joins of new channels do their I/O (reading where a channel stands; on a cluster, a Redis
/// subscribe) under that channel alone: 200 sockets opening new channels one after another do
/// not hold up the messages of a room that is already busy. The busy room is measured from a
/// thread of its own, so the 200 sockets' client side does not delay its measurements.
#[test]
fn sockets_opening_new_channels_do_not_hold_up_a_busy_room() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let server = TestServer::start_with(&[
        ("SWITCHBOARD_FRAMES_PER_SECOND", "100000"),
        ("SWITCHBOARD_FRAME_BURST", "100000"),
    ]);
    let stop = Arc::new(AtomicBool::new(false));
    let joins = Arc::new(AtomicUsize::new(0));
    let churn = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut churners = Vec::new();
    for socket in 0..200 {
        let (url, stop, joins) = (server.url(), stop.clone(), joins.clone());
        churners.push(churn.spawn(async move {
            let mut client = Client::connect(&url).await.unwrap();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let name = format!("new-{socket}-{n}");
                client.join(&name, true, false).await.unwrap();
                client.leave(&name).await.unwrap();
                joins.fetch_add(1, Ordering::Relaxed);
                n += 1;
                // 150 ms apart: over a thousand joins per second in all, enough to hold the
                // busy room up if joins waited on each other's I/O (a Redis subscribe, a store
                // read), while leaving a debug build on a small shared machine the CPU to
                // answer, so that what is measured is waiting, not CPU.
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        }));
    }
    let measure = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut busy = measure.block_on(async {
        let mut busy = server.client().await;
        busy.join("busy", false, false).await.unwrap();
        busy
    });
    // Up to three windows of 200 round trips while the joins go on. A room that waits on
    // joins is slow in every window; a shared machine's other work (a CI neighbour, the churn's
    // own client side) makes one window slow now and then, and the next one is not.
    let mut windows = Vec::new();
    measure.block_on(async {
        while joins.load(Ordering::Relaxed) < 200 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for _ in 0..3 {
            let mut round_trips = round_trips_of(&mut busy).await;
            let (p50, p99) = percentiles(&mut round_trips);
            windows.push((joins.load(Ordering::Relaxed), p50, p99));
            if p99 < Duration::from_millis(50) {
                break;
            }
        }
    });
    stop.store(true, Ordering::Relaxed);
    churn.block_on(async {
        for churner in churners {
            churner.await.unwrap();
        }
    });
    // The same room with nothing else going on: how fast this machine is right now.
    let mut quiet = measure.block_on(round_trips_of(&mut busy));
    let (quiet_p50, quiet_p99) = percentiles(&mut quiet);
    for (opened, p50, p99) in &windows {
        eprintln!(
            "{opened} channels opened by then; round trip p50 {p50:?}, p99 {p99:?} \
             (alone: p50 {quiet_p50:?}, p99 {quiet_p99:?})"
        );
    }
    // The target is 50 ms at p99; on a machine that other work slows down, the bound grows
    // with the room's own round trip measured alone, so only waiting on joins fails it.
    let bound = Duration::from_millis(50).max(quiet_p99 * 4);
    let best = windows.iter().map(|(_, _, p99)| *p99).min().unwrap();
    assert!(
        best < bound,
        "p99 over {bound:?} in each of {} windows while channels opened: {windows:?}",
        windows.len()
    );
}

/// 200 round trips (publish, then the echo) in the room `busy` has joined.
async fn round_trips_of(busy: &mut Client) -> Vec<Duration> {
    let mut round_trips = Vec::new();
    for n in 0..200 {
        let sent = Instant::now();
        busy.publish("busy", json!(n)).await.unwrap();
        let echo = busy.expect(Action::Message, WAIT).await.unwrap();
        assert_eq!(echo.payload, n);
        round_trips.push(sent.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    round_trips
}

/// The median and the 99th percentile.
fn percentiles(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort();
    (
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100 - 1],
    )
}
