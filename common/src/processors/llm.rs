//! What the LLM providers' steps share (OpenAI and Anthropic alike): the admin key of the run,
//! the HTTP client aimed at the configured base, provider failures as step errors, and the
//! organization's prices over the window.

use secrecy::ExposeSecret;

use crate::cost::PriceBook;
use crate::pipeline::{StepContext, StepError};
use crate::pricebook::PriceBookError;
use crate::providers::retry::ProviderError;
use crate::providers::ProviderHttp;

/// The step's provider credential.
pub(crate) fn credential<'a>(ctx: &'a StepContext<'_>, provider: &str) -> Result<&'a str, StepError> {
    ctx.credential.map(|c| c.expose_secret()).filter(|k| !k.is_empty()).ok_or_else(|| {
        StepError::Failed(format!("no {provider} credential for this run: set up the {provider} integration first"))
    })
}

/// A provider call that failed for good, as the step's error.
pub(crate) fn provider_failed(e: ProviderError) -> StepError {
    StepError::Provider { provider: e.provider, status: e.status, message: e.message }
}

/// The HTTP client of a step, aimed at the configured base (the real API, or the sandbox).
pub(crate) fn http(ctx: &StepContext<'_>) -> Result<ProviderHttp, StepError> {
    ProviderHttp::from_settings(ctx.settings).map_err(StepError::Failed)
}

/// The provider's prices over the window (the organization's overrides over the catalog), or a
/// clear error.
pub(crate) async fn load_book(ctx: &StepContext<'_>, provider: &str) -> Result<PriceBook, StepError> {
    let window = crate::pricebook::pricing_between(
        ctx.warehouse,
        ctx.configs,
        ctx.dataset,
        ctx.org_slug,
        provider,
        ctx.start_date,
        ctx.end_date,
    )
    .await
    .map_err(|e| match e {
        PriceBookError::Warehouse(w) => StepError::Warehouse(w),
        other => StepError::Failed(other.to_string()),
    })?
    .ok_or_else(|| {
        StepError::Failed(format!(
            "organization {} has no {provider} price book: set up the {provider} integration or \
             POST /api/v1/integrations/{}/{provider}/pricing/reset",
            ctx.org_slug, ctx.org_slug
        ))
    })?;
    PriceBook::merged(&window.overrides, &window.catalog)
        .map_err(|e| StepError::Failed(format!("the {provider} price book: {e}")))
}
