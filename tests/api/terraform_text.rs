//! terraform/ read as text (no provider, no network), shared by the tests that keep it in step
//! with the code (`terraform.rs`) and the one that starts every Cloud Run binary with the
//! environment Terraform gives it (`cloud_binaries.rs`).
//!
//! The parsing is deliberately small: HCL strings and comments are blanked out (byte for byte, so
//! positions still line up with the original text) before brackets are matched. The environment
//! of a service is evaluated from the shapes cloud_run.tf uses (a `dynamic "env"` over a `merge`
//! of maps, plus plain `env` blocks); a shape it does not know fails the test, saying so.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// One .tf file: the original text and the same bytes with string contents and comments blanked.
pub struct Tf {
    pub name: String,
    pub text: String,
    pub code: Vec<u8>,
}

impl Tf {
    fn new(name: String, text: String) -> Tf {
        let code = blank_strings_and_comments(text.as_bytes());
        Tf { name, text, code }
    }

    pub fn src(&self, range: Range<usize>) -> &str {
        &self.text[range]
    }

    /// The index of the bracket closing the one at `open` (`{`, `[` or `(`).
    pub fn closing(&self, open: usize) -> usize {
        let mut depth = 0usize;
        for (i, &b) in self.code.iter().enumerate().skip(open) {
            match b {
                b'{' | b'[' | b'(' => depth += 1,
                b'}' | b']' | b')' => {
                    depth -= 1;
                    if depth == 0 {
                        return i;
                    }
                }
                _ => {}
            }
        }
        panic!("{}: unbalanced bracket at byte {open}", self.name)
    }

