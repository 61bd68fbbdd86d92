//! The onboarding request, shared by dry-run and onboard, and its field checks.

use common::domain::{Email, OrgSlug};
use common::AppState;
use serde::Deserialize;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OnboardRequest {
    /// `^[a-z_][a-z0-9_]{2,49}$`; becomes part of the dataset name.
    #[schema(pattern = "^[a-z_][a-z0-9_]{2,49}$")]
    pub org_slug: String,
    #[schema(min_length = 1)]
    pub company_name: String,
    #[schema(format = Email)]
    pub admin_email: String,
    /// STARTER, PROFESSIONAL or SCALE; the onboarding config's default when absent.
    #[serde(default)]
    #[schema(pattern = "^(STARTER|PROFESSIONAL|SCALE)$")]
    pub subscription_plan: Option<String>,
    /// ISO 4217; the onboarding config's default when absent.
    #[serde(default)]
    pub default_currency: Option<String>,
    /// IANA time zone; the onboarding config's default when absent.
    #[serde(default)]
    pub timezone: Option<String>,
}

/// The request with every field checked.
pub struct ValidOnboarding {
    pub org_slug: OrgSlug,
    pub company_name: String,
    pub admin_email: Email,
    pub plan: String,
    pub currency: String,
    pub timezone: String,
}

/// One field check: (check name, outcome).
pub type FieldCheck = (&'static str, Result<String, String>);

impl OnboardRequest {
    pub fn plan(&self, state: &AppState) -> String {
        self.subscription_plan
            .clone()
            .unwrap_or_else(|| state.configs.onboarding.default_plan.clone())
            .trim()
            .to_ascii_uppercase()
    }

    /// Every field check, passed or not, in a fixed order.
    pub fn field_checks(&self, state: &AppState) -> Vec<FieldCheck> {
        let plan = self.plan(state);
        let currency = self.currency(state);
        let timezone = self.timezone(state);
        vec![
            ("org_slug_format", OrgSlug::parse(&self.org_slug).and_then(check_slug_is_not_a_route_segment)),
            ("company_name", check_company_name(&self.company_name)),
            ("admin_email", Email::parse(&self.admin_email).map(|e| format!("{e} is a valid address", e = e.as_str()))),
            (
                "subscription_plan",
                if state.configs.plan(&plan).is_some() {
                    Ok(format!("plan {plan} exists"))
                } else {
                    Err(format!("subscription_plan must be one of {}", state.configs.plan_names().join(", ")))
                },
            ),
            (
                "default_currency",
                if currency.len() == 3 && currency.chars().all(|c| c.is_ascii_uppercase()) {
                    Ok(format!("{currency} is a valid currency code"))
                } else {
                    Err("default_currency must be a 3-letter ISO 4217 code such as USD".into())
                },
            ),
            (
                "timezone",
                if !timezone.is_empty()
                    && timezone.len() <= 64
                    && timezone.chars().all(|c| c.is_ascii_alphanumeric() || "/_+-".contains(c))
                {
                    Ok(timezone.clone())
                } else {
                    Err("timezone must be an IANA time zone such as UTC or Europe/Paris".into())
                },
            ),
        ]
    }

    fn currency(&self, state: &AppState) -> String {
        self.default_currency
            .clone()
            .unwrap_or_else(|| state.configs.onboarding.default_currency.clone())
            .trim()
            .to_string()
    }

    fn timezone(&self, state: &AppState) -> String {
        self.timezone.clone().unwrap_or_else(|| state.configs.onboarding.default_timezone.clone()).trim().to_string()
    }

    /// The checked request, or every failed check joined into one message.
    pub fn validate(&self, state: &AppState) -> Result<ValidOnboarding, String> {
        let failures: Vec<String> =
            self.field_checks(state).into_iter().filter_map(|(_, outcome)| outcome.err()).collect();
        if !failures.is_empty() {
            return Err(failures.join("; "));
        }
        Ok(ValidOnboarding {
            org_slug: OrgSlug::parse(&self.org_slug)?,
            company_name: self.company_name.trim().to_string(),
            admin_email: Email::parse(&self.admin_email)?,
            plan: self.plan(state),
            currency: self.currency(state),
            timezone: self.timezone(state),
        })
    }
}

/// A slug equal to a fixed segment of the API's paths would make a path ambiguous (the dry-run
/// route or an organization named `dryrun`?), so it cannot name an organization.
fn check_slug_is_not_a_route_segment(slug: OrgSlug) -> Result<String, String> {
    match common::http::routes::route_with_segment(slug.as_str()) {
        Some(route) => Err(format!(
            "org_slug {slug:?} is a fixed segment of the API's paths ({route}) and cannot name an organization; \
             choose another slug",
            slug = slug.as_str()
        )),
        None => Ok(format!("{slug} is a valid slug")),
    }
}

fn check_company_name(name: &str) -> Result<String, String> {
    let trimmed = name.trim();
    if let Some(problem) = common::domain::display_text_problem(trimmed) {
        return Err(format!(
            "company_name {problem}: names may not hold control, bidirectional or zero-width characters"
        ));
    }
    if trimmed.is_empty() || trimmed.chars().count() > 200 {
        Err("company_name must be 1 to 200 characters without control characters".into())
    } else {
        Ok("company name is valid".into())
    }
}
