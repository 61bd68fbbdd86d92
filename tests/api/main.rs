//! End-to-end tests over real HTTP against the real app (one test binary, many modules).

mod auth;
mod bigquery_e2e;
mod bigquery_errors;
mod bootstrap;
mod cloud_binaries;
mod daily_loop;
mod deploy;
mod gcp_billing;
mod http;
mod integrations;
mod kms_gcp;
mod oidc;
mod onboarding;
mod organizations;
mod pipelines;
mod pricing;
mod processors;
mod pubsub;
mod readme;
mod recovery;
mod sandbox;
mod shutdown;
mod terraform;
mod terraform_text;
mod warehouse_bigquery;
mod warehouse_duckdb;
