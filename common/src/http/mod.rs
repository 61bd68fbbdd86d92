//! HTTP plumbing shared by every function: the JSON error shape, extractors whose rejections are
//! API errors, request ids, logging, rate limiting, CORS, body limits and the server loop.

pub mod audit;
pub mod error;
pub mod extract;
pub mod internal;
pub mod middleware;
pub mod openapi;
pub mod routes;
pub mod server;

pub use error::ApiError;
pub use extract::{ApiJson, ApiPath, ApiText, OptionalJson, OrgAccess, ProviderPath, RootOrgAccess};
pub use internal::InternalCaller;
pub use server::{health_router, run_service, run_service_needing, serve, with_plumbing};
