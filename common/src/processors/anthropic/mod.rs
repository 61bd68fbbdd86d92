//! Anthropic processors: `anthropic.usage` (usage report → `anthropic_usage_daily_raw`) and
//! `anthropic.cost` (raw × price book → `anthropic_cost_daily`, reconciled with the cost report,
//! whose amounts are cents).

pub mod cost;
pub mod usage;

use crate::pipeline::StepContext;
use crate::providers::anthropic::Anthropic;
use crate::providers::ProviderHttp;

/// The provider name used for tables, books and messages.
pub const PROVIDER: &str = "anthropic";

pub(crate) fn client<'a>(ctx: &'a StepContext<'_>, http: &'a ProviderHttp) -> Anthropic<'a> {
    Anthropic { http, base: ctx.settings.anthropic_api_base.trim_end_matches('/') }
}
