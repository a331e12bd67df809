//! Room broadcast the way an axum example writes it: each socket split in two, a writer task
//! draining an unbounded queue, and the sender's reading task pushing into every member's
//! queue. `{"join": room}` joins, `{"room": room, "data": payload}` sends the payload to everyone
//! in the room (bench/peers/ws-server.js's protocol, so `switchboard-loadgen fanout --peer ws`
//! drives it). Listens on 127.0.0.1:$PORT (3300).

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

type Member = (u64, mpsc::UnboundedSender<Utf8Bytes>);
type Rooms = Arc<Mutex<HashMap<String, Vec<Member>>>>;

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

async fn upgrade(State(rooms): State<Rooms>, ws: WebSocketUpgrade) -> Response {
    ws.write_buffer_size(4096)
        .on_upgrade(move |socket| serve(socket, rooms))
}

async fn serve(socket: WebSocket, rooms: Rooms) {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Utf8Bytes>();
    let writer = tokio::spawn(async move {
        while let Some(text) = rx.recv().await {
            if sink.send(Message::Text(text)).await.is_err() {
                break;
            }
        }
    });
    while let Some(Ok(message)) = stream.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let Ok(frame) = serde_json::from_str::<serde_json::Value>(text.as_str()) else {
            continue;
        };
        if let Some(room) = frame.get("join").and_then(|v| v.as_str()) {
            let mut rooms = rooms.lock().unwrap();
            rooms
                .entry(room.to_string())
                .or_default()
                .push((id, tx.clone()));
        } else if let Some(room) = frame.get("room").and_then(|v| v.as_str()) {
            let text = Utf8Bytes::from(frame["data"].to_string());
            if let Some(members) = rooms.lock().unwrap().get(room) {
                for (_, member) in members {
                    let _ = member.send(text.clone());
                }
            }
        }
    }
    for members in rooms.lock().unwrap().values_mut() {
        members.retain(|(member, _)| *member != id);
    }
    writer.abort();
}

#[tokio::main]
async fn main() {
    let port = std::env::var("PORT").unwrap_or_else(|_| "3300".into());
    let app = axum::Router::new()
        .fallback(get(upgrade))
        .with_state(Rooms::default());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}"))
        .await
        .expect("the port is free");
    println!("bare axum peer listening on {port}");
    axum::serve(listener, app).await.expect("serving");
}
