//! `/admin`: the operators' console, on the admin API. Sign in with an admin key (kept for
//! the tab only); then a live list of channels (every 2 s, with a name filter), a channel's
//! members with their sockets and its messages as they arrive (every second), a box to send as
//! the server, buttons to disconnect a socket or remove it from the channel, clearing a
//! channel's history, and how webhook delivery stands, with a replay of dead events. Rows keep
//! their place as figures change, so keyboard focus stays where the operator left it.

mod api;

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_meta::Title;
use serde_json::Value;
use std::time::Duration;

use api::{call, channel_path, query_value, Failure};

/// How often the channel list and the webhook state are read again.
const LIST_EVERY: Duration = Duration::from_secs(2);
/// How often the open channel is read again.
const CHANNEL_EVERY: Duration = Duration::from_secs(1);

/// `/admin`.
#[component]
pub fn AdminPage() -> impl IntoView {
    let key = RwSignal::new(None::<String>);
    let notice = RwSignal::new(None::<String>);
    let ready = RwSignal::new(false);
    Effect::new(move |_| {
        key.set(api::saved_key());
        ready.set(true);
    });
    let sign_out = move |why: Option<String>| {
        api::forget_key();
        key.set(None);
        notice.set(why);
    };
    view! {
        <Title text="Admin · Switchboard"/>
        <div class="admin">
            <header class="admin-header">
                <a class="back" href="/">"Switchboard"</a>
                <h1>"Admin"</h1>
                <Show when=move || key.get().is_some()>
                    <button type="button" class="secondary" on:click=move |_| sign_out(None)>
                        "Sign out"
                    </button>
                </Show>
            </header>
            {move || match (ready.get(), key.get()) {
                (false, _) => view! { <p class="hint">"Loading…"</p> }.into_any(),
                (true, None) => view! { <SignIn key notice/> }.into_any(),
                (true, Some(admin_key)) => {
                    let on_refused = Callback::new(move |failure: Failure| {
                        sign_out(Some(failure.message))
                    });
                    view! { <Console admin_key on_refused/> }.into_any()
                }
            }}
        </div>
    }
    .into_any()
}

/// The sign-in form: the key is tried on the API before it is kept.
#[component]
fn SignIn(key: RwSignal<Option<String>>, notice: RwSignal<Option<String>>) -> impl IntoView {
    let typed = RwSignal::new(String::new());
    let busy = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let candidate = typed.get_untracked().trim().to_string();
        if candidate.is_empty() {
            notice.set(Some("Enter one of the server's admin keys.".into()));
            return;
        }
        busy.set(true);
        spawn_local(async move {
            match call("GET", "/api/admin/channels?limit=1", &candidate, None).await {
                Ok(_) => {
                    api::save_key(&candidate);
                    notice.set(None);
                    key.set(Some(candidate));
                }
                Err(failure) => notice.set(Some(failure.message)),
            }
            busy.set(false);
        });
    };
    view! {
        <form class="admin-sign-in" on:submit=submit>
            <h2>"Sign in"</h2>
            <label for="admin-key">"Admin key"</label>
            <input
                id="admin-key"
                type="password"
                autocomplete="off"
                spellcheck="false"
                prop:value=move || typed.get()
                on:input=move |ev| typed.set(event_target_value(&ev))
            />
            <button type="submit" disabled=move || busy.get()>"Sign in"</button>
            <p class="hint">
                "One of the server's " <code>"admin_keys"</code>
                ". It is kept for this browser tab only."
            </p>
            <p class="admin-error" role="alert">{move || notice.get()}</p>
        </form>
    }
    .into_any()
}

