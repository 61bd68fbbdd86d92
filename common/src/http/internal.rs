//! Authentication of the internal endpoints: the Pub/Sub push and the scheduler tick (DESIGN §6).
//!
//! - Staging and production: only `Authorization: Bearer <token>` with a Google-signed OIDC token
//!   for `OIDC_AUDIENCE` from one of `OIDC_INVOKERS` (Pub/Sub's and Cloud Scheduler's service
//!   accounts), checked by [`OidcVerifier`](crate::auth::oidc::OidcVerifier). The root key is refused:
//!   nothing but Google's own callers has a reason to call these routes there.
//! - Development: the root key (`X-CA-Root-Key`), or a bearer token when `OIDC_AUDIENCE` is set
//!   (so tests exercise tokens against a local key server).

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::HeaderValue;

use super::error::ApiError;
use crate::app::AppState;
use crate::auth::ROOT_KEY_HEADER;
use crate::settings::Environment;

/// Who called an internal endpoint, for audit rows and logs. Take it as a handler argument:
/// `async fn push(caller: InternalCaller, …)`; a request it refuses never reaches the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InternalCaller {
    /// The root key (development only), or `DISABLE_AUTH=true` there.
    Root,
    /// A verified Google OIDC token from this service account (lowercase email).
    ServiceAccount(String),
}

impl InternalCaller {
    /// For audit rows: (actor_type, actor_id).
    pub fn actor(&self) -> (&'static str, Option<String>) {
        match self {
            InternalCaller::Root => ("root", Some("root".into())),
            InternalCaller::ServiceAccount(email) => ("service_account", Some(email.clone())),
        }
    }
}

impl FromRequestParts<AppState> for InternalCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let development = state.settings.environment == Environment::Development;
        if development {
            if state.auth.is_disabled() {
                return Ok(InternalCaller::Root);
            }
            if let Some(root) = parts.headers.get(ROOT_KEY_HEADER) {
                return if state.auth.is_root(root.as_bytes()) {
                    Ok(InternalCaller::Root)
                } else {
                    Err(refused("the root key is not valid".into()))
                };
            }
        }
        let Some(authorization) = parts.headers.get(AUTHORIZATION) else {
            return Err(refused(if development {
                "send the root key in X-CA-Root-Key, or a Google OIDC token in `Authorization: Bearer <token>` \
                 when OIDC_AUDIENCE is set"
                    .into()
            } else {
                format!(
                    "this internal endpoint needs a Google OIDC token in `Authorization: Bearer <token>`; \
                     in {} no other credential is accepted",
                    state.settings.environment.as_str()
                )
            }));
        };
        let Some(token) = bearer_token(authorization) else {
            return Err(refused("the Authorization header must be `Bearer <Google OIDC token>`".into()));
        };
        let Some(verifier) = &state.oidc else {
            // Staging and production refuse to start without OIDC_AUDIENCE for the services that
            // serve internal endpoints: reaching this there means a route was mounted elsewhere.
            return Err(if development {
                refused("bearer tokens are accepted only when OIDC_AUDIENCE is set; send the root key instead".into())
            } else {
                ApiError::internal("an internal endpoint is served without OIDC_AUDIENCE: no token can be verified")
            });
        };
        match verifier.verify(token).await {
            Ok(verified) => Ok(InternalCaller::ServiceAccount(verified.email)),
            // The cause is logged by the request middleware; the caller (Pub/Sub) retries.
            Err(e) if e.is_unavailable() => Err(ApiError::unavailable(e.to_string())),
            Err(e) => Err(refused(format!("the Google OIDC token was refused: {e}"))),
        }
    }
}

/// A 401, logged once here (the request log carries only the status); never with the token.
fn refused(message: String) -> ApiError {
    tracing::warn!(reason = %message, "internal endpoint: caller refused");
    ApiError::unauthorized(message)
}

/// The token of `Bearer <token>` (the scheme is case-insensitive).
fn bearer_token(value: &HeaderValue) -> Option<&str> {
    let (scheme, token) = value.to_str().ok()?.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        let token = |v: &'static str| bearer_token(&HeaderValue::from_static(v)).map(str::to_string);
        assert_eq!(token("Bearer abc.def.ghi"), Some("abc.def.ghi".to_string()));
        assert_eq!(token("bearer  abc.def.ghi "), Some("abc.def.ghi".to_string()));
        assert_eq!(token("Basic dXNlcjpwYXNz"), None);
        assert_eq!(token("Bearer"), None);
        assert_eq!(token("Bearer   "), None);
        assert_eq!(token("abc.def.ghi"), None);
    }

    #[test]
    fn audit_actor_names_the_service_account() {
        assert_eq!(InternalCaller::Root.actor(), ("root", Some("root".into())));
        let sa = InternalCaller::ServiceAccount("push@p.iam.gserviceaccount.com".into());
        assert_eq!(sa.actor(), ("service_account", Some("push@p.iam.gserviceaccount.com".into())));
    }
}
