//! OpenAI processors: `openai.usage` (Usage API → `openai_usage_daily_raw`), `openai.cost`
//! (raw × price book → `openai_cost_daily`, reconciled with the Costs API) and
//! `openai.subscriptions` (subscription book → `openai_subscriptions_monthly`).

pub mod cost;
mod line_items;
pub mod subscriptions;
pub mod usage;

use crate::pipeline::StepContext;
use crate::providers::openai::OpenAi;
use crate::providers::ProviderHttp;

/// The provider name used for tables, books and messages.
pub const PROVIDER: &str = "openai";

pub(crate) fn client<'a>(ctx: &'a StepContext<'_>, http: &'a ProviderHttp) -> OpenAi<'a> {
    OpenAi { http, base: ctx.settings.openai_api_base.trim_end_matches('/') }
}
