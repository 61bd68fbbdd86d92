//! The audit trail: one `org_audit_logs` row for every state change, with who did it (a key
//! fingerprint, never a key), what, on which resource, and the request id.

use serde_json::{json, Value};

use crate::app::AppState;
use crate::auth::Caller;
use crate::http::middleware::current_request_id;
use crate::warehouse::{format_timestamp, to_row};

pub struct AuditEvent<'a> {
    pub org_slug: Option<&'a str>,
    pub action: &'a str,
    pub resource_type: &'a str,
    pub resource_id: Option<&'a str>,
    pub success: bool,
    pub details: Value,
}

/// Writes the row. An audit write that fails is logged loudly but does not undo the change it
/// describes (the change already happened; failing the request would only invite a retry).
pub async fn record(state: &AppState, caller: &Caller, event: AuditEvent<'_>) {
    let (actor_type, actor_id) = caller.actor();
    let row = to_row(json!({
        "audit_id": uuid::Uuid::new_v4().to_string(),
        "org_slug": event.org_slug,
        "actor_type": actor_type,
        "actor_id": actor_id,
        "action": event.action,
        "resource_type": event.resource_type,
        "resource_id": event.resource_id,
        "status": if event.success { "SUCCESS" } else { "FAILURE" },
        "request_id": current_request_id(),
        "details": event.details.to_string(),
        "created_at": format_timestamp(&chrono::Utc::now()),
    }));
    let schema = state.configs.central_table("org_audit_logs");
    if let Err(e) = state.warehouse.insert_rows(state.configs.central_dataset(), schema, &[row]).await {
        tracing::error!(action = event.action, error = %e, "audit row could not be written");
    }
}
