//! The processor registry: processors keyed by `ps_type`, with their typed `Config` erased. The
//! list itself is assembled in the work layer ([`crate::processors::REGISTRY`]) and handed to the
//! engine, so the engine never imports a processor. A step's settings are parsed into the
//! processor's typed `Config` when the pipeline file is loaded (unknown keys refused), and again,
//! after variable substitution, when the step runs.

use std::marker::PhantomData;

use async_trait::async_trait;

use super::processor::{Processor, StepContext, StepError, StepOutcome};
use crate::configs::pipelines::StepTypes;

/// A [`Processor`] with its `Config` type erased: the step's settings travel as YAML.
#[async_trait]
pub trait StepRunner: Send + Sync {
    fn ps_type(&self) -> &'static str;
    /// Parses the step's settings into the processor's `Config`; the error names the key.
    fn check(&self, config: &serde_yaml::Value) -> Result<(), String>;
    /// Parses the settings and runs the step.
    async fn run(&self, config: &serde_yaml::Value, ctx: &StepContext<'_>) -> Result<StepOutcome, StepError>;
}

/// The [`StepRunner`] of processor `P`: `&Typed::<P>::NEW` in a registry's list.
pub struct Typed<P>(PhantomData<fn() -> P>);

impl<P> Typed<P> {
    pub const NEW: Typed<P> = Typed(PhantomData);
}

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

/// Every processor a pipeline step may name.
pub struct Registry {
    runners: &'static [&'static dyn StepRunner],
}

impl Registry {
    pub const fn new(runners: &'static [&'static dyn StepRunner]) -> Registry {
        Registry { runners }
    }

    /// The processor of `ps_type`.
    pub fn find(&self, ps_type: &str) -> Option<&'static dyn StepRunner> {
        self.runners.iter().copied().find(|p| p.ps_type() == ps_type)
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
}
