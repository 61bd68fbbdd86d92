//! The edge's one-line audit call: a handler names the caller and the event; the request id and
//! the parts [`crate::audit::record`] needs come from the request and the state.

use crate::app::AppState;

impl AppState {
    /// Writes the audit row of a change `caller` made in this request (see [`crate::audit::record`]).
    pub async fn audit(&self, caller: &crate::auth::Caller, event: crate::audit::AuditEvent<'_>) {
        let (actor_type, actor_id) = caller.actor();
        let actor = crate::audit::Actor { actor_type, actor_id };
        let request = crate::audit::RequestIds {
            request_id: super::middleware::current_request_id(),
            client_request_id: super::middleware::current_client_request_id(),
        };
        crate::audit::record(self.warehouse.as_ref(), &self.configs, actor, request, event).await;
    }
}
