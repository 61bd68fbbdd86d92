//! The API's route table: every path template the functions serve, in one list the edge can
//! reason about. An organization slug that equals one of its fixed segments would make a path
//! ambiguous (`/api/v1/organizations/dryrun` is the dry-run route, not an organization named
//! `dryrun`), so onboarding refuses such slugs. `tests/api/guards.rs` checks this list against
//! the `.route(..)` calls in `functions/*/src/lib.rs`, both ways, so it cannot drift from the routers.

use std::collections::BTreeSet;

/// Every route the functions serve (`convergence-local` serves them all; the provider sandbox
/// of development is not part of the API). `{name}` is a path parameter.
pub const API_ROUTES: &[&str] = &[
    "/health",
    "/openapi.json",
    // bootstrap
    "/api/v1/admin/bootstrap",
    // onboard
    "/api/v1/organizations/dryrun",
    "/api/v1/organizations/onboard",
    "/api/v1/organizations/{org}",
    "/api/v1/organizations/{org}/subscription",
    "/api/v1/organizations/{org}/notifications",
    "/api/v1/organizations/{org}/api-key/rotate",
    "/api/v1/organizations/{org}/api-key/revoke",
    // integrations
    "/api/v1/integrations/{org}",
    "/api/v1/integrations/{org}/{provider}",
    "/api/v1/integrations/{org}/{provider}/setup",
    "/api/v1/integrations/{org}/{provider}/validate",
    // pricing
    "/api/v1/integrations/{org}/{provider}/pricing",
    "/api/v1/integrations/{org}/{provider}/pricing/reset",
    "/api/v1/integrations/{org}/{provider}/pricing/repricing",
    "/api/v1/integrations/{org}/{provider}/pricing/{model_id}",
    "/api/v1/integrations/{org}/{provider}/subscriptions",
    "/api/v1/integrations/{org}/{provider}/subscriptions/reset",
    "/api/v1/integrations/{org}/{provider}/subscriptions/{plan_name}",
    "/api/v1/pricing/catalog/import",
    "/api/v1/pricing/catalog/{provider}",
    // pipelines-run
    "/api/v1/pipelines/run/{org}/{provider}/{domain}",
    "/api/v1/pipelines/run/{org}/{provider}/{domain}/{pipeline}",
    "/api/v1/pipelines/runs/{org}",
    "/api/v1/pipelines/runs/{org}/{run_id}",
    "/api/v1/pipelines/push",
    // scheduler-tick
    "/api/v1/scheduler/tick",
];

/// Every fixed (non-parameter) segment of [`API_ROUTES`]: `api`, `v1`, `organizations`,
/// `dryrun`, `onboard`, …
pub fn fixed_segments() -> BTreeSet<&'static str> {
    API_ROUTES
        .iter()
        .flat_map(|route| route.split('/'))
        .filter(|segment| !segment.is_empty() && !segment.starts_with('{'))
        .collect()
}

/// When `slug` equals a fixed segment of the route table: the first route holding it, for the
/// message that refuses it.
pub fn route_with_segment(slug: &str) -> Option<&'static str> {
    API_ROUTES.iter().copied().find(|route| route.split('/').any(|segment| segment == slug))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_segments_are_the_literal_parts_of_the_routes() {
        let segments = fixed_segments();
        for expected in ["dryrun", "onboard", "organizations", "integrations", "pipelines", "runs", "push", "health"] {
            assert!(segments.contains(expected), "{expected} missing from {segments:?}");
        }
        assert!(!segments.iter().any(|s| s.starts_with('{')), "{segments:?}");
        assert_eq!(route_with_segment("dryrun"), Some("/api/v1/organizations/dryrun"));
        assert_eq!(route_with_segment("acme"), None);
        assert_eq!(route_with_segment("org"), None, "a parameter's name is not a fixed segment");
    }
}
