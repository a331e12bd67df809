//! Which nodes are alive: each beats into `{prefix}:nodes` (a sorted set scored by when its
//! beat expires) every `node_ttl / 3`. The first node to notice another's beat expired removes
//! its members and publishes their `leave`, so a crashed node's sockets leave presence within
//! `node_ttl` plus one beat; a node stopped cleanly departs at once. A node whose record Redis
//! forgot (a restart without persistence, or it was taken for dead) lists its members again,
//! and one that lost queued commands reconciles its member records with its sockets.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;
use switchboard_protocol::Action;
use uuid::Uuid;

use super::presence::{self, node_key, nodes_key, MemberRecord};
use super::Link;
use crate::history::StoreError;
use crate::hooks::LeaveReason;
use crate::time::now_ms;

/// Beats once now (so the node is alive before it serves) and starts the heartbeat thread.
pub(crate) fn start(link: &Arc<Link>) -> Result<(), StoreError> {
    beat(link)?;
    let beating = Arc::downgrade(link);
    std::thread::Builder::new()
        .name("switchboard-heartbeat".into())
        .spawn(move || heartbeat(&beating))
        .map(drop)
        .map_err(|err| StoreError(format!("cannot start the heartbeat thread: {err}")))
}

fn heartbeat(link: &Weak<Link>) {
    let mut healthy = true;
    loop {
        let Some(live) = link.upgrade() else {
            return;
        };
        let every = live.node_ttl / 3;
        match beat(&live) {
            Ok(()) if !healthy => {
                tracing::info!("Redis heartbeat works again");
                healthy = true;
            }
            Ok(()) => {}
            Err(err) if healthy => {
                tracing::warn!("heartbeat failed: {err}");
                healthy = false;
            }
            Err(_) => {}
        }
        drop(live);
        std::thread::sleep(every);
    }
}

/// One heartbeat: renews this node, re-lists its members if Redis forgot them, reconciles
/// after lost commands, and buries dead nodes.
fn beat(link: &Link) -> Result<(), StoreError> {
    let now = now_ms();
    let expires = now + link.node_ttl.as_millis() as u64;
    let added: u64 = link.store.with_conn(|conn| {
        redis::cmd("ZADD")
            .arg(nodes_key(link))
            .arg(expires)
            .arg(&link.node)
            .query(conn)
    })?;
    if added == 1 {
        relist(link)?;
    }
    if link.lost_commands.swap(false, Ordering::AcqRel) {
        if let Err(err) = reconcile(link) {
            link.lost_commands.store(true, Ordering::Release);
            return Err(err);
        }
    }
    let dead: Vec<String> = link.store.with_conn(|conn| {
        redis::cmd("ZRANGEBYSCORE")
            .arg(nodes_key(link))
            .arg("-inf")
            .arg(format!("({now}"))
            .query(conn)
    })?;
    for node in dead {
        bury(link, &node, LeaveReason::NodeDied)?;
    }
    Ok(())
}

/// Lists every local member again (others may have been told these sockets left).
fn relist(link: &Link) -> Result<(), StoreError> {
    for channel in link.registry.all() {
        let members = channel.lock().member_list();
        for (socket, presence, client) in members {
            let record = MemberRecord {
                node: &link.node,
                presence,
                client: &client,
            }
            .encode();
            link.store.with_conn(|conn| {
                redis::pipe()
                    .cmd("HSET")
                    .arg(link.store.key(&channel.name, "members"))
                    .arg(socket.to_string())
                    .arg(&record)
                    .ignore()
                    .cmd("SADD")
                    .arg(node_key(link, &link.node))
                    .arg(format!("{socket}\t{}", channel.name))
                    .ignore()
                    .query::<()>(conn)
            })?;
            if presence {
                presence::announce(link, &channel.name, socket, Action::Join, &client, false);
            }
        }
    }
    Ok(())
}

