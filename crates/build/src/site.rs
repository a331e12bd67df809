//! The built site (what cargo-leptos writes to `target/site`) as a table of files for the
//! server binary to embed, so a release binary serves its pages with nothing beside it.
//!
//! The bundle that every page loads — `NAME.js`, `NAME.wasm` and `NAME.css` in the package
//! folder — gets one content hash in its names (`NAME.3f9c….js`): the three always ship
//! together, and Leptos's hydration script takes one base name for the `.js` and the `.wasm`.
//! Hashed names never change meaning, so browsers may keep them for a year; other files keep
//! their names and a short cache. Text and wasm files get brotli and gzip variants here, once,
//! at the strongest settings, so serving them costs nothing at run time.

use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::leptos_toml::LeptosToml;

/// Why the site cannot be embedded.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    /// A file the pages need is not in the built site.
    #[error("{path} is missing: the site must be built before it can be embedded (cargo leptos build --release; scripts/package does both)")]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The hashed bundle: where pages find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The package folder, e.g. `pkg`.
    pub pkg_dir: String,
    /// The base name with its hash, e.g. `switchboard.3f9c0d1e2a4b5c6d`.
    pub name: String,
}

/// One file of the site, as the server will serve it.
#[derive(Debug, Clone)]
pub struct SiteFile {
    /// The URL path, e.g. `/pkg/switchboard.3f9c0d1e2a4b5c6d.wasm` or `/favicon.svg`.
    pub path: String,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// Whether the name carries a content hash (cached for a year).
    pub immutable: bool,
    /// A strong validator of the contents (hex).
    pub etag: String,
    /// The file as built.
    pub identity: PathBuf,
    /// Its brotli variant, when that is smaller.
    pub br: Option<PathBuf>,
    /// Its gzip variant, when that is smaller.
    pub gzip: Option<PathBuf>,
}

/// Everything the server embeds.
#[derive(Debug, Clone, Default)]
pub struct SiteTable {
    /// The hashed bundle, absent when nothing is embedded.
    pub bundle: Option<Bundle>,
    /// The files, sorted by path.
    pub files: Vec<SiteFile>,
}

impl SiteTable {
    /// Reads the site in `site_dir` (built with the settings of `leptos`) and writes the
    /// compressed variants into `out_dir`.
    pub fn build(site_dir: &Path, leptos: &LeptosToml, out_dir: &Path) -> Result<Self, SiteError> {
        let pkg_dir = leptos.site_pkg_dir().trim_matches('/').to_string();
        let name = leptos.output_name();
        let mut bundle_hash = Sha256::new();
        for extension in BUNDLE {
            let path = site_dir.join(&pkg_dir).join(format!("{name}.{extension}"));
            let bytes = read(&path).map_err(|err| match err {
                SiteError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                    SiteError::Missing { path: path.clone() }
                }
                other => other,
            })?;
            bundle_hash.update(Sha256::digest(&bytes));
        }
        let bundle = Bundle {
            name: format!("{name}.{}", &hex(&bundle_hash.finalize())[..16]),
            pkg_dir,
        };
        let variants = out_dir.join("site");
        std::fs::create_dir_all(&variants).map_err(|source| SiteError::Io {
            path: variants.clone(),
            source,
        })?;
        let mut files = Vec::new();
        for (number, identity) in walk(site_dir)?.into_iter().enumerate() {
            let relative = identity
                .strip_prefix(site_dir)
                .unwrap_or(&identity)
                .components()
                .map(|part| part.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let extension = relative.rsplit_once('.').map_or("", |(_, ext)| ext);
            let in_bundle = BUNDLE
                .iter()
                .any(|ext| relative == format!("{}/{name}.{ext}", bundle.pkg_dir));
            let path = if in_bundle {
                format!("/{}/{}.{extension}", bundle.pkg_dir, bundle.name)
            } else {
                format!("/{relative}")
            };
            let bytes = read(&identity)?;
            let (br, gzip) = if COMPRESSIBLE.contains(&extension) {
                let br = smaller(
                    &bytes,
                    brotli(&bytes),
                    &variants.join(format!("{number}.br")),
                )?;
                let gzip = smaller(&bytes, gzip(&bytes), &variants.join(format!("{number}.gz")))?;
                (br, gzip)
            } else {
                (None, None)
            };
            files.push(SiteFile {
                path,
                content_type: content_type(extension),
                immutable: in_bundle,
                etag: hex(&Sha256::digest(&bytes))[..16].to_string(),
                identity,
                br,
                gzip,
            });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Self {
            bundle: Some(bundle),
            files,
        })
    }

