//! The API contract (issue 15 §7, §8): the OpenAPI document lists exactly the routes the routers
//! serve, each function serves its own part, every route answers each kind of key as its
//! documented security says, and schemathesis fuzzes the whole API of a real `convergence-local`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::http::openapi::{OIDC, ORG_KEY, ROOT_KEY as ROOT_SCHEME};
use common::http::routes::API_ROUTES;
use convergence_tests::{binaries_dir, free_port, onboard_body, Key, TestApp, ROOT_KEY};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::guards::routes_in_source;
use crate::terraform_text::repo;

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

/// (path, method) of every operation a document lists.
fn operations(spec: &Value) -> BTreeSet<(String, String)> {
    spec["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            METHODS.iter().filter(|m| item.get(**m).is_some()).map(move |m| (path.clone(), m.to_string()))
        })
        .collect()
}

/// A concrete path for a template: every parameter filled with `value(name)`.
fn fill(template: &str, value: impl Fn(&str) -> String) -> String {
    template
        .split('/')
        .map(|s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => value(name),
            None => s.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

async fn spec_of(base: &str) -> Value {
    let r = reqwest::get(format!("{base}/openapi.json")).await.expect("GET /openapi.json");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/json");
    r.json().await.expect("the spec is JSON")
}

#[tokio::test]
async fn the_spec_lists_exactly_the_routes_the_routers_serve() {
    let app = TestApp::spawn().await;
    let spec = spec_of(&app.base).await;
    assert_eq!(spec["openapi"], "3.1.0");

    // Paths, both ways, against the route table (itself checked against the `.route(..)` calls).
    let paths: BTreeSet<&str> = spec["paths"].as_object().unwrap().keys().map(String::as_str).collect();
    let table: BTreeSet<&str> = API_ROUTES.iter().copied().collect();
    assert_eq!(paths, table, "the spec's paths must be exactly API_ROUTES");

    // Methods, both ways, against what the router answers: a method it does not route is 405.
    let mut served = BTreeSet::new();
    for route in API_ROUTES {
        let path = fill(route, |_| "acme".into());
        for method in METHODS {
            let r = app
                .request(Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(), &path, Key::None, None)
                .await;
            if r.status != StatusCode::METHOD_NOT_ALLOWED {
                served.insert((route.to_string(), method.to_string()));
            }
        }
    }
    assert_eq!(operations(&spec), served, "the spec's operations must be exactly the methods the router serves");

    // Every operation has a documented success, the error shape for its errors, and the
    // security of the route's extractor.
    for (path, method) in operations(&spec) {
        let op = &spec["paths"][&path][&method];
        let responses = op["responses"].as_object().unwrap();
        assert!(responses.keys().any(|s| s.starts_with('2')), "{method} {path}: no 2xx documented");
        for (status, response) in responses.iter().filter(|(s, _)| !s.starts_with('2')) {
            let schema = &response["content"]["application/json"]["schema"]["$ref"];
            assert_eq!(schema, "#/components/schemas/ErrorBody", "{method} {path} {status}");
        }
        assert!(op["security"].is_array(), "{method} {path}: security must be explicit");
    }
}

/// Each function serves its own routes' spec, and the merged one is exactly their union.
#[tokio::test]
async fn each_function_serves_its_own_part_of_the_contract() {
    let app = TestApp::spawn().await;
    let merged = spec_of(&app.base).await;
    type App = fn(common::AppState) -> axum::Router;
    let functions: [(&str, App); 6] = [
        ("bootstrap", bootstrap::router),
        ("onboard", onboard::router),
        ("integrations", integrations::router),
        ("pricing", pricing::router),
        ("pipelines-run", pipelines_run::router),
        ("scheduler-tick", scheduler_tick::router),
    ];
    let mut union = BTreeSet::new();
    for (name, router) in functions {
        let listener = common::http::server::bind(0).await.unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let app_router = router(app.state.clone());
        let server = tokio::spawn(async move { common::http::serve(listener, app_router).await });
        let spec = spec_of(&base).await;
        server.abort();
        assert!(spec["info"]["title"].as_str().unwrap().contains(&format!("convergence-{name}")), "{}", spec["info"]);
        let source = std::fs::read_to_string(repo().join(format!("functions/{name}/src/lib.rs"))).unwrap();
        let mut expected: BTreeSet<String> = routes_in_source(&source).into_iter().collect();
        expected.extend(["/health".to_string(), "/openapi.json".to_string()]);
        let paths: BTreeSet<String> = spec["paths"].as_object().unwrap().keys().cloned().collect();
        assert_eq!(paths, expected, "{name}: its spec must list exactly its routes");
        union.extend(operations(&spec));
        // Two functions naming different schemas alike would have one overwrite the other in
        // the merged document.
        for (schema, definition) in spec["components"]["schemas"].as_object().unwrap() {
            assert_eq!(
                &merged["components"]["schemas"][schema], definition,
                "{name}: its schema {schema} differs from the merged document's (a name taken twice)"
            );
        }
    }
    assert_eq!(union, operations(&merged), "convergence-local's spec is the six functions' merged");
}

/// How a route's documented security says it answers a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Public,
    /// Google OIDC in staging and production; the root key in development (here).
    Internal,
    RootOnly,
    /// An organization's own routes: its key, or root.
    OwnOrg,
    /// Any valid key (the system-wide catalog).
    AnyKey,
}

fn access(path: &str, operation: &Value) -> Access {
    let schemes: BTreeSet<&str> = operation["security"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|requirement| requirement.as_object().unwrap().keys().map(String::as_str))
        .collect();
    if schemes.is_empty() {
        Access::Public
    } else if schemes.contains(OIDC) {
        Access::Internal
    } else if schemes == BTreeSet::from([ROOT_SCHEME]) {
        Access::RootOnly
    } else if schemes == BTreeSet::from([ORG_KEY, ROOT_SCHEME]) {
        if path.contains("{org}") {
            Access::OwnOrg
        } else {
            Access::AnyKey
        }
    } else {
        panic!("{path}: an unknown combination of security schemes {schemes:?}")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// 401: no valid credential.
    Unauthenticated,
    /// 403: a valid key that may not do this.
    Forbidden,
    /// Past authentication: a 2xx, or a 4xx about the request itself (not 401/403), never 5xx.
    Accepted,
}

fn expected(access: Access, key: &str) -> Outcome {
    use Outcome::*;
    match (access, key) {
        (Access::Public, _) => Accepted,
        (_, "root key") => Accepted,
        (_, "no key" | "revoked key") => Unauthenticated,
        (Access::Internal, _) => Unauthenticated,
        (Access::RootOnly, _) => Forbidden,
        (Access::OwnOrg, "organization key") => Accepted,
        (Access::OwnOrg, _) => Forbidden,
        (Access::AnyKey, _) => Accepted,
    }
}

/// Every route × {no key, another organization's key, a revoked key, the organization's key,
/// the root key}, generated from the route table and the documented security of each operation.
#[tokio::test]
async fn every_route_answers_each_kind_of_key_as_documented() {
    // Revoked keys are failed authentications: allow enough of them not to be throttled here.
    let app = TestApp::spawn_with(&[("AUTH_FAILURE_BURST", "10000"), ("AUTH_FAILURES_PER_MINUTE", "10000")]).await;
    app.bootstrap().await;
    let first = app.onboard("acme").await;
    let other = app.onboard("other_org").await;
    let rotated = app.post("/api/v1/organizations/acme/api-key/rotate", Key::Root, json!({})).await;
    assert_eq!(rotated.status, StatusCode::CREATED, "{}", rotated.body);
    let mut org_key = rotated.body["api_key"].as_str().unwrap().to_string();
    let revoked = first;

    let spec = spec_of(&app.base).await;
    let mut checked = 0;
    let mut wrong = Vec::new();
    let mut seen = BTreeMap::new();
    for route in API_ROUTES {
        let item = &spec["paths"][*route];
        for method in METHODS.iter().filter(|m| item.get(**m).is_some()) {
            let access = access(route, &item[*method]);
            *seen.entry(format!("{access:?}")).or_insert(0) += 1;
            let path = fill(route, |name| match name {
                "org" => "acme".into(),
                "provider" => "openai".into(),
                "domain" => "usage_cost".into(),
                _ => "none_such".into(),
            });
            let body = item[*method].get("requestBody").map(|_| json!({}));
            for key in ["no key", "another organization's key", "revoked key", "organization key", "root key"] {
                let presented = match key {
                    "no key" => Key::None,
                    "another organization's key" => Key::Api(&other),
                    "revoked key" => Key::Api(&revoked),
                    "organization key" => Key::Api(&org_key),
                    _ => Key::Root,
                };
                let method_ = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let r = app.request(method_, &path, presented, body.clone()).await;
                let got = match r.status.as_u16() {
                    401 => Outcome::Unauthenticated,
                    403 => Outcome::Forbidden,
                    s if s < 500 => Outcome::Accepted,
                    s => panic!("{method} {path} with {key}: {s} {}", r.body),
                };
                if got != expected(access, key) {
                    wrong.push(format!(
                        "{method} {path} ({access:?}) with {key}: expected {:?}, got {} {}",
                        expected(access, key),
                        r.status,
                        r.body["error"]["message"]
                    ));
                }
                checked += 1;
                if r.status.is_success() {
                    assert_documented_fields(&spec, &item[*method], r.status, &r.body, &format!("{method} {path}"));
                }
                // A call may have changed the organization's keys (rotation, revocation): keep
                // a working one, found the way a client would.
                if let Some(new) = r.body["api_key"].as_str() {
                    org_key = new.to_string();
                }
                let still = app.get("/api/v1/organizations/acme", Key::Api(&org_key)).await;
                if still.status == StatusCode::UNAUTHORIZED {
                    let again = app.post("/api/v1/organizations/acme/api-key/rotate", Key::Root, json!({})).await;
                    org_key = again.body["api_key"].as_str().expect("a new key after a revocation").to_string();
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{} answers differ from the documented security:\n{}", wrong.len(), wrong.join("\n"));
    // The walk covered every kind of route (the probe can fail).
    for kind in ["Public", "Internal", "RootOnly", "OwnOrg", "AnyKey"] {
        assert!(seen.contains_key(kind), "no {kind} route walked: {seen:?}");
    }
    assert!(checked >= 5 * 30, "{checked}");
}

/// A 2xx body has the fields its documented schema requires (the walk reaches responses the
/// fuzzing leaves out, such as key rotation's).
fn assert_documented_fields(spec: &Value, operation: &Value, status: StatusCode, body: &Value, what: &str) {
    let response = &operation["responses"][status.as_str()];
    assert!(response.is_object(), "{what}: {status} is not documented");
    let schema = &response["content"]["application/json"]["schema"];
    let Some(name) = schema["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/schemas/")) else { return };
    for field in spec["components"]["schemas"][name]["required"].as_array().into_iter().flatten() {
        let field = field.as_str().unwrap();
        assert!(body.get(field).is_some(), "{what}: {status} lacks {field}, required by {name}: {body}");
    }
}

/// The schemathesis version `make test` runs (PyPI, in .venv/schemathesis).
const SCHEMATHESIS: &str = "schemathesis==4.32.5";

struct Local(std::process::Child);

impl Drop for Local {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Schemathesis against a real `convergence-local` on a real port, with valid keys for every
/// operation (tests/api/schemathesis.toml says which, and which operations are left out and
/// why): no 5xx, every status code documented, every response body and header as documented.
#[tokio::test]
async fn schemathesis_finds_nothing_against_convergence_local() {
    let binary: PathBuf = binaries_dir().join("convergence-local");
    let data_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let child = std::process::Command::new(&binary)
        .current_dir(repo())
        .env("PORT", port.to_string())
        .env("DATA_DIR", data_dir.path())
        .env("CA_ROOT_API_KEY", ROOT_KEY)
        .env("SCHEDULER_INTERVAL", "0")
        // Thousands of requests from one address in seconds: the limits would answer most of
        // them 429, leaving the handlers untested (the limits have tests of their own).
        .env("RATE_LIMIT_ENABLED", "false")
        .env("AUTH_FAILURE_BURST", "100000")
        .env("AUTH_FAILURES_PER_MINUTE", "100000")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e} (make test builds it)", binary.display()));
    let _local = Local(child);
    let client = reqwest::Client::new();
    let started = Instant::now();
    while client.get(format!("{base}/health")).send().await.map(|r| r.status() != StatusCode::OK).unwrap_or(true) {
        assert!(started.elapsed() < Duration::from_secs(30), "convergence-local did not answer /health");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let root = |req: reqwest::RequestBuilder| req.header("X-CA-Root-Key", ROOT_KEY);
    let r = root(client.post(format!("{base}/api/v1/admin/bootstrap"))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = root(client.post(format!("{base}/api/v1/organizations/onboard")))
        .json(&onboard_body("acme"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let org_key = r.json::<Value>().await.unwrap()["api_key"].as_str().unwrap().to_string();
    // An integration, so the provider's books and runs have something to work on.
    let r = client
        .post(format!("{base}/api/v1/integrations/acme/openai/setup"))
        .header("X-API-Key", &org_key)
        .json(&json!({"credential": "sk-admin-sandbox-acme"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    // A run, so a run's own route answers 200 too.
    let yesterday = (chrono::Utc::now().date_naive() - chrono::Days::new(1)).to_string();
    let r = client
        .post(format!("{base}/api/v1/pipelines/run/acme/openai/usage_cost"))
        .header("X-API-Key", &org_key)
        .json(&json!({"date": yesterday}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let run_id = r.json::<Value>().await.unwrap()["run_id"].as_str().unwrap().to_string();

    let started = Instant::now();
    // Hypothesis keeps caches in its working directory: a temporary one, not the clone.
    let scratch = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(repo().join("scripts/python-tool.sh"))
        .current_dir(scratch.path())
        .args([SCHEMATHESIS, "schemathesis", "--config-file"])
        .arg(repo().join("tests/api/schemathesis.toml"))
        .arg("run")
        .arg(format!("{base}/openapi.json"))
        .env("ORG_KEY", &org_key)
        .env("ROOT_KEY", ROOT_KEY)
        .env("RUN_ID", &run_id)
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("scripts/python-tool.sh runs schemathesis");
    let report = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "schemathesis found problems:\n{report}");
    // It really tested: the summary counts the generated cases.
    assert!(report.contains(" generated, ") && report.contains(" passed"), "{report}");
    eprintln!("schemathesis took {:?}", started.elapsed());
}

/// Found by schemathesis: serde's derived structs also read a JSON array of their fields in
/// order, so `[null, null]` was taken as a notifications update. A body is a JSON object; an
/// optional body may be absent or `null`.
#[tokio::test]
async fn bodies_are_json_objects_and_an_optional_one_may_be_null() {
    let app = TestApp::spawn().await;
    app.bootstrap().await;
    let key = app.onboard("acme").await;
    for body in [json!([null, null]), json!(["a@example.com"]), json!("text"), json!(1)] {
        let r = app.put("/api/v1/organizations/acme/notifications", Key::Api(&key), body.clone()).await;
        let message = r.assert_error(400, "invalid_request");
        assert!(message.contains("expected a JSON object"), "{body}: {message}");
    }
    let r = app.put("/api/v1/organizations/acme/notifications", Key::Api(&key), json!({"triggers": []})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // An optional body: absent and null both mean the defaults; an array is still refused.
    let tick = "/api/v1/scheduler/tick";
    assert_eq!(app.request(Method::POST, tick, Key::Root, None).await.status, StatusCode::OK);
    assert_eq!(app.post(tick, Key::Root, Value::Null).await.status, StatusCode::OK);
    app.post(tick, Key::Root, json!([])).await.assert_error(400, "invalid_request");
}

/// The schema a local `$ref` names (`#/components/schemas/X`), followed to the end; a `$ref`
/// to nothing fails.
fn resolve<'a>(spec: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let name = reference.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("$ref {reference}"));
            let target = &spec["components"]["schemas"][name];
            assert!(target.is_object(), "$ref {reference} names no schema");
            resolve(spec, target)
        }
        None => schema,
    }
}

/// An object schema that says nothing of its fields: no properties, no schema of additional
/// properties, no composition (what a client generator can only type as "any object").
fn is_untyped_object(schema: &Value) -> bool {
    let is_object = match &schema["type"] {
        Value::String(t) => t == "object",
        Value::Array(types) => types.iter().any(|t| t == "object"),
        _ => false,
    };
    let typed = ["properties", "additionalProperties", "oneOf", "anyOf", "allOf", "$ref", "enum", "const"]
        .iter()
        .any(|k| schema.get(*k).is_some());
    is_object && !typed
}

/// Every object schema a body reaches (through `$ref`s, properties, items, compositions) that
/// is untyped, as `what` paths.
fn untyped_objects(spec: &Value, schema: &Value, what: String, seen: &mut BTreeSet<String>, found: &mut Vec<String>) {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        if seen.insert(reference.to_string()) {
            untyped_objects(spec, resolve(spec, schema), format!("{what} ({reference})"), seen, found);
        }
        return;
    }
    if is_untyped_object(schema) {
        found.push(what.clone());
    }
    for (name, property) in schema["properties"].as_object().into_iter().flatten() {
        untyped_objects(spec, property, format!("{what}.{name}"), seen, found);
    }
    for key in ["items", "additionalProperties"] {
        if schema[key].is_object() {
            untyped_objects(spec, &schema[key], format!("{what}.{key}"), seen, found);
        }
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        for (i, part) in schema[key].as_array().into_iter().flatten().enumerate() {
            untyped_objects(spec, part, format!("{what}.{key}[{i}]"), seen, found);
        }
    }
}

/// Issue 15 §7: a client generator gets the exact fields of every body. No request body and no
/// 2xx body is (or holds) an object with no documented fields, and every `$ref` resolves.
#[tokio::test]
async fn every_body_has_a_typed_schema() {
    let app = TestApp::spawn().await;
    let spec = spec_of(&app.base).await;
    let mut found = Vec::new();
    let mut bodies = 0;
    for (path, method) in operations(&spec) {
        let op = &spec["paths"][&path][&method];
        let mut schemas: Vec<(String, &Value)> = Vec::new();
        for (media, content) in op["requestBody"]["content"].as_object().into_iter().flatten() {
            schemas.push((format!("{method} {path} request {media}"), &content["schema"]));
        }
        for (status, response) in op["responses"].as_object().unwrap().iter().filter(|(s, _)| s.starts_with('2')) {
            for (media, content) in response["content"].as_object().into_iter().flatten() {
                schemas.push((format!("{method} {path} {status} {media}"), &content["schema"]));
            }
        }
        for (what, schema) in schemas {
            bodies += 1;
            assert!(schema.is_object(), "{what}: no schema");
            untyped_objects(&spec, schema, what, &mut BTreeSet::new(), &mut found);
        }
    }
    assert!(found.is_empty(), "bodies with untyped objects (document their fields):\n{}", found.join("\n"));
    assert!(bodies >= 40, "{bodies}");
    // The check itself: a bare object is found, a typed one is not.
    assert!(is_untyped_object(&json!({"type": "object"})));
    assert!(is_untyped_object(&json!({"type": ["object", "null"], "description": "x"})));
    assert!(!is_untyped_object(&json!({"type": "object", "properties": {"a": {"type": "string"}}})));
    assert!(!is_untyped_object(&json!({"type": "object", "additionalProperties": {"type": "string"}})));
}

/// The responses checked against the spec by [`validate`]: what, the operation, and the reply.
struct Answers {
    spec: Value,
    checked: Vec<Value>,
}

impl Answers {
    /// Records a reply of `method path_template` (its 2xx expected) for [`Answers::validate`].
    fn add(&mut self, method: &str, template: &str, reply: &convergence_tests::Reply, what: &str) {
        assert!(reply.status.is_success(), "{what}: {} {}", reply.status, reply.body);
        let status = reply.status.as_str();
        let schema =
            &self.spec["paths"][template][method]["responses"][status]["content"]["application/json"]["schema"];
        assert!(schema.is_object(), "{what}: {method} {template} documents no {status} body");
        self.checked.push(json!({"what": what, "schema": schema, "body": reply.body}));
    }

    /// Validates every recorded body against its documented schema (JSON Schema 2020-12, formats
    /// too) with the validator schemathesis uses, in schemathesis's pinned venv.
    async fn validate(self) {
        const SCRIPT: &str = r#"
import json, sys, jsonschema_rs
data = json.load(sys.stdin)
problems = []
for case in data["checked"]:
    schema = dict(case["schema"])
    schema["components"] = data["components"]
    validator = jsonschema_rs.Draft202012Validator(schema, validate_formats=True)
    for error in validator.iter_errors(case["body"]):
        problems.append(case["what"] + ": " + str(error).splitlines()[0] + " at " + "/".join(map(str, error.instance_path)))
print("\n".join(problems))
print("validated", len(data["checked"]))
sys.exit(1 if problems else 0)
"#;
        let input = json!({"components": self.spec["components"], "checked": self.checked});
        let scratch = tempfile::tempdir().unwrap();
        let mut child = tokio::process::Command::new(repo().join("scripts/python-tool.sh"))
            .current_dir(scratch.path())
            .args([SCHEMATHESIS, "python", "-c", SCRIPT])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("scripts/python-tool.sh runs python");
        let mut stdin = child.stdin.take().unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut stdin, input.to_string().as_bytes()).await.unwrap();
        drop(stdin);
        let out = child.wait_with_output().await.unwrap();
        let report = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "answers that do not conform to the spec:\n{report}");
        assert!(report.contains(&format!("validated {}", input["checked"].as_array().unwrap().len())), "{report}");
    }
}

/// The answers whose schemas are generated or hand-described (the book entries from the configs,
/// the reset, repricing and import reports, a run with its steps) conform to the spec: real
/// answers of a real flow, validated as schemathesis validates them, with the formats (dates,
/// timestamps) and the decimal patterns. On both backends: the rows' values are each backend's.
#[tokio::test]
async fn real_answers_conform_to_their_documented_schemas() {
    real_answers_conform(TestApp::spawn().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn real_answers_conform_to_their_documented_schemas_on_bigquery() {
    real_answers_conform(TestApp::spawn_bigquery(&[]).await).await;
}

async fn real_answers_conform(app: TestApp) {
    app.bootstrap().await;
    let key = app.onboard("acme").await;
    let key = Key::Api(&key);
    let setup =
        app.post("/api/v1/integrations/acme/openai/setup", key, json!({"credential": "sk-admin-sandbox-acme"})).await;
    assert_eq!(setup.status, StatusCode::CREATED, "{}", setup.body);
    let mut answers = Answers { spec: spec_of(&app.base).await, checked: Vec::new() };
    let day = |offset: i64| (chrono::Utc::now().date_naive() + chrono::Duration::days(offset)).to_string();
    const BOOK: &str = "/api/v1/integrations/{org}/{provider}";
    const OPENAI: &str = "/api/v1/integrations/acme/openai";

    // The pricing book: a model of its own, a catalog model overridden, each changed and ended.
    let price = json!({"model_id": "in-house-1", "input_per_1m": "1.5", "output_per_1m": 6, "notes": "ours",
                       "long_context_threshold_tokens": 200000, "effective_from": day(-10)});
    let r = app.post(&format!("{OPENAI}/pricing"), key, price).await;
    answers.add("post", &format!("{BOOK}/pricing"), &r, "a price added");
    assert_eq!(r.body["source"], "override");
    let r = app.put(&format!("{OPENAI}/pricing/in-house-1"), key, json!({"output_per_1m": "6.25"})).await;
    answers.add("put", &format!("{BOOK}/pricing/{{model_id}}"), &r, "an override changed");
    let r = app.put(&format!("{OPENAI}/pricing/gpt-4o"), key, json!({"input_per_1m": "2.00"})).await;
    answers.add("put", &format!("{BOOK}/pricing/{{model_id}}"), &r, "a catalog price overridden");
    assert_eq!(r.body["previous"]["source"], "catalog", "{}", r.body);
    for query in ["", "?history=true", "?model=gpt-4o"] {
        let r = app.get(&format!("{OPENAI}/pricing{query}"), key).await;
        answers.add("get", &format!("{BOOK}/pricing"), &r, &format!("the pricing list{query}"));
    }
    let r = app.get("/api/v1/pricing/catalog/openai?history=true", key).await;
    answers.add("get", "/api/v1/pricing/catalog/{provider}", &r, "the catalog");
    let r = app.request(Method::DELETE, &format!("{OPENAI}/pricing/in-house-1"), key, None).await;
    answers.add("delete", &format!("{BOOK}/pricing/{{model_id}}"), &r, "a price ended");
    let r = app.get(&format!("{OPENAI}/pricing/repricing"), key).await;
    answers.add("get", &format!("{BOOK}/pricing/repricing"), &r, "the repricing report");
    let r = app.request(Method::POST, &format!("{OPENAI}/pricing/reset"), key, None).await;
    answers.add("post", &format!("{BOOK}/pricing/reset"), &r, "the pricing book reset");

    // The subscriptions book.
    let plan = json!({"plan_name": "team_plan", "plan_type": "seat", "seat_price_monthly": "25", "min_seats": 2,
                      "billing_cycle": "monthly", "effective_from": day(-5)});
    let r = app.post(&format!("{OPENAI}/subscriptions"), key, plan).await;
    answers.add("post", &format!("{BOOK}/subscriptions"), &r, "a plan added");
    let r = app.put(&format!("{OPENAI}/subscriptions/team_plan"), key, json!({"seats": 12})).await;
    answers.add("put", &format!("{BOOK}/subscriptions/{{plan_name}}"), &r, "a plan changed");
    let r = app.get(&format!("{OPENAI}/subscriptions?history=true"), key).await;
    answers.add("get", &format!("{BOOK}/subscriptions"), &r, "the subscriptions list");
    let r = app.request(Method::DELETE, &format!("{OPENAI}/subscriptions/team_plan"), key, None).await;
    answers.add("delete", &format!("{BOOK}/subscriptions/{{plan_name}}"), &r, "a plan ended");
    let r = app.post(&format!("{OPENAI}/subscriptions/reset"), key, json!({"effective_from": day(0)})).await;
    answers.add("post", &format!("{BOOK}/subscriptions/reset"), &r, "the subscriptions book reset");

    // The catalog import: a dry run, then written.
    let file = std::fs::read_to_string(repo().join("tests/fixtures/litellm/model_prices_excerpt.json")).unwrap();
    for query in ["dry_run=true", "force=true"] {
        let r = app
            .client
            .post(format!("{}/api/v1/pricing/catalog/import?{query}&effective_from={}", app.base, day(1)))
            .header("X-CA-Root-Key", ROOT_KEY)
            .header("Content-Type", "application/json")
            .body(file.clone())
            .send()
            .await
            .unwrap();
        let r = TestApp::reply(r).await;
        answers.add("post", "/api/v1/pricing/catalog/import", &r, &format!("the import ({query})"));
    }

    // A run with its steps, and the run list.
    let r = app.post("/api/v1/pipelines/run/acme/openai/usage_cost", key, json!({"date": day(-1)})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let run_id = r.body["run_id"].as_str().unwrap().to_string();
    let mut run = app.get(&format!("/api/v1/pipelines/runs/acme/{run_id}"), key).await;
    for _ in 0..1200 {
        if matches!(run.body["status"].as_str(), Some("SUCCESS" | "FAILED")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        run = app.get(&format!("/api/v1/pipelines/runs/acme/{run_id}"), key).await;
    }
    assert_eq!(run.body["status"], "SUCCESS", "{}", run.body);
    assert!(!run.body["steps"].as_array().unwrap().is_empty(), "{}", run.body);
    answers.add("get", "/api/v1/pipelines/runs/{org}/{run_id}", &run, "a finished run");
    let r = app.get("/api/v1/pipelines/runs/acme", key).await;
    answers.add("get", "/api/v1/pipelines/runs/{org}", &r, "the run list");

    answers.validate().await;
}
