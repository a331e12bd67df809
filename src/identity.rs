//! Who the person at this browser is: a name and colour chosen once and remembered in
//! `localStorage`, with a stable id so several tabs of one person count once in presence.
//! Shared by the chat and the cursors pages.

use leptos::prelude::*;

use crate::browser;
use crate::pages::chat::message::{ChatUser, MAX_NAME_CHARS};

const STORAGE_KEY: &str = "switchboard.user";
const TOKEN_KEY: &str = "switchboard.token";
const PALETTE: [&str; 8] = [
    "#e5484d", "#f76b15", "#ffc53d", "#30a46c", "#12a594", "#0090ff", "#6e56cf", "#d6409f",
];

/// The remembered identity, if this browser chose one.
pub fn load() -> Option<ChatUser> {
    let stored = browser::local_get(STORAGE_KEY)?;
    serde_json::from_str::<ChatUser>(&stored)
        .ok()
        .filter(|user| !user.name.trim().is_empty())
}

/// The token this browser signed in with, if it did.
pub fn load_token() -> Option<String> {
    browser::local_get(TOKEN_KEY).filter(|t| !t.is_empty())
}

/// A signed-in session: the token and the identity it carries.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DemoSession {
    /// HS256 token for the socket.
    pub token: String,
    /// The identity inside it.
    pub user: ChatUser,
}

/// Issues a demo token for `name` (only where the server's `demo_tokens` setting is on), and
/// sets it as the page's cookie so server rendering and server functions know the person too.
#[server(endpoint = "auth/demo_sign_in")]
pub async fn demo_sign_in(name: String, colour: String) -> Result<DemoSession, ServerFnError> {
    use crate::server::pages::PageCaller;
    let caller = PageCaller::of_request().await?;
    caller.take_send()?;
    let (token, user) = crate::server::auth::demo_token(&caller.state.config, &name, &colour)
        .map_err(|err| {
            use crate::server::auth::DemoError;
            use axum::http::StatusCode;
            let (status, code) = match err {
                DemoError::Off => (StatusCode::FORBIDDEN, "forbidden"),
                DemoError::NoName | DemoError::BadColour => (StatusCode::BAD_REQUEST, "bad_input"),
                DemoError::Signing(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            };
            crate::server::pages::refused_with(status, code, err.to_string())
        })?;
    caller.set_token_cookie(Some(&token), crate::server::auth::DEMO_TOKEN_SECONDS);
    Ok(DemoSession { token, user })
}

/// The ways of signing in this server offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct SignInMethods {
    /// Demo accounts: anyone signs in under the name they type (the `demo_tokens` setting).
    pub demo: bool,
}

/// Which ways of signing in the server offers, so the page offers only those.
#[server(endpoint = "auth/options")]
pub async fn sign_in_options() -> Result<SignInMethods, ServerFnError> {
    let state = expect_context::<crate::server::AppState>();
    Ok(SignInMethods {
        demo: state.config.demo_tokens,
    })
}

/// Forgets the page's sign-in cookie (joining as a guest).
#[server(endpoint = "auth/sign_out")]
pub async fn sign_out() -> Result<(), ServerFnError> {
    use crate::server::pages::PageCaller;
    let caller = PageCaller::of_request().await?;
    caller.set_token_cookie(None, 0);
    Ok(())
}

/// A server function's error as a sentence for a person, never a framework message.
pub fn explain(err: &ServerFnError) -> String {
    match err {
        ServerFnError::ServerError(message) => crate::pages::refusals::as_sentence(message),
        _ => "The server could not be reached. Check your connection and try again.".into(),
    }
}

fn save(user: &ChatUser) {
    if let Ok(json) = serde_json::to_string(user) {
        browser::local_set(STORAGE_KEY, &json);
    }
}

/// This browser's identity once the page is interactive, and whether it is: both start empty
/// so the server render and the first browser render agree.
pub fn use_identity() -> (RwSignal<Option<ChatUser>>, RwSignal<bool>) {
    let user = RwSignal::new(None::<ChatUser>);
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| {
        user.set(load());
        hydrated.set(true);
    });
    (user, hydrated)
}

/// The extras a page joins with, so the others see this person's name and colour.
pub fn extras(user: &ChatUser) -> serde_json::Map<String, serde_json::Value> {
    let mut extras = serde_json::Map::new();
    extras.insert("id".into(), user.id.clone().into());
    extras.insert("name".into(), user.name.clone().into());
    extras.insert("colour".into(), user.colour.clone().into());
    extras
}

/// Asks for a name and colour, remembers them, and hands the identity to `on_save`.
#[component]
pub fn NameForm(on_save: Callback<ChatUser>) -> impl IntoView {
    let previous = load();
    let name = RwSignal::new(
        previous
            .as_ref()
            .map(|u| u.name.clone())
            .unwrap_or_default(),
    );
    let colour = RwSignal::new(
        previous
            .as_ref()
            .map(|u| u.colour.clone())
            .unwrap_or_else(|| {
                PALETTE[(js_sys::Math::random() * PALETTE.len() as f64) as usize % PALETTE.len()]
                    .to_string()
            }),
    );
    let id = previous.map(|u| u.id).unwrap_or_else(browser::random_id);
    let sign_in_error = RwSignal::new(None::<String>);
    // Until the server says which ways of signing in it offers, none is shown.
    let offered = LocalResource::new(sign_in_options);
    let demo = move || {
        offered
            .get()
            .and_then(Result::ok)
            .is_some_and(|options| options.demo)
    };
    let checked = move || match offered.get() {
        None => "checking",
        Some(Ok(options)) if options.demo => "demo",
        Some(_) => "guest-only",
    };
    let sign_in = move |_| {
        let chosen = name.get_untracked().trim().to_string();
        if chosen.is_empty() {
            sign_in_error.set(Some("Type your name first.".into()));
            return;
        }
        leptos::task::spawn_local(async move {
            match demo_sign_in(chosen, colour.get_untracked()).await {
                Ok(session) => {
                    browser::local_set(TOKEN_KEY, &session.token);
                    save(&session.user);
                    on_save.run(session.user);
                }
                Err(err) => sign_in_error.set(Some(explain(&err))),
            }
        });
    };
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let chosen = name.get_untracked().trim().to_string();
        if chosen.is_empty() {
            return;
        }
        let user = ChatUser {
            id: id.clone(),
            name: chosen.chars().take(MAX_NAME_CHARS).collect(),
            colour: colour.get_untracked(),
        };
        browser::local_set(TOKEN_KEY, "");
        leptos::task::spawn_local(async {
            let _ = sign_out().await;
        });
        save(&user);
        on_save.run(user);
    };
    view! {
        <form class="name-form" on:submit=submit data-sign-in=checked>
            <label for="chat-name">"Your name"</label>
            <input
                id="chat-name"
                name="name"
                maxlength=MAX_NAME_CHARS.to_string()
                autocomplete="nickname"
                placeholder="How others see you"
                prop:value=move || name.get()
                on:input=move |ev| name.set(event_target_value(&ev))
            />
            <label for="chat-colour">"Colour"</label>
            <input
                id="chat-colour"
                type="color"
                prop:value=move || colour.get()
                on:input=move |ev| colour.set(event_target_value(&ev))
            />
            <button type="submit">"Join as a guest"</button>
            {move || demo().then(|| view! {
                <button type="button" class="sign-in" on:click=sign_in>"Sign in (demo account)"</button>
            })}
            {move || sign_in_error.get().map(|why| view! { <p class="send-error" role="alert">{why}</p> })}
        </form>
    }
}