    /// The table as a Rust expression of the server's `EmbeddedSite` type.
    pub fn to_rust(&self) -> String {
        let bytes = |path: &Path| format!("include_bytes!({:?})", path.to_string_lossy());
        let optional = |path: &Option<PathBuf>| {
            path.as_deref()
                .map_or_else(|| "None".to_string(), |p| format!("Some({})", bytes(p)))
        };
        let bundle = self.bundle.as_ref().map_or_else(
            || "None".to_string(),
            |b| {
                format!(
                    "Some(Bundle {{ pkg_dir: {:?}, name: {:?} }})",
                    b.pkg_dir, b.name
                )
            },
        );
        let mut text = format!("EmbeddedSite {{\n    bundle: {bundle},\n    assets: &[\n");
        for file in &self.files {
            text.push_str(&format!(
                "        Asset {{ path: {:?}, content_type: {:?}, immutable: {}, etag: {:?}, identity: {}, br: {}, gzip: {} }},\n",
                file.path,
                file.content_type,
                file.immutable,
                file.etag,
                bytes(&file.identity),
                optional(&file.br),
                optional(&file.gzip),
            ));
        }
        text.push_str("    ],\n}\n");
        text
    }
}

/// The bundle's file extensions.
const BUNDLE: [&str; 3] = ["js", "wasm", "css"];

/// Extensions worth compressing (images and fonts other than these are compressed already).
const COMPRESSIBLE: &[&str] = &[
    "js",
    "mjs",
    "wasm",
    "css",
    "html",
    "svg",
    "json",
    "map",
    "txt",
    "xml",
    "webmanifest",
    "ico",
    "ttf",
    "otf",
];

fn content_type(extension: &str) -> &'static str {
    match extension {
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "wasm" => "application/wasm",
        "css" => "text/css; charset=utf-8",
        "html" => "text/html; charset=utf-8",
        "svg" => "image/svg+xml",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "txt" => "text/plain; charset=utf-8",
        "xml" => "application/xml",
        "ico" => "image/x-icon",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        _ => "application/octet-stream",
    }
}

