//! The HTTP API: routes, middleware and the OpenAPI document.

pub mod admin;
pub mod auth;
pub mod cookie;
pub mod extract;
pub mod health;
pub mod media;
pub mod rooms;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, Request, StatusCode, header};
use axum::{Extension, Router};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
use utoipa::openapi::Ref;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::request_body::MAX_BODY_BYTES;
use crate::state::AppState;

/// The Content-Security-Policy sent on every response.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'";
/// Preflight cache time when CORS is on.
pub const CORS_MAX_AGE: Duration = Duration::from_secs(600);
/// Request-id header.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

#[derive(OpenApi)]
#[openapi(
    info(title = "watchparty signaling server", description = "Accounts, media access and rooms. See docs/api.md."),
    modifiers(&BearerScheme),
    tags(
        (name = "auth", description = "accounts and tokens"),
        (name = "media", description = "libraries, items and streaming"),
        (name = "rooms", description = "rooms and membership"),
        (name = "invites", description = "invitation inbox"),
        (name = "ops", description = "health and API description"),
        (name = "admin", description = "the audit trail (administrators only)"),
    )
)]
struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "refresh_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                cookie::REFRESH_COOKIE_NAME,
                "The web app's refresh token (`HttpOnly; Secure; SameSite=Strict`, \
                 `Path=/api/v1/auth`); read only with `X-Watchparty-CSRF: 1` and an \
                 `Origin` of the app. Named `watchparty_refresh` (no `Secure`) when \
                 the server runs with `cookie_secure = false`.",
            ))),
        );
    }
}

/// Random request ids (64 bits, hex).
#[derive(Clone, Copy, Debug, Default)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let bytes = crate::accounts::random_bytes::<8>().ok()?;
        HeaderValue::from_str(&hex::encode(bytes))
            .ok()
            .map(RequestId::new)
    }
}

/// All routes with their OpenAPI description (before middleware).
pub fn api_router() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(auth::routes())
        .merge(media::routes())
        .merge(rooms::routes())
        .merge(health::routes())
        .merge(admin::routes())
        .split_for_parts();
    add_common_answers(&mut doc);
    media::describe_stream_types(&mut doc);
    (router, doc)
}

/// The answers that follow from the extractors rather than from a handler's
/// own logic, added to every operation they apply to (unless the handler
/// already describes them):
///
/// * a bearer-secured operation answers **401** (the `AuthUser` extractor:
///   missing, invalid, expired or revoked access token);
/// * an operation with a request body answers **400** (malformed JSON, a
///   missing or unknown field, a wrong type, a field out of range) and
///   **413** (a body over [`MAX_BODY_BYTES`], or a declared
///   `Content-Length` over it, refused before reading) and **408** (the body
///   did not arrive within the body deadlines, `crate::request_body`).
fn add_common_answers(doc: &mut utoipa::openapi::OpenApi) {
    let bearer = SecurityRequirement::new("bearer", Vec::<String>::new());
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in operations.into_iter().flatten() {
            let secured = op
                .security
                .as_ref()
                .is_some_and(|alternatives| alternatives.contains(&bearer));
            if secured {
                add_error_answer(
                    op,
                    StatusCode::UNAUTHORIZED,
                    "missing, invalid, expired or revoked access token",
                );
            }
            if op.request_body.is_some() {
                add_error_answer(
                    op,
                    StatusCode::BAD_REQUEST,
                    "malformed JSON or an invalid field",
                );
                add_error_answer(
                    op,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!(
                        "request body (or its declared Content-Length) over {} KiB",
                        MAX_BODY_BYTES / 1024
                    ),
                );
                add_error_answer(
                    op,
                    StatusCode::REQUEST_TIMEOUT,
                    "the body did not arrive within the body deadlines",
                );
            }
        }
    }
}

/// Adds answer `status` with an [`ErrorBody`](crate::error::ErrorBody) to
/// `op`, unless it already lists that status.
fn add_error_answer(op: &mut Operation, status: StatusCode, description: &str) {
    op.responses
        .responses
        .entry(status.as_str().to_owned())
        .or_insert_with(|| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
                .into()
        });
}

/// The OpenAPI document as JSON.
pub fn openapi_json() -> String {
    let (_, doc) = api_router();
    doc.to_json().unwrap_or_else(|_| "{}".into())
}