/// Everything behind the key.
#[component]
fn Console(admin_key: String, on_refused: Callback<Failure>) -> impl IntoView {
    let key = StoredValue::new(admin_key);
    let channels = RwSignal::new(Vec::<Value>::new());
    let filter = RwSignal::new(String::new());
    let selected = RwSignal::new(None::<String>);
    let detail = RwSignal::new(None::<Value>);
    let webhooks = RwSignal::new(None::<Vec<Value>>);
    let status = RwSignal::new(String::new());
    let problem = RwSignal::new(None::<String>);

    // One request of each kind in flight at a time; a slow server is not asked again meanwhile.
    let list_busy = StoredValue::new(false);
    let refresh_list = move || {
        if list_busy.get_value() {
            return;
        }
        list_busy.set_value(true);
        let filter = filter.get_untracked();
        let path = format!(
            "/api/admin/channels?limit=500&filter={}",
            query_value(filter.trim())
        );
        spawn_local(async move {
            let listed = call("GET", &path, &key.get_value(), None).await;
            let hooks = call("GET", "/api/admin/webhooks", &key.get_value(), None).await;
            list_busy.set_value(false);
            match (listed, hooks) {
                (Ok(listed), Ok(hooks)) => {
                    let list = listed["channels"].as_array().cloned().unwrap_or_default();
                    if channels.with_untracked(|now| *now != list) {
                        channels.set(list);
                    }
                    let endpoints = hooks["endpoints"].as_array().cloned().unwrap_or_default();
                    if webhooks.with_untracked(|now| now.as_ref() != Some(&endpoints)) {
                        webhooks.set(Some(endpoints));
                    }
                    problem.set(None);
                }
                (Err(failure), _) | (_, Err(failure)) if failure.key_refused() => {
                    on_refused.run(failure)
                }
                (Err(failure), _) | (_, Err(failure)) => problem.set(Some(failure.message)),
            }
        });
    };
    let channel_busy = StoredValue::new(false);
    let refresh_channel = move || {
        let Some(channel) = selected.get_untracked() else {
            return;
        };
        if channel_busy.get_value() {
            return;
        }
        channel_busy.set_value(true);
        let path = channel_path(&channel, "?limit=50");
        spawn_local(async move {
            let read = call("GET", &path, &key.get_value(), None).await;
            channel_busy.set_value(false);
            // The operator may have opened another channel meanwhile.
            if selected.get_untracked().as_deref() != Some(channel.as_str()) {
                return;
            }
            match read {
                Ok(value) => {
                    if detail.with_untracked(|now| now.as_ref() != Some(&value)) {
                        detail.set(Some(value));
                    }
                }
                Err(failure) if failure.key_refused() => on_refused.run(failure),
                Err(failure) => problem.set(Some(failure.message)),
            }
        });
    };

    Effect::new(move |_| {
        filter.track();
        refresh_list();
    });
    Effect::new(move |_| {
        if selected.get().is_some() {
            detail.set(None);
            refresh_channel();
        }
    });
    if let Ok(ticker) = set_interval_with_handle(refresh_list, LIST_EVERY) {
        on_cleanup(move || ticker.clear());
    }
    if let Ok(ticker) = set_interval_with_handle(refresh_channel, CHANNEL_EVERY) {
        on_cleanup(move || ticker.clear());
    }

    // An action's outcome goes to the status line; the views are read again at once.
    let act = move |method: &'static str, path: String, body: Option<String>, done: String| {
        spawn_local(async move {
            match call(method, &path, &key.get_value(), body).await {
                Ok(answer) => {
                    let seq = answer["seq"].as_u64();
                    status.set(match seq {
                        Some(seq) => format!("{done} (seq {seq})."),
                        None => format!("{done}."),
                    });
                    problem.set(None);
                }
                Err(failure) if failure.key_refused() => on_refused.run(failure),
                Err(failure) => problem.set(Some(failure.message)),
            }
            refresh_channel();
            refresh_list();
        });
    };
    let actions = Actions {
        act: Callback::new(move |(method, path, body, done)| act(method, path, body, done)),
    };

    let names = move || {
        channels.with(|list| {
            list.iter()
                .filter_map(|c| c["channel"].as_str().map(str::to_string))
                .collect::<Vec<_>>()
        })
    };
    view! {
        <p class="admin-status" role="status">{move || status.get()}</p>
        <p class="admin-error" role="alert">{move || problem.get()}</p>
        <div class="admin-panes">
            <section class="admin-channels" aria-labelledby="channels-heading">
                <h2 id="channels-heading">"Live channels"</h2>
                <label for="channel-filter">"Filter by name"</label>
                <input
                    id="channel-filter"
                    type="search"
                    placeholder="room"
                    prop:value=move || filter.get()
                    on:input=move |ev| filter.set(event_target_value(&ev))
                />
                <table>
                    <thead>
                        <tr>
                            <th scope="col">"Channel"</th>
                            <th scope="col">"Members"</th>
                            <th scope="col">"Sockets"</th>
                            <th scope="col" title="messages in the last minute">"Msgs/min"</th>
                            <th scope="col">"Last seq"</th>
                            <th scope="col">"Stored"</th>
                        </tr>
                    </thead>
                    <tbody>
                        <For each=names key=|name| name.clone() let:name>
                            <ChannelRow name channels selected/>
                        </For>
                    </tbody>
                </table>
                <Show when=move || channels.with(Vec::is_empty)>
                    <p class="hint">"No live channels" {move || {
                        let f = filter.get();
                        if f.trim().is_empty() { String::new() } else { format!(" match “{}”", f.trim()) }
                    }} "."</p>
                </Show>
            </section>
            <section class="admin-channel" aria-labelledby="channel-heading">
                {move || match selected.get() {
                    None => view! {
                        <h2 id="channel-heading">"Channel"</h2>
                        <p class="hint">"Open a channel from the list to see its members and messages."</p>
                    }.into_any(),
                    Some(channel) => view! { <ChannelView channel detail actions/> }.into_any(),
                }}
            </section>
        </div>
        <WebhooksView webhooks actions/>
    }
    .into_any()
}

