//! `POST /api/announce`, `/api/ban`, `/api/emit`: the admin actions for backends, behind an admin
//! JWT given as `Authorization: Bearer <jwt>`.
//!
//! Order of checks: the token first (401 missing or invalid, 403 not an admin), then the body
//! (400 with `{ error }`), then the action (400 for bad values, 503 when cluster state is down,
//! 500 when the broadcast failed).

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
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

/// An admin API call: the admin behind the request and its JSON body, checked in the order of
/// the module docs (token, then body); a refusal is the answer.
#[derive(Debug)]
pub struct AdminCall<T>(pub Identity, pub T);

impl<T: DeserializeOwned> FromRequest<HttpState> for AdminCall<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &HttpState) -> Result<Self, Response> {
        let admin =
            require_admin(&state.app, req.headers()).map_err(IntoResponse::into_response)?;
        let Json(body) = Json::<T>::from_request(req, state)
            .await
            .map_err(bad_body)?;
        Ok(Self(admin, body))
    }
}

/// An admin action that failed: 400 for bad values, 503 when cluster state is down, 500 when
/// the broadcast failed, each with `{ error }`.
#[derive(Debug)]
pub struct ActionFailed(ActionError);

impl From<ActionError> for ActionFailed {
    fn from(e: ActionError) -> Self {
        Self(e)
    }
}

impl IntoResponse for ActionFailed {
    fn into_response(self) -> Response {
        let Self(e) = self;
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
}

/// What every admin action answers on success.
type Answer = Result<Json<Value>, ActionFailed>;

/// `POST /api/announce` `{ message }`.
pub async fn announce(
    State(state): State<HttpState>,
    AdminCall(admin, body): AdminCall<AnnounceBody>,
) -> Answer {
    actions::announce(&state.shared, &body.message).await?;
    tracing::info!(by = %admin.user_id, "announcement sent through the API");
    Ok(Json(json!({ "success": true })))
}

/// `POST /api/ban` `{ userId, reason?, durationSecs? }`, checked by the same validator as the
/// `/admin` event `ban user` (lengths, a duration of 1 s to
/// [`crate::protocol::payloads::MAX_BAN_SECS`]).
pub async fn ban(
    State(state): State<HttpState>,
    AdminCall(admin, body): AdminCall<Value>,
) -> Answer {
    if !body.is_object() {
        return Err(ActionError::Invalid("the body must be a JSON object".into()).into());
    }
    let request =
        crate::protocol::payloads::ban_user(&body).map_err(|e| ActionError::Invalid(e.0))?;
    let ban = actions::ban_user(&state.shared, &request, &admin.user_id).await?;
    Ok(Json(json!({ "success": true, "ban": ban })))
}

/// `POST /api/emit` `{ namespace?, room?, event, data }`.
pub async fn emit(
    State(state): State<HttpState>,
    AdminCall(_admin, body): AdminCall<EmitBody>,
) -> Answer {
    actions::emit(
        &state.shared,
        body.namespace.as_deref(),
        body.room.as_deref(),
        &body.event,
        body.data,
    )
    .await?;
    Ok(Json(json!({ "success": true })))
}
