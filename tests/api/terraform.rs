//! terraform/ kept in step with the code, by reading the .tf files as text (no provider, no
//! network): every function crate has its Cloud Run service; every route the code serves and
//! every route of DESIGN §2 goes through the load balancer's URL map to the function that serves
//! it; every environment variable Terraform sets is one `common/src/settings.rs` reads, and the
//! whole set passes the production start-up validation; and `terraform fmt -check` is clean when
//! the `terraform` binary is installed.
//!
//! The parsing is deliberately small: HCL strings and comments are blanked out (byte for byte, so
//! positions still line up with the original text) before brackets are matched.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};

use common::settings::{BackendDefaults, KmsBackend, QueueBackend, Settings, WarehouseBackend};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// One .tf file: the original text and the same bytes with string contents and comments blanked.
struct Tf {
    name: String,
    text: String,
    code: Vec<u8>,
}

impl Tf {
    fn new(name: String, text: String) -> Tf {
        let code = blank_strings_and_comments(text.as_bytes());
        Tf { name, text, code }
    }

    fn src(&self, range: Range<usize>) -> &str {
        &self.text[range]
    }

    /// The index of the bracket closing the one at `open` (`{`, `[` or `(`).
    fn closing(&self, open: usize) -> usize {
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

    /// Where `key = {` (or `[`) opens, for an unquoted key in code (not in a string or comment).
    fn assignment_open(&self, key: &str) -> Option<usize> {
        let code = std::str::from_utf8(&self.code).expect("blanked code is ASCII");
        let mut from = 0;
        while let Some(found) = code[from..].find(key) {
            let at = from + found;
            from = at + key.len();
            let before_ok = at == 0 || !is_ident(self.code[at - 1]);
            let rest = code[from..].trim_start();
            if before_ok && rest.starts_with('=') && !rest.starts_with("==") {
                let value = rest[1..].trim_start();
                if value.starts_with('{') || value.starts_with('[') {
                    return Some(code.len() - value.len());
                }
            }
        }
        None
    }

    /// The top-level `key = value` entries of the block whose bracket opens at `open`: each key
    /// (quotes removed) with the byte range of its value.
    fn entries(&self, open: usize) -> Vec<(String, Range<usize>)> {
        let close = self.closing(open);
        let mut out = Vec::new();
        let mut line_start = open + 1;
        let mut i = open + 1;
        while i < close {
            match self.code[i] {
                b'\n' => line_start = i + 1,
                b'{' | b'[' | b'(' => i = self.closing(i),
                b'=' if self.code.get(i + 1) != Some(&b'=') => {
                    let key = self.text[line_start..i].trim().trim_matches('"').to_string();
                    let mut start = i + 1;
                    while self.code[start] == b' ' {
                        start += 1;
                    }
                    let end = match self.code[start] {
                        b'{' | b'[' | b'(' => self.closing(start) + 1,
                        _ => start + self.code[start..].iter().position(|&b| b == b'\n').unwrap_or(0),
                    };
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

    /// The string literals (contents) inside a byte range of the original text.
    fn strings_in(&self, range: Range<usize>) -> Vec<String> {
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
}

fn is_ident(b: u8) -> bool {
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

fn terraform_files() -> Vec<Tf> {
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

/// The one file defining `key = {` (or `[`) in code, and where the bracket opens.
fn find_assignment<'a>(files: &'a [Tf], key: &str) -> (&'a Tf, usize) {
    let found: Vec<_> = files.iter().filter_map(|f| f.assignment_open(key).map(|open| (f, open))).collect();
    assert_eq!(found.len(), 1, "expected exactly one `{key} = {{ ... }}` in terraform/, found {}", found.len());
    found[0]
}

/// `variable "name" { ... }`: the file and the range of its body.
fn variable_block<'a>(files: &'a [Tf], name: &str) -> (&'a Tf, Range<usize>) {
    let header = format!("variable \"{name}\"");
    for f in files {
        if let Some(at) = f.text.find(&header) {
            let open = at + f.code[at..].iter().position(|&b| b == b'{').expect("a block");
            return (f, open..f.closing(open) + 1);
        }
    }
    panic!("no {header} in terraform/")
}

/// What the URL map is generated from: each service's path templates and prefixes.
struct Service {
    templates: Vec<String>,
    prefixes: Vec<String>,
}

/// `local.services` (cloud_run.tf), in Terraform's iteration order (keys sorted).
fn services(files: &[Tf]) -> BTreeMap<String, Service> {
    let (tf, open) = find_assignment(files, "services");
    let mut out = BTreeMap::new();
    for (name, value) in tf.entries(open) {
        assert!(tf.code[value.start] == b'{', "local.services.{name} should be an object");
        let fields: HashMap<String, Range<usize>> = tf.entries(value.start).into_iter().collect();
        let list = |field: &str| {
            let range = fields.get(field).unwrap_or_else(|| panic!("local.services.{name} has no {field}"));
            tf.strings_in(range.clone())
        };
        let service = Service { templates: list("path_templates"), prefixes: list("path_prefixes") };
        assert!(out.insert(name.clone(), service).is_none(), "service {name} defined twice");
    }
    assert!(!out.is_empty(), "local.services is empty");
    out
}

/// The URL map's route rules as load_balancer.tf builds them: every template (services in key
/// order), then every prefix; first match wins.
enum Match {
    Template(Vec<String>),
    Prefix(String),
}

fn route_rules(services: &BTreeMap<String, Service>) -> Vec<(Match, String)> {
    let mut rules = Vec::new();
    for (name, s) in services {
        for t in &s.templates {
            let segments = t
                .trim_start_matches('/')
                .split('/')
                .map(|seg| match seg {
                    s if s.starts_with('{') && s.ends_with("=**}") => "**".to_string(),
                    s if s.starts_with('{') && s.ends_with('}') => "*".to_string(),
                    s => s.to_string(),
                })
                .collect();
            rules.push((Match::Template(segments), name.clone()));
        }
    }
    for (name, s) in services {
        for p in &s.prefixes {
            rules.push((Match::Prefix(p.clone()), name.clone()));
        }
    }
    rules
}

/// `*` is one non-empty segment; `**` (last) is taken as one or more segments, the stricter
/// reading, so a template set that routes correctly here also does if `**` matches zero.
fn template_matches(template: &[String], path: &str) -> bool {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    for (i, t) in template.iter().enumerate() {
        match t.as_str() {
            "**" => {
                return i == template.len() - 1 && segments.len() > i && segments[i..].iter().all(|s| !s.is_empty())
            }
            "*" if segments.get(i).is_some_and(|s| !s.is_empty()) => {}
            literal if segments.get(i) == Some(&literal) => {}
            _ => return false,
        }
    }
    segments.len() == template.len()
}

fn route<'a>(rules: &'a [(Match, String)], path: &str) -> Option<&'a str> {
    rules
        .iter()
        .find(|(m, _)| match m {
            Match::Template(t) => template_matches(t, path),
            Match::Prefix(p) => path.starts_with(p.as_str()),
        })
        .map(|(_, service)| service.as_str())
}

/// The function crates: every directory of functions/ except `local`.
fn function_crates() -> BTreeSet<String> {
    let dir = repo().join("functions");
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .filter(|name| name != "local")
        .collect()
}

/// The paths a function crate registers with `.route(...)`: literals, or `&format!(...)` over
/// `const NAME: &str = "..."` of the same file.
fn code_routes(function: &str) -> Vec<String> {
    let mut routes = Vec::new();
    let mut dirs = vec![repo().join("functions").join(function).join("src")];
    let mut sources = Vec::new();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                sources.push(path);
            }
        }
    }
    for path in sources {
        let src = read(&path);
        let consts: HashMap<String, String> = src
            .lines()
            .filter_map(|l| {
                let rest = l.trim().strip_prefix("const ")?;
                let (name, value) = rest.split_once(": &str = \"")?;
                Some((name.trim().to_string(), value.split('"').next()?.to_string()))
            })
            .collect();
        let mut rest = src.as_str();
        while let Some(at) = rest.find(".route(") {
            rest = rest[at + ".route(".len()..].trim_start();
            let (literal, formatted) = if let Some(r) = rest.strip_prefix('"') {
                (r, false)
            } else if let Some(r) = rest.strip_prefix("&format!(\"") {
                (r, true)
            } else {
                panic!("{}: cannot read the path of `.route({}`", path.display(), &rest[..rest.len().min(40)]);
            };
            let mut route = literal.split('"').next().unwrap().to_string();
            if formatted {
                for (name, value) in &consts {
                    route = route.replace(&format!("{{{name}}}"), value);
                }
                route = route.replace("{{", "{").replace("}}", "}");
            }
            routes.push(route);
        }
    }
    routes
}

/// A concrete request path for a route pattern: `{param}` segments filled in.
fn concrete(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|seg| match seg {
            "{org}" => "acme_corp",
            "{provider}" => "openai",
            s if s.starts_with('{') => "sample-1",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// DESIGN §2, one concrete request per route (including routes whose handlers are not written
/// yet, so the load balancer is ready for them).
const DESIGN_ROUTES: &[(&str, &str)] = &[
    ("bootstrap", "/api/v1/admin/bootstrap"),
    ("onboard", "/api/v1/organizations/dryrun"),
    ("onboard", "/api/v1/organizations/onboard"),
    ("onboard", "/api/v1/organizations/acme_corp"),
    ("onboard", "/api/v1/organizations/acme_corp/subscription"),
    ("onboard", "/api/v1/organizations/acme_corp/api-key/rotate"),
    ("onboard", "/api/v1/organizations/acme_corp/api-key/revoke"),
    ("integrations", "/api/v1/integrations/acme_corp"),
    ("integrations", "/api/v1/integrations/acme_corp/openai"),
    ("integrations", "/api/v1/integrations/acme_corp/openai/setup"),
    ("integrations", "/api/v1/integrations/acme_corp/openai/validate"),
    // A provider slug equal to a pricing book name is still an integration.
    ("integrations", "/api/v1/integrations/acme_corp/pricing"),
    ("pricing", "/api/v1/integrations/acme_corp/openai/pricing"),
    ("pricing", "/api/v1/integrations/acme_corp/openai/pricing/gpt-4o-mini"),
    ("pricing", "/api/v1/integrations/acme_corp/anthropic/pricing/reset"),
    ("pricing", "/api/v1/integrations/acme_corp/openai/subscriptions"),
    ("pricing", "/api/v1/integrations/acme_corp/openai/subscriptions/chatgpt-team"),
    ("pricing", "/api/v1/integrations/acme_corp/openai/subscriptions/reset"),
    ("pipelines-run", "/api/v1/pipelines/run/acme_corp/openai/usage_cost"),
    ("pipelines-run", "/api/v1/pipelines/run/acme_corp/gcp/cost/billing"),
    ("pipelines-run", "/api/v1/pipelines/runs/acme_corp"),
    ("pipelines-run", "/api/v1/pipelines/runs/acme_corp/0b7c2d7e-7d1f-4c55-9a43-2b8f3f7a1c11"),
    ("pipelines-run", "/api/v1/pipelines/push"),
    ("scheduler-tick", "/api/v1/scheduler/tick"),
];

#[test]
fn every_function_has_a_cloud_run_service() {
    let files = terraform_files();
    let in_terraform: BTreeSet<String> = services(&files).into_keys().collect();
    let crates = function_crates();
    assert_eq!(
        in_terraform, crates,
        "local.services in terraform/ must name exactly the function crates under functions/ (except local)"
    );
    for name in &crates {
        let manifest = read(&repo().join("functions").join(name).join("Cargo.toml"));
        assert!(
            manifest.contains(&format!("name = \"convergence-{name}\"")),
            "functions/{name} should build the binary convergence-{name} (the image name Terraform deploys)"
        );
    }
    let cloud_run = files.iter().find(|f| f.name == "cloud_run.tf").expect("terraform/cloud_run.tf");
    let flat = squash(&cloud_run.text);
    for needle in [
        "for_each = local.services",
        "/convergence-${each.key}:",
        "ingress = \"INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER\"",
        "path = \"/health\"",
        "container_port = local.container_port",
    ] {
        assert!(flat.contains(needle), "cloud_run.tf should contain `{needle}`");
    }
    assert!(flat.contains("container_port = 8080"), "the services listen on 8080 ($PORT, set by Cloud Run)");
}

#[test]
fn the_url_map_routes_every_path_to_the_function_that_serves_it() {
    let files = terraform_files();
    let services = services(&files);
    let lb = files.iter().find(|f| f.name == "load_balancer.tf").expect("terraform/load_balancer.tf");
    let flat = squash(&lb.text);
    // The generation the simulation below mirrors.
    for needle in [
        "route_rules = concat(local.template_routes, local.prefix_routes)",
        "for_each = local.route_rules",
        "priority = route_rules.key + 1",
        "path_template_match = route_rules.value.template",
        "prefix_match = route_rules.value.prefix",
        "service = google_compute_backend_service.service[route_rules.value.service].id",
        "for template in svc.path_templates",
        "for prefix in svc.path_prefixes",
        "load_balancing_scheme = \"EXTERNAL_MANAGED\"",
    ] {
        assert!(flat.contains(needle), "load_balancer.tf should contain `{needle}`");
    }
    assert!(!flat.contains("path_rule {"), "a path matcher takes route_rules or path_rule, not both");

    // Prefixes of different services must not overlap, or their order would matter.
    let prefixes: Vec<(&String, &String)> =
        services.iter().flat_map(|(n, s)| s.prefixes.iter().map(move |p| (n, p))).collect();
    for (a_service, a) in &prefixes {
        assert!(a.starts_with('/') && a.ends_with('/'), "prefix {a:?} should start and end with /");
        for (b_service, b) in &prefixes {
            assert!(
                a == b || !b.starts_with(a.as_str()),
                "prefixes {a:?} ({a_service}) and {b:?} ({b_service}) overlap"
            );
        }
    }
    for s in services.values() {
        for t in &s.templates {
            let operators = t.matches('*').count();
            assert!(t.len() <= 255 && operators <= 10, "path template {t:?} is beyond the URL map's limits");
        }
    }

    let rules = route_rules(&services);
    let mut checked = 0;
    let mut wrong = Vec::new();
    for function in function_crates() {
        for pattern in code_routes(&function) {
            if pattern == "/health" {
                continue;
            }
            let path = concrete(&pattern);
            if route(&rules, &path) != Some(function.as_str()) {
                wrong.push(format!("{pattern} (served by {function}) -> {:?}", route(&rules, &path)));
            }
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} routes found in functions/*/src; has the .route( style changed?");
    for (function, path) in DESIGN_ROUTES {
        if route(&rules, path) != Some(*function) {
            wrong.push(format!("{path} (DESIGN §2: {function}) -> {:?}", route(&rules, path)));
        }
    }
    assert!(wrong.is_empty(), "the URL map sends these paths to the wrong service:\n  {}", wrong.join("\n  "));

    // /health is every function's own; through the load balancer it falls to the default service.
    assert_eq!(route(&rules, "/health"), None);
    let default = lb
        .text
        .lines()
        .map(squash)
        .find_map(|l| l.strip_prefix("default_service = \"").and_then(|d| d.split('"').next()).map(str::to_string));
    let default = default.expect("local.default_service in load_balancer.tf");
    let default = default.as_str();
    assert!(services.contains_key(default), "default service {default:?} is not one of local.services");
}

/// How an environment variable gets its value in the .tf files.
#[derive(Debug)]
enum Value {
    Literal(String),
    Expression(String),
}

/// Every environment variable set in terraform/: upper-case keys in code (env maps such as
/// `local.service_env`) and `name = "UPPER"` (env blocks).
fn terraform_env(files: &[Tf]) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for f in files.iter().filter(|f| f.name != "variables.tf") {
        let code = &f.code;
        let mut i = 0;
        while i < code.len() {
            let starts_word = code[i].is_ascii_uppercase() && (i == 0 || !is_ident(code[i - 1]));
            if !starts_word {
                i += 1;
                continue;
            }
            let end = i + code[i..]
                .iter()
                .position(|&b| !(b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'))
                .unwrap();
            let mut j = end;
            while code[j] == b' ' {
                j += 1;
            }
            if code[j] == b'=' && code[j + 1] != b'=' && end - i > 1 {
                let raw = f.text[j + 1..].lines().next().unwrap().trim();
                out.push((f.text[i..end].to_string(), parse_value(raw)));
            }
            i = end;
        }
        let mut rest = f.text.as_str();
        while let Some(at) = rest.find("name") {
            let after = rest[at + 4..].trim_start();
            rest = &rest[at + 4..];
            let Some(value) = after.strip_prefix('=').map(str::trim_start).and_then(|v| v.strip_prefix('"')) else {
                continue;
            };
            let name = value.split('"').next().unwrap();
            if !name.is_empty() && name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_') {
                // The value is the env block's: describe it by what follows (value or value_source).
                let block: String = after.chars().take(400).collect();
                out.push((name.to_string(), Value::Expression(squash(&block))));
            }
        }
    }
    out
}

fn parse_value(raw: &str) -> Value {
    let raw = raw.trim_end_matches([',', ' ', '}']).trim();
    match raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(literal) if !literal.contains("${") && !literal.contains('"') => Value::Literal(literal.to_string()),
        _ => Value::Expression(raw.to_string()),
    }
}

/// The names `common/src/settings.rs` reads (outside its unit tests).
fn settings_names() -> BTreeSet<String> {
    let src = read(&repo().join("common/src/settings.rs"));
    let code = src.split("#[cfg(test)]").next().unwrap();
    let mut names = BTreeSet::new();
    for reader in ["get(\"", "flag(\"", "url(\"", "number(vars, \""] {
        for (at, _) in code.match_indices(reader) {
            let name = code[at + reader.len()..].split('"').next().unwrap();
            names.insert(name.to_string());
        }
    }
    for expected in ["ENVIRONMENT", "CA_ROOT_API_KEY", "KMS_KEY_NAME", "CORS_ORIGINS", "RATE_LIMIT_ENABLED", "PORT"] {
        assert!(names.contains(expected), "settings.rs reader not recognised: {expected} missing from {names:?}");
    }
    names
}

fn default_of(files: &[Tf], variable: &str) -> String {
    let (tf, body) = variable_block(files, variable);
    let text = tf.src(body);
    let line = text.lines().find(|l| l.trim_start().starts_with("default")).expect("a default");
    match parse_value(line.split_once('=').unwrap().1.trim()) {
        Value::Literal(v) => v,
        other => panic!("variable {variable}: default should be a literal, is {other:?}"),
    }
}

#[test]
fn terraform_sets_only_settings_the_code_reads_and_they_pass_production_validation() {
    let files = terraform_files();
    let known = settings_names();
    let env = terraform_env(&files);

    let mut seen = BTreeSet::new();
    for (name, _) in &env {
        assert!(seen.insert(name.clone()), "{name} is set twice in terraform/");
    }
    let unknown: Vec<&String> = seen.iter().filter(|n| !known.contains(*n)).collect();
    assert!(unknown.is_empty(), "terraform/ sets {unknown:?}, which common/src/settings.rs does not read");
    assert!(!seen.contains("PORT"), "PORT is reserved: Cloud Run sets it");

    // The names operators may add through var.extra_env.
    let (tf, body) = variable_block(&files, "extra_env");
    let extra: BTreeSet<String> = tf
        .strings_in(body)
        .into_iter()
        .filter(|s| s.len() > 1 && s.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'))
        .collect();
    assert!(!extra.is_empty(), "variable extra_env should list the names it accepts");
    for name in &extra {
        assert!(known.contains(name), "extra_env accepts {name}, which settings.rs does not read");
        assert!(!seen.contains(name), "extra_env accepts {name}, which Terraform already sets");
        assert!(name != "PORT", "extra_env must not accept PORT");
    }

    for required in [
        "ENVIRONMENT",
        "GCP_PROJECT_ID",
        "BIGQUERY_LOCATION",
        "WAREHOUSE_BACKEND",
        "KMS_BACKEND",
        "KMS_KEY_NAME",
        "QUEUE_BACKEND",
        "PUBSUB_TOPIC",
        "CORS_ORIGINS",
        "RATE_LIMIT_ENABLED",
        "CA_ROOT_API_KEY",
    ] {
        assert!(seen.contains(required), "terraform/ must set {required} (production requires it)");
    }

    // Build the environment a deployed service sees, with a sample for every expression.
    let environment = default_of(&files, "environment");
    assert_eq!(environment, "production", "var.environment should default to production");
    let mut vars = HashMap::new();
    for (name, value) in &env {
        let sample = match value {
            Value::Literal(v) => v.clone(),
            Value::Expression(expr) => match name.as_str() {
                "ENVIRONMENT" => {
                    assert_eq!(expr, "var.environment");
                    environment.clone()
                }
                "GCP_PROJECT_ID" => {
                    assert_eq!(expr, "var.project_id");
                    "acme-prod-1".into()
                }
                "BIGQUERY_LOCATION" => {
                    assert_eq!(expr, "var.bigquery_location");
                    default_of(&files, "bigquery_location")
                }
                "KMS_KEY_NAME" => {
                    // The full id (projects/…/cryptoKeys/…), not `.name` (just the key's name).
                    assert!(expr.starts_with("google_kms_crypto_key.") && expr.ends_with(".id"), "{expr}");
                    "projects/acme-prod-1/locations/us-central1/keyRings/convergence/cryptoKeys/secrets".into()
                }
                "PUBSUB_TOPIC" => {
                    // The full id (projects/…/topics/…) of the topic the push subscription reads.
                    assert!(expr.starts_with("google_pubsub_topic.") && expr.ends_with(".id"), "{expr}");
                    "projects/acme-prod-1/topics/convergence-pipeline-runs".into()
                }
                "CORS_ORIGINS" => {
                    assert_eq!(expr, "join(\",\", var.cors_origins)");
                    "https://app.example.com,https://admin.example.com".into()
                }
                "REQUEST_TIMEOUT_SECS" => {
                    assert!(expr.contains("timeout_seconds"), "{expr}");
                    "60".into()
                }
                "CA_ROOT_API_KEY" => {
                    assert!(
                        expr.contains("secret_key_ref {") && expr.contains("google_secret_manager_secret."),
                        "CA_ROOT_API_KEY must come from Secret Manager, not a literal: {expr}"
                    );
                    "r".repeat(48)
                }
                other => panic!("{other} = {expr}: add a sample value for it to this test"),
            },
        };
        vars.insert(name.clone(), sample);
    }
    let settings = Settings::from_vars(&vars, BackendDefaults::Cloud)
        .unwrap_or_else(|e| panic!("the environment terraform/ gives the services fails start-up validation:\n{e}"));
    assert!(settings.is_production());
    assert_eq!(settings.warehouse_backend, WarehouseBackend::BigQuery);
    assert_eq!(settings.kms_backend, KmsBackend::Gcp);
    assert_eq!(settings.queue_backend, QueueBackend::PubSub);
    assert_eq!(settings.pubsub_topic.as_deref(), Some("projects/acme-prod-1/topics/convergence-pipeline-runs"));
    assert!(settings.rate_limit_enabled && !settings.disable_auth && !settings.sandbox_providers);
    assert!(!settings.cors_origins.is_empty());
}

#[test]
fn terraform_fmt_is_clean() {
    let dir = repo().join("terraform");
    let output = match std::process::Command::new("terraform")
        .args(["fmt", "-check", "-recursive", "-diff", "-no-color"])
        .arg(&dir)
        .output()
    {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("note: `terraform` is not on PATH; skipping `terraform fmt -check` (the other checks ran)");
            return;
        }
        Err(e) => panic!("cannot run terraform: {e}"),
    };
    assert!(
        output.status.success(),
        "`terraform fmt -check -recursive terraform/` found unformatted files (run `terraform fmt -recursive terraform/`):\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Whitespace runs collapsed to one space, so checks do not depend on `terraform fmt` alignment.
fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
