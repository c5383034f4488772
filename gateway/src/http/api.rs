//! `POST /api/announce`, `/api/ban`, `/api/emit`: the admin actions for backends, behind an admin
//! JWT given as `Authorization: Bearer <jwt>`.
//!
//! Order of checks: the token first (401 missing or invalid, 403 not an admin), then the body
//! (400 with `{ error }`), then the action (400 for bad values, 503 when cluster state is down,
//! 500 when the broadcast failed).

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{HttpState, json_error};
use crate::actions::ActionError;
use crate::actions::admin as actions;
use crate::app::App;
use crate::auth::{AuthError, Identity, token_from};
use crate::protocol::payloads::{AnnounceBody, EmitBody};

/// Why a request is not an admin's.
#[derive(Debug, PartialEq, Eq)]
pub enum AdminRefusal {
    /// No token, or an invalid one (401).
    Auth(AuthError),
    /// A valid token without the `admin` role (403).
    NotAdmin,
}

impl IntoResponse for AdminRefusal {
    fn into_response(self) -> Response {
        match self {
            Self::Auth(e) => (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                Json(json!({ "error": e.to_string() })),
            )
                .into_response(),
            Self::NotAdmin => {
                json_error(StatusCode::FORBIDDEN, "Access denied: admin role required")
            }
        }
    }
}

/// The admin behind the request (`Authorization: Bearer <jwt>` with role `admin`).
pub fn require_admin(app: &App, headers: &HeaderMap) -> Result<Identity, AdminRefusal> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let token = token_from(None, authorization).ok_or(AdminRefusal::Auth(AuthError::NoToken))?;
    let identity = app.verifier.verify(&token).map_err(AdminRefusal::Auth)?;
    if !identity.is_admin() {
        return Err(AdminRefusal::NotAdmin);
    }
    Ok(identity)
}

fn bad_body(rejection: JsonRejection) -> Response {
    json_error(
        StatusCode::BAD_REQUEST,
        format!("invalid request body: {}", rejection.body_text()),
    )
}

/// Runs `action` for the admin behind the request, with the request's body, once both are
/// checked in the order of the module docs (token, then body). Its `Ok` value is the 200 JSON
/// body; its error is answered by [`action_failed`].
async fn admin_action<T>(
    state: &HttpState,
    headers: &HeaderMap,
    body: Result<Json<T>, JsonRejection>,
    action: impl AsyncFnOnce(Identity, T) -> Result<Value, ActionError>,
) -> Response {
    let admin = match require_admin(&state.app, headers) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let Json(body) = match body {
        Ok(b) => b,
        Err(r) => return bad_body(r),
    };
    match action(admin, body).await {
        Ok(value) => Json(value).into_response(),
        Err(e) => action_failed(e),
    }
}

fn action_failed(e: ActionError) -> Response {
    let status = match &e {
        ActionError::Invalid(_) | ActionError::UnknownNamespace(_) => StatusCode::BAD_REQUEST,
        ActionError::State(_) => StatusCode::SERVICE_UNAVAILABLE,
        ActionError::Broadcast(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status.is_server_error() {
        tracing::warn!(error = %e, "admin API action failed");
    }
    json_error(status, e.to_string())
}

/// `POST /api/announce` `{ message }`.
pub async fn announce(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Result<Json<AnnounceBody>, JsonRejection>,
) -> Response {
    admin_action(&state, &headers, body, async |admin, body: AnnounceBody| {
        actions::announce(&state.shared, &body.message).await?;
        tracing::info!(by = %admin.user_id, "announcement sent through the API");
        Ok(json!({ "success": true }))
    })
    .await
}

/// `POST /api/ban` `{ userId, reason?, durationSecs? }`, checked by the same validator as the
/// `/admin` event `ban user` (lengths, a duration of 1 s to
/// [`crate::protocol::payloads::MAX_BAN_SECS`]).
pub async fn ban(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    admin_action(&state, &headers, body, async |admin, body: Value| {
        if !body.is_object() {
            return Err(ActionError::Invalid(
                "the body must be a JSON object".into(),
            ));
        }
        let request =
            crate::protocol::payloads::ban_user(&body).map_err(|e| ActionError::Invalid(e.0))?;
        let ban = actions::ban_user(&state.shared, &request, &admin.user_id).await?;
        Ok(json!({ "success": true, "ban": ban }))
    })
    .await
}

/// `POST /api/emit` `{ namespace?, room?, event, data }`.
pub async fn emit(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Result<Json<EmitBody>, JsonRejection>,
) -> Response {
    admin_action(&state, &headers, body, async |_admin, body: EmitBody| {
        actions::emit(
            &state.shared,
            body.namespace.as_deref(),
            body.room.as_deref(),
            &body.event,
            body.data,
        )
        .await?;
        Ok(json!({ "success": true }))
    })
    .await
}
