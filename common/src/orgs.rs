//! The organization directory: an organization's profile, subscription, quotas and active key
//! fingerprints as one read model, cached in memory with a short TTL so an authenticated read
//! costs no warehouse query once warm. Writers in this process invalidate at once; other
//! instances see a change within the TTL (as with API keys).
//!
//! Shared because every function that gates on an organization (its existence, subscription
//! status, quotas) reads the same model: a typed [`Organization`], serialized as the profile
//! route shows it.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use serde::Serialize;
use serde_json::Value;

use crate::configs::Configs;
use crate::warehouse::{Params, Row, Warehouse, WarehouseResult};

/// An organization as the services read it: profile, subscription, quotas and active keys.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Organization {
    pub org_slug: String,
    pub company_name: String,
    pub admin_email: String,
    pub status: String,
    pub dataset_id: String,
    pub default_currency: String,
    pub timezone: String,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub subscription: Subscription,
    pub quotas: Quotas,
    /// The active keys' fingerprints (never the keys).
    pub api_keys: Vec<KeySummary>,
}

/// The organization's subscription; every field `None` when it has none (an onboarding that
/// did not finish).
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Subscription {
    pub plan_name: Option<String>,
    pub status: Option<String>,
    pub billing_status: Option<String>,
    pub trial_ends_at: Option<String>,
    pub updated_at: Option<String>,
}

/// The quotas in force (copied from the plan at onboarding and at each plan change).
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Quotas {
    pub max_pipeline_runs_per_day: Option<i64>,
    pub max_pipeline_runs_per_month: Option<i64>,
    pub max_concurrent_runs: Option<i64>,
    pub max_integrations: Option<i64>,
}

/// One active API key, as anyone may see it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct KeySummary {
    pub fingerprint: Option<String>,
    pub created_at: Option<String>,
}

pub struct OrgDirectory {
    views: Cache<String, Arc<Organization>>,
}

impl OrgDirectory {
    pub fn new(ttl: Duration) -> OrgDirectory {
        OrgDirectory { views: Cache::builder().max_capacity(50_000).time_to_live(ttl).build() }
    }

    /// The organization, or `None` when no finished organization has this slug.
    pub async fn get(
        &self,
        warehouse: &dyn Warehouse,
        configs: &Configs,
        org_slug: &str,
    ) -> WarehouseResult<Option<Arc<Organization>>> {
        if let Some(view) = self.views.get(org_slug) {
            return Ok(Some(view));
        }
        let Some(view) = load(warehouse, configs, org_slug).await? else { return Ok(None) };
        let view = Arc::new(view);
        self.views.insert(org_slug.to_string(), view.clone());
        Ok(Some(view))
    }

    /// Forgets one organization after a change to it.
    pub fn invalidate(&self, org_slug: &str) {
        self.views.invalidate(org_slug);
    }

    /// Forgets everything (the central tables were recreated).
    pub fn clear(&self) {
        self.views.invalidate_all();
    }
}

async fn load(warehouse: &dyn Warehouse, configs: &Configs, org_slug: &str) -> WarehouseResult<Option<Organization>> {
    let central = |table: &str| warehouse.table_ref(configs.central_dataset(), table);
    let sql = format!(
        "SELECT p.org_slug, p.company_name, p.admin_email, p.status, p.dataset_id, p.default_currency, \
                p.timezone, p.created_at, p.updated_at, \
                s.plan_name, s.status AS subscription_status, s.billing_status, s.trial_ends_at, \
                s.updated_at AS subscription_updated_at, \
                q.max_pipeline_runs_per_day, q.max_pipeline_runs_per_month, q.max_concurrent_runs, q.max_integrations \
         FROM {profiles} AS p \
         LEFT JOIN {subscriptions} AS s ON s.org_slug = p.org_slug \
         LEFT JOIN {quotas} AS q ON q.org_slug = p.org_slug \
         WHERE p.org_slug = @org_slug AND p.status <> 'PROVISIONING' \
         LIMIT 1",
        profiles = central("org_profiles")?,
        subscriptions = central("org_subscriptions")?,
        quotas = central("org_usage_quotas")?,
    );
    let params = Params::new().bind("org_slug", org_slug);
    let Some(row) = warehouse.query(&sql, &params).await?.into_iter().next() else {
        return Ok(None);
    };
    let keys_sql = format!(
        "SELECT fingerprint, created_at FROM {} WHERE org_slug = @org_slug AND status = 'ACTIVE' ORDER BY created_at",
        central("org_api_keys")?
    );
    let keys = warehouse.query(&keys_sql, &params).await?;
    Ok(Some(view(&row, &keys)))
}

fn view(row: &Row, keys: &[Row]) -> Organization {
    let text = |row: &Row, name: &str| match row.get(name) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Null) | None => None,
        Some(other) => Some(other.to_string()),
    };
    // INT64 arrives as a JSON number, or as text from a backend that keeps 64-bit integers exact.
    let int = |name: &str| match row.get(name) {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    let required = |name: &str| text(row, name).unwrap_or_default();
    Organization {
        org_slug: required("org_slug"),
        company_name: required("company_name"),
        admin_email: required("admin_email"),
        status: required("status"),
        dataset_id: required("dataset_id"),
        default_currency: required("default_currency"),
        timezone: required("timezone"),
        created_at: text(row, "created_at"),
        updated_at: text(row, "updated_at"),
        subscription: Subscription {
            plan_name: text(row, "plan_name"),
            status: text(row, "subscription_status"),
            billing_status: text(row, "billing_status"),
            trial_ends_at: text(row, "trial_ends_at"),
            updated_at: text(row, "subscription_updated_at"),
        },
        quotas: Quotas {
            max_pipeline_runs_per_day: int("max_pipeline_runs_per_day"),
            max_pipeline_runs_per_month: int("max_pipeline_runs_per_month"),
            max_concurrent_runs: int("max_concurrent_runs"),
            max_integrations: int("max_integrations"),
        },
        api_keys: keys
            .iter()
            .map(|k| KeySummary { fingerprint: text(k, "fingerprint"), created_at: text(k, "created_at") })
            .collect(),
    }
}