/// Removes the member records of sockets no longer here (their leave was lost while Redis
/// was unreachable) and announces their leave.
fn reconcile(link: &Link) -> Result<(), StoreError> {
    let entries: Vec<String> = link.store.with_conn(|conn| {
        redis::cmd("SMEMBERS")
            .arg(node_key(link, &link.node))
            .query(conn)
    })?;
    for entry in entries {
        let Some((socket, channel)) = entry.split_once('\t') else {
            continue;
        };
        let Ok(socket_id) = Uuid::try_parse(socket) else {
            continue;
        };
        let here = link
            .registry
            .get(channel)
            .is_some_and(|c| c.lock().has_member(&socket_id));
        if here {
            continue;
        }
        let members = link.store.key(channel, "members");
        let record: Option<String> = link
            .store
            .with_conn(|conn| redis::cmd("HGET").arg(&members).arg(socket).query(conn))?;
        let member = record.as_deref().and_then(MemberRecord::decode);
        let (client, listed) = match &member {
            Some(m) if m.node == link.node => (m.client, m.presence),
            _ => ("{}", false),
        };
        let cmd = presence::leave_command(
            link,
            &link.node,
            channel,
            socket,
            client,
            listed.then_some("-"),
            LeaveReason::Disconnected,
        );
        link.store.with_conn(|conn| cmd.query::<u64>(conn))?;
    }
    Ok(())
}

/// Removes a dead node's members and announces their leave; only the node that wins the
/// `ZREM` does it. Back ends hear why they left.
fn bury(link: &Link, node: &str, reason: LeaveReason) -> Result<(), StoreError> {
    let won: u64 = link.store.with_conn(|conn| {
        redis::cmd("ZREM")
            .arg(nodes_key(link))
            .arg(node)
            .query(conn)
    })?;
    if won == 0 {
        return Ok(());
    }
    let entries: Vec<String> = link
        .store
        .with_conn(|conn| redis::cmd("SMEMBERS").arg(node_key(link, node)).query(conn))?;
    let mut buried = 0;
    for entry in entries {
        let Some((socket, channel)) = entry.split_once('\t') else {
            continue;
        };
        let members = link.store.key(channel, "members");
        let record: Option<String> = link
            .store
            .with_conn(|conn| redis::cmd("HGET").arg(&members).arg(socket).query(conn))?;
        let Some(record) = record else { continue };
        let Some(member) = MemberRecord::decode(&record) else {
            continue;
        };
        if member.node != node {
            continue;
        }
        // Every node (this one too) tells its members.
        let cmd = presence::leave_command(
            link,
            node,
            channel,
            socket,
            member.client,
            member.presence.then_some("-"),
            reason,
        );
        buried += link.store.with_conn(|conn| cmd.query::<u64>(conn))?;
    }
    link.store.with_conn(|conn| {
        redis::cmd("DEL")
            .arg(node_key(link, node))
            .query::<u64>(conn)
    })?;
    if node == link.node {
        tracing::info!("left the cluster; removed this node's {buried} members");
    } else {
        tracing::warn!("node {node} stopped beating; removed its {buried} members");
    }
    Ok(())
}

/// Leaves the cluster on a clean shutdown: this node's members are removed and announced at
/// once instead of after `node_ttl`.
pub(crate) fn depart(link: &Link) {
    link.commands.flush();
    let expired = link.store.with_conn(|conn| {
        redis::cmd("ZADD")
            .arg(nodes_key(link))
            .arg(0)
            .arg(&link.node)
            .query::<u64>(conn)
    });
    if expired.is_ok() {
        if let Err(err) = bury(link, &link.node, LeaveReason::Disconnected) {
            tracing::warn!("leaving the cluster: {err}");
        }
    }
    link.commands.flush();
}

/// Whether this node trims the shared history this interval: the first node to ask in an
/// interval gets the turn (a key that expires with the interval).
pub(crate) fn take_trim_turn(link: &Link, interval: Duration) -> bool {
    let key = format!("{}:trim-turn", link.store.prefix());
    let taken = link.store.with_conn(|conn| {
        redis::cmd("SET")
            .arg(&key)
            .arg(&link.node)
            .arg("NX")
            .arg("PX")
            .arg(interval.as_millis().max(1) as u64)
            .query::<Option<String>>(conn)
    });
    matches!(taken, Ok(Some(_)))
}
