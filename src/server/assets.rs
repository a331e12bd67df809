//! The site's files (wasm, JS, CSS, public files) and the "page not found" answer.
//!
//! A binary built with the `embed-site` feature carries the site in itself ([`SITE`], made by
//! `build.rs`), so it serves its pages from any folder with nothing beside it. The bundle every
//! page loads has content-hashed names and is cached for a year; other files are cached
//! briefly. Each file is sent brotli- or gzip-compressed, as the browser accepts, from
//! variants made at build time, with an `ETag` that answers revalidations with 304.
//!
//! A binary built without it (`cargo leptos watch`, `cargo test`, the debug builds the browser
//! tests run) has an empty table and serves the site folder that cargo-leptos keeps up to date
//! (`site-root`), so a rebuilt page shows without rebuilding the server.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{
    ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, ETAG, IF_NONE_MATCH, VARY,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;

use super::AppState;
use crate::app::shell;

/// The site compiled into this binary; empty without the `embed-site` feature.
pub static SITE: EmbeddedSite = include!(concat!(env!("OUT_DIR"), "/site.rs"));

/// Cache lifetime of files whose names carry a content hash.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Cache lifetime of other files: short, as their contents change under the same name.
const SHORT: &str = "public, max-age=300";

/// A site embedded in the binary.
pub struct EmbeddedSite {
    /// The hashed bundle pages load; `None` when nothing is embedded.
    pub bundle: Option<Bundle>,
    /// Every file, sorted by path.
    pub assets: &'static [Asset],
}

/// Where pages find the bundle (`/{pkg_dir}/{name}.js`, `.wasm`, `.css`).
pub struct Bundle {
    /// The package folder, e.g. `pkg`.
    pub pkg_dir: &'static str,
    /// The output name with the bundle's hash, e.g. `switchboard.3f9c0d1e2a4b5c6d`.
    pub name: &'static str,
}

/// One embedded file.
pub struct Asset {
    /// URL path.
    pub path: &'static str,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Whether the name carries a content hash.
    pub immutable: bool,
    /// Hash of the contents, for `ETag`.
    pub etag: &'static str,
    /// The file as built.
    pub identity: &'static [u8],
    /// Brotli variant, when smaller.
    pub br: Option<&'static [u8]>,
    /// Gzip variant, when smaller.
    pub gzip: Option<&'static [u8]>,
}

impl EmbeddedSite {
    /// The Leptos settings pages are rendered with: with an embedded bundle, its hashed names
    /// (the output name and package folder of the build win over any at run time).
    pub fn page_options(&self, mut options: LeptosOptions) -> LeptosOptions {
        if let Some(bundle) = &self.bundle {
            options.output_name = bundle.name.into();
            options.site_pkg_dir = bundle.pkg_dir.into();
        }
        options
    }

    fn find(&self, path: &str) -> Option<&Asset> {
        self.assets
            .binary_search_by(|asset| asset.path.cmp(path))
            .ok()
            .map(|at| &self.assets[at])
    }
}

/// A way a response body can be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Brotli,
    Gzip,
    Identity,
}

impl Encoding {
    /// The encoding the browser prefers among those it accepts (`q` > 0), brotli first when
    /// it weighs them the same.
    fn preferred(headers: &HeaderMap) -> Self {
        let mut best = (Encoding::Identity, 0.0_f32);
        for item in headers
            .get_all(ACCEPT_ENCODING)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
        {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let weight = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let candidates: &[Encoding] = match name.as_str() {
                "br" => &[Encoding::Brotli],
                "gzip" | "x-gzip" => &[Encoding::Gzip],
                "*" => &[Encoding::Brotli, Encoding::Gzip],
                _ => &[],
            };
            for &candidate in candidates {
                let better = weight > best.1
                    || (weight == best.1 && weight > 0.0 && candidate == Encoding::Brotli);
                if weight > 0.0 && better {
                    best = (candidate, weight);
                }
            }
        }
        best.0
    }
}

impl Asset {
    /// The answer to a GET or HEAD of this file.
    fn respond(&self, headers: &HeaderMap) -> Response {
        let (encoding, body) = match (Encoding::preferred(headers), self.br, self.gzip) {
            (Encoding::Brotli, Some(br), _) => (Encoding::Brotli, br),
            (Encoding::Brotli | Encoding::Gzip, _, Some(gzip)) => (Encoding::Gzip, gzip),
            _ => (Encoding::Identity, self.identity),
        };
        let etag = match encoding {
            Encoding::Brotli => format!("\"{}-br\"", self.etag),
            Encoding::Gzip => format!("\"{}-gz\"", self.etag),
            Encoding::Identity => format!("\"{}\"", self.etag),
        };
        let mut response = if matches(headers, &etag) {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            let mut response = Body::from(body).into_response();
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type));
            match encoding {
                Encoding::Brotli => {
                    headers.insert(CONTENT_ENCODING, HeaderValue::from_static("br"));
                }
                Encoding::Gzip => {
                    headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                }
                Encoding::Identity => {}
            }
            response
        };
        let headers = response.headers_mut();
        if let Ok(etag) = HeaderValue::from_str(&etag) {
            headers.insert(ETAG, etag);
        }
        let lifetime = if self.immutable { IMMUTABLE } else { SHORT };
        headers.insert(CACHE_CONTROL, HeaderValue::from_static(lifetime));
        if self.br.is_some() || self.gzip.is_some() {
            headers.insert(VARY, HeaderValue::from_static("accept-encoding"));
        }
        response
    }
}

