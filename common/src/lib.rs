//! What two or more Convergence functions share: settings, configs, authentication, the HTTP
//! plumbing, the backends (warehouse, KMS) and the organization records they all read.
//!
//! Invariant: `common` never depends on a function crate; a function crate holds its routes.

pub mod app;
pub mod audit;
pub mod auth;
pub mod configs;
pub mod cost;
pub mod credentials;
pub mod domain;
pub mod http;
pub mod kms;
pub mod locks;
pub mod logging;
pub mod notify;
pub mod orgs;
pub mod pipeline;
pub mod pricebook;
pub mod processors;
pub mod providers;
pub mod queue;
pub mod settings;
pub mod warehouse;

pub use app::AppState;
pub use http::error::ApiError;