    /// The top-level `key = value` entries of the block whose bracket opens at `open`: each key
    /// (quotes removed) with the byte range of its value (to the end of its line, or of its
    /// brackets when they span lines). Nested blocks (`name { ... }`) are skipped.
    pub fn entries(&self, open: usize) -> Vec<(String, Range<usize>)> {
        let close = self.closing(open);
        let mut out = Vec::new();
        let mut line_start = open + 1;
        let mut i = open + 1;
        while i < close {
            match self.code[i] {
                b'\n' => line_start = i + 1,
                b'{' | b'[' | b'(' => i = self.closing(i),
                // `=` alone: not `==`, `!=`, `<=`, `>=` or `=>`.
                b'=' if !matches!(self.code[i + 1], b'=' | b'>')
                    && !matches!(self.code[i - 1], b'=' | b'!' | b'<' | b'>') =>
                {
                    let key = self.text[line_start..i].trim().trim_matches('"').to_string();
                    let mut start = i + 1;
                    while self.code[start] == b' ' {
                        start += 1;
                    }
                    let mut end = start;
                    while end < close && self.code[end] != b'\n' {
                        if matches!(self.code[end], b'{' | b'[' | b'(') {
                            end = self.closing(end);
                        }
                        end += 1;
                    }
                    // Trailing blanks (a comment after the value) are not part of it.
                    while end > start && self.code[end - 1] == b' ' {
                        end -= 1;
                    }
                    out.push((key, start..end));
                    i = end;
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
        out
    }

    /// The value of the top-level entry `key` of the block opening at `open`, as written.
    pub fn attribute(&self, open: usize, key: &str) -> Option<&str> {
        self.entries(open).into_iter().find(|(k, _)| k == key).map(|(_, range)| self.text[range].trim())
    }

    /// Where each block `header { ... }` inside the block opening at `open` opens (any depth).
    /// `header` is matched in code (not in strings or comments), e.g. `oidc_token` or
    /// `dynamic "env"`.
    pub fn blocks(&self, open: usize, header: &str) -> Vec<usize> {
        let close = self.closing(open);
        let mut out = Vec::new();
        let mut from = open + 1;
        while let Some(found) = self.text[from..close].find(header) {
            let at = from + found;
            from = at + header.len();
            let in_code = self.code[at] == self.text.as_bytes()[at];
            let starts_word = !is_ident(self.code[at - 1]) && self.code[at - 1] != b'"';
            let rest = &self.code[from..close];
            let brace = rest.iter().position(|&b| b != b' ');
            if in_code && starts_word && brace.is_some_and(|p| rest[p] == b'{') {
                out.push(from + brace.unwrap());
            }
        }
        out
    }

    /// The one block `header { ... }` inside the block opening at `open`.
    pub fn block(&self, open: usize, header: &str) -> usize {
        let found = self.blocks(open, header);
        assert_eq!(found.len(), 1, "{}: expected one `{header} {{ ... }}` in the block at byte {open}", self.name);
        found[0]
    }

    /// The string literals (contents) inside a byte range of the original text.
    pub fn strings_in(&self, range: Range<usize>) -> Vec<String> {
        let mut out = Vec::new();
        let mut i = range.start;
        while i < range.end {
            if self.code[i] == b'"' {
                let end = i + 1 + self.code[i + 1..].iter().position(|&b| b == b'"').expect("closed string");
                out.push(self.text[i + 1..end].to_string());
                i = end;
            }
            i += 1;
        }
        out
    }

    /// The ranges of the comma-separated arguments inside the brackets opening at `open`.
    pub fn arguments(&self, open: usize) -> Vec<Range<usize>> {
        let close = self.closing(open);
        let mut out = Vec::new();
        let mut start = open + 1;
        let mut i = open + 1;
        while i < close {
            match self.code[i] {
                b'{' | b'[' | b'(' => i = self.closing(i),
                b',' => {
                    out.push(start..i);
                    start = i + 1;
                }
                _ => {}
            }
            i += 1;
        }
        out.push(start..close);
        out.into_iter().filter(|r| !self.text[r.clone()].trim().is_empty()).collect()
    }
}

pub fn terraform_files() -> Vec<Tf> {
    let dir = repo().join("terraform");
    let mut files: Vec<Tf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tf"))
        .map(|p| Tf::new(p.file_name().unwrap().to_string_lossy().into_owned(), read(&p)))
        .collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(files.len() >= 5, "terraform/ should hold the deployment's .tf files");
    files
}

/// Where the top-level block `header { ... }` opens, e.g. `resource "google_pubsub_topic" "runs"`.
fn top_level_blocks<'a>(files: &'a [Tf], header: &str) -> Vec<(&'a Tf, usize)> {
    let mut out = Vec::new();
    for f in files {
        let mut from = 0;
        while let Some(found) = f.text[from..].find(header) {
            let at = from + found;
            from = at + header.len();
            let at_line_start = at == 0 || f.text.as_bytes()[at - 1] == b'\n';
            let rest = &f.code[from..];
            if let Some(p) = rest.iter().position(|&b| b != b' ').filter(|&p| at_line_start && rest[p] == b'{') {
                out.push((f, from + p));
            }
        }
    }
    out
}

/// Every `resource "kind" "..." { ... }`: its file and where its body opens.
pub fn resources<'a>(files: &'a [Tf], kind: &str) -> Vec<(&'a Tf, usize)> {
    let header = format!("resource \"{kind}\" \"");
    files
        .iter()
        .flat_map(|f| {
            f.text
                .match_indices(header.as_str())
                .filter(|(at, _)| *at == 0 || f.text.as_bytes()[at - 1] == b'\n')
                .map(move |(at, _)| (f, at + f.code[at..].iter().position(|&b| b == b'{').expect("a block")))
        })
        .collect()
}

/// `resource "kind" "name" { ... }`: its file and where its body opens.
pub fn resource<'a>(files: &'a [Tf], kind: &str, name: &str) -> (&'a Tf, usize) {
    let header = format!("resource \"{kind}\" \"{name}\"");
    let found = top_level_blocks(files, &header);
    assert_eq!(found.len(), 1, "expected exactly one `{header}` in terraform/");
    found[0]
}

/// The entry `key` of the `locals` blocks: its file and value range (defined exactly once).
pub fn local<'a>(files: &'a [Tf], key: &str) -> (&'a Tf, Range<usize>) {
    let found: Vec<(&Tf, Range<usize>)> = top_level_blocks(files, "locals")
        .into_iter()
        .flat_map(|(f, open)| f.entries(open).into_iter().filter(|(k, _)| k == key).map(move |(_, r)| (f, r)))
        .collect();
    assert_eq!(found.len(), 1, "expected exactly one `local.{key}` in terraform/, found {}", found.len());
    found.into_iter().next().unwrap()
}

/// A `local.{key}` written as a literal (a string or a number).
pub fn local_literal(files: &[Tf], key: &str) -> String {
    let (tf, range) = local(files, key);
    match parse_value(tf.src(range)) {
        Value::Literal(v) => v,
        other => panic!("local.{key} should be a literal, is {other:?}"),
    }
}

