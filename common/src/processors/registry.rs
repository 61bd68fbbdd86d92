//! The processor registry: every processor, keyed by `ps_type`, with its typed `Config` erased.
//! It is handed to the pipeline catalog (each step's settings are parsed into its processor's
//! `Config` when the pipeline file is loaded, unknown keys refused) and to the engine, which runs
//! steps through it (parsing the settings again, after variable substitution), so neither imports
//! a processor.

use std::marker::PhantomData;

use async_trait::async_trait;

use super::{anthropic, data_quality, gcp, openai};
use crate::configs::pipelines::StepTypes;
use crate::pipeline::{Processor, StepContext, StepError, StepOutcome, StepRunners};

/// A [`Processor`] with its `Config` type erased: the step's settings travel as YAML.
#[async_trait]
trait StepRunner: Send + Sync {
    fn ps_type(&self) -> &'static str;
    fn tables(&self) -> &'static [&'static str];
    /// Parses the step's settings into the processor's `Config`; the error names the key.
    fn check(&self, config: &serde_yaml::Value) -> Result<(), String>;
    /// Parses the settings and runs the step.
    async fn run(&self, config: &serde_yaml::Value, ctx: &StepContext<'_>) -> Result<StepOutcome, StepError>;
}

/// The [`StepRunner`] of processor `P`: `&Typed::<P>::NEW` in the registry's list.
struct Typed<P>(PhantomData<fn() -> P>);

impl<P> Typed<P> {
    const NEW: Typed<P> = Typed(PhantomData);
}

fn parse<P: Processor>(config: &serde_yaml::Value) -> Result<P::Config, String> {
    serde_yaml::from_value::<P::Config>(config.clone()).map_err(|e| e.to_string())
}

#[async_trait]
impl<P: Processor> StepRunner for Typed<P> {
    fn ps_type(&self) -> &'static str {
        P::TYPE
    }

    fn tables(&self) -> &'static [&'static str] {
        P::TABLES
    }

    fn check(&self, config: &serde_yaml::Value) -> Result<(), String> {
        parse::<P>(config).map(|_| ())
    }

    async fn run(&self, config: &serde_yaml::Value, ctx: &StepContext<'_>) -> Result<StepOutcome, StepError> {
        let config = parse::<P>(config).map_err(|e| StepError::Failed(format!("step settings: {e}")))?;
        P::run(&config, ctx).await
    }
}

/// Every processor a pipeline step may name.
pub struct Registry {
    runners: &'static [&'static dyn StepRunner],
}

impl Registry {
    /// The processor of `ps_type`.
    fn find(&self, ps_type: &str) -> Option<&'static dyn StepRunner> {
        self.runners.iter().copied().find(|p| p.ps_type() == ps_type)
    }

    /// Whether a step may name `ps_type`.
    pub fn has(&self, ps_type: &str) -> bool {
        self.find(ps_type).is_some()
    }

    /// Every registered `ps_type`, sorted.
    pub fn types(&self) -> Vec<&'static str> {
        let mut types: Vec<&'static str> = self.runners.iter().map(|p| p.ps_type()).collect();
        types.sort_unstable();
        types
    }
}

impl StepTypes for Registry {
    fn check(&self, ps_type: &str, config: &serde_yaml::Value) -> Option<Result<(), String>> {
        self.find(ps_type).map(|runner| runner.check(config))
    }

    fn types(&self) -> Vec<&'static str> {
        Registry::types(self)
    }

    fn tables(&self, ps_type: &str) -> &'static [&'static str] {
        self.find(ps_type).map_or(&[], |runner| runner.tables())
    }
}

#[async_trait]
impl StepRunners for Registry {
    async fn run(
        &self,
        ps_type: &str,
        config: &serde_yaml::Value,
        ctx: &StepContext<'_>,
    ) -> Option<Result<StepOutcome, StepError>> {
        Some(self.find(ps_type)?.run(config, ctx).await)
    }
}

/// Every processor, by type: the registry handed to the pipeline engine and to config loading.
/// Adding a processor is adding a line here.
pub static REGISTRY: Registry = Registry {
    runners: &[
        &Typed::<openai::usage::OpenAiUsage>::NEW,
        &Typed::<openai::cost::OpenAiCost>::NEW,
        &Typed::<openai::subscriptions::OpenAiSubscriptions>::NEW,
        &Typed::<anthropic::usage::AnthropicUsage>::NEW,
        &Typed::<anthropic::cost::AnthropicCost>::NEW,
        &Typed::<gcp::bq_etl::GcpBqEtl>::NEW,
        &Typed::<data_quality::validate::DataQualityValidate>::NEW,
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    fn configs_root() -> std::path::PathBuf {
        std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../configs"))
    }

    #[test]
    fn registered_types_are_unique_and_dotted() {
        let types = REGISTRY.types();
        let mut unique = types.clone();
        unique.dedup();
        assert_eq!(types, unique, "a ps_type is registered twice");
        for t in types {
            let (provider, domain) = t.split_once('.').unwrap_or_else(|| panic!("{t} is not provider.domain"));
            assert!(crate::domain::is_identifier(provider) && crate::domain::is_identifier(domain), "{t}");
        }
    }

    /// Every shipped pipeline file's steps parse into their processor's Config.
    #[test]
    fn shipped_pipelines_match_the_processor_configs() {
        fn check<P: Processor>(config: &serde_yaml::Value) -> Result<(), String> {
            serde_yaml::from_value::<P::Config>(config.clone()).map(|_| ()).map_err(|e| e.to_string())
        }
        let mut seen = Vec::new();
        for file in
            ["openai/usage_cost.yml", "openai/subscriptions.yml", "anthropic/usage_cost.yml", "gcp/cost/billing.yml"]
        {
            let text = std::fs::read_to_string(configs_root().join(file)).unwrap();
            let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
            for step in doc["steps"].as_sequence().unwrap() {
                let mut config = step.as_mapping().unwrap().clone();
                config.remove("step_id");
                let ps_type = config.remove("ps_type").and_then(|v| v.as_str().map(str::to_string)).unwrap();
                let config = serde_yaml::Value::Mapping(config);
                let checked = match ps_type.as_str() {
                    "openai.usage" => check::<openai::usage::OpenAiUsage>(&config),
                    "openai.cost" => check::<openai::cost::OpenAiCost>(&config),
                    "openai.subscriptions" => check::<openai::subscriptions::OpenAiSubscriptions>(&config),
                    "anthropic.usage" => check::<anthropic::usage::AnthropicUsage>(&config),
                    "anthropic.cost" => check::<anthropic::cost::AnthropicCost>(&config),
                    "gcp.bq_etl" => check::<gcp::bq_etl::GcpBqEtl>(&config),
                    "data_quality.validate" => check::<data_quality::validate::DataQualityValidate>(&config),
                    other => Err(format!("unknown ps_type {other}")),
                };
                checked.unwrap_or_else(|e| panic!("{file} {ps_type}: {e}"));
                seen.push(ps_type);
            }
        }
        assert_eq!(seen.len(), 9);
        // The YAML text is read as a decimal, quoted or not: exact either way.
        let c: openai::cost::Config = serde_yaml::from_str("tolerance: 0.10").unwrap();
        assert_eq!(c.tolerance.to_string(), "0.10");
        assert!(serde_yaml::from_str::<openai::cost::Config>("tolerance: \"-1\"").is_err());
    }
}