/// Whether `If-None-Match` names `etag` (or `*`).
fn matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == etag || tag == "*")
}

/// The routes' fallback: a file of the site, else the app's "Page not found" with 404.
pub async fn site_file(State(state): State<AppState>, request: Request) -> Response {
    if SITE.assets.is_empty() {
        let from_folder = leptos_axum::file_and_error_handler::<AppState, _>(shell);
        return from_folder(request.uri().clone(), State(state), request).await;
    }
    let readable = matches!(*request.method(), Method::GET | Method::HEAD);
    if let Some(asset) = SITE.find(request.uri().path()).filter(|_| readable) {
        return asset.respond(request.headers());
    }
    let options = state.leptos_options.clone();
    let hub = state.hub.clone();
    let config = state.config.clone();
    let page = leptos_axum::render_app_to_stream_with_context(
        move || {
            provide_context(hub.clone());
            provide_context(config.clone());
        },
        move || shell(options.clone()),
    );
    let mut response = page(request).await;
    if response.status() == StatusCode::OK {
        *response.status_mut() = StatusCode::NOT_FOUND;
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: Asset = Asset {
        path: "/pkg/app.0123456789abcdef.js",
        content_type: "text/javascript; charset=utf-8",
        immutable: true,
        etag: "0123456789abcdef",
        identity: b"export function hydrate() {}",
        br: Some(b"BR"),
        gzip: Some(b"GZ"),
    };
    const ICON: Asset = Asset {
        path: "/favicon.svg",
        content_type: "image/svg+xml",
        immutable: false,
        etag: "fedcba9876543210",
        identity: b"<svg/>",
        br: None,
        gzip: Some(b"GZ"),
    };

    fn accepting(encodings: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT_ENCODING, HeaderValue::from_str(encodings).unwrap());
        headers
    }

    async fn body(response: Response) -> Vec<u8> {
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec()
    }

    #[test]
    fn brotli_is_preferred_then_gzip_then_the_file_as_is() {
        assert_eq!(
            Encoding::preferred(&accepting("gzip, deflate, br, zstd")),
            Encoding::Brotli
        );
        assert_eq!(
            Encoding::preferred(&accepting("gzip, br;q=0.5")),
            Encoding::Gzip
        );
        assert_eq!(
            Encoding::preferred(&accepting("br;q=0, gzip")),
            Encoding::Gzip
        );
        assert_eq!(Encoding::preferred(&accepting("*")), Encoding::Brotli);
        assert_eq!(
            Encoding::preferred(&accepting("identity")),
            Encoding::Identity
        );
        assert_eq!(Encoding::preferred(&HeaderMap::new()), Encoding::Identity);
    }

    #[tokio::test]
    async fn hashed_files_are_cached_for_a_year_in_the_accepted_encoding() {
        let response = SCRIPT.respond(&accepting("gzip, br"));
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers().clone();
        assert_eq!(headers[CONTENT_ENCODING], "br");
        assert_eq!(headers[CACHE_CONTROL], IMMUTABLE);
        assert_eq!(headers[VARY], "accept-encoding");
        assert_eq!(headers[CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert_eq!(headers[ETAG], "\"0123456789abcdef-br\"");
        assert_eq!(body(response).await, b"BR");
        let plain = SCRIPT.respond(&HeaderMap::new());
        assert!(plain.headers().get(CONTENT_ENCODING).is_none());
        assert_eq!(body(plain).await, b"export function hydrate() {}");
    }

    #[tokio::test]
    async fn other_files_are_cached_briefly_and_fall_back_to_gzip() {
        let response = ICON.respond(&accepting("br, gzip"));
        assert_eq!(response.headers()[CONTENT_ENCODING], "gzip");
        assert_eq!(response.headers()[CACHE_CONTROL], SHORT);
        assert_eq!(body(response).await, b"GZ");
    }

    #[tokio::test]
    async fn a_revalidation_with_the_current_etag_gets_304_without_a_body() {
        let mut headers = accepting("br");
        headers.insert(
            IF_NONE_MATCH,
            HeaderValue::from_static("\"old\", \"0123456789abcdef-br\""),
        );
        let response = SCRIPT.respond(&headers);
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(response.headers()[ETAG], "\"0123456789abcdef-br\"");
        assert!(body(response).await.is_empty());
        // The gzip variant is another representation: its validator does not match.
        let mut headers = accepting("gzip");
        headers.insert(
            IF_NONE_MATCH,
            HeaderValue::from_static("\"0123456789abcdef-br\""),
        );
        assert_eq!(SCRIPT.respond(&headers).status(), StatusCode::OK);
    }

    #[test]
    fn files_are_found_by_exact_path() {
        let site = EmbeddedSite {
            bundle: None,
            assets: &[ICON, SCRIPT],
        };
        assert!(site.find("/favicon.svg").is_some());
        assert!(site.find("/pkg/app.0123456789abcdef.js").is_some());
        assert!(site.find("/pkg/app.js").is_none());
    }

    #[test]
    fn an_embedded_bundle_names_the_pages_scripts_and_styles() {
        let site = EmbeddedSite {
            bundle: Some(Bundle {
                pkg_dir: "pkg",
                name: "app.0123456789abcdef",
            }),
            assets: &[],
        };
        let options = LeptosOptions::builder()
            .output_name("app")
            .site_pkg_dir("assets")
            .build();
        let options = site.page_options(options);
        assert_eq!(options.css_path(), "/pkg/app.0123456789abcdef.css");
        assert_eq!(&*options.output_name, "app.0123456789abcdef");
    }
}
