//! The one explicit list of processors, keyed by `ps_type`. A step's settings are parsed into the
//! processor's typed `Config` when the pipeline file is loaded (unknown keys refused), and again,
//! after variable substitution, when the step runs.

use std::marker::PhantomData;

use async_trait::async_trait;

use super::processor::{Processor, StepContext, StepError, StepOutcome};
use crate::processors::anthropic::cost::AnthropicCost;
use crate::processors::anthropic::usage::AnthropicUsage;
use crate::processors::openai::cost::OpenAiCost;
use crate::processors::openai::subscriptions::OpenAiSubscriptions;
use crate::processors::openai::usage::OpenAiUsage;

/// Every processor, by type. Adding a processor is adding a line here.
static PROCESSORS: &[&dyn StepRunner] = &[
    &Typed::<OpenAiUsage>(PhantomData),
    &Typed::<OpenAiCost>(PhantomData),
    &Typed::<OpenAiSubscriptions>(PhantomData),
    &Typed::<AnthropicUsage>(PhantomData),
    &Typed::<AnthropicCost>(PhantomData),
];

/// A [`Processor`] with its `Config` type erased: the step's settings travel as YAML.
#[async_trait]
pub trait StepRunner: Send + Sync {
    fn ps_type(&self) -> &'static str;
    /// Parses the step's settings into the processor's `Config`; the error names the key.
    fn check(&self, config: &serde_yaml::Value) -> Result<(), String>;
    /// Parses the settings and runs the step.
    async fn run(&self, config: &serde_yaml::Value, ctx: &StepContext<'_>) -> Result<StepOutcome, StepError>;
}

struct Typed<P>(PhantomData<fn() -> P>);

fn parse<P: Processor>(config: &serde_yaml::Value) -> Result<P::Config, String> {
    serde_yaml::from_value::<P::Config>(config.clone()).map_err(|e| e.to_string())
}

#[async_trait]
impl<P: Processor> StepRunner for Typed<P> {
    fn ps_type(&self) -> &'static str {
        P::TYPE
    }

    fn check(&self, config: &serde_yaml::Value) -> Result<(), String> {
        parse::<P>(config).map(|_| ())
    }

    async fn run(&self, config: &serde_yaml::Value, ctx: &StepContext<'_>) -> Result<StepOutcome, StepError> {
        let config = parse::<P>(config).map_err(|e| StepError::Failed(format!("step settings: {e}")))?;
        P::run(&config, ctx).await
    }
}

/// The processor of `ps_type`.
pub fn find(ps_type: &str) -> Option<&'static dyn StepRunner> {
    PROCESSORS.iter().copied().find(|p| p.ps_type() == ps_type)
}

/// Every registered `ps_type`, sorted.
pub fn types() -> Vec<&'static str> {
    let mut types: Vec<&'static str> = PROCESSORS.iter().map(|p| p.ps_type()).collect();
    types.sort_unstable();
    types
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_unique_and_dotted() {
        let types = types();
        let mut unique = types.clone();
        unique.dedup();
        assert_eq!(types, unique, "a ps_type is registered twice");
        for t in types {
            let (provider, domain) = t.split_once('.').unwrap_or_else(|| panic!("{t} is not provider.domain"));
            assert!(crate::warehouse::is_identifier(provider) && crate::warehouse::is_identifier(domain), "{t}");
        }
    }
}
