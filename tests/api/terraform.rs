//! terraform/ kept in step with the code, by reading the .tf files as text (no provider, no
//! network; the reading is `terraform_text.rs`): every function crate has its Cloud Run service;
//! every route the code serves and every route of DESIGN §2 goes through the load balancer's URL
//! map to the function that serves it; every environment variable Terraform sets is one
//! `common/src/settings.rs` reads, and each service's set passes the production start-up
//! validation; the daily loop (Cloud Scheduler → tick → Pub/Sub → push) calls the routes the
//! code serves, with the audience and caller each service expects; every service is sized within
//! Cloud Run's limits for what it does (pipelines-run for runs); each service's BigQuery grants
//! are what its code uses; checkov passes with every skip justified; and `terraform fmt -check`
//! is clean (Terraform must be installed).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use common::settings::{BackendDefaults, KmsBackend, QueueBackend, Settings, WarehouseBackend};

use crate::terraform_text::{
    default_of, deployed_env, is_ident, local_literal, parse_value, read, repo, resource, service_env, services, sizes,
    squash, terraform_files, tfvars, variable_block, Samples, Service, Tf, Value, SIZING_FIELDS,
};

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

/// Every .rs file of a function crate's `src/`, with its text.
fn function_sources(function: &str) -> Vec<(std::path::PathBuf, String)> {
    let mut dirs = vec![repo().join("functions").join(function).join("src")];
    let mut sources = Vec::new();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = read(&path);
                sources.push((path, text));
            }
        }
    }
    sources
}

/// The routes a function crate registers with `.route(path, method_router)`: the path (a literal,
/// or `&format!(...)` over `const NAME: &str = "..."` of the same file) and the method router as
/// written (`post(run::push)`).
fn code_routes(function: &str) -> Vec<(String, String)> {
    let mut routes = Vec::new();
    for (path, src) in function_sources(function) {
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
            // The method router: after the path's comma, to the parenthesis closing `.route(`.
            let after_path = &rest[rest.find(',').map_or(rest.len(), |c| c + 1)..];
            let mut depth = 1usize;
            let end = after_path
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map_or(after_path.len(), |(i, _)| i);
            routes.push((route, squash(&after_path[..end])));
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
    ("pricing", "/api/v1/pricing/catalog/openai"),
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
        for (pattern, _) in code_routes(&function) {
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

/// Every environment variable name set in terraform/'s code: upper-case keys (env maps such as
/// `local.service_env`) and `name = "UPPER"` (env blocks). Each must be part of some service's
/// environment as `service_env` evaluates it, so nothing is set where that evaluation is blind.
fn env_names_in_code(files: &[Tf]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
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
                out.insert(f.text[i..end].to_string());
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
                out.insert(name.to_string());
            }
        }
    }
    out
}

/// The names `common/src/settings.rs` reads (outside its unit tests): every string literal there
/// that is a variable name (`get("PORT")`, `flag("DISABLE_AUTH", ...)`, `url("KMS_API_BASE", ...)`).
fn settings_names() -> BTreeSet<String> {
    let src = read(&repo().join("common/src/settings.rs"));
    let code = src.split("#[cfg(test)]").next().unwrap();
    let names: BTreeSet<String> = code
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            s.len() > 1
                && s.starts_with(|c: char| c.is_ascii_uppercase())
                && s.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        })
        .map(str::to_string)
        .collect();
    for expected in ["ENVIRONMENT", "CA_ROOT_API_KEY", "KMS_KEY_NAME", "CORS_ORIGINS", "RATE_LIMIT_ENABLED", "PORT"] {
        assert!(names.contains(expected), "settings.rs reader not recognised: {expected} missing from {names:?}");
    }
    names
}

/// What a deployment would put in for Terraform's references (a project of 6–30 characters, a
/// root key of at least 32).
fn samples() -> Samples {
    Samples {
        project_id: "acme-prod-1".into(),
        domain: "api.example.com".into(),
        cors_origins: "https://app.example.com,https://admin.example.com".into(),
        root_key: "r".repeat(48),
    }
}