/// `variable "name" { ... }`: the file and the range of its body.
pub fn variable_block<'a>(files: &'a [Tf], name: &str) -> (&'a Tf, Range<usize>) {
    let header = format!("variable \"{name}\"");
    let found = top_level_blocks(files, &header);
    assert_eq!(found.len(), 1, "expected exactly one `{header}` in terraform/");
    let (f, open) = found[0];
    (f, open..f.closing(open) + 1)
}

pub fn default_of(files: &[Tf], variable: &str) -> String {
    let (tf, body) = variable_block(files, variable);
    match tf.attribute(body.start, "default").map(parse_value) {
        Some(Value::Literal(v)) => v,
        other => panic!("variable {variable}: default should be a literal, is {other:?}"),
    }
}

/// One entry of `local.services` (cloud_run.tf): its fields as written, and the route lists the
/// URL map is generated from.
pub struct Service {
    pub fields: HashMap<String, String>,
    pub templates: Vec<String>,
    pub prefixes: Vec<String>,
}

impl Service {
    pub fn field(&self, name: &str) -> &str {
        self.fields.get(name).unwrap_or_else(|| panic!("a local.services entry has no {name}"))
    }

    pub fn number(&self, name: &str) -> u64 {
        self.field(name).parse().unwrap_or_else(|_| panic!("{name} = {:?} should be a number", self.field(name)))
    }

    pub fn flag(&self, name: &str) -> bool {
        match self.field(name) {
            "true" => true,
            "false" => false,
            other => panic!("{name} = {other:?} should be true or false"),
        }
    }
}

/// `local.services` (cloud_run.tf), in Terraform's iteration order (keys sorted).
pub fn services(files: &[Tf]) -> BTreeMap<String, Service> {
    let (tf, range) = local(files, "services");
    let mut out = BTreeMap::new();
    for (name, value) in tf.entries(range.start) {
        assert!(tf.code[value.start] == b'{', "local.services.{name} should be an object");
        let ranges: HashMap<String, Range<usize>> = tf.entries(value.start).into_iter().collect();
        let list = |field: &str| {
            let range = ranges.get(field).unwrap_or_else(|| panic!("local.services.{name} has no {field}"));
            tf.strings_in(range.clone())
        };
        let service = Service {
            templates: list("path_templates"),
            prefixes: list("path_prefixes"),
            fields: ranges.iter().map(|(k, r)| (k.clone(), tf.src(r.clone()).trim().to_string())).collect(),
        };
        assert!(out.insert(name.clone(), service).is_none(), "service {name} defined twice");
    }
    assert!(!out.is_empty(), "local.services is empty");
    out
}

/// How an environment variable gets its value in the .tf files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Literal(String),
    /// The expression as written, whitespace squashed.
    Expression(String),
}

pub fn parse_value(raw: &str) -> Value {
    let raw = raw.trim().trim_end_matches(',').trim();
    match raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(literal) if !literal.contains("${") && !literal.contains('"') => Value::Literal(literal.to_string()),
        _ => match raw.parse::<f64>() {
            Ok(_) => Value::Literal(raw.to_string()),
            Err(_) => Value::Expression(squash(raw)),
        },
    }
}

