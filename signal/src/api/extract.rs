//! The request extractors that need the server state: the client address
//! ([`ClientIp`], by the trusted-proxy rules of [`crate::client_ip`]) and
//! the audit trail's request metadata ([`RequestMeta`]). The signed-in user
//! is [`crate::auth::AuthUser`]. Their types live with their owners; only the
//! HTTP side is here, so those owners do not depend on [`AppState`].

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use super::REQUEST_ID_HEADER;
use crate::audit::{RequestMeta, clean_request_id};
use crate::client_ip::{ClientIp, resolve};
use crate::error::ApiError;
use crate::state::AppState;

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .ok_or_else(|| ApiError::internal("server not started with connect info"))?;
        let values: Vec<&str> = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        Ok(ClientIp(resolve(
            peer,
            &values,
            &state.config.trusted_proxies,
        )))
    }
}

impl FromRequestParts<AppState> for RequestMeta {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let ClientIp(ip) = ClientIp::from_request_parts(parts, state).await?;
        let request_id = parts
            .headers
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(clean_request_id);
        Ok(RequestMeta { ip, request_id })
    }
}