/// What the views can do: `(method, path, body, what to say when done)`.
#[derive(Clone, Copy)]
struct Actions {
    act: Callback<(&'static str, String, Option<String>, String)>,
}

/// One line of the channel list; its figures change in place.
#[component]
fn ChannelRow(
    name: String,
    channels: RwSignal<Vec<Value>>,
    selected: RwSignal<Option<String>>,
) -> impl IntoView {
    let row = {
        let name = name.clone();
        Memo::new(move |_| {
            channels.with(|list| {
                list.iter()
                    .find(|c| c["channel"].as_str() == Some(name.as_str()))
                    .cloned()
                    .unwrap_or(Value::Null)
            })
        })
    };
    let figure = move |field: &'static str| move || row.with(|r| r[field].as_u64().unwrap_or(0));
    let open = name.clone();
    let is_open = {
        let name = name.clone();
        Memo::new(move |_| selected.get().as_deref() == Some(name.as_str()))
    };
    view! {
        <tr class:open=is_open>
            <th scope="row">
                <button
                    type="button"
                    class="link"
                    aria-current=move || is_open.get().then_some("true")
                    on:click=move |_| selected.set(Some(open.clone()))
                >
                    {name.clone()}
                </button>
            </th>
            <td>{figure("members")}</td>
            <td>{figure("sockets")}</td>
            <td>{figure("messages_last_minute")}</td>
            <td>{figure("last_seq")}</td>
            <td>{figure("history_size")}</td>
        </tr>
    }
    .into_any()
}

/// One channel: its rule, members, messages, and what the operator can do there.
#[component]
fn ChannelView(
    channel: String,
    detail: RwSignal<Option<Value>>,
    actions: Actions,
) -> impl IntoView {
    let members = move || {
        detail.with(|d| {
            d.as_ref()
                .and_then(|d| d["members"].as_array())
                .map(|list| {
                    list.iter()
                        .filter_map(|m| m["socketId"].as_str().map(str::to_string))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
    };
    let messages = move || {
        detail.with(|d| {
            d.as_ref()
                .and_then(|d| d["history"].as_array())
                .cloned()
                .unwrap_or_default()
        })
    };
    let rule = move || {
        detail.with(|d| {
            d.as_ref().map(|d| {
                let rule = &d["rule"];
                format!(
                    "Rule {}: join {}, send {}, presence {}.",
                    rule["pattern"].as_str().unwrap_or("(default)"),
                    rule["join"].as_str().unwrap_or("?"),
                    rule["send"].as_str().unwrap_or("?"),
                    if rule["presence"] == true {
                        "on"
                    } else {
                        "off"
                    },
                )
            })
        })
    };
    let draft = RwSignal::new(String::new());
    let send = {
        let channel = channel.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            let text = draft.get_untracked();
            if text.trim().is_empty() {
                return;
            }
            // A JSON object as it is; anything else as a chat message, in the shape the chat
            // page shows (from the server).
            let body = match serde_json::from_str::<Value>(&text) {
                Ok(value) if value.is_object() => value.to_string(),
                _ => serde_json::json!({
                    "id": crate::browser::random_id(),
                    "text": text.trim(),
                    "user": { "id": "server", "name": "Server", "colour": "#5b6070" },
                    "sent_at": crate::browser::now_iso(),
                })
                .to_string(),
            };
            actions.act.run((
                "POST",
                channel_path(&channel, "/messages"),
                Some(body),
                format!("Sent to {channel} as the server"),
            ));
            draft.set(String::new());
        }
    };
    let clear = {
        let channel = channel.clone();
        move |_| {
            let sure = web_sys::window()
                .and_then(|w| {
                    w.confirm_with_message(&format!(
                        "Clear the whole history of {channel}? Clients resuming from it get a gap."
                    ))
                    .ok()
                })
                .unwrap_or(false);
            if sure {
                actions.act.run((
                    "DELETE",
                    channel_path(&channel, "/history"),
                    None,
                    format!("Cleared the history of {channel}"),
                ));
            }
        }
    };
    let title = channel.clone();
    let for_rows = channel.clone();
    view! {
        <h2 id="channel-heading">{title}</h2>
        <p class="hint">{rule}</p>
        <h3>"Members"</h3>
        <table class="admin-members">
            <thead>
                <tr>
                    <th scope="col">"Name"</th>
                    <th scope="col">"Socket"</th>
                    <th scope="col">"Signed in"</th>
                    <th scope="col">"Actions"</th>
                </tr>
            </thead>
            <tbody>
                <For each=members key=|socket| socket.clone() let:socket>
                    <MemberRow channel=for_rows.clone() socket detail actions/>
                </For>
            </tbody>
        </table>
        <Show when=move || detail.with(|d| d.is_some()) && members().is_empty()>
            <p class="hint">"Nobody is in this channel now."</p>
        </Show>
        <h3>"Messages"</h3>
        <ol class="admin-messages" role="log" aria-label="Messages">
            <For
                each=messages
                key=|frame| frame["options"]["seq"].as_u64().unwrap_or(0)
                let:frame
            >
                <MessageLine frame/>
            </For>
        </ol>
        <Show when=move || detail.with(|d| d.is_some()) && messages().is_empty()>
            <p class="hint">"No stored messages."</p>
        </Show>
        <form class="admin-send" on:submit=send>
            <label for="server-message">"Send as the server"</label>
            <textarea
                id="server-message"
                rows="2"
                placeholder="A chat message, or a JSON object sent as it is"
                prop:value=move || draft.get()
                on:input=move |ev| draft.set(event_target_value(&ev))
            ></textarea>
            <button type="submit">"Send"</button>
        </form>
        <button type="button" class="danger" on:click=clear>"Clear history…"</button>
    }
    .into_any()
}

/// One member, with its actions.
#[component]
fn MemberRow(
    channel: String,
    socket: String,
    detail: RwSignal<Option<Value>>,
    actions: Actions,
) -> impl IntoView {
    let member = {
        let socket = socket.clone();
        Memo::new(move |_| {
            detail.with(|d| {
                d.as_ref()
                    .and_then(|d| d["members"].as_array())
                    .and_then(|list| {
                        list.iter()
                            .find(|m| m["socketId"].as_str() == Some(socket.as_str()))
                            .cloned()
                    })
                    .unwrap_or(Value::Null)
            })
        })
    };
    let name = move || {
        member.with(|m| {
            m["extras"]["name"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| "(no name)".into())
        })
    };
    let signed_in = move || member.with(|m| m["signedIn"] == true);
    let label = move |verb: &str| format!("{verb} {}", name());
    let disconnect = {
        let socket = socket.clone();
        move |_| {
            actions.act.run((
                "DELETE",
                format!("/api/admin/sockets/{socket}"),
                None,
                format!("Disconnected {}", name()),
            ))
        }
    };
    let remove = {
        let (socket, channel) = (socket.clone(), channel.clone());
        move |_| {
            actions.act.run((
                "DELETE",
                channel_path(&channel, &format!("/members/{socket}")),
                None,
                format!("Removed {} from {channel}", name()),
            ))
        }
    };
    view! {
        <tr>
            <td>{name}</td>
            <td><code>{socket.clone()}</code></td>
            <td>{move || if signed_in() { "yes" } else { "guest" }}</td>
            <td>
                <div class="admin-actions">
                    <button type="button" aria-label=move || label("Disconnect") on:click=disconnect>
                        "Disconnect"
                    </button>
                    <button
                        type="button"
                        aria-label=move || label("Remove from the channel:")
                        on:click=remove
                    >
                        "Remove"
                    </button>
                </div>
            </td>
        </tr>
    }
    .into_any()
}

/// One stored message: when, who, what.
#[component]
fn MessageLine(frame: Value) -> impl IntoView {
    let seq = frame["options"]["seq"].as_u64().unwrap_or(0);
    let at = frame["options"]["at"]
        .as_f64()
        .map(clock)
        .unwrap_or_default();
    let who = if frame["action"] == "event" {
        "server".to_string()
    } else {
        frame["client"]["extras"]["name"]
            .as_str()
            .unwrap_or("(no name)")
            .to_string()
    };
    let what = match frame["payload"]["text"].as_str() {
        Some(text) => text.to_string(),
        None => frame["payload"].to_string(),
    };
    view! {
        <li>
            <span class="admin-seq">"#" {seq}</span>
            <time>{at}</time>
            <strong>{who}</strong>
            <span class="admin-text">{what}</span>
        </li>
    }
    .into_any()
}

/// `HH:MM:SS` in the reader's time zone for milliseconds since 1970.
fn clock(ms: f64) -> String {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms));
    if date.get_time().is_nan() {
        return String::new();
    }
    format!(
        "{:02}:{:02}:{:02}",
        date.get_hours(),
        date.get_minutes(),
        date.get_seconds()
    )
}

/// Webhook endpoints and how their delivery stands.
#[component]
fn WebhooksView(webhooks: RwSignal<Option<Vec<Value>>>, actions: Actions) -> impl IntoView {
    let names = move || {
        webhooks.with(|w| {
            w.iter()
                .flatten()
                .filter_map(|e| e["name"].as_str().map(str::to_string))
                .collect::<Vec<_>>()
        })
    };
    view! {
        <section class="admin-webhooks" aria-labelledby="webhooks-heading">
            <h2 id="webhooks-heading">"Webhooks"</h2>
            <Show
                when=move || webhooks.with(|w| w.as_ref().is_some_and(|w| !w.is_empty()))
                fallback=move || view! {
                    <p class="hint">
                        {move || if webhooks.with(Option::is_some) {
                            "No webhook endpoints are configured."
                        } else {
                            "Loading…"
                        }}
                    </p>
                }
            >
                <table>
                    <thead>
                        <tr>
                            <th scope="col">"Endpoint"</th>
                            <th scope="col">"Pending"</th>
                            <th scope="col">"Oldest pending"</th>
                            <th scope="col">"Dead"</th>
                            <th scope="col">"Delivered"</th>
                            <th scope="col">"Retried"</th>
                            <th scope="col">"Actions"</th>
                        </tr>
                    </thead>
                    <tbody>
                        <For each=names key=|name| name.clone() let:name>
                            <EndpointRow name webhooks actions/>
                        </For>
                    </tbody>
                </table>
            </Show>
        </section>
    }
    .into_any()
}

/// One webhook endpoint.
#[component]
fn EndpointRow(
    name: String,
    webhooks: RwSignal<Option<Vec<Value>>>,
    actions: Actions,
) -> impl IntoView {
    let endpoint = {
        let name = name.clone();
        Memo::new(move |_| {
            webhooks.with(|w| {
                w.iter()
                    .flatten()
                    .find(|e| e["name"].as_str() == Some(name.as_str()))
                    .cloned()
                    .unwrap_or(Value::Null)
            })
        })
    };
    let figure =
        move |field: &'static str| move || endpoint.with(|e| e[field].as_u64().unwrap_or(0));
    let oldest = move || {
        endpoint.with(|e| match e["oldest_pending_age_seconds"].as_f64() {
            Some(age) => format!("{age:.0} s"),
            None => "—".into(),
        })
    };
    let replay = {
        let name = name.clone();
        move |_| {
            actions.act.run((
                "POST",
                "/api/admin/webhooks/replay".to_string(),
                Some(serde_json::json!({ "endpoint": name }).to_string()),
                format!("Replaying the dead events of {name}"),
            ))
        }
    };
    let url = move || endpoint.with(|e| e["url"].as_str().unwrap_or_default().to_string());
    view! {
        <tr>
            <th scope="row">{name.clone()} <span class="admin-url hint">{url}</span></th>
            <td>{figure("pending")}</td>
            <td>{oldest}</td>
            <td>{figure("dead")}</td>
            <td>{figure("delivered")}</td>
            <td>{figure("retried")}</td>
            <td>
                <button
                    type="button"
                    aria-label=format!("Replay the dead events of {name}")
                    disabled=move || figure("dead")() == 0
                    on:click=replay
                >
                    "Replay dead"
                </button>
            </td>
        </tr>
    }
    .into_any()
}
