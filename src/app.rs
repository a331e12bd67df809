//! The application shell: document head, router and the routes of every page.

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Title};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::{ParamSegment, StaticSegment};

use crate::pages::admin::AdminPage;
use crate::pages::chat::ChatPage;
use crate::pages::cursors::CursorsPage;
use crate::pages::home::HomePage;

/// The HTML document the server renders around the app.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    // Here rather than in the app, so the name follows the settings (a hashed name when the
    // site is embedded); the head is rendered on the server only.
    let stylesheet = options.css_path();
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <link rel="icon" href="/favicon.svg" type="image/svg+xml"/>
                <link rel="stylesheet" id="leptos" href=stylesheet/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// The app: one route per page.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Title text="Switchboard"/>
        <Router>
            <main>
                <Routes fallback=|| view! { <p class="not-found">"Page not found."</p> }>
                    <Route path=StaticSegment("") view=HomePage/>
                    <Route path=StaticSegment("admin") view=AdminPage/>
                    <Route path=(StaticSegment("chat"), ParamSegment("room")) view=ChatPage/>
                    <Route path=(StaticSegment("cursors"), ParamSegment("room")) view=CursorsPage/>
                </Routes>
            </main>
        </Router>
    }
}
