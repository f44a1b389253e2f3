//! Static web app serving: MIME types, app-route fallback to index.html, CSP,
//! JSON 404 for API paths, path traversal refused; and the media audience route.

mod common;

use std::path::Path;

use common::*;
use reqwest::{Method, StatusCode, header};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use watchparty_signal::api::CONTENT_SECURITY_POLICY;
use watchparty_signal::web::MAX_STATIC_FILE_BYTES;

const INDEX: &str = "<!doctype html><title>watchparty test index</title>";
const SECRET: &str = "TOP-SECRET-OUTSIDE-WEB-DIR";

/// `<tmp>/web` with an index, assets and a pkg dir; `<tmp>/secret.txt` beside it.
fn web_tree(root: &Path) -> std::path::PathBuf {
    let web = root.join("web");
    std::fs::create_dir_all(web.join("pkg")).unwrap();
    std::fs::create_dir_all(web.join("js")).unwrap();
    std::fs::write(web.join("index.html"), INDEX).unwrap();
    std::fs::write(web.join("app.css"), "body{}").unwrap();
    std::fs::write(web.join("js/app.js"), "export const x = 1;").unwrap();
    std::fs::write(web.join("pkg/peer_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(web.join("pkg/peer.js"), "export default 1;").unwrap();
    std::fs::write(web.join(".env"), SECRET).unwrap();
    std::fs::write(root.join("secret.txt"), SECRET).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(root.join("secret.txt"), web.join("link.txt")).unwrap();
    web
}

async fn server(dir: &Path) -> Server {
    let web = web_tree(dir);
    Server::start(&dir.join("data"), move |c| c.web_dir = web).await
}

/// Sends a raw request line (no client-side normalisation of `..` or `%2e`)
/// and returns the whole response text.
async fn raw_get(s: &Server, target: &str) -> String {
    let mut conn = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let req = format!(
        "GET {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        s.addr
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        conn.read_to_end(&mut out),
    )
    .await
    .unwrap()
    .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn serves_files_with_mime_types_and_csp() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    for (path, mime, body) in [
        ("/", "text/html; charset=utf-8", INDEX),
        ("/index.html", "text/html; charset=utf-8", INDEX),
        ("/app.css", "text/css; charset=utf-8", "body{}"),
        (
            "/js/app.js",
            "text/javascript; charset=utf-8",
            "export const x = 1;",
        ),
        (
            "/pkg/peer.js",
            "text/javascript; charset=utf-8",
            "export default 1;",
        ),
    ] {
        let r = s.client.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(r.headers()[header::CONTENT_TYPE], mime, "{path}");
        assert_eq!(
            r.headers()[header::CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY,
            "{path}"
        );
        assert_eq!(r.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache");
        assert_eq!(r.text().await.unwrap(), body, "{path}");
    }
    // The CSP forbids inline script: no 'unsafe-inline' anywhere.
    assert!(!CONTENT_SECURITY_POLICY.contains("unsafe-inline"));
    let r = s
        .client
        .get(s.url("/pkg/peer_bg.wasm"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "application/wasm");
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"\0asm\x01\0\0\0");
    // HEAD: headers without a body.
    let r = s.client.head(s.url("/app.css")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CONTENT_LENGTH], "6");
    assert!(r.bytes().await.unwrap().is_empty());
    s.stop().await;
}

#[tokio::test]
async fn app_routes_get_index_and_api_paths_stay_json_404() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    for path in [
        "/room/0123456789abcdef0123456789abcdef",
        "/login",
        "/invites",
        "/room/",
    ] {
        let r = s.client.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert_eq!(r.text().await.unwrap(), INDEX, "{path}");
    }
    // Missing assets (with an extension) are not app routes.
    for path in [
        "/missing.js",
        "/pkg/missing.wasm",
        "/api/v1/nope",
        "/api",
        "/api/v1/rooms/x/y/z",
    ] {
        let r = s.client.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "not_found", "{path}");
    }
    // Other methods never reach the files.
    let r = s.client.post(s.url("/index.html")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = s
        .client
        .request(Method::DELETE, s.url("/room/abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test]
async fn path_traversal_and_hidden_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    for target in [
        "/../secret.txt",
        "/pkg/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/pkg/%2e%2e/%2e%2e/secret.txt",
        "/.env",
        "/js/..\\..\\secret.txt",
        "/link.txt",
        "//secret.txt",
    ] {
        let resp = raw_get(&s, target).await;
        // 404 from us, or 400 when hyper already refuses the request target.
        assert!(
            resp.starts_with("HTTP/1.1 404") || resp.starts_with("HTTP/1.1 400"),
            "{target}: {}",
            resp.lines().next().unwrap_or("")
        );
        assert!(!resp.contains(SECRET), "{target} leaked the file");
    }
    // An app-route-looking traversal never serves anything but the index.
    let resp = raw_get(&s, "/room/../../secret").await;
    assert!(!resp.contains(SECRET));
    s.stop().await;
}

#[tokio::test]
async fn oversized_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let web = web_tree(dir.path());
    let big = std::fs::File::create(web.join("big.bin")).unwrap();
    big.set_len(MAX_STATIC_FILE_BYTES + 1).unwrap();
    let ok = std::fs::File::create(web.join("ok.bin")).unwrap();
    ok.set_len(MAX_STATIC_FILE_BYTES).unwrap();
    let s = Server::start(&dir.path().join("data"), move |c| c.web_dir = web).await;
    let r = s.client.head(s.url("/big.bin")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = s.client.head(s.url("/ok.bin")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()[header::CONTENT_TYPE],
        "application/octet-stream"
    );
    s.stop().await;
}

#[tokio::test]
async fn separate_pkg_dir_and_missing_web_dir() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("bundle");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(pkg.join("b.wasm"), b"\0asm").unwrap();
    let missing = dir.path().join("no-such-web-dir");
    let s = Server::start(&dir.path().join("data"), move |c| {
        c.web_dir = missing;
        c.web_pkg_dir = Some(pkg);
    })
    .await;
    let r = s.client.get(s.url("/pkg/b.wasm")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "application/wasm");
    // No web dir: `/` is a plain JSON 404, the API still works.
    let r = s.client.get(s.url("/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = s.client.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn audience_lists_only_users_who_can_access_the_item() {
    audience_case(None).await;
}

#[tokio::test]
async fn audience_is_capped_by_list_max_rows() {
    audience_case(Some(1)).await;
}

async fn audience_case(cap: Option<u32>) {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), |c| {
        if let Some(cap) = cap {
            c.list_max_rows = cap;
        }
    })
    .await;
    let lib_dir = media_tree(&dir.path().join("lib"));
    let other_dir = dir.path().join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    std::fs::write(other_dir.join("x.mp4"), mp4_bytes(100)).unwrap();
    let lib = s.add_library("films", &lib_dir).await;
    let _other = s.add_library("other", &other_dir).await;
    let alice = s.add_user("alice", false).await;
    let bob = s.add_user("bob", false).await;
    let _carol = s.add_user("carol", false).await;
    let _root = s.add_user("root", true).await;
    s.grant(alice, lib).await;
    s.grant(bob, lib).await;
    let item: i64 = sqlx::query_scalar("SELECT id FROM media_items WHERE library_id = ?1 LIMIT 1")
        .bind(lib)
        .fetch_one(&s.state.db)
        .await
        .unwrap();
    let token = s.login("alice").await;
    let r = s
        .call(
            Method::GET,
            &format!("/api/v1/media/{item}/audience"),
            &token,
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let truncated = r.headers()["x-truncated"].to_str().unwrap().to_owned();
    let v: Value = r.json().await.unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    // Not the caller, not carol (no grant); the admin sees everything.
    if cap == Some(1) {
        assert_eq!(names, vec!["bob"]);
        assert_eq!(truncated, "true");
    } else {
        assert_eq!(names, vec!["bob", "root"]);
        assert_eq!(truncated, "false");
    }
    // carol may not see the item: 404, no list.
    let carol = s.login("carol").await;
    let r = s
        .call(
            Method::GET,
            &format!("/api/v1/media/{item}/audience"),
            &carol,
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    s.stop().await;
}
