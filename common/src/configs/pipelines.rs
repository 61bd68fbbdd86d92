//! The pipeline catalog: every pipeline file under `configs/{provider}/`, parsed and validated
//! at start-up (with the rest of `configs/`), and the only way a run request finds its pipeline.
//!
//! A run URL `/run/{org}/{provider}/{domain}[/{pipeline}]` names `configs/{provider}/{domain}.yml`
//! or `configs/{provider}/{domain}/{pipeline}.yml`: `/run/acme/openai/usage_cost` is
//! `configs/openai/usage_cost.yml`, `/run/acme/gcp/cost/billing` is `configs/gcp/cost/billing.yml`.
//! The request's segments are keys into the catalog, never parts of a filesystem path.
//!
//! File format:
//!
//! ```yaml
//! pipeline_id: "{org_slug}-openai-usage-cost"   # {org_slug}-{provider}-{domain}, kebab-case after the slug
//! description: "..."
//! schedule: daily            # daily | monthly | manual (never by the tick: run on request only)
//! max_window_days: 31        # longest ad-hoc window accepted
//! variables: {}              # extra string variables, may use the built-in ones
//! steps:                     # ordered
//!   - step_id: extract_usage # snake_case {action}_{target}
//!     ps_type: openai.usage  # a registered processor type
//!     # ...the processor's own settings, checked against its Config (unknown keys refused)
//! notifications: {}          # on_failure / on_success / on_completion / always -> [email, slack]
//! exclusive_with: [usage_cost] # optional: pipelines of the provider writing the same tables
//! ```
//!
//! `exclusive_with` names other pipelines of the same provider (`domain` or `domain/pipeline`)
//! that write the same tables: a run of either is not started while a run of the other over an
//! overlapping window is pending or running (the relation is symmetric; naming it on one side is
//! enough). A window's replace is atomic, but a cost-only rerun reading raw rows that a usage run
//! is replacing would write costs of the old rows after the usage run's.
//!
//! Strings in step settings may use `{name}` variables: the built-in [`BUILTIN_VARIABLES`] and the
//! file's own; an unknown name is refused at load.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The processors a step may name, for checking a step's settings when its file is loaded. The
/// processor registry implements it; it is assembled in the work layer and handed in, so loading
/// configs imports no processor.
pub trait StepTypes {
    /// `None` when no processor has this `ps_type`; otherwise whether `config` parses into the
    /// processor's typed settings (the error names the key).
    fn check(&self, ps_type: &str, config: &serde_yaml::Value) -> Option<Result<(), String>>;
    /// Every registered `ps_type`, sorted (for messages).
    fn types(&self) -> Vec<&'static str>;
    /// The tables the processor of `ps_type` reads or writes, each defined by
    /// `configs/{provider}/schemas/<table>.json` (none for an unknown `ps_type`).
    fn tables(&self, ps_type: &str) -> &'static [&'static str];
}

/// Variables every run defines.
pub const BUILTIN_VARIABLES: [&str; 6] = ["org_slug", "dataset", "date", "start_date", "end_date", "env"];

/// Directories under `configs/{provider}/` that hold no pipelines: seed data, and a processor's
/// own settings (`gcp/bq_etl/config.yml`, loaded with the configs, is not a pipeline).
const RESERVED_DIRS: [&str; 2] = ["seed", "bq_etl"];

/// How often the scheduler runs a pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    Daily,
    Monthly,
    /// Never submitted by the scheduler tick; runs only when asked (`POST /run/...`), e.g. a
    /// reprice after a past-dated price change.
    Manual,
}

/// `(provider, domain, pipeline)`: the run URL's segments after the organization.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PipelineKey {
    pub provider: String,
    pub domain: String,
    pub pipeline: Option<String>,
}

