//! The audit trail: one `org_audit_logs` row for every state change, with who did it (a key's
//! id, never a key), what, on which resource, and the request id (ours, and the client's beside it).

use serde_json::{json, Value};

use crate::configs::Configs;
use crate::warehouse::{format_timestamp, to_row, Warehouse};

/// Who made a change: `actor_type` ("root", "api_key", "service_account") and an id that
/// identifies without being a secret: the key's `api_key_id`, `root`, a service account's email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub actor_type: &'static str,
    pub actor_id: Option<String>,
}

/// The request a change was made in: the id this server gave it, and the `X-Request-ID` the
/// client sent (kept beside ours, never instead of it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestIds {
    pub request_id: Option<String>,
    pub client_request_id: Option<String>,
}

pub struct AuditEvent<'a> {
    pub org_slug: Option<&'a str>,
    pub action: &'a str,
    pub resource_type: &'a str,
    pub resource_id: Option<&'a str>,
    pub success: bool,
    pub details: Value,
}

/// Appends the row. An audit write that fails is logged loudly but does not undo the change it
/// describes (the change already happened; failing the request would only invite a retry).
pub async fn record(
    warehouse: &dyn Warehouse,
    configs: &Configs,
    actor: Actor,
    request: RequestIds,
    event: AuditEvent<'_>,
) {
    let Actor { actor_type, actor_id } = actor;
    let row = to_row(json!({
        "audit_id": uuid::Uuid::new_v4().to_string(),
        "org_slug": event.org_slug,
        "actor_type": actor_type,
        "actor_id": actor_id,
        "action": event.action,
        "resource_type": event.resource_type,
        "resource_id": event.resource_id,
        "status": if event.success { "SUCCESS" } else { "FAILURE" },
        "request_id": request.request_id,
        "client_request_id": request.client_request_id,
        "details": event.details.to_string(),
        "created_at": format_timestamp(&chrono::Utc::now()),
    }));
    let schema = configs.central_table("org_audit_logs");
    // Appended (streamed on BigQuery): the audit log is insert only, and a DML INSERT per state
    // change would spend the central table's DML budget (DESIGN §12).
    if let Err(e) = warehouse.append_rows(configs.central_dataset(), schema, "audit_id", &[row]).await {
        tracing::error!(action = event.action, error = %e, "audit row could not be written");
    }
}