/// Every file under `dir`, in a stable order; precompressed copies a build tool left beside
/// their originals are skipped (the table makes its own), and so are wasm-bindgen's TypeScript
/// declarations (`.d.ts`), which no browser asks for.
fn walk(dir: &Path) -> Result<Vec<PathBuf>, SiteError> {
    let mut files = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let entries = std::fs::read_dir(&folder).map_err(|source| SiteError::Io {
            path: folder.clone(),
            source,
        })?;
        for entry in entries {
            let path = entry
                .map_err(|source| SiteError::Io {
                    path: folder.clone(),
                    source,
                })?
                .path();
            let declarations = path.to_string_lossy().ends_with(".d.ts");
            let precompressed =
                matches!(path.extension().and_then(|e| e.to_str()), Some("br" | "gz"))
                    && path.with_extension("").exists();
            if path.is_dir() {
                folders.push(path);
            } else if !declarations && !precompressed {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

fn read(path: &Path) -> Result<Vec<u8>, SiteError> {
    std::fs::read(path).map_err(|source| SiteError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `compressed` to `path` and returns it, if it is smaller than `original`.
fn smaller(
    original: &[u8],
    compressed: Vec<u8>,
    path: &Path,
) -> Result<Option<PathBuf>, SiteError> {
    if compressed.len() >= original.len() {
        return Ok(None);
    }
    std::fs::write(path, compressed).map_err(|source| SiteError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Some(path.to_path_buf()))
}

fn brotli(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let params = brotli::enc::BrotliEncoderParams {
        quality: 11,
        lgwin: 22,
        ..Default::default()
    };
    // Writing into memory cannot fail.
    let _ = brotli::BrotliCompress(&mut &bytes[..], &mut out, &params);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    // Writing into memory cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A built site of its own: the bundle, a public file and a wasm-bindgen snippet.
    fn site() -> (PathBuf, LeptosToml) {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let root = std::env::temp_dir().join(format!(
            "switchboard-site-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("site/pkg/snippets")).unwrap();
        let script = "export function hydrate() {}\n".repeat(50);
        std::fs::write(root.join("site/pkg/app.js"), &script).unwrap();
        std::fs::write(root.join("site/pkg/app.wasm"), vec![0u8; 4096]).unwrap();
        std::fs::write(
            root.join("site/pkg/app.css"),
            "body { margin: 0 }\n".repeat(20),
        )
        .unwrap();
        std::fs::write(root.join("site/pkg/snippets/x.js"), "export const x = 1;").unwrap();
        std::fs::write(
            root.join("site/pkg/app.d.ts"),
            "export function hydrate(): void;",
        )
        .unwrap();
        std::fs::write(root.join("site/logo.png"), [0x89, b'P', b'N', b'G']).unwrap();
        let leptos = LeptosToml::parse(
            &root.join("Leptos.toml"),
            "output-name = \"app\"\nsite-pkg-dir = \"pkg\"\n".into(),
        )
        .unwrap();
        (root, leptos)
    }

    #[test]
    fn the_bundle_gets_one_content_hash_and_other_files_keep_their_names() {
        let (root, leptos) = site();
        let table = SiteTable::build(&root.join("site"), &leptos, &root.join("out")).unwrap();
        let bundle = table.bundle.clone().unwrap();
        assert!(bundle.name.starts_with("app.") && bundle.name.len() == "app.".len() + 16);
        let paths: Vec<&str> = table.files.iter().map(|f| f.path.as_str()).collect();
        let hashed = |ext: &str| format!("/pkg/{}.{ext}", bundle.name);
        assert_eq!(
            paths,
            vec![
                "/logo.png",
                hashed("css").as_str(),
                hashed("js").as_str(),
                hashed("wasm").as_str(),
                "/pkg/snippets/x.js",
            ]
        );
        let immutable: Vec<bool> = table.files.iter().map(|f| f.immutable).collect();
        assert_eq!(immutable, vec![false, true, true, true, false]);
        let wasm = table
            .files
            .iter()
            .find(|f| f.path.ends_with(".wasm"))
            .unwrap();
        assert_eq!(wasm.content_type, "application/wasm");

        // A change to any of the three gives the bundle a new name.
        std::fs::write(root.join("site/pkg/app.css"), "body { margin: 1px }").unwrap();
        let again = SiteTable::build(&root.join("site"), &leptos, &root.join("out")).unwrap();
        assert_ne!(again.bundle.unwrap().name, bundle.name);
    }

    #[test]
    fn compressed_variants_decode_to_the_original_and_are_only_kept_when_smaller() {
        let (root, leptos) = site();
        let table = SiteTable::build(&root.join("site"), &leptos, &root.join("out")).unwrap();
        let script = table
            .files
            .iter()
            .find(|f| f.path.ends_with(".js") && f.immutable)
            .unwrap();
        let original = std::fs::read(&script.identity).unwrap();
        let mut decoded = Vec::new();
        brotli::Decompressor::new(
            &std::fs::read(script.br.as_ref().unwrap()).unwrap()[..],
            4096,
        )
        .read_to_end(&mut decoded)
        .unwrap();
        assert_eq!(decoded, original);
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(&std::fs::read(script.gzip.as_ref().unwrap()).unwrap()[..])
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded, original);
        let png = table.files.iter().find(|f| f.path == "/logo.png").unwrap();
        assert!(
            png.br.is_none() && png.gzip.is_none(),
            "images are not recompressed"
        );
        let snippet = table
            .files
            .iter()
            .find(|f| f.path.ends_with("x.js"))
            .unwrap();
        assert!(snippet.br.is_none(), "a 19-byte file does not shrink");
    }

    #[test]
    fn a_site_that_was_not_built_is_refused_with_the_fix() {
        let (root, leptos) = site();
        std::fs::remove_file(root.join("site/pkg/app.wasm")).unwrap();
        let err = SiteTable::build(&root.join("site"), &leptos, &root.join("out")).unwrap_err();
        assert!(matches!(err, SiteError::Missing { .. }));
        assert!(
            err.to_string().contains("cargo leptos build --release"),
            "{err}"
        );
    }

    #[test]
    fn the_rust_table_names_every_file_and_variant() {
        let (root, leptos) = site();
        let table = SiteTable::build(&root.join("site"), &leptos, &root.join("out")).unwrap();
        let rust = table.to_rust();
        assert!(rust.starts_with(
            "EmbeddedSite {\n    bundle: Some(Bundle { pkg_dir: \"pkg\", name: \"app."
        ));
        assert_eq!(rust.matches("Asset {").count(), 5);
        assert!(rust.contains("br: Some(include_bytes!("));
        assert_eq!(
            SiteTable::default().to_rust(),
            "EmbeddedSite {\n    bundle: None,\n    assets: &[\n    ],\n}\n"
        );
    }
}