#[test]
fn terraform_sets_only_settings_the_code_reads_and_they_pass_production_validation() {
    let files = terraform_files();
    let known = settings_names();
    let services = services(&files);

    let envs: BTreeMap<&String, BTreeMap<String, Value>> =
        services.keys().map(|name| (name, service_env(&files, name).into_iter().collect())).collect();
    let seen: BTreeSet<String> = envs.values().flat_map(|env| env.keys().cloned()).collect();
    for name in env_names_in_code(&files) {
        assert!(seen.contains(&name), "{name} is set in terraform/ outside the services' environment");
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

    for (service, env) in &envs {
        for required in [
            "ENVIRONMENT",
            "GCP_PROJECT_ID",
            "BIGQUERY_LOCATION",
            "WAREHOUSE_BACKEND",
            "KMS_BACKEND",
            "KMS_KEY_NAME",
            "QUEUE_BACKEND",
            "CORS_ORIGINS",
            "RATE_LIMIT_ENABLED",
            "CA_ROOT_API_KEY",
            "REQUEST_TIMEOUT_SECS",
        ] {
            assert!(
                env.contains_key(required),
                "terraform/ must set {required} for {service} (production requires it)"
            );
        }
    }

    assert_eq!(default_of(&files, "environment"), "production", "var.environment should default to production");
    for service in services.keys() {
        let vars = deployed_env(&files, service, &samples()).into_iter().collect();
        let settings = Settings::from_vars(&vars, BackendDefaults::Cloud)
            .unwrap_or_else(|e| panic!("the environment terraform/ gives {service} fails start-up validation:\n{e}"));
        assert!(settings.is_production());
        assert_eq!(settings.warehouse_backend, WarehouseBackend::BigQuery);
        assert_eq!(settings.kms_backend, KmsBackend::Gcp);
        assert_eq!(settings.queue_backend, QueueBackend::PubSub);
        assert!(settings.rate_limit_enabled && !settings.disable_auth && !settings.sandbox_providers);
        assert!(!settings.cors_origins.is_empty());
        assert_eq!(settings.request_timeout_secs, services[service].number("timeout_seconds"));
    }
}

/// The internal endpoints of the daily loop: the service, the resource that calls it, the block
/// holding the call and the attribute holding its URL.
const INTERNAL_CALLS: &[(&str, &str, &str, &str, &str)] = &[
    ("scheduler-tick", "google_cloud_scheduler_job", "tick", "http_target", "uri"),
    ("pipelines-run", "google_pubsub_subscription", "runs_push", "push_config", "push_endpoint"),
];

#[test]
fn the_daily_loop_calls_the_routes_the_code_serves_with_the_audience_and_caller_each_service_expects() {
    let files = terraform_files();
    let services = services(&files);
    let cloud_run = squash(&files.iter().find(|f| f.name == "cloud_run.tf").expect("cloud_run.tf").text);
    assert!(
        cloud_run.contains(
            "custom_audiences = contains(keys(local.oidc_audiences), each.key) ? [local.oidc_audiences[each.key]] : []"
        ),
        "each service with an internal endpoint should list its audience in custom_audiences (Cloud Run's IAM \
         check accepts only the run.app URL or a custom audience)"
    );

    for &(service, kind, name, target_block, url_attribute) in INTERNAL_CALLS {
        let what = format!("{kind}.{name}");
        let env: BTreeMap<String, Value> = service_env(&files, service).into_iter().collect();
        let (tf, body) = resource(&files, kind, name);
        let target = tf.block(body, target_block);

        // The route: the service's run.app URL and a path the service's code serves with POST.
        let url = tf.attribute(target, url_attribute).unwrap_or_else(|| panic!("{what} has no {url_attribute}"));
        let prefix = format!("\"${{google_cloud_run_v2_service.service[\"{service}\"].uri}}");
        let path = url
            .strip_prefix(prefix.as_str())
            .and_then(|p| p.strip_suffix('"'))
            .unwrap_or_else(|| panic!("{what}.{url_attribute} should be {service}'s URL and a path: {url}"));
        let served = code_routes(service);
        assert!(
            served.iter().any(|(p, methods)| p == path && serves_post(methods)),
            "{what} POSTs {path}, which functions/{service} does not serve with POST; it serves {served:?}"
        );
        assert!(DESIGN_ROUTES.contains(&(service, path)), "{path} should be one of DESIGN §2's routes of {service}");
        if kind == "google_cloud_scheduler_job" {
            assert_eq!(tf.attribute(target, "http_method"), Some("\"POST\""), "{what}");
            assert_eq!(tf.attribute(target, "body"), Some("base64encode(\"{}\")"), "{what}: the tick's body is {{}}");
        }

        // The token: the audience the service expects and the account it accepts.
        let oidc = tf.block(target, "oidc_token");
        let audience = parse_value(tf.attribute(oidc, "audience").expect("oidc_token.audience"));
        let expected_audience = Value::Expression(format!("local.oidc_audiences[\"{service}\"]"));
        assert_eq!(audience, expected_audience, "{what}: the token's audience should be {service}'s audience");
        assert_eq!(env.get("OIDC_AUDIENCE"), Some(&expected_audience), "{service}'s OIDC_AUDIENCE");
        let caller = parse_value(tf.attribute(oidc, "service_account_email").expect("service_account_email"));
        assert_eq!(env.get("OIDC_INVOKERS"), Some(&caller), "{service}'s OIDC_INVOKERS should be {what}'s caller");
        let Value::Expression(caller) = caller else { panic!("{what}: the caller should be a service account") };
        assert!(caller.starts_with("google_service_account.") && caller.ends_with(".email"), "{what}: {caller}");
        let deployed = deployed_env(&files, service, &samples());
        let audience = &deployed["OIDC_AUDIENCE"];
        assert!(audience.starts_with("https://api.example.com/"), "{service}'s audience: {audience}");

        // The caller may invoke the service through Cloud Run's IAM.
        let member = format!("\"serviceAccount:${{{caller}}}\"");
        let target_name = format!("google_cloud_run_v2_service.service[\"{service}\"].name");
        let granted = crate::terraform_text::resources(&files, "google_cloud_run_v2_service_iam_member")
            .into_iter()
            .any(|(f, body)| {
                f.attribute(body, "member") == Some(member.as_str())
                    && f.attribute(body, "name") == Some(target_name.as_str())
                    && f.attribute(body, "role") == Some("\"roles/run.invoker\"")
            });
        assert!(granted, "{caller} should have roles/run.invoker on {service}");

        // The run queue: the topic the subscription reads, and the right to publish on it.
        assert_eq!(env.get("QUEUE_BACKEND"), Some(&Value::Literal("pubsub".into())), "{service}");
        assert_eq!(
            env.get("PUBSUB_TOPIC"),
            Some(&Value::Expression("google_pubsub_topic.runs.id".into())),
            "{service}"
        );
        assert!(services[service].flag("publishes_runs"), "{service} publishes runs: publishes_runs should be true");
    }
    let (tf, body) = resource(&files, "google_pubsub_subscription", "runs_push");
    assert_eq!(tf.attribute(body, "topic"), Some("google_pubsub_topic.runs.id"));
    let (tf, body) = resource(&files, "google_pubsub_topic_iam_member", "runs_publisher");
    assert_eq!(tf.attribute(body, "topic"), Some("google_pubsub_topic.runs.name"));
    assert_eq!(tf.attribute(body, "role"), Some("\"roles/pubsub.publisher\""));
    assert_eq!(
        tf.attribute(body, "for_each").map(squash).as_deref(),
        Some("{ for name, svc in local.services : name => svc if svc.publishes_runs }")
    );
}

/// Whether a method router as written (`post(h)`, `get(a).post(b)`, `routing::post(h)`) takes POST.
fn serves_post(methods: &str) -> bool {
    methods.match_indices("post(").any(|(at, _)| {
        let before = methods[..at].chars().next_back();
        before.is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
    })
}

/// Memory as Cloud Run takes it (`512Mi`, `1Gi`), in MiB.
fn mebibytes(quantity: &str) -> u64 {
    match quantity.strip_suffix("Gi") {
        Some(gi) => gi.parse::<u64>().unwrap() * 1024,
        None => quantity.strip_suffix("Mi").expect("Mi or Gi").parse().unwrap(),
    }
}

/// Cloud Run's rules on one service's limits (the preconditions in cloud_run.tf say the same):
/// every problem, as text.
fn cloud_run_limit_problems(service: &str, size: &BTreeMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    let memory = mebibytes(&size["memory"]);
    let cpu: f64 = size["cpu"].parse().unwrap_or_else(|_| panic!("{service}: cpu {:?} is not a number", size["cpu"]));
    let number = |field: &str| -> u64 {
        size[field].parse().unwrap_or_else(|_| panic!("{service}: {field} {:?} is not a whole number", size[field]))
    };
    let (concurrency, min, max, timeout) =
        (number("concurrency"), number("min_instances"), number("max_instances"), number("timeout_seconds"));
    if memory > 512 && cpu < 1.0 {
        problems.push(format!("{service}: memory {memory} MiB above 512Mi needs cpu >= 1, not {cpu}"));
    }
    if concurrency > 1 && cpu < 1.0 {
        problems.push(format!("{service}: concurrency {concurrency} above 1 needs cpu >= 1, not {cpu}"));
    }
    if !(0.08..=8.0).contains(&cpu) || (cpu > 1.0 && ![2.0, 4.0, 6.0, 8.0].contains(&cpu)) {
        problems.push(format!("{service}: cpu {cpu} is not one Cloud Run offers"));
    }
    if memory < 128 || memory > 4096 * cpu.max(1.0) as u64 {
        problems.push(format!("{service}: memory {memory} MiB is outside 128 MiB .. 4 GiB per CPU"));
    }
    if !(1..=1000).contains(&concurrency) || max < 1 || min > max {
        problems.push(format!("{service}: concurrency {concurrency}, instances {min}..{max}"));
    }
    if !(1..=3600).contains(&timeout) {
        problems.push(format!("{service}: timeout {timeout} s is beyond Cloud Run's 3600 s"));
    }
    problems
}

#[test]
fn every_service_is_sized_for_what_it_does_within_cloud_runs_limits() {
    let files = terraform_files();
    let services = services(&files);
    let cloud_run = files.iter().find(|f| f.name == "cloud_run.tf").expect("cloud_run.tf");
    let flat = squash(&cloud_run.text);

    // Every entry carries every sizing field, and the service takes each from local.sizing: the
    // entry's value unless var.service_overrides sets it.
    let (tf, range) = crate::terraform_text::local(&files, "sizing");
    let sizing = squash(tf.src(range));
    assert!(sizing.starts_with("{ for name, svc in local.services : name => {"), "local.sizing: {sizing}");
    for field in SIZING_FIELDS {
        for (name, svc) in &services {
            assert!(svc.fields.contains_key(field), "local.services.{name} has no {field}");
        }
        let merged = format!("{field} = coalesce(try(var.service_overrides[name].{field}, null), svc.{field})");
        assert!(sizing.contains(&merged), "local.sizing should contain `{merged}`");
    }
    for needle in [
        "max_instance_request_concurrency = local.sizing[each.key].concurrency",
        "timeout = \"${local.sizing[each.key].timeout_seconds}s\"",
        "min_instance_count = local.sizing[each.key].min_instances",
        "max_instance_count = local.sizing[each.key].max_instances",
        "cpu = local.sizing[each.key].cpu",
        "memory = local.sizing[each.key].memory",
        "REQUEST_TIMEOUT_SECS = tostring(local.sizing[each.key].timeout_seconds)",
        "cpu_idle = true",
        "startup_cpu_boost = true",
    ] {
        assert!(flat.contains(needle), "cloud_run.tf should contain `{needle}`");
    }
    let (tf, body) = variable_block(&files, "service_overrides");
    let declared = squash(tf.src(body.clone()));
    for field in SIZING_FIELDS {
        assert!(declared.contains(&format!("{field} = optional(")), "var.service_overrides should accept {field}");
    }
    for name in services.keys() {
        assert!(declared.contains(&format!("\"{name}\"")), "var.service_overrides should accept the key {name}");
    }
    for retired in
        ["cpu", "memory", "run_memory", "run_concurrency", "max_concurrency", "min_instances", "max_instances"]
    {
        assert!(
            !files.iter().any(|f| f.text.contains(&format!("variable \"{retired}\""))),
            "variable {retired} is replaced by service_overrides"
        );
    }

    // Cloud Run's rules hold for the defaults and for each environment's overrides, and
    // cloud_run.tf checks them at plan time for whatever an operator sets.
    for precondition in [
        "local.sizing_numbers[each.key].memory_mib <= 512 || local.sizing_numbers[each.key].cpu_count >= 1",
        "local.sizing[each.key].concurrency == 1 || local.sizing_numbers[each.key].cpu_count >= 1",
        "!each.value.executes_runs || local.sizing[each.key].timeout_seconds > local.run_timeout_seconds",
        "!each.value.executes_runs || local.sizing_numbers[each.key].memory_mib >= local.sizing[each.key].concurrency * local.run_peak_mib + local.process_mib",
    ] {
        assert!(flat.contains(&format!("condition = {precondition}")), "cloud_run.tf should have the precondition `{precondition}`");
    }
    let run_peak_mib: u64 = local_literal(&files, "run_peak_mib").parse().unwrap();
    let process_mib: u64 = local_literal(&files, "process_mib").parse().unwrap();
    let run_timeout: u64 = local_literal(&files, "run_timeout_seconds").parse().unwrap();
    // docs/BENCHMARKS.md: every measured run peaked below 200 MB (server VmHWM).
    assert!(run_peak_mib >= 200, "local.run_peak_mib {run_peak_mib} is below the benchmarked run peak (200 MB)");
    let mut problems = Vec::new();
    for environment in [None, Some("staging"), Some("production")] {
        let label = environment.unwrap_or("defaults");
        for (name, size) in sizes(&files, environment) {
            problems.extend(cloud_run_limit_problems(&name, &size).into_iter().map(|p| format!("{label}: {p}")));
            let concurrency: u64 = size["concurrency"].parse().unwrap();
            let timeout: u64 = size["timeout_seconds"].parse().unwrap();
            if services[&name].flag("executes_runs") {
                let memory = mebibytes(&size["memory"]);
                if concurrency * run_peak_mib + process_mib > memory {
                    problems.push(format!(
                        "{label}: {name} takes {concurrency} runs x {run_peak_mib} MiB + {process_mib} MiB, more than its {memory} MiB"
                    ));
                }
                if concurrency > 8 {
                    problems.push(format!("{label}: {name} runs {concurrency} pipelines per instance (keep it low)"));
                }
                if timeout <= run_timeout {
                    problems.push(format!(
                        "{label}: {name}'s timeout {timeout} s does not outlast RUN_TIMEOUT_SECS {run_timeout}"
                    ));
                }
            } else if timeout > 300 {
                problems.push(format!("{label}: {name} serves small requests; a {timeout} s timeout is too long"));
            }
        }
    }
    assert!(problems.is_empty(), "sizing problems:\n  {}", problems.join("\n  "));

    // What each function does, in numbers: the small-request services take many requests per
    // instance; a tick is set-based, one per instance and a few instances; bootstrap is one
    // instance (its in-process lock serializes bootstraps).
    let defaults = sizes(&files, None);
    for name in ["onboard", "integrations", "pricing"] {
        assert!(
            defaults[name]["concurrency"].parse::<u64>().unwrap() >= 40,
            "{name} serves small requests: {:?}",
            defaults[name]
        );
    }
    assert_eq!(defaults["scheduler-tick"]["concurrency"], "1");
    assert!(defaults["scheduler-tick"]["max_instances"].parse::<u64>().unwrap() <= 5);
    // docs/BENCHMARKS.md: a tick over 17,000 due runs peaks at ~500 MB RSS.
    assert!(
        mebibytes(&defaults["scheduler-tick"]["memory"]) >= 768,
        "scheduler-tick's memory: {:?}",
        defaults["scheduler-tick"]
    );
    assert_eq!(defaults["bootstrap"]["max_instances"], "1");

    // terraform/README.md's table says the same sizes.
    let readme = read(&repo().join("terraform/README.md"));
    for (name, size) in &defaults {
        let row = format!(
            "| {name} | {} | {} | {} | {}–{} | {} s |",
            size["memory"],
            size["cpu"],
            size["concurrency"],
            size["min_instances"],
            size["max_instances"],
            size["timeout_seconds"]
        );
        assert!(readme.contains(&row), "terraform/README.md's sizing table should have `{row}`");
    }

    // Startup and liveness probes on /health, on every service (one container per service).
    let (tf, body) = resource(&files, "google_cloud_run_v2_service", "service");
    assert_eq!(tf.attribute(body, "for_each"), Some("local.services"));
    let container = tf.block(body, "containers");
    for probe in ["startup_probe", "liveness_probe"] {
        let block = tf.block(container, probe);
        let get = tf.block(block, "http_get");
        assert_eq!(tf.attribute(get, "path"), Some("\"/health\""), "{probe} should GET /health");
        assert_eq!(tf.attribute(get, "port"), Some("local.container_port"), "{probe}'s port");
    }
}

#[test]
fn pipelines_run_is_sized_for_runs_executed_inside_push_requests() {
    let files = terraform_files();
    let services = services(&files);
    for (name, svc) in &services {
        assert_eq!(svc.flag("executes_runs"), name == "pipelines-run", "executes_runs of {name}");
    }

    // Each request holds one run (peak < 200 MB, docs/BENCHMARKS.md): the runs one instance
    // takes at once, plus the process, must fit; and they are few, unlike the API services'.
    let run = &sizes(&files, None)["pipelines-run"];
    let concurrency: u64 = run["concurrency"].parse().unwrap();
    let memory = mebibytes(&run["memory"]);
    assert!(
        concurrency * 200 + 100 <= memory,
        "pipelines-run: {concurrency} runs x 200 MiB + 100 MiB does not fit its {memory} MiB"
    );
    let api_concurrency: u64 = services["onboard"].number("concurrency");
    assert!(concurrency < api_concurrency && concurrency <= 8, "runs per instance should stay low: {concurrency}");

    // lease < ack deadline <= 600 s: the redelivery after a dead worker's delivery can claim the
    // run again. run timeout < request timeout <= 3600 s: a run ends, and is recorded, inside its
    // own request, however many ack deadlines it outlasts (heartbeats keep its lease alive).
    let timeout = services["pipelines-run"].number("timeout_seconds");
    let (tf, body) = resource(&files, "google_pubsub_subscription", "runs_push");
    let ack: u64 = tf.attribute(body, "ack_deadline_seconds").expect("ack_deadline_seconds").parse().unwrap();
    for (setting, local) in [("RUN_LEASE_SECS", "run_lease_seconds"), ("RUN_TIMEOUT_SECS", "run_timeout_seconds")] {
        let values: BTreeSet<String> =
            services.keys().map(|s| deployed_env(&files, s, &samples())[setting].clone()).collect();
        assert_eq!(values.len(), 1, "every service should get the same {setting}: {values:?}");
        assert!(values.contains(local_literal(&files, local).as_str()), "{setting} should be local.{local}");
    }
    let lease: u64 = local_literal(&files, "run_lease_seconds").parse().unwrap();
    let run_timeout: u64 = local_literal(&files, "run_timeout_seconds").parse().unwrap();
    assert!(ack <= 600, "Pub/Sub's ack deadline is at most 600 s, not {ack}");
    assert!(lease < ack, "RUN_LEASE_SECS {lease} should be shorter than the ack deadline {ack}");
    assert!(timeout <= 3600, "Cloud Run's request timeout is at most 3600 s, not {timeout}");
    assert!(
        run_timeout < timeout,
        "RUN_TIMEOUT_SECS {run_timeout} should end a run before the request timeout {timeout}"
    );
}

/// The API each resource family needs enabled (a first apply fails at the first resource whose
/// API is off).
const RESOURCE_APIS: [(&str, &str); 10] = [
    ("google_artifact_registry_", "artifactregistry.googleapis.com"),
    ("google_bigquery_", "bigquery.googleapis.com"),
    ("google_kms_", "cloudkms.googleapis.com"),
    ("google_cloud_scheduler_", "cloudscheduler.googleapis.com"),
    ("google_compute_", "compute.googleapis.com"),
    ("google_service_account", "iam.googleapis.com"),
    ("google_pubsub_", "pubsub.googleapis.com"),
    ("google_cloud_run_", "run.googleapis.com"),
    ("google_secret_manager_", "secretmanager.googleapis.com"),
    ("google_project_iam_", "cloudresourcemanager.googleapis.com"),
];

#[test]
fn a_first_apply_finds_its_apis_registry_service_agent_and_certificate() {
    let files = terraform_files();
    let all: String = files.iter().map(|f| f.text.as_str()).collect::<Vec<_>>().join("\n");

    // Every API a resource needs is enabled.
    let (tf, body) = resource(&files, "google_project_service", "enabled");
    let enabled = tf.strings_in(body..tf.closing(body));
    for (prefix, api) in RESOURCE_APIS {
        let used = all.lines().any(|l| l.starts_with(&format!("resource \"{prefix}")));
        assert!(!used || enabled.iter().any(|e| e == api), "resources {prefix}* need {api} enabled: {enabled:?}");
    }
    assert!(enabled.iter().any(|e| e == "cloudresourcemanager.googleapis.com"), "{enabled:?}");

    // The images have a registry, its path is an output, and the services pull from it.
    let (tf, body) = resource(&files, "google_artifact_registry_repository", "images");
    assert_eq!(tf.attribute(body, "format"), Some("\"DOCKER\""));
    assert!(all.contains("output \"image_repository\""), "output image_repository");
    assert!(
        squash(&all).contains("image = \"${local.image_repository}/convergence-${each.key}:"),
        "images pulled from local.image_repository"
    );

    // The Pub/Sub service agent is made to exist before roles are granted to it.
    let (tf, body) = resource(&files, "google_project_service_identity", "pubsub");
    assert_eq!(tf.attribute(body, "service"), Some("\"pubsub.googleapis.com\""));
    assert_eq!(tf.attribute(body, "provider"), Some("google-beta"));
    assert!(all.contains("google_project_service_identity.pubsub.email"), "grants name the agent through the identity");
    assert!(!all.contains("@gcp-sa-pubsub.iam.gserviceaccount.com"), "no hand-built service agent address");

    // The managed certificate is named after the domain and replaced before it is destroyed.
    let (tf, body) = resource(&files, "google_compute_managed_ssl_certificate", "api");
    let name = tf.attribute(body, "name").unwrap_or_default();
    assert!(name.contains("sha256(var.domain)"), "certificate name should follow the domain: {name}");
    let lifecycle = tf.block(body, "lifecycle");
    assert_eq!(tf.attribute(lifecycle, "create_before_destroy"), Some("true"));
}

#[test]
fn environment_examples_set_declared_variables_and_every_required_one() {
    let files = terraform_files();
    let all: String = files.iter().map(|f| f.text.as_str()).collect::<Vec<_>>().join("\n");
    let declared: BTreeMap<String, bool> = all
        .lines()
        .filter_map(|l| l.strip_prefix("variable \"").and_then(|r| r.split('"').next()))
        .map(|name| {
            let (tf, body) = variable_block(&files, name);
            (name.to_string(), tf.attribute(body.start, "default").is_some())
        })
        .collect();
    for environment in ["staging", "production"] {
        let vars = tfvars(environment);
        let set: BTreeMap<String, String> =
            vars.entries(0).into_iter().map(|(k, r)| (k, vars.src(r).trim().trim_matches('"').to_string())).collect();
        for name in set.keys() {
            assert!(
                declared.contains_key(name),
                "{environment}.tfvars sets {name}, which variables.tf does not declare"
            );
        }
        // image_tag is given on the command line (the commit being deployed).
        for (name, has_default) in &declared {
            assert!(
                *has_default || name == "image_tag" || set.contains_key(name),
                "{environment}.tfvars must set the required variable {name}"
            );
        }
        assert_eq!(set.get("environment").map(String::as_str), Some(environment), "{environment}.tfvars");
    }
}

#[test]
fn terraform_fmt_is_clean() {
    let dir = repo().join("terraform");
    // A release needs this check: a machine without Terraform fails it rather than skipping it.
    let output = match std::process::Command::new("terraform")
        .args(["fmt", "-check", "-recursive", "-diff", "-no-color"])
        .arg(&dir)
        .output()
    {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`terraform` is not on PATH, so `terraform fmt -check` cannot run: install Terraform 1.11 \
             (https://developer.hashicorp.com/terraform/install; /usr/local/bin/terraform on the project's machines)"
        ),
        Err(e) => panic!("cannot run terraform: {e}"),
    };
    assert!(
        output.status.success(),
        "`terraform fmt -check -recursive terraform/` found unformatted files (run `terraform fmt -recursive terraform/`):\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// What each service does in BigQuery, read from its code (the handlers and the `common`
/// modules they call): (service, central dataset, per-organization datasets). "write": creates,
/// alters or writes tables there; "read": only reads; "create": creates the datasets (and owns
/// them); "none": never touches them. iam.tf must grant exactly this.
const BIGQUERY_USE: &[(&str, &str, &str)] = &[
    // Creates the central tables and views (bootstrap), audits itself; no org dataset.
    ("bootstrap", "write", "none"),
    // Profiles, keys, subscriptions, quotas, audit rows; creates `{org}_{env}` and drops the
    // dataset of a failed onboarding (onboarding.rs).
    ("onboard", "write", "create"),
    // Credentials and integration rows, audit; seeds the provider's price books (tables and
    // rows) in the org dataset (setup.rs -> common::pricebook::seed).
    ("integrations", "write", "write"),
    // Audit; reads and edits the org's price books (common::pricebook).
    ("pricing", "write", "write"),
    // Run and step logs, audit; a pipeline's tables and rows (and staging tables) in the org
    // dataset (common::pipeline::executor).
    ("pipelines-run", "write", "write"),
    // Appends the runs it submits to the run log (common::pipeline::schedule); no org dataset.
    ("scheduler-tick", "write", "none"),
];

/// Run notifications by email: the services that end runs (pipelines-run executes them,
/// scheduler-tick records expired ones) get the SMTP settings, only they may read the SMTP
/// password's secret, and with email set up their environment passes production validation.
#[test]
fn the_services_that_end_runs_can_send_email_and_only_they_read_the_smtp_password() {
    let files = terraform_files();
    let senders = ["pipelines-run", "scheduler-tick"];
    for name in services(&files).keys() {
        let env: BTreeMap<String, Value> = service_env(&files, name).into_iter().collect();
        let expected = senders.contains(&name.as_str());
        for setting in ["SMTP_HOST", "SMTP_PORT", "SMTP_TLS", "SMTP_USERNAME", "SMTP_FROM"] {
            assert_eq!(env.contains_key(setting), expected, "{name}: {setting}");
        }
    }
    let cloud_run = squash(&read(&repo().join("terraform/cloud_run.tf")));
    let password = squash(
        r#"dynamic "env" { for_each = var.smtp_username != "" && contains(keys(local.notify_env), each.key) ? ["SMTP_PASSWORD"] : []
           content { name = env.value value_source { secret_key_ref {
             secret = google_secret_manager_secret.smtp_password.secret_id version = "latest" } } } }"#,
    );
    assert!(cloud_run.contains(&password), "SMTP_PASSWORD must come from Secret Manager, for the senders alone");
    let notifications = squash(&read(&repo().join("terraform/notifications.tf")));
    assert!(
        notifications.contains(
            r#"resource "google_secret_manager_secret_iam_member" "smtp_password" { for_each = local.notify_env"#
        ),
        "only the senders may read the SMTP password"
    );
    assert_eq!(default_of(&files, "smtp_host"), "", "email is off until an operator sets smtp_host");

    // Email set up with the variables' defaults for port and TLS: production accepts it.
    for sender in senders {
        let mut vars: HashMap<String, String> = deployed_env(&files, sender, &samples()).into_iter().collect();
        for (name, value) in [
            ("SMTP_HOST", "smtp.example.com".to_string()),
            ("SMTP_PORT", default_of(&files, "smtp_port")),
            ("SMTP_TLS", default_of(&files, "smtp_tls")),
            ("SMTP_USERNAME", "apikey".into()),
            ("SMTP_PASSWORD", "smtp-password-from-secret-manager".into()),
            ("SMTP_FROM", "Convergence <notifications@example.com>".into()),
        ] {
            vars.insert(name.to_string(), value);
        }
        let settings = Settings::from_vars(&vars, BackendDefaults::Cloud)
            .unwrap_or_else(|e| panic!("{sender} with email set up fails start-up validation:\n{e}"));
        assert!(settings.smtp.is_some(), "{sender}");
    }
}

#[test]
fn each_service_gets_the_bigquery_access_it_uses_and_no_more() {
    let files = terraform_files();
    let services = services(&files);
    let all: String = files.iter().map(|f| f.text.as_str()).collect::<Vec<_>>().join("\n");
    let used: BTreeMap<&str, (&str, &str)> = BIGQUERY_USE.iter().map(|&(s, c, o)| (s, (c, o))).collect();
    assert_eq!(
        used.keys().map(|s| s.to_string()).collect::<BTreeSet<_>>(),
        services.keys().cloned().collect::<BTreeSet<_>>(),
        "BIGQUERY_USE should list every service"
    );
    for (name, svc) in &services {
        let (central, org) = used[name.as_str()];
        assert_eq!(svc.field("bigquery_central"), format!("\"{central}\""), "local.services.{name}.bigquery_central");
        assert_eq!(
            svc.field("bigquery_org_datasets"),
            format!("\"{org}\""),
            "local.services.{name}.bigquery_org_datasets"
        );
    }

    // No data role on the project: only Job User for all, BigQuery User (datasets.create) for
    // the creator of organization datasets.
    for role in ["dataEditor", "dataOwner", "dataViewer", "admin"] {
        let project_wide = crate::terraform_text::resources(&files, "google_project_iam_member")
            .into_iter()
            .any(|(tf, body)| squash(tf.src(body..tf.closing(body))).contains(&format!("roles/bigquery.{role}")));
        assert!(!project_wide, "no service should hold roles/bigquery.{role} on the project");
    }
    let (tf, range) = crate::terraform_text::local(&files, "bigquery_project_grants");
    let grants = squash(tf.src(range));
    for needle in [
        "{ for name, svc in local.services : \"${name} roles/bigquery.jobUser\" => { service = name, role = \"roles/bigquery.jobUser\" } }",
        "for name, svc in local.services : \"${name} roles/bigquery.user\" => { service = name, role = \"roles/bigquery.user\" } if svc.bigquery_org_datasets == \"create\"",
    ] {
        assert!(grants.contains(needle), "local.bigquery_project_grants should contain `{needle}`: {grants}");
    }
    assert_eq!(grants.matches("roles/").count(), 4, "only jobUser and user on the project: {grants}");
    let (tf, body) = resource(&files, "google_project_iam_member", "bigquery");
    assert_eq!(tf.attribute(body, "for_each"), Some("local.bigquery_project_grants"));

    // The central dataset: created here under the name bootstrap fills, in the services'
    // location, not emptied by a destroy under deletion protection.
    let bootstrap = read(&repo().join("configs/setup/bootstrap/config.yml"));
    let central = bootstrap.lines().find_map(|l| l.strip_prefix("dataset:")).expect("dataset: in the bootstrap config");
    let central = central.trim().trim_matches('"');
    let (tf, body) = resource(&files, "google_bigquery_dataset", "central");
    assert_eq!(tf.attribute(body, "dataset_id"), Some(format!("\"{central}\"").as_str()));
    assert_eq!(tf.attribute(body, "location"), Some("var.bigquery_location"));
    assert_eq!(tf.attribute(body, "delete_contents_on_destroy"), Some("!var.deletion_protection"));
    assert!(tf.blocks(body, "access").is_empty(), "access blocks would fight the dataset's IAM members");
    let (tf, body) = resource(&files, "google_bigquery_dataset_iam_member", "central");
    assert_eq!(tf.attribute(body, "for_each"), Some("local.services"));
    assert_eq!(tf.attribute(body, "dataset_id"), Some("google_bigquery_dataset.central.dataset_id"));
    assert_eq!(
        tf.attribute(body, "role").map(squash).as_deref(),
        Some(
            "each.value.bigquery_central == \"write\" ? \"roles/bigquery.dataEditor\" : \"roles/bigquery.dataViewer\""
        )
    );
    assert_eq!(
        tf.attribute(body, "member"),
        Some("\"serviceAccount:${google_service_account.service[each.key].email}\"")
    );

    // Organization datasets: the creator is told whom to grant what on each new dataset; the
    // others get nothing from Terraform (their access is on each dataset).
    let env_of = |service: &str| deployed_env(&files, service, &samples());
    let account = |service: &str| crate::terraform_text::runtime_account_email(&files, service, &samples());
    for (name, (_, org)) in &used {
        let env = env_of(name);
        if *org == "create" {
            assert_eq!(env.get("ORG_DATASET_OWNERS"), Some(&account(name)), "{name} owns the datasets it creates");
            for (setting, role) in [("ORG_DATASET_WRITERS", "write"), ("ORG_DATASET_READERS", "read")] {
                let expected: Vec<String> =
                    used.iter().filter(|(_, (_, o))| *o == role).map(|(s, _)| account(s)).collect();
                assert_eq!(
                    env.get(setting).map(String::as_str),
                    Some(expected.join(",").as_str()),
                    "{name}'s {setting}"
                );
            }
            let settings = Settings::from_vars(&env.clone().into_iter().collect(), BackendDefaults::Cloud).unwrap();
            assert_eq!(settings.org_dataset_access.owners, [account(name)]);
        } else {
            assert!(
                !env.keys().any(|k| k.starts_with("ORG_DATASET_")),
                "only the dataset creator reads ORG_DATASET_*: {name}"
            );
        }
    }
    assert_eq!(used.values().filter(|(_, o)| *o == "create").count(), 1, "one service creates org datasets");
    assert!(all.contains("lookup(local.org_dataset_env, each.key, {})"), "the creator's settings reach its service");
}

/// What each service does with the Cloud KMS key (its code and the `common` modules it calls):
/// "encrypt" seals what it stores, "decrypt" opens what it uses, "both", or None. iam.tf must
/// grant exactly the matching role: a service that can decrypt could read every secret sealed
/// with the key.
const KMS_USE: &[(&str, Option<&str>)] = &[
    ("bootstrap", None),
    // Seals the Slack webhook (PUT notifications); opens nothing, and keeps no copy of API keys.
    ("onboard", Some("encrypt")),
    // Seals provider credentials at setup; opens them to validate again (validate.rs).
    ("integrations", Some("both")),
    ("pricing", None),
    // Opens credentials to call providers, and webhooks to notify of runs.
    ("pipelines-run", Some("decrypt")),
    // Opens webhooks to notify of runs it ends (expired leases, submissions it cannot queue).
    ("scheduler-tick", Some("decrypt")),
];

#[test]
fn each_service_gets_the_half_of_the_kms_key_it_uses() {
    let files = terraform_files();
    let services = services(&files);
    let used: BTreeMap<&str, Option<&str>> = KMS_USE.iter().copied().collect();
    assert_eq!(
        used.keys().map(|s| s.to_string()).collect::<BTreeSet<_>>(),
        services.keys().cloned().collect::<BTreeSet<_>>(),
        "KMS_USE should list every service"
    );
    for (name, svc) in &services {
        let expected = used[name.as_str()].map_or("null".to_string(), |u| format!("\"{u}\""));
        assert_eq!(svc.field("kms"), expected, "local.services.{name}.kms");
        // A function whose own code seals something needs encrypt; one whose code does not, must
        // not have it.
        let sources: String = function_sources(name).into_iter().map(|(_, text)| text).collect();
        let seals = sources.contains(".encrypt(") || sources.contains("encrypt_webhook(");
        let can_seal = matches!(used[name.as_str()], Some("encrypt" | "both"));
        assert_eq!(seals, can_seal, "{name}: its code {} encrypt", if seals { "calls" } else { "never calls" });
    }
    let (tf, range) = crate::terraform_text::local(&files, "kms_roles");
    let roles = squash(tf.src(range));
    for needle in [
        "encrypt = \"roles/cloudkms.cryptoKeyEncrypter\"",
        "decrypt = \"roles/cloudkms.cryptoKeyDecrypter\"",
        "both = \"roles/cloudkms.cryptoKeyEncrypterDecrypter\"",
    ] {
        assert!(roles.contains(needle), "local.kms_roles should contain `{needle}`: {roles}");
    }
    let (tf, body) = resource(&files, "google_kms_crypto_key_iam_member", "service");
    assert_eq!(
        tf.attribute(body, "for_each").map(squash).as_deref(),
        Some("{ for name, svc in local.services : name => svc if svc.kms != null }")
    );
    assert_eq!(tf.attribute(body, "role"), Some("local.kms_roles[each.value.kms]"));
    assert_eq!(crate::terraform_text::resources(&files, "google_kms_crypto_key_iam_member").len(), 1, "one grant");
}

/// checkov (pinned, from PyPI through scripts/python-tool.sh) passes on terraform/, offline:
/// `--skip-download` and BC_SKIP_MAPPING keep it from calling the Prisma/Bridgecrew platform.
/// Every skip in the .tf files says why.
#[test]
fn checkov_passes_with_every_skip_justified() {
    let files = terraform_files();
    for f in &files {
        for (at, _) in f.text.match_indices("checkov:skip=") {
            let line = f.text[at..].lines().next().unwrap();
            let reason = line.split_once(':').and_then(|(_, rest)| rest.split_once(':')).map(|(_, r)| r.trim());
            assert!(
                reason.is_some_and(|r| r.len() >= 20),
                "{}: `{line}` should say why (checkov:skip=CKV_...: reason)",
                f.name
            );
        }
    }
    let output = std::process::Command::new("timeout")
        .arg("900")
        .arg(repo().join("scripts/python-tool.sh"))
        .args(["checkov==3.3.30", "checkov", "-d", "terraform", "--framework", "terraform", "--compact", "--quiet"])
        .args(["--skip-download", "--skip-results-upload"])
        .env("BC_SKIP_MAPPING", "TRUE")
        .env("LOG_LEVEL", "WARNING")
        .current_dir(repo())
        .output()
        .expect("run scripts/python-tool.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "checkov failed ({}):\n{stdout}\n{stderr}", output.status);
    let passed: u32 = stdout
        .split("Passed checks: ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("checkov printed no summary:\n{stdout}\n{stderr}"));
    assert!(passed >= 10, "checkov ran only {passed} checks:\n{stdout}");
    assert!(stdout.contains("Failed checks: 0,"), "{stdout}");
}
