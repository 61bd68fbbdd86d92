//! End-to-end tests over real HTTP against the real app (one test binary, many modules).

mod auth;
mod bootstrap;
mod http;
mod onboarding;
mod organizations;
mod readme;
mod warehouse_duckdb;
