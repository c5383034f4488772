#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use clap::Parser as _;
use serde_json::{Value, json};
use socketioxide::SocketIo;
use tower::ServiceExt as _;

use super::*;
use crate::app::Lifecycle;
use crate::config::{Cli, Config};

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// A fresh web root `<tmp>/www` with `index.html` and `sub/app.js`, and `secret.txt` beside it.
fn web_root() -> PathBuf {
    let root = std::env::temp_dir().join(format!(
        "gateway-http-test-{}-{}",
        std::process::id(),
        NEXT_DIR.fetch_add(1, Ordering::Relaxed)
    ));
    let www = root.join("www");
    std::fs::create_dir_all(www.join("sub")).unwrap();
    std::fs::write(www.join("index.html"), "<p>INDEX-MARKER</p>").unwrap();
    std::fs::write(www.join("sub").join("app.js"), "JS-MARKER").unwrap();
    std::fs::write(root.join("secret.txt"), "SECRET-OUTSIDE-ROOT").unwrap();
    www
}

fn node(extra: &[&str]) -> (Arc<App>, Router) {
    let www = web_root();
    let mut args = vec!["gateway"];
    // `--dev` signs with its own public secret and refuses a real one next to it.
    if !extra.contains(&"--jwt-secret") && !extra.contains(&"--dev") {
        args.extend_from_slice(&["--jwt-secret", "unit-test-secret"]);
    }
    args.extend_from_slice(&[
        "--static-dir",
        www.to_str().unwrap(),
        "--allowed-origins",
        "http://allowed.example",
    ]);
    args.extend_from_slice(extra);
    let config = Config::from_args(Cli::try_parse_from(args).unwrap().serve).unwrap();
    let app = App::new(config, cluster::memory::backends(10)).unwrap();
    let (layer, io) = SocketIo::builder()
        .with_state(Arc::clone(&app))
        .with_adapter::<crate::Adapter>(adapter_redis::RedisAdapterCtr::local())
        .build_layer();
    // A local adapter initialises a namespace on the first poll.
    let init = io.ns(
        "/",
        async |_: socketioxide::extract::SocketRef<crate::Adapter>| {},
    );
    futures_util::FutureExt::now_or_never(init)
        .expect("a local adapter initialises at once")
        .unwrap();
    let shared = crate::sockets::Shared::new(&io, &app);
    let router = with_layers(router(shared), &app, layer);
    app.set_lifecycle(Lifecycle::Ready);
    (app, router)
}

fn token(app: &App, role: &str) -> String {
    let id = Identity {
        user_id: format!("{role}-1"),
        username: role.into(),
        role: role.into(),
    };
    app.verifier.mint(&id, 60).unwrap()
}