/// The environment of the Cloud Run service `service` (an entry of `local.services`), as
/// cloud_run.tf builds it: the `dynamic "env"` block's `merge(...)` of maps (later maps win, but
/// a name set twice fails here), then the plain `env { name = ... }` blocks.
pub fn service_env(files: &[Tf], service: &str) -> Vec<(String, Value)> {
    let services = services(files);
    let svc = services.get(service).unwrap_or_else(|| panic!("{service} is not in local.services"));
    let (tf, body) = resource(files, "google_cloud_run_v2_service", "service");
    let mut env: Vec<(String, Value)> = Vec::new();

    let dynamics = tf.blocks(body, "dynamic \"env\"");
    let (&dynamic, secrets) = dynamics.split_first().expect("a dynamic \"env\" block");
    let for_each = tf.attribute(dynamic, "for_each").expect("dynamic \"env\" has a for_each");
    assert!(for_each.starts_with("merge("), "dynamic \"env\" should iterate over merge(...), not {for_each}");
    let merge_open = tf.entries(dynamic).into_iter().find(|(k, _)| k == "for_each").unwrap().1.start + "merge".len();
    for arg in tf.arguments(merge_open) {
        let text = squash(tf.src(arg.clone()));
        let map: Vec<(String, Value)> = if let Some(key) = text.strip_prefix("local.").filter(|k| is_name(k)) {
            let (f, range) = local(files, key);
            f.entries(range.start).into_iter().map(|(k, r)| (k, parse_value(f.src(r)))).collect()
        } else if text.starts_with('{') {
            tf.entries(arg.start + tf.text[arg.clone()].find('{').unwrap())
                .into_iter()
                .map(|(k, r)| (k, each_value(tf.src(r), svc)))
                .collect()
        } else if let Some(key) = text.strip_prefix("lookup(local.").and_then(|r| r.strip_suffix(", each.key, {})")) {
            // A map keyed by service name: this service's entry, if it has one.
            let (f, range) = local(files, key);
            match f.entries(range.start).into_iter().find(|(k, _)| k == service) {
                // The entry names another local map (`"pipelines-run" = local.smtp_env`).
                Some((_, entry)) if squash(f.src(entry.clone())).starts_with("local.") => {
                    let (g, map) = local(files, squash(f.src(entry)).trim_start_matches("local."));
                    g.entries(map.start).into_iter().map(|(k, r)| (k, parse_value(g.src(r)))).collect()
                }
                Some((_, entry)) => {
                    f.entries(entry.start).into_iter().map(|(k, r)| (k, parse_value(f.src(r)))).collect()
                }
                None => Vec::new(),
            }
        } else if text == "var.extra_env" {
            let (f, body) = variable_block(files, "extra_env");
            assert_eq!(f.attribute(body.start, "default"), Some("{}"), "var.extra_env should default to {{}}");
            Vec::new()
        } else {
            panic!("cloud_run.tf: teach tests/api/terraform_text.rs the env map `{text}`");
        };
        env.extend(map);
    }

    // The other dynamic blocks each mount one secret when a condition on the variables (at their
    // defaults) and the service holds: `var.V != "" && contains(keys(local.M), each.key) ? ["NAME"] : []`.
    for &block in secrets {
        let for_each = squash(tf.attribute(block, "for_each").expect("dynamic \"env\" has a for_each"));
        let parsed = for_each.split_once(" != \"\" && contains(keys(local.").and_then(|(variable, rest)| {
            let (map, rest) = rest.split_once("), each.key) ? [\"")?;
            let (name, rest) = rest.split_once("\"]")?;
            (rest == " : []").then_some((variable.strip_prefix("var.")?, map, name))
        });
        let Some((variable, map, name)) = parsed else {
            panic!("cloud_run.tf: teach tests/api/terraform_text.rs the dynamic env `{for_each}`")
        };
        let content = tf.block(block, "content");
        assert_eq!(tf.attribute(content, "name"), Some("env.value"), "{name}");
        let (f, range) = local(files, map);
        let in_map = f.entries(range.start).into_iter().any(|(k, _)| k == service);
        if in_map && !default_of(files, variable).is_empty() {
            env.push((name.to_string(), Value::Expression(squash(tf.src(content..tf.closing(content) + 1)))));
        }
    }

    let container = tf.block(body, "containers");
    for block in tf.blocks(container, "env") {
        let name = match tf.attribute(block, "name").map(parse_value) {
            Some(Value::Literal(name)) => name,
            other => panic!("an env block's name should be a literal, is {other:?}"),
        };
        let value = match tf.attribute(block, "value") {
            Some(v) => parse_value(v),
            // value_source: described by the block itself.
            None => Value::Expression(squash(tf.src(block..tf.closing(block) + 1))),
        };
        env.push((name, value));
    }

    let mut seen = std::collections::BTreeSet::new();
    for (name, _) in &env {
        assert!(seen.insert(name), "{name} is set twice for {service} in terraform/");
    }
    env
}

/// A value of an inline env map: `tostring(each.value.<field>)` is the service's field, and so
/// is `tostring(local.sizing[each.key].<field>)` without overrides (`sizes` checks local.sizing
/// is the entry's value unless var.service_overrides sets it).
fn each_value(raw: &str, service: &Service) -> Value {
    let raw = squash(raw);
    let field = raw
        .strip_prefix("tostring(each.value.")
        .or_else(|| raw.strip_prefix("tostring(local.sizing[each.key]."))
        .and_then(|r| r.strip_suffix(')'));
    match field {
        Some(field) => parse_value(service.field(field)),
        None => parse_value(&raw),
    }
}

