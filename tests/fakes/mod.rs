//! Local fakes of the cloud services the production backends call, for tests without an account.

pub mod faulty_warehouse;
pub mod hostile;
pub mod kms;
pub mod oidc;
pub mod providers;
pub mod pubsub;
pub mod slack;
pub mod smtp;
