//! The organization directory: an organization's profile, subscription, quotas and active key
//! fingerprints as one read model, cached in memory with a short TTL so an authenticated read
//! costs no warehouse query once warm. Writers in this process invalidate at once; other
//! instances see a change within the TTL (as with API keys).
//!
//! Shared because every function that gates on an organization (onboard now; integrations and
//! pipelines later: subscription status, quotas) reads the same model.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use serde_json::{json, Value};

use crate::configs::Configs;
use crate::warehouse::{Params, Row, Warehouse, WarehouseResult};

pub struct OrgDirectory {
    views: Cache<String, Arc<Value>>,
}

impl OrgDirectory {
    pub fn new(ttl: Duration) -> OrgDirectory {
        OrgDirectory { views: Cache::builder().max_capacity(50_000).time_to_live(ttl).build() }
    }

    /// The organization's view, or `None` when no finished organization has this slug.
    pub async fn get(
        &self,
        warehouse: &dyn Warehouse,
        configs: &Configs,
        org_slug: &str,
    ) -> WarehouseResult<Option<Arc<Value>>> {
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

async fn load(warehouse: &dyn Warehouse, configs: &Configs, org_slug: &str) -> WarehouseResult<Option<Value>> {
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

fn view(row: &Row, keys: &[Row]) -> Value {
    let f = |name: &str| row.get(name).cloned().unwrap_or(Value::Null);
    json!({
        "org_slug": f("org_slug"),
        "company_name": f("company_name"),
        "admin_email": f("admin_email"),
        "status": f("status"),
        "dataset_id": f("dataset_id"),
        "default_currency": f("default_currency"),
        "timezone": f("timezone"),
        "created_at": f("created_at"),
        "updated_at": f("updated_at"),
        "subscription": {
            "plan_name": f("plan_name"),
            "status": f("subscription_status"),
            "billing_status": f("billing_status"),
            "trial_ends_at": f("trial_ends_at"),
            "updated_at": f("subscription_updated_at"),
        },
        "quotas": {
            "max_pipeline_runs_per_day": f("max_pipeline_runs_per_day"),
            "max_pipeline_runs_per_month": f("max_pipeline_runs_per_month"),
            "max_concurrent_runs": f("max_concurrent_runs"),
            "max_integrations": f("max_integrations"),
        },
        "api_keys": keys.iter().map(|k| json!({"fingerprint": k.get("fingerprint"), "created_at": k.get("created_at")})).collect::<Vec<_>>(),
    })
}