/// The sizing fields of every `local.services` entry, each overridable per service through
/// `var.service_overrides` (cloud_run.tf's `local.sizing`).
pub const SIZING_FIELDS: [&str; 6] =
    ["memory", "cpu", "concurrency", "min_instances", "max_instances", "timeout_seconds"];

/// An environment's example variables (`terraform/environments/{environment}.tfvars`), read as
/// the body of one block: its top-level assignments are `entries(0)`.
pub fn tfvars(environment: &str) -> Tf {
    let path = repo().join(format!("terraform/environments/{environment}.tfvars"));
    Tf::new(format!("{environment}.tfvars"), format!("{{\n{}\n}}", read(&path)))
}

/// `key = value` pairs of an object written inline (`{ a = 1, b = "x" }`) or one per line.
pub fn object_fields(tf: &Tf, open: usize) -> Vec<(String, String)> {
    tf.arguments(open)
        .into_iter()
        .flat_map(|arg| tf.src(arg).lines().map(str::to_string).collect::<Vec<_>>())
        .filter_map(|line| {
            let line = line.split('#').next().unwrap_or("").to_string();
            let (key, value) = line.split_once('=')?;
            Some((key.trim().trim_matches('"').to_string(), value.trim().trim_matches('"').to_string()))
        })
        .collect()
}

/// Each service's size (field -> value, quotes removed): its `local.services` entry, with the
/// `service_overrides` of `environment`'s .tfvars when given.
pub fn sizes(files: &[Tf], environment: Option<&str>) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = services(files)
        .into_iter()
        .map(|(name, svc)| {
            let size = SIZING_FIELDS.iter().map(|f| (f.to_string(), svc.field(f).trim_matches('"').to_string()));
            (name, size.collect())
        })
        .collect();
    let Some(environment) = environment else { return out };
    let vars = tfvars(environment);
    let Some((_, range)) = vars.entries(0).into_iter().find(|(k, _)| k == "service_overrides") else { return out };
    for (service, entry) in vars.entries(range.start) {
        let size = out
            .get_mut(&service)
            .unwrap_or_else(|| panic!("{environment}.tfvars overrides {service:?}, not a service"));
        for (field, value) in object_fields(&vars, entry.start) {
            assert!(
                SIZING_FIELDS.contains(&field.as_str()),
                "{environment}.tfvars: {service}.{field} is not a sizing field"
            );
            size.insert(field, value);
        }
    }
    out
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// What a deployment would put where Terraform refers to something it creates or is given.
pub struct Samples {
    pub project_id: String,
    pub domain: String,
    pub cors_origins: String,
    pub root_key: String,
}

impl Samples {
    /// `google_kms_crypto_key.secrets.id` for this project (kms.tf: key ring `convergence`, key
    /// `secrets`, in the region).
    pub fn kms_key_name(&self) -> String {
        format!("projects/{}/locations/us-central1/keyRings/convergence/cryptoKeys/secrets", self.project_id)
    }
}

/// Replaces the interpolations Terraform would: `${local.name}`, `${var.domain}`.
fn interpolate(files: &[Tf], template: &str, samples: &Samples) -> String {
    let out =
        template.replace("${local.name}", &local_literal(files, "name")).replace("${var.domain}", &samples.domain);
    assert!(!out.contains("${"), "teach tests/api/terraform_text.rs the interpolation in {template:?}");
    out
}

/// The email of `google_service_account.<name>`: its account_id at the project.
fn service_account_email(files: &[Tf], expr: &str, samples: &Samples) -> String {
    let name = expr
        .strip_prefix("google_service_account.")
        .and_then(|r| r.strip_suffix(".email"))
        .filter(|n| is_name(n))
        .unwrap_or_else(|| panic!("expected google_service_account.<name>.email, found {expr}"));
    let (tf, body) = resource(files, "google_service_account", name);
    let account_id = tf.attribute(body, "account_id").expect("account_id");
    let account_id = interpolate(files, account_id.trim_matches('"'), samples);
    format!("{account_id}@{}.iam.gserviceaccount.com", samples.project_id)
}

/// The email of a service's runtime account, `google_service_account.service["<service>"]`
/// (account_id `${local.name}-${each.key}`).
pub fn runtime_account_email(files: &[Tf], service: &str, samples: &Samples) -> String {
    let (tf, body) = resource(files, "google_service_account", "service");
    assert_eq!(tf.attribute(body, "for_each"), Some("local.services"));
    let account_id = tf.attribute(body, "account_id").expect("account_id").trim_matches('"');
    let account_id = interpolate(files, &account_id.replace("${each.key}", service), samples);
    format!("{account_id}@{}.iam.gserviceaccount.com", samples.project_id)
}