impl PipelineKey {
    /// `openai/usage_cost`, `gcp/cost/billing`: the URL tail, and the file without `.yml`.
    pub fn path(&self) -> String {
        match &self.pipeline {
            Some(p) => format!("{}/{}/{p}", self.provider, self.domain),
            None => format!("{}/{}", self.provider, self.domain),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineFile {
    pipeline_id: String,
    description: String,
    schedule: Schedule,
    max_window_days: u32,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    steps: Vec<serde_yaml::Value>,
    #[serde(default)]
    notifications: Notifications,
    #[serde(default)]
    exclusive_with: Vec<String>,
}

/// Who hears about a run, per trigger: the channels (`email`, `slack`) each trigger sends to.
/// An organization's own triggers override these (`crate::notify`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Notifications {
    #[serde(default)]
    pub on_failure: Vec<super::notify::Channel>,
    #[serde(default)]
    pub on_success: Vec<super::notify::Channel>,
    #[serde(default)]
    pub on_completion: Vec<super::notify::Channel>,
    #[serde(default)]
    pub always: Vec<super::notify::Channel>,
}

impl Notifications {
    /// The channels `trigger` sends to.
    pub fn channels(&self, trigger: super::notify::NotifyTrigger) -> &[super::notify::Channel] {
        use super::notify::NotifyTrigger;
        match trigger {
            NotifyTrigger::OnFailure => &self.on_failure,
            NotifyTrigger::OnSuccess => &self.on_success,
            NotifyTrigger::OnCompletion => &self.on_completion,
            NotifyTrigger::Always => &self.always,
        }
    }
}

/// One validated pipeline file.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub key: PipelineKey,
    /// The file, relative to `configs/` (for messages).
    pub file: String,
    /// With `{org_slug}`; see [`Pipeline::pipeline_id`].
    pub pipeline_id_template: String,
    pub description: String,
    pub schedule: Schedule,
    pub max_window_days: u32,
    pub variables: BTreeMap<String, String>,
    pub steps: Vec<Step>,
    pub notifications: Notifications,
    /// The pipeline id templates of the pipelines whose runs must not overlap this one's (see
    /// the module docs), resolved and made symmetric when the catalog is loaded.
    pub exclusive_with: Vec<String>,
}

/// One step: its id, processor type and raw settings (checked against the processor's Config).
#[derive(Debug, Clone)]
pub struct Step {
    pub step_id: String,
    pub ps_type: String,
    /// A YAML mapping without `step_id` and `ps_type`; `{variables}` still in its strings.
    pub config: serde_yaml::Value,
}

impl Pipeline {
    /// The pipeline id of one organization, e.g. `acme-openai-usage-cost`.
    pub fn pipeline_id(&self, org_slug: &str) -> String {
        self.pipeline_id_template.replace("{org_slug}", org_slug)
    }

    /// This pipeline's id and those of the pipelines it excludes, for one organization: the runs
    /// an overlapping window must wait for.
    pub fn exclusive_ids(&self, org_slug: &str) -> Vec<String> {
        std::iter::once(&self.pipeline_id_template)
            .chain(&self.exclusive_with)
            .map(|t| t.replace("{org_slug}", org_slug))
            .collect()
    }
}

/// Every pipeline, by key.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pipelines: BTreeMap<PipelineKey, Pipeline>,
}

impl Catalog {
    /// Loads every pipeline file of `providers` under `root`. Returns the valid pipelines and
    /// every problem as (file relative to `root`, reason); a file with a problem is left out.
    pub fn load(root: &Path, providers: &[&str], step_types: &dyn StepTypes) -> (Catalog, Vec<(String, String)>) {
        let mut problems = Vec::new();
        let mut pipelines = BTreeMap::new();
        for provider in providers {
            for (rel, key) in discover(root, provider, &mut problems) {
                let text = match std::fs::read_to_string(root.join(&rel)) {
                    Ok(text) => text,
                    Err(e) => {
                        problems.push((rel, format!("cannot read: {e}")));
                        continue;
                    }
                };
                match parse(&rel, key.clone(), &text, step_types) {
                    Ok(p) => {
                        pipelines.insert(key, p);
                    }
                    Err(mut found) => problems.append(&mut found),
                }
            }
        }
        let mut ids: BTreeMap<&str, &str> = BTreeMap::new();
        for p in pipelines.values() {
            if let Some(other) = ids.insert(&p.pipeline_id_template, &p.file) {
                problems
                    .push((p.file.clone(), format!("pipeline_id {} is also used by {other}", p.pipeline_id_template)));
            }
        }
        resolve_exclusions(&mut pipelines, &mut problems);
        (Catalog { pipelines }, problems)
    }

    pub fn get(&self, provider: &str, domain: &str, pipeline: Option<&str>) -> Option<&Pipeline> {
        let key = PipelineKey {
            provider: provider.to_string(),
            domain: domain.to_string(),
            pipeline: pipeline.map(str::to_string),
        };
        self.pipelines.get(&key)
    }

