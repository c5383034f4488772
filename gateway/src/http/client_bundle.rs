//! The socket.io client bundle at `/socket.io/socket.io.js` (and `.min.js`, the ESM build and the
//! source maps), as Node's socket.io serves it, so pages need no CDN.
//!
//! The files come from the npm package `socket.io-client` (its `dist/` directory), installed at
//! build or install time by `npm ci --prefix gateway/client-bundle` (version pinned by that
//! directory's lockfile) and never committed. They are read once at
//! start-up from `CLIENT_BUNDLE_DIR`; a missing directory is logged and the routes answer 404 with
//! a body that says how to get the bundle, rather than stopping the node.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The files served, by name under `/socket.io/`.
pub const FILES: [&str; 8] = [
    "socket.io.js",
    "socket.io.js.map",
    "socket.io.min.js",
    "socket.io.min.js.map",
    "socket.io.esm.min.js",
    "socket.io.esm.min.js.map",
    "socket.io.msgpack.min.js",
    "socket.io.msgpack.min.js.map",
];

/// Where the bundle is served: the Engine.IO path, as Node's socket.io does.
const PREFIX: &str = "/socket.io/";

/// The bundle files read at start-up.
#[derive(Debug, Clone, Default)]
pub struct ClientBundle {
    files: Arc<HashMap<&'static str, Bytes>>,
    missing_reason: Arc<str>,
}

impl ClientBundle {
    /// Reads the bundle from `dir`. Files that cannot be read are left out (404), and the first
    /// reason is logged once.
    pub fn load(dir: &Path) -> Self {
        let mut files = HashMap::new();
        let mut first_error = None;
        for name in FILES {
            match std::fs::read(dir.join(name)) {
                Ok(bytes) => {
                    files.insert(name, Bytes::from(bytes));
                }
                Err(e) => {
                    first_error.get_or_insert_with(|| format!("{}: {e}", dir.join(name).display()));
                }
            }
        }
        let missing_reason: Arc<str> = match &first_error {
            Some(reason) if files.is_empty() => {
                tracing::warn!(
                    dir = %dir.display(),
                    error = %reason,
                    "socket.io client bundle not found: /socket.io/socket.io.js answers 404 \
                     (run `npm ci --prefix gateway/client-bundle`, or set CLIENT_BUNDLE_DIR)"
                );
                format!(
                    "socket.io client bundle not installed on this node ({reason}); run \
                     `npm ci --prefix gateway/client-bundle` or set CLIENT_BUNDLE_DIR\n"
                )
                .into()
            }
            _ => "no such file in the socket.io client bundle\n".into(),
        };
        Self {
            files: Arc::new(files),
            missing_reason,
        }
    }

    /// Whether the main bundle (`socket.io.js`) was found.
    pub fn is_installed(&self) -> bool {
        self.files.contains_key("socket.io.js")
    }

    fn answer(&self, name: &str) -> Response {
        let Some(body) = self.files.get(name) else {
            return (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                self.missing_reason.to_string(),
            )
                .into_response();
        };
        let content_type = if name.ends_with(".map") {
            "application/json; charset=utf-8"
        } else {
            "application/javascript; charset=utf-8"
        };
        (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=3600"),
                ),
            ],
            body.clone(),
        )
            .into_response()
    }
}

/// Middleware placed outside the Socket.IO layer (which owns every path under `/socket.io/`):
/// answers `GET`/`HEAD` of the bundle's file names and passes everything else on.
pub async fn serve(State(bundle): State<ClientBundle>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD)
        && let Some(name) = req.uri().path().strip_prefix(PREFIX)
        && FILES.contains(&name)
    {
        return bundle.answer(name);
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_missing_directory_answers_404_with_the_way_to_get_it() {
        let bundle = ClientBundle::load(Path::new("/nonexistent/bundle"));
        assert!(!bundle.is_installed());
        let r = bundle.answer("socket.io.js");
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert!(
            bundle
                .missing_reason
                .contains("npm ci --prefix gateway/client-bundle")
        );
    }

    #[test]
    fn files_are_served_with_their_types() {
        let dir = std::env::temp_dir().join(format!("bundle-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("socket.io.js"), "window.io = 1;").unwrap();
        std::fs::write(dir.join("socket.io.js.map"), "{}").unwrap();
        let bundle = ClientBundle::load(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(bundle.is_installed());
        let r = bundle.answer("socket.io.js");
        assert_eq!(r.status(), StatusCode::OK);
        assert!(
            r.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("application/javascript")
        );
        let r = bundle.answer("socket.io.js.map");
        assert!(
            r.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        assert_eq!(
            bundle.answer("socket.io.min.js").status(),
            StatusCode::NOT_FOUND
        );
    }
}