/// `local.<map>["<key>"]`, resolved to the entry's value.
fn local_entry(files: &[Tf], expr: &str) -> Option<Value> {
    let (map, rest) = expr.strip_prefix("local.")?.split_once("[\"")?;
    let key = rest.strip_suffix("\"]")?;
    let (tf, range) = local(files, map);
    let (_, entry) = tf.entries(range.start).into_iter().find(|(k, _)| k == key)?;
    Some(parse_value(tf.src(entry)))
}

/// The environment a deployed `service` starts with: every value Terraform sets, with what a
/// deployment would put in for the references to resources and inputs. An expression this does
/// not know fails the test (add it here, with the check that it is the right resource).
pub fn deployed_env(files: &[Tf], service: &str, samples: &Samples) -> BTreeMap<String, String> {
    let environment = default_of(files, "environment");
    let mut out = BTreeMap::new();
    for (name, value) in service_env(files, service) {
        let expr = match value {
            Value::Literal(v) => {
                out.insert(name, v);
                continue;
            }
            Value::Expression(expr) => expr,
        };
        let sample = match name.as_str() {
            "ENVIRONMENT" => {
                assert_eq!(expr, "var.environment");
                environment.clone()
            }
            "GCP_PROJECT_ID" => {
                assert_eq!(expr, "var.project_id");
                samples.project_id.clone()
            }
            "BIGQUERY_LOCATION" => {
                assert_eq!(expr, "var.bigquery_location");
                default_of(files, "bigquery_location")
            }
            "KMS_KEY_NAME" => {
                // The full id (projects/…/cryptoKeys/…), not `.name` (just the key's name).
                assert!(expr.starts_with("google_kms_crypto_key.") && expr.ends_with(".id"), "{expr}");
                samples.kms_key_name()
            }
            "PUBSUB_TOPIC" => {
                // The full name (projects/…/topics/…) of the topic the push subscription reads.
                assert_eq!(expr, "google_pubsub_topic.runs.id", "PUBSUB_TOPIC should be the runs topic's full name");
                let (tf, body) = resource(files, "google_pubsub_topic", "runs");
                let topic = interpolate(files, tf.attribute(body, "name").expect("name").trim_matches('"'), samples);
                format!("projects/{}/topics/{topic}", samples.project_id)
            }
            "RUN_LEASE_SECS" | "RUN_TIMEOUT_SECS" => {
                let key = expr.strip_prefix("tostring(local.").and_then(|r| r.strip_suffix(')'));
                local_literal(files, key.unwrap_or_else(|| panic!("{name} = {expr}")))
            }
            "CORS_ORIGINS" => {
                assert_eq!(expr, "join(\",\", var.cors_origins)");
                samples.cors_origins.clone()
            }
            "OIDC_AUDIENCE" => match local_entry(files, &expr) {
                Some(Value::Expression(template)) => interpolate(files, template.trim_matches('"'), samples),
                Some(Value::Literal(audience)) => audience,
                None => panic!("OIDC_AUDIENCE = {expr}: expected an entry of a local map (local.oidc_audiences)"),
            },
            "OIDC_INVOKERS" => service_account_email(files, &expr, samples),
            "ORG_DATASET_OWNERS" => {
                let owner = expr
                    .strip_prefix("google_service_account.service[\"")
                    .and_then(|r| r.strip_suffix("\"].email"))
                    .unwrap_or_else(|| panic!("ORG_DATASET_OWNERS = {expr}: expected a service's runtime account"));
                runtime_account_email(files, owner, samples)
            }
            "ORG_DATASET_WRITERS" | "ORG_DATASET_READERS" => {
                let role = if name == "ORG_DATASET_WRITERS" { "write" } else { "read" };
                let expected = format!(
                    "join(\",\", [for name, svc in local.services : google_service_account.service[name].email if svc.bigquery_org_datasets == \"{role}\"])"
                );
                assert_eq!(
                    expr, expected,
                    "{name} should list the runtime accounts of the services that {role} org datasets"
                );
                let services = services(files);
                let emails = services
                    .iter()
                    .filter(|(_, svc)| svc.field("bigquery_org_datasets") == format!("\"{role}\""))
                    .map(|(name, _)| runtime_account_email(files, name, samples));
                emails.collect::<Vec<_>>().join(",")
            }
            "PUBLIC_BASE_URL" => {
                assert_eq!(expr, "\"https://${var.domain}\"", "the API's public address: the load balancer's domain");
                interpolate(files, expr.trim_matches('"'), samples)
            }
            // Email: off unless an operator sets var.smtp_host (the defaults are what is checked).
            "SMTP_HOST" | "SMTP_USERNAME" | "SMTP_FROM" => {
                let variable = name.to_ascii_lowercase();
                assert_eq!(expr, format!("var.{variable}"));
                default_of(files, &variable)
            }
            "SMTP_PORT" | "SMTP_TLS" => {
                let variable = name.to_ascii_lowercase();
                let value = if variable == "smtp_port" {
                    format!("tostring(var.{variable})")
                } else {
                    format!("var.{variable}")
                };
                assert_eq!(
                    expr,
                    format!("var.smtp_host == \"\" ? \"\" : {value}"),
                    "{name} is empty while email is off"
                );
                if default_of(files, "smtp_host").is_empty() {
                    String::new()
                } else {
                    default_of(files, &variable)
                }
            }
            "CA_ROOT_API_KEY" => {
                assert!(
                    expr.contains("secret_key_ref {") && expr.contains("google_secret_manager_secret."),
                    "CA_ROOT_API_KEY must come from Secret Manager, not a literal: {expr}"
                );
                samples.root_key.clone()
            }
            other => panic!("{other} = {expr}: add a sample value for it to tests/api/terraform_text.rs"),
        };
        out.insert(name, sample);
    }
    out
}