    /// Every pipeline, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = &Pipeline> {
        self.pipelines.values()
    }

    /// The URL tails of every pipeline (`openai/usage_cost`, …), for "unknown pipeline" answers.
    pub fn paths(&self) -> Vec<String> {
        self.pipelines.keys().map(PipelineKey::path).collect()
    }

    pub fn len(&self) -> usize {
        self.pipelines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pipelines.is_empty()
    }
}

/// Turns each pipeline's `exclusive_with` names (`domain` or `domain/pipeline` of its provider)
/// into pipeline id templates, on both sides; an unknown name is a problem of the file naming it.
fn resolve_exclusions(pipelines: &mut BTreeMap<PipelineKey, Pipeline>, problems: &mut Vec<(String, String)>) {
    let mut pairs: Vec<(PipelineKey, PipelineKey)> = Vec::new();
    for (key, p) in pipelines.iter() {
        for name in &p.exclusive_with {
            let (domain, pipeline) = match name.split_once('/') {
                Some((d, p)) => (d, Some(p)),
                None => (name.as_str(), None),
            };
            let other = PipelineKey {
                provider: key.provider.clone(),
                domain: domain.to_string(),
                pipeline: pipeline.map(str::to_string),
            };
            if other == *key || !pipelines.contains_key(&other) {
                problems.push((
                    p.file.clone(),
                    format!(
                        "exclusive_with: {name:?} is not another {} pipeline ({})",
                        key.provider,
                        pipelines
                            .keys()
                            .filter(|k| k.provider == key.provider)
                            .map(PipelineKey::path)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            } else {
                pairs.push((key.clone(), other));
            }
        }
    }
    for p in pipelines.values_mut() {
        p.exclusive_with.clear();
    }
    for (a, b) in pairs {
        let (a_id, b_id) = (pipelines[&a].pipeline_id_template.clone(), pipelines[&b].pipeline_id_template.clone());
        for (key, other) in [(&a, b_id), (&b, a_id)] {
            let list = &mut pipelines.get_mut(key).expect("resolved above").exclusive_with;
            if !list.contains(&other) {
                list.push(other);
            }
        }
    }
}

/// `configs/{provider}/{domain}.yml` and `configs/{provider}/{domain}/{pipeline}.yml`.
fn discover(root: &Path, provider: &str, problems: &mut Vec<(String, String)>) -> Vec<(String, PipelineKey)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(root.join(provider)) else { return found };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().to_string();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir {
            if RESERVED_DIRS.contains(&name.as_str()) {
                continue;
            }
            let Ok(inner) = std::fs::read_dir(entry.path()) else { continue };
            let mut inner: Vec<_> = inner.flatten().collect();
            inner.sort_by_key(|e| e.file_name());
            for file in inner {
                let file_name = file.file_name().to_string_lossy().to_string();
                if let Some(stem) = yaml_stem(&file_name) {
                    let rel = format!("{provider}/{name}/{file_name}");
                    if let Some(key) = key_of(&rel, provider, &name, Some(stem), problems) {
                        found.push((rel, key));
                    }
                }
            }
        } else if let Some(stem) = yaml_stem(&name) {
            let rel = format!("{provider}/{name}");
            if let Some(key) = key_of(&rel, provider, stem, None, problems) {
                found.push((rel, key));
            }
        }
    }
    found
}

fn yaml_stem(file_name: &str) -> Option<&str> {
    file_name.strip_suffix(".yml").or_else(|| file_name.strip_suffix(".yaml"))
}

fn key_of(
    rel: &str,
    provider: &str,
    domain: &str,
    pipeline: Option<&str>,
    problems: &mut Vec<(String, String)>,
) -> Option<PipelineKey> {
    for segment in std::iter::once(domain).chain(pipeline) {
        if !is_snake(segment) {
            problems
                .push((rel.to_string(), format!("{segment:?} must be snake_case (it becomes part of the run URL)")));
            return None;
        }
    }
    Some(PipelineKey {
        provider: provider.to_string(),
        domain: domain.to_string(),
        pipeline: pipeline.map(str::to_string),
    })
}

/// `[a-z0-9_]+`, starting with a letter.
fn is_snake(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Parses and validates one file; every problem is reported, each naming the file.
fn parse(
    rel: &str,
    key: PipelineKey,
    text: &str,
    step_types: &dyn StepTypes,
) -> Result<Pipeline, Vec<(String, String)>> {
    let mut problems = Vec::new();
    let mut problem = |msg: String| problems.push((rel.to_string(), msg));
    let file: PipelineFile = match serde_yaml::from_str(text) {
        Ok(f) => f,
        Err(e) => return Err(vec![(rel.to_string(), e.to_string())]),
    };
    match file.pipeline_id.strip_prefix("{org_slug}-") {
        Some(rest) if is_kebab(rest) => {}
        _ => problem(format!(
            "pipeline_id {:?} must be \"{{org_slug}}-{{provider}}-{{domain}}\" in kebab-case, e.g. \"{{org_slug}}-openai-usage-cost\"",
            file.pipeline_id
        )),
    }
    if file.description.trim().is_empty() {
        problem("description must not be empty".into());
    }
    if !(1..=366).contains(&file.max_window_days) {
        problem(format!("max_window_days must be between 1 and 366, not {}", file.max_window_days));
    }
    for (name, value) in &file.variables {
        if BUILTIN_VARIABLES.contains(&name.as_str()) {
            problem(format!("variables.{name}: {name} is a built-in variable and cannot be redefined"));
        } else if !is_snake(name) {
            problem(format!("variables.{name}: a variable name must be snake_case"));
        }
        for used in placeholders(value) {
            if !BUILTIN_VARIABLES.contains(&used.as_str()) {
                problem(format!(
                    "variables.{name}: {{{used}}} is not a built-in variable ({})",
                    BUILTIN_VARIABLES.join(", ")
                ));
            }
        }
    }
    if file.steps.is_empty() {
        problem("steps must list at least one step".into());
    }
    let known: Vec<&str> = BUILTIN_VARIABLES.iter().copied().chain(file.variables.keys().map(String::as_str)).collect();
    let mut steps = Vec::new();
    for (i, raw) in file.steps.into_iter().enumerate() {
        let serde_yaml::Value::Mapping(mut map) = raw else {
            problem(format!("steps[{i}] must be a mapping with step_id and ps_type"));
            continue;
        };
        let mut take = |field: &str| match map.remove(field) {
            Some(serde_yaml::Value::String(s)) => Ok(s),
            Some(_) => Err(format!("steps[{i}].{field} must be a string")),
            None => Err(format!("steps[{i}]: missing field `{field}`")),
        };
        let (step_id, ps_type) = match (take("step_id"), take("ps_type")) {
            (Ok(s), Ok(t)) => (s, t),
            (a, b) => {
                for e in [a.err(), b.err()].into_iter().flatten() {
                    problem(e);
                }
                continue;
            }
        };
        let label = format!("step {step_id}");
        if !is_snake(&step_id) || !step_id.contains('_') {
            problem(format!("{label}: step_id must be snake_case {{action}}_{{target}}, e.g. extract_usage"));
        }
        if steps.iter().any(|s: &Step| s.step_id == step_id) {
            problem(format!("{label}: step_id is used twice"));
        }
        let config = serde_yaml::Value::Mapping(map);
        match step_types.check(&ps_type, &config) {
            None => problem(format!(
                "{label}: ps_type {ps_type:?} is not a registered processor ({})",
                step_types.types().join(", ")
            )),
            Some(Err(e)) => problem(format!("{label} ({ps_type}): {e}")),
            Some(Ok(())) => {}
        }
        let mut strings = Vec::new();
        collect_strings(&config, "", &mut strings);
        for (path, s) in strings {
            for used in placeholders(&s) {
                if !known.contains(&used.as_str()) {
                    problem(format!("{label}: {path}: {{{used}}} is not a variable ({})", known.join(", ")));
                }
            }
        }
        steps.push(Step { step_id, ps_type, config });
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Pipeline {
        key,
        file: rel.to_string(),
        pipeline_id_template: file.pipeline_id,
        description: file.description,
        schedule: file.schedule,
        max_window_days: file.max_window_days,
        variables: file.variables,
        steps,
        notifications: file.notifications,
        exclusive_with: file.exclusive_with,
    })
}

/// `[a-z0-9]+(-[a-z0-9]+)*`.
fn is_kebab(s: &str) -> bool {
    !s.is_empty()
        && s.split('-')
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()))
}