/// The complete application: routes, state and middleware.
///
/// Serve it with `into_make_service_with_connect_info::<SocketAddr>()` (the
/// per-IP limits need the peer address); see [`crate::server`].
pub fn app(state: AppState) -> Router {
    let (router, doc) = api_router();
    let doc_json: Arc<String> = Arc::new(doc.to_json().unwrap_or_else(|_| "{}".into()));
    let cors = cors_layer(&state.config.cors_origins);
    let body_deadlines = crate::request_body::BodyDeadlines::from_config(&state.config);
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    let trace = TraceLayer::new_for_http()
        // Only method and path: the query string may hold a signed stream token.
        .make_span_with(|req: &Request<_>| {
            let id = req
                .headers()
                .get(REQUEST_ID_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        })
        .on_response(DefaultOnResponse::new().level(Level::INFO));
    let mut app = router
        .route(
            crate::ws::SIGNAL_PATH,
            axum::routing::get(crate::ws::signal),
        )
        .fallback(crate::web::fallback)
        .layer(Extension(health::OpenApiDoc(doc_json)))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            body_deadlines,
            crate::request_body::guard,
        ));
    if let Some(cors) = cors {
        app = app.layer(cors);
    }
    app.layer(trace)
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, RandomRequestId))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
}

/// CORS is off (no layer at all) unless origins are configured.
fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(list))
            .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::RANGE])
            .max_age(CORS_MAX_AGE),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    /// Every operation of the served document: (method, path, operation).
    fn operations() -> Vec<(String, String, Value)> {
        let doc: Value = serde_json::from_str(&super::openapi_json()).unwrap();
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in ["get", "put", "post", "delete", "patch"] {
                if let Some(op) = item.get(method) {
                    out.push((method.to_owned(), path.clone(), op.clone()));
                }
            }
        }
        assert!(out.len() > 20, "{out:?}");
        out
    }

    fn params_in<'a>(op: &'a Value, location: &str) -> Vec<&'a str> {
        op["parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter(|p| p["in"] == location)
                    .filter_map(|p| p["name"].as_str())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn path_parameters_are_exactly_the_names_in_the_path() {
        for (method, path, op) in operations() {
            let mut declared = params_in(&op, "path");
            declared.sort_unstable();
            let mut named: Vec<&str> = path
                .split('{')
                .skip(1)
                .filter_map(|s| s.split('}').next())
                .collect();
            named.sort_unstable();
            assert_eq!(declared, named, "{method} {path}");
        }
    }

    #[test]
    fn paging_and_the_stream_token_are_query_parameters() {
        let ops = operations();
        let query_of = |path: &str| {
            let (_, _, op) = ops
                .iter()
                .find(|(m, p, _)| m == "get" && p == path)
                .unwrap();
            let mut names = params_in(op, "query");
            names.sort_unstable();
            names.into_iter().map(str::to_owned).collect::<Vec<_>>()
        };
        assert_eq!(query_of("/api/v1/media"), ["after", "library", "limit"]);
        assert_eq!(query_of("/api/v1/media/{id}/stream"), ["t"]);
        assert_eq!(query_of("/api/v1/media/{id}/subtitles/{sub_id}"), ["t"]);
    }

    #[test]
    fn the_policy_schema_states_the_buffer_wait_limit() {
        let doc: Value = serde_json::from_str(&super::openapi_json()).unwrap();
        let wait = &doc["components"]["schemas"]["Policy"]["properties"]["buffer_wait_ms"];
        assert_eq!(
            wait["maximum"].as_u64(),
            Some(u64::from(crate::rooms::model::MAX_BUFFER_WAIT_MS)),
            "{wait}"
        );
    }

    #[test]
    fn secured_operations_list_401_and_operations_with_a_body_400_and_413() {
        for (method, path, op) in operations() {
            let statuses = op["responses"].as_object().unwrap();
            let bearer = op["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
            if bearer {
                assert!(statuses.contains_key("401"), "{method} {path}");
            }
            if op.get("requestBody").is_some() {
                for status in ["400", "413"] {
                    assert!(statuses.contains_key(status), "{method} {path} {status}");
                }
            }
        }
    }
}
