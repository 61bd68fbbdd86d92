//! Extractors whose rejections are API errors, so malformed bodies, wrong content types and bad
//! path segments get the JSON error shape with a message that says what to fix.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::error::{ApiError, ApiResult};
use super::middleware::{ClientAddr, IdentityLimiter};
use crate::app::AppState;
use crate::auth::Caller;
use crate::domain::OrgSlug;
use crate::orgs::Organization;

/// `axum::Json`, rejecting with [`ApiError`].
pub struct ApiJson<T>(pub T);

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => {
            // serde's message names the field and the expected type, e.g.
            // "missing field `org_slug`" or "invalid type: integer `5`, expected a string".
            let detail = std::error::Error::source(&e).map(ToString::to_string).unwrap_or_else(|| e.body_text());
            ApiError::bad_request(format!("request body does not match the expected shape: {detail}"))
        }
        JsonRejection::JsonSyntaxError(e) => {
            let detail = std::error::Error::source(&e).map(ToString::to_string).unwrap_or_else(|| e.body_text());
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", format!("request body is not valid JSON: {detail}"))
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with the header Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "request body is larger than this endpoint accepts",
        ),
        other => ApiError::new(other.status(), super::error::code_for(other.status()), other.body_text()),
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::Json::<ObjectBody<T>>::from_request(req, state)
            .await
            .map(|axum::Json(ObjectBody(v))| ApiJson(v))
            .map_err(json_rejection)
    }
}

/// A body read as a JSON object only. serde's derived structs also accept an array of their
/// fields in order (`[null, null]` was taken as a notifications update), which no client
/// means and the API contract does not allow.
struct ObjectBody<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectBody<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        deserializer.deserialize_map(ObjectVisitor(PhantomData)).map(ObjectBody)
    }
}

/// A JSON body that may be absent (no body at all, or `null`, means `T::default()`); a body that
/// is present must be valid JSON of the right shape.
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let empty = req.headers().get(header::CONTENT_LENGTH).is_some_and(|v| v.as_bytes() == b"0")
            || (req.headers().get(header::CONTENT_LENGTH).is_none()
                && req.headers().get(header::TRANSFER_ENCODING).is_none());
        if empty {
            return Ok(OptionalJson(T::default()));
        }
        axum::Json::<Option<ObjectBody<T>>>::from_request(req, state)
            .await
            .map(|axum::Json(v)| OptionalJson(v.map(|ObjectBody(v)| v).unwrap_or_default()))
            .map_err(json_rejection)
    }
}

/// A UTF-8 text body (a CSV or a JSON file taken as it is), rejecting with [`ApiError`]: too
/// large is 413, not UTF-8 is 400.
pub struct ApiText(pub String);

impl<S: Send + Sync> FromRequest<S> for ApiText {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "request body is larger than this endpoint accepts",
                )
            } else {
                ApiError::new(e.status(), super::error::code_for(e.status()), e.body_text())
            }
        })?;
        String::from_utf8(bytes.to_vec()).map(ApiText).map_err(|e| {
            ApiError::bad_request(format!("request body is not UTF-8 text (byte {})", e.utf8_error().valid_up_to()))
        })
    }
}

/// `axum::extract::Path`, rejecting with [`ApiError`].
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| ApiPath(v))
            .map_err(|e: PathRejection| ApiError::bad_request(format!("invalid path: {}", e.body_text())))
    }
}

/// The authenticated caller of a public route (keys in the headers, org keys looked up in the
/// central dataset; failed attempts counted per client address); see [`crate::auth`]. Then the
/// per-identity rate limit, keyed on the verified key's id (or root), never on header text.
impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let client = parts.extensions.get::<ClientAddr>().map(|c| c.0);
        let caller = state
            .auth
            .authenticate(state.warehouse.as_ref(), state.configs.central_dataset(), &parts.headers, client)
            .await?;
        if let Some(IdentityLimiter(limiter)) = parts.extensions.get::<IdentityLimiter>() {
            let identity = match &caller {
                Caller::Root => "root".to_string(),
                Caller::AuthDisabled => "auth-disabled".to_string(),
                Caller::Org(key) => format!("key:{}", key.api_key_id),
            };
            limiter.check(identity).map_err(|retry_after| {
                ApiError::too_many_requests(
                    format!("too many requests with this key; retry after {retry_after} second(s)"),
                    retry_after,
                )
            })?;
        }
        Ok(caller)
    }
}

/// The organization a request is about: the route's `{org}` segment, allowed for the caller (that
/// organization's key, or root: 403 before anything is read) and parsed into an [`OrgSlug`] (400
/// saying what a slug is). The one way a handler gets an organization; no handler reads the slug
/// from its path. The route's other segments are read as a struct of the names they have
/// (`ApiPath<ProviderPath>`), which leaves `org` to this extractor.
pub struct OrgAccess {
    pub caller: Caller,
    pub slug: OrgSlug,
}

impl OrgAccess {
    /// The organization (the cached read model), or 404 when no finished organization has this
    /// slug.
    pub async fn organization(&self, state: &AppState) -> ApiResult<Arc<Organization>> {
        state
            .orgs
            .get(state.warehouse.as_ref(), &state.configs, self.slug.as_str())
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no organization {}", self.slug)))
    }

    /// For `*_by` columns: the key's id, or `root`.
    pub fn actor(&self) -> String {
        self.caller.actor_name()
    }
}

impl FromRequestParts<AppState> for OrgAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        // Who first (401), then whether they may act on this organization (403), then its form.
        let caller = Caller::from_request_parts(parts, state).await?;
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("invalid path: {}", e.body_text())))?;
        let Some((_, org)) = params.iter().find(|(name, _)| *name == "org") else {
            return Err(ApiError::internal("OrgAccess on a route without an {org} segment"));
        };
        caller.require_org(org)?;
        let slug = OrgSlug::parse(org).map_err(ApiError::bad_request)?;
        Ok(OrgAccess { caller, slug })
    }
}

/// The `{provider}` of a route whose `{org}` [`OrgAccess`] reads.
#[derive(Debug, Deserialize)]
pub struct ProviderPath {
    pub provider: String,
}

/// [`OrgAccess`] on a route only the root key may call (an organization's subscription, revoking
/// its keys): an organization key, its own included, is refused (403) as the request arrives,
/// before the body is read.
pub struct RootOrgAccess(pub OrgAccess);

impl FromRequestParts<AppState> for RootOrgAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let access = OrgAccess::from_request_parts(parts, state).await?;
        access.caller.require_root()?;
        Ok(RootOrgAccess(access))
    }
}

/// The caller of a route only the root key may call: an organization key is refused (403) as
/// the request arrives, before its body is read, so a refused caller learns nothing about the
/// body a root route expects (a handler taking [`Caller`] and a body would answer a malformed
/// body 400 first). Take it as `RootCaller(caller): RootCaller`.
pub struct RootCaller(pub Caller);

impl FromRequestParts<AppState> for RootCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.require_root()?;
        Ok(RootCaller(caller))
    }
}