/// The `{name}` placeholders of a string (`name` snake_case; other braces are left alone).
pub fn placeholders(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        match after.find('}') {
            Some(end) if is_snake(&after[..end]) => {
                out.push(after[..end].to_string());
                rest = &after[end + 1..];
            }
            _ => rest = after,
        }
    }
    out
}

/// Replaces every `{name}` placeholder whose name is in `vars`.
pub fn substitute(s: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find('}').map(|end| (end, vars.get(&after[..end]))) {
            Some((end, Some(value))) => {
                out.push_str(value);
                rest = &after[end + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Substitutes variables in every string of a YAML value (keys are left alone).
pub fn substitute_value(value: &serde_yaml::Value, vars: &BTreeMap<String, String>) -> serde_yaml::Value {
    match value {
        serde_yaml::Value::String(s) => serde_yaml::Value::String(substitute(s, vars)),
        serde_yaml::Value::Sequence(items) => {
            serde_yaml::Value::Sequence(items.iter().map(|v| substitute_value(v, vars)).collect())
        }
        serde_yaml::Value::Mapping(map) => {
            serde_yaml::Value::Mapping(map.iter().map(|(k, v)| (k.clone(), substitute_value(v, vars))).collect())
        }
        other => other.clone(),
    }
}

fn collect_strings(value: &serde_yaml::Value, path: &str, out: &mut Vec<(String, String)>) {
    match value {
        serde_yaml::Value::String(s) => out.push((path.to_string(), s.clone())),
        serde_yaml::Value::Sequence(items) => {
            for (i, v) in items.iter().enumerate() {
                collect_strings(v, &format!("{path}[{i}]"), out);
            }
        }
        serde_yaml::Value::Mapping(map) => {
            for (k, v) in map {
                let k = k.as_str().map(str::to_string).unwrap_or_else(|| format!("{k:?}"));
                let p = if path.is_empty() { k } else { format!("{path}.{k}") };
                collect_strings(v, &p, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_substitution() {
        assert_eq!(placeholders("{dataset}.t_{date} {not a var} {}"), vec!["dataset", "date"]);
        let vars = BTreeMap::from([("dataset".to_string(), "acme_dev".to_string())]);
        assert_eq!(substitute("{dataset}.x {other} {", &vars), "acme_dev.x {other} {");
    }

    fn pipeline(domain: &str, exclusive_with: &[&str]) -> (PipelineKey, Pipeline) {
        let key = PipelineKey { provider: "openai".into(), domain: domain.into(), pipeline: None };
        let p = Pipeline {
            key: key.clone(),
            file: format!("openai/{domain}.yml"),
            pipeline_id_template: format!("{{org_slug}}-openai-{}", domain.replace('_', "-")),
            description: "x".into(),
            schedule: Schedule::Daily,
            max_window_days: 31,
            variables: BTreeMap::new(),
            steps: Vec::new(),
            notifications: Notifications::default(),
            exclusive_with: exclusive_with.iter().map(|s| s.to_string()).collect(),
        };
        (key, p)
    }

    #[test]
    fn exclusions_are_resolved_on_both_sides_and_unknown_names_refused() {
        let mut pipelines: BTreeMap<PipelineKey, Pipeline> =
            [pipeline("usage_cost", &[]), pipeline("reprice", &["usage_cost", "nope"]), pipeline("subscriptions", &[])]
                .into_iter()
                .collect();
        let mut problems = Vec::new();
        resolve_exclusions(&mut pipelines, &mut problems);
        let get = |d: &str| &pipelines[&PipelineKey { provider: "openai".into(), domain: d.into(), pipeline: None }];
        assert_eq!(get("reprice").exclusive_ids("acme"), vec!["acme-openai-reprice", "acme-openai-usage-cost"]);
        assert_eq!(get("usage_cost").exclusive_ids("acme"), vec!["acme-openai-usage-cost", "acme-openai-reprice"]);
        assert_eq!(get("subscriptions").exclusive_ids("acme"), vec!["acme-openai-subscriptions"]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, "openai/reprice.yml");
        assert!(problems[0].1.contains("\"nope\"") && problems[0].1.contains("openai/usage_cost"), "{problems:?}");
    }

    #[test]
    fn kebab_and_snake() {
        assert!(is_kebab("openai-usage-cost"));
        assert!(!is_kebab("openai_usage"));
        assert!(!is_kebab("openai--x"));
        assert!(is_snake("usage_cost"));
        assert!(!is_snake("../etc"));
        assert!(!is_snake("Usage"));
    }
}