/// Whitespace runs collapsed to one space, so checks do not depend on `terraform fmt` alignment.
pub fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.'
}

/// Blanks (with spaces, keeping newlines and the quotes themselves) every string literal's
/// contents and every comment; `${ ... }` interpolations stay code, nested strings included.
fn blank_strings_and_comments(src: &[u8]) -> Vec<u8> {
    let mut out = src.to_vec();
    // Stack of open interpolations inside strings: the brace depth within each.
    let mut interpolations: Vec<usize> = Vec::new();
    let mut in_string = false;
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, i: usize| {
        if out[i] != b'\n' {
            out[i] = b' ';
        }
    };
    while i < src.len() {
        let b = src[i];
        if in_string {
            match b {
                b'\\' => {
                    blank(&mut out, i);
                    if i + 1 < src.len() {
                        blank(&mut out, i + 1);
                    }
                    i += 2;
                    continue;
                }
                b'"' => in_string = false,
                b'$' if src.get(i + 1) == Some(&b'{') => {
                    interpolations.push(0);
                    in_string = false;
                    i += 2;
                    continue;
                }
                _ => blank(&mut out, i),
            }
            i += 1;
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'#' => {
                while i < src.len() && src[i] != b'\n' {
                    blank(&mut out, i);
                    i += 1;
                }
                continue;
            }
            b'/' if src.get(i + 1) == Some(&b'/') => {
                while i < src.len() && src[i] != b'\n' {
                    blank(&mut out, i);
                    i += 1;
                }
                continue;
            }
            b'/' if src.get(i + 1) == Some(&b'*') => {
                while i < src.len() && !(src[i] == b'*' && src.get(i + 1) == Some(&b'/')) {
                    blank(&mut out, i);
                    i += 1;
                }
                blank(&mut out, i);
                if i + 1 < src.len() {
                    blank(&mut out, i + 1);
                }
                i += 2;
                continue;
            }
            b'{' => {
                if let Some(depth) = interpolations.last_mut() {
                    *depth += 1;
                }
            }
            b'}' => match interpolations.last_mut() {
                Some(0) => {
                    // The `}` ending an interpolation: back inside the string.
                    interpolations.pop();
                    out[i] = b' ';
                    in_string = true;
                }
                Some(depth) => *depth -= 1,
                None => {}
            },
            _ => {}
        }
        i += 1;
    }
    // Interpolation braces are not blocks: blank the `${` openers too.
    let mut j = 0;
    while j + 1 < out.len() {
        if out[j] == b'$' && out[j + 1] == b'{' {
            out[j] = b' ';
            out[j + 1] = b' ';
        }
        j += 1;
    }
    out
}