async fn send(router: &Router, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let res = router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

async fn get(router: &Router, uri: &str) -> (StatusCode, axum::http::HeaderMap, String) {
    send(router, Request::get(uri).body(Body::empty()).unwrap()).await
}

fn post(uri: &str, bearer: Option<&str>, body: &str) -> Request<Body> {
    let mut req = Request::post(uri).header(header::CONTENT_TYPE, "application/json");
    if let Some(t) = bearer {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    req.body(Body::from(body.to_owned())).unwrap()
}

#[tokio::test]
async fn api_refuses_missing_bad_and_non_admin_tokens() {
    let (app, router) = node(&[]);
    let user = token(&app, "user");
    let other_key = {
        let (other, _) = node(&["--jwt-secret", "another-secret"]);
        token(&other, "admin")
    };
    for route in ["/api/announce", "/api/ban", "/api/emit"] {
        let body = r#"{"message":"x","userId":"u","event":"e","data":{}}"#;
        let (status, headers, text) = send(&router, post(route, None, body)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{route}: {text}");
        assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
        assert!(text.contains("No token provided"), "{text}");
        let (status, _, text) = send(&router, post(route, Some("garbage"), body)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{route}: {text}");
        assert!(text.contains("Invalid token"), "{text}");
        let (status, _, _) = send(&router, post(route, Some(&other_key), body)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{route}: foreign key");
        let (status, _, text) = send(&router, post(route, Some(&user), body)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{route}: {text}");
        assert!(text.contains("admin role required"), "{text}");
    }
}

#[tokio::test]
async fn api_answers_400_with_a_json_error_for_invalid_bodies() {
    let (app, router) = node(&[]);
    let admin = token(&app, "admin");
    let cases = [
        ("/api/emit", r#"{"data":1}"#),
        ("/api/emit", r#"{"event":""}"#),
        ("/api/emit", r#"{"event":"connect"}"#),
        ("/api/emit", r#"{"namespace":"/nope","event":"x"}"#),
        ("/api/announce", r#"{"message":42}"#),
        ("/api/announce", r#"{"message":"   "}"#),
        ("/api/ban", r#"{"reason":"no user"}"#),
        ("/api/ban", r#"{"userId":"u","durationSecs":-5}"#),
        // The socket path's limits hold on the HTTP path too (one validator for both).
        ("/api/ban", r#"{"userId":"u","durationSecs":315360001}"#),
        ("/api/ban", r#"{"userId":"u","durationSecs":0}"#),
        ("/api/ban", r#"{"userId":"u","durationSecs":"60"}"#),
        ("/api/ban", r#""u""#),
        ("/api/ban", r#"{"userId":"u","reason":7}"#),
        ("/api/ban", "not json"),
    ];
    for (route, body) in cases {
        let (status, headers, text) = send(&router, post(route, Some(&admin), body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{route} {body}: {text}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        let json: Value = serde_json::from_str(&text).unwrap();
        assert!(
            json["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{text}"
        );
    }
}

#[tokio::test]
async fn api_emit_with_an_admin_token_succeeds() {
    let (app, router) = node(&[]);
    let admin = token(&app, "admin");
    let (status, _, text) = send(
        &router,
        post(
            "/api/emit",
            Some(&admin),
            r#"{"room":"r1","event":"backend event","data":{"a":1}}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({ "success": true })
    );
}

#[tokio::test]
async fn dev_token_only_in_dev_mode() {
    let (_, router) = node(&[]);
    let (status, _, text) = get(&router, "/dev/token?username=alice&role=admin").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!text.contains("token\""), "{text}");

    let (app, router) = node(&["--dev"]);
    let (status, _, text) = get(&router, "/dev/token?username=alice&role=admin").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let t: Value = serde_json::from_str(&text).unwrap();
    let id = app.verifier.verify(t["token"].as_str().unwrap()).unwrap();
    assert_eq!(
        (id.user_id.as_str(), id.username.as_str(), id.role.as_str()),
        ("alice", "alice", "admin")
    );
    let (_, _, text) = get(&router, "/dev/token?username=bob&userId=u-7").await;
    let t: Value = serde_json::from_str(&text).unwrap();
    let id = app.verifier.verify(t["token"].as_str().unwrap()).unwrap();
    assert_eq!((id.user_id.as_str(), id.role.as_str()), ("u-7", "user"));
    let (status, _, _) = get(&router, "/dev/token").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn static_files_are_served_and_missing_ones_are_404() {
    let (_, router) = node(&[]);
    let (status, headers, text) = get(&router, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("INDEX-MARKER"));
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let (status, _, text) = get(&router, "/sub/app.js").await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, "JS-MARKER"));
    assert_eq!(get(&router, "/missing.html").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn nothing_outside_the_web_root_is_served() {
    let (_, router) = node(&[]);
    for path in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/%2e%2e%2fsecret.txt",
        "/sub/../../secret.txt",
        "/sub/%2e%2e/%2e%2e/secret.txt",
        "/..%5csecret.txt",
        "/..%2f..%2f..%2f..%2f..%2f..%2fetc/passwd",
        "/%252e%252e/secret.txt",
    ] {
        let (status, _, text) = get(&router, path).await;
        assert_ne!(status, StatusCode::OK, "{path} answered 200");
        assert!(!text.contains("SECRET-OUTSIDE-ROOT"), "{path} leaked");
        assert!(!text.contains("root:"), "{path} served /etc/passwd");
    }
}

#[tokio::test]
async fn ready_follows_the_lifecycle() {
    let (app, router) = node(&[]);
    assert_eq!(get(&router, "/ready").await.0, StatusCode::OK);
    app.set_lifecycle(Lifecycle::Draining);
    let (status, _, text) = get(&router, "/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(text.contains("draining"), "{text}");
    app.set_lifecycle(Lifecycle::Starting);
    assert_eq!(
        get(&router, "/ready").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn health_has_the_contract_shape() {
    let (app, router) = node(&[]);
    let (status, _, text) = get(&router, "/health").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let h: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(h["status"], "healthy", "{text}");
    assert!(h["issues"].as_array().unwrap().is_empty());
    assert!(h["metrics"]["rssBytes"].as_u64().unwrap() > 0);
    assert!(
        chrono::DateTime::parse_from_rfc3339(h["timestamp"].as_str().unwrap()).is_ok(),
        "{text}"
    );
    app.runtime_lag_ms
        .store(health::LAG_UNHEALTHY_MS, Ordering::Relaxed);
    let (status, _, text) = get(&router, "/health").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert!(text.contains("\"unhealthy\""), "{text}");
}

#[tokio::test]
async fn metrics_are_prometheus_text_or_openmetrics_on_request() {
    let (_, router) = node(&[]);
    let (status, headers, text) = get(&router, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(text.contains("\nsocketio_connections_active 0\n"), "{text}");
    assert!(text.contains("\nsocketio_rooms_total 0\n"), "{text}");
    let req = Request::get("/metrics")
        .header(
            header::ACCEPT,
            "application/openmetrics-text; version=1.0.0",
        )
        .body(Body::empty())
        .unwrap();
    let (_, headers, _) = send(&router, req).await;
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
}

#[tokio::test]
async fn stats_and_cluster_stats_name_this_node() {
    let (app, router) = node(&["--server-id", "node-x"]);
    let (status, _, text) = get(&router, "/stats").await;
    assert_eq!(status, StatusCode::OK);
    let s: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(s["serverId"], "node-x");
    assert_eq!(s["totalConnections"], 0);
    let (status, _, text) = get(&router, "/cluster/stats").await;
    assert_eq!(status, StatusCode::OK);
    let c: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(c["nodes"][0]["serverId"], "node-x");
    assert_eq!(c["nodes"].as_array().unwrap().len(), 1);
    assert_eq!(c["totals"]["nodes"], 1);
    drop(app);
}

#[tokio::test]
async fn cors_allows_only_the_allow_list_with_credentials() {
    let (_, router) = node(&[]);
    let preflight = |origin: &str| {
        Request::builder()
            .method("OPTIONS")
            .uri("/socket.io/?EIO=4&transport=polling")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .body(Body::empty())
            .unwrap()
    };
    let (_, headers, _) = send(&router, preflight("http://allowed.example")).await;
    assert_eq!(
        headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "http://allowed.example"
    );
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    let methods = headers[header::ACCESS_CONTROL_ALLOW_METHODS]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        methods.contains("GET") && methods.contains("POST"),
        "{methods}"
    );
    let (_, headers, _) = send(&router, preflight("http://evil.example")).await;
    assert!(headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    // Plain HTTP routes get the same rule.
    let req = Request::get("/stats")
        .header(header::ORIGIN, "http://allowed.example")
        .body(Body::empty())
        .unwrap();
    let (_, headers, _) = send(&router, req).await;
    assert_eq!(
        headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "http://allowed.example"
    );
}

#[tokio::test]
async fn engine_io_v3_needs_allow_eio3() {
    let (_, router) = node(&[]);
    let (status, _, text) = get(&router, "/socket.io/?EIO=3&transport=polling").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("Unsupported protocol version"), "{text}");
    let (status, _, text) = get(&router, "/socket.io/?EIO=4&transport=polling").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains("\"sid\""), "{text}");

    let (_, router) = node(&["--allow-eio3"]);
    let (status, _, text) = get(&router, "/socket.io/?EIO=3&transport=polling").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.contains("\"sid\""), "{text}");
}
