//! Hard to misuse (issue 15): destructive and audit paths, CORS, names and slugs, the route
//! table, tried over HTTP as an attacker or a careless operator would.

use std::collections::BTreeSet;

use common::settings::Environment;
use common::warehouse::counting::StatementLog;
use common::warehouse::Params;
use convergence_tests::{onboard_body, Key, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::terraform_text::repo;

const BOOTSTRAP: &str = "/api/v1/admin/bootstrap";

async fn audit_rows(app: &TestApp, action: &str) -> Vec<common::warehouse::Row> {
    let t = app.state.central_table("org_audit_logs").unwrap();
    app.warehouse()
        .query(
            &format!(
                "SELECT actor_type, actor_id, status, request_id, client_request_id, details FROM {t} \
                 WHERE action = @action ORDER BY created_at"
            ),
            &Params::new().bind("action", action),
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn force_recreate_is_refused_in_staging_and_production_and_the_attempt_is_audited() {
    for environment in [Environment::Staging, Environment::Production] {
        let env = environment.as_str();
        let app = TestApp::spawn_in(environment, &[]).await;
        app.bootstrap().await;
        app.onboard("acme").await;
        for flag in ["force_recreate_dataset", "force_recreate_tables"] {
            let r = app.post(BOOTSTRAP, Key::Root, json!({ flag: true })).await;
            let message = r.assert_error(403, "forbidden");
            assert!(message.starts_with(&format!("{flag} is refused in {env}")), "{message}");
            assert!(message.contains("only in development"), "{message}");
        }
        // Nothing was dropped: the organization and its key are still there.
        assert_eq!(app.count("org_profiles", Some("acme")).await, 1, "{env}");
        assert_eq!(app.count("org_api_keys", Some("acme")).await, 1, "{env}");
        let refused: Vec<_> =
            audit_rows(&app, "bootstrap").await.into_iter().filter(|r| r["status"] == "FAILURE").collect();
        assert_eq!(refused.len(), 2, "{env}: each refusal is audited");
        assert_eq!(refused[0]["actor_id"], "root");
        // A plain bootstrap still works there.
        app.bootstrap().await;
    }
    // Development may still start over.
    let app = TestApp::spawn().await;
    app.bootstrap().await;
    app.onboard("acme").await;
    let r = app.post(BOOTSTRAP, Key::Root, json!({"force_recreate_tables": true})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(app.count("org_profiles", None).await, 0);
}

#[tokio::test]
async fn request_ids_are_the_servers_with_the_clients_kept_beside_in_audit_rows() {
    let app = TestApp::spawn().await;
    app.bootstrap().await;
    let onboard = |request_id: &'static str| {
        app.client
            .post(format!("{}/api/v1/organizations/onboard", app.base))
            .header("X-CA-Root-Key", convergence_tests::ROOT_KEY)
            .header("X-Request-ID", request_id)
            .json(&onboard_body("acme"))
            .send()
    };
    let r = TestApp::reply(onboard("client-chosen-1").await.unwrap()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let ours = r.headers["x-request-id"].to_str().unwrap().to_string();
    assert_ne!(ours, "client-chosen-1");
    assert!(uuid::Uuid::parse_str(&ours).is_ok(), "a server-generated UUID: {ours}");
    // A second request with the same client id still gets an id of its own (here a 409).
    let again = TestApp::reply(onboard("client-chosen-1").await.unwrap()).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_ne!(again.body["error"]["request_id"].as_str(), Some("client-chosen-1"));
    assert_ne!(again.body["error"]["request_id"].as_str(), Some(ours.as_str()));

    let rows = audit_rows(&app, "organization.onboard").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["request_id"].as_str(), Some(ours.as_str()));
    assert_eq!(rows[0]["client_request_id"], "client-chosen-1");
    assert_eq!((rows[0]["actor_type"].as_str(), rows[0]["actor_id"].as_str()), (Some("root"), Some("root")));
    // Without a client id the column is null.
    let bootstrap = audit_rows(&app, "bootstrap").await;
    assert!(bootstrap[0]["request_id"].is_string() && bootstrap[0]["client_request_id"].is_null());
}

#[tokio::test]
async fn cors_never_lets_a_browser_send_the_root_key() {
    let app = TestApp::spawn().await;
    let preflight = |headers: &'static str| {
        app.client
            .request(Method::OPTIONS, format!("{}/api/v1/admin/bootstrap", app.base))
            .header("Origin", "https://app.example.com")
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", headers)
            .send()
    };
    let allowed = |resp: &reqwest::Response| -> BTreeSet<String> {
        resp.headers()
            .get_all("access-control-allow-headers")
            .iter()
            .flat_map(|v| v.to_str().unwrap().split(','))
            .map(|h| h.trim().to_ascii_lowercase())
            .collect()
    };
    let root = preflight("x-ca-root-key,content-type").await.unwrap();
    assert!(!allowed(&root).contains("x-ca-root-key"), "{:?}", allowed(&root));
    let org = preflight("x-api-key,content-type").await.unwrap();
    assert_eq!(org.headers()["access-control-allow-origin"], "https://app.example.com");
    assert!(allowed(&org).contains("x-api-key"), "{:?}", allowed(&org));
}

#[tokio::test]
async fn names_refuse_bidirectional_and_zero_width_characters() {
    let app = TestApp::spawn().await;
    app.bootstrap().await;
    for (name, expected) in [
        ("Acme\u{202E}gnp.exe", "bidirectional control (U+202E)"),
        ("Acme\u{2067}Corp", "bidirectional control (U+2067)"),
        ("Acme\u{200F}", "bidirectional control (U+200F)"),
        ("Ac\u{200B}me", "zero-width character (U+200B)"),
        ("\u{FEFF}Acme", "zero-width character (U+FEFF)"),
    ] {
        let mut body = onboard_body("acme");
        body["company_name"] = json!(name);
        let r = app.post("/api/v1/organizations/onboard", Key::Root, body.clone()).await;
        let message = r.assert_error(400, "validation_failed");
        assert!(message.contains(&format!("company_name contains a {expected}")), "{message}");
        let dry = app.post("/api/v1/organizations/dryrun", Key::Root, body).await;
        assert_eq!(dry.body["valid"], false, "{}", dry.body);
    }
    assert_eq!(app.count("org_profiles", None).await, 0);
    // Letters of every script are names.
    let mut body = onboard_body("acme");
    body["company_name"] = json!("אקמה בע״מ — Société");
    assert_eq!(app.post("/api/v1/organizations/onboard", Key::Root, body).await.status, StatusCode::CREATED);
}

#[tokio::test]
async fn slugs_equal_to_a_fixed_path_segment_are_refused_at_onboarding() {
    let app = TestApp::spawn().await;
    app.bootstrap().await;
    let segments = common::http::routes::fixed_segments();
    let slug_shaped: Vec<&str> =
        segments.iter().copied().filter(|s| common::domain::OrgSlug::parse(s).is_ok()).collect();
    for expected in ["dryrun", "onboard", "organizations", "integrations", "pipelines", "push", "health"] {
        assert!(slug_shaped.contains(&expected), "{expected} missing from {slug_shaped:?}");
    }
    for slug in slug_shaped {
        let r = app.post("/api/v1/organizations/onboard", Key::Root, onboard_body(slug)).await;
        let message = r.assert_error(400, "validation_failed");
        assert!(message.contains("is a fixed segment of the API's paths"), "{slug}: {message}");
        let dry = app.post("/api/v1/organizations/dryrun", Key::Root, onboard_body(slug)).await;
        let check = dry.body["checks"].as_array().unwrap().iter().find(|c| c["check"] == "org_slug_format").unwrap();
        assert_eq!(check["passed"], false, "{slug}: {check}");
    }
    let r = app.post("/api/v1/organizations/onboard", Key::Root, onboard_body("dryrun")).await;
    assert!(r.message().contains("/api/v1/organizations/dryrun"), "names the route: {}", r.message());
    assert_eq!(app.count("org_profiles", None).await, 0);
}

/// The path each `.route(..)` call in `src` registers: a string literal, or `format!` of a
/// `BASE` constant declared in the same file.
pub(crate) fn routes_in_source(src: &str) -> Vec<String> {
    let base = src.split("const BASE: &str = \"").nth(1).and_then(|r| r.split('"').next());
    src.split(".route(")
        .skip(1)
        .map(|call| {
            let literal = call.split('"').nth(1).expect("a path literal in .route(..)");
            let path = match base {
                Some(base) if call.trim_start().starts_with("&format!") => literal.replace("{BASE}", base),
                _ => literal.to_string(),
            };
            path.replace("{{", "{").replace("}}", "}")
        })
        .collect()
}

#[tokio::test]
async fn the_route_table_is_exactly_the_routes_the_functions_serve() {
    let mut in_sources = BTreeSet::new();
    let functions = repo().join("functions");
    for entry in std::fs::read_dir(&functions).unwrap() {
        let lib = entry.unwrap().path().join("src/lib.rs");
        if let Ok(src) = std::fs::read_to_string(&lib) {
            in_sources.extend(routes_in_source(&src));
        }
    }
    for shared in ["common/src/http/server.rs", "common/src/http/openapi.rs"] {
        in_sources.extend(routes_in_source(&std::fs::read_to_string(repo().join(shared)).unwrap()));
    }
    let table: BTreeSet<String> = common::http::routes::API_ROUTES.iter().map(|r| r.to_string()).collect();
    assert_eq!(table, in_sources, "common/src/http/routes.rs API_ROUTES must list exactly the functions' routes");

    // And each is served (not the unknown-route fallback) by the app that merges them all.
    let app = TestApp::spawn().await;
    for route in common::http::routes::API_ROUTES {
        let path: String =
            route.split('/').map(|s| if s.starts_with('{') { "acme" } else { s }).collect::<Vec<_>>().join("/");
        let r = app.get(&path, Key::None).await;
        assert!(
            !(r.status == StatusCode::NOT_FOUND && r.message().starts_with("no such route")),
            "{route} is not served: {}",
            r.body
        );
    }
    let unknown = app.get("/api/v1/organisations/acme", Key::None).await;
    assert!(unknown.message().starts_with("no such route"), "the probe can fail: {}", unknown.body);
}

/// Statements that read `organizations.org_api_keys`: the key lookups that reached the warehouse.
fn key_lookups(log: &StatementLog) -> usize {
    log.snapshot().iter().filter(|s| s.touches("organizations", "org_api_keys")).count()
}

fn fake_key(i: usize) -> String {
    format!("acme_api_{:032x}", 0xdead_beef_0000_u64 as usize + i)
}

#[tokio::test]
async fn fresh_fake_keys_are_slowed_then_refused_and_stop_reaching_the_warehouse() {
    let log = StatementLog::new();
    let app = TestApp::spawn_counting(&[], log.clone()).await;
    app.bootstrap().await;
    let key = app.onboard("acme").await;
    log.reset();
    let mut statuses = Vec::new();
    let mut retry_after = Vec::new();
    for i in 0..120 {
        let r = app.get("/api/v1/organizations/acme", Key::Api(&fake_key(i))).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            r.assert_error(429, "rate_limited");
            retry_after.push(r.headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap());
        } else {
            r.assert_error(401, "unauthorized");
        }
        statuses.push(r.status.as_u16());
    }
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert!(statuses[..10].iter().all(|s| *s == 401), "the first attempts are answered 401: {statuses:?}");
    assert!(refused >= 100, "then refused: {refused} of 120 were 429: {statuses:?}");
    assert!(retry_after.iter().all(|s| (1..=10).contains(s)), "Retry-After: {retry_after:?}");
    // The burst (10), and at most one or two refilled at 6 a minute while the test ran.
    let lookups = key_lookups(&log);
    assert!((10..=12).contains(&lookups), "{lookups} warehouse lookups for 120 unknown keys");

    // Missing keys cost nothing and are not counted; a wrong root key counts like any failure.
    app.get("/api/v1/organizations/acme", Key::None).await.assert_error(401, "unauthorized");
    app.get("/api/v1/organizations/acme", Key::RootValue("not-the-root-key")).await.assert_error(429, "rate_limited");
    assert_eq!(key_lookups(&log), lookups, "nothing more was looked up");
    // A valid key that is already cached costs nothing and still works from that address; the
    // root key too (a neighbour guessing keys does not lock them out).
    assert_eq!(app.get("/api/v1/organizations/acme", Key::Api(&key)).await.status, StatusCode::OK);
    assert_eq!(app.get("/api/v1/organizations/acme", Key::Root).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_valid_key_costs_one_lookup_and_gives_its_attempt_back() {
    let log = StatementLog::new();
    let app =
        TestApp::spawn_counting(&[("AUTH_FAILURE_BURST", "2"), ("AUTH_FAILURES_PER_MINUTE", "1")], log.clone()).await;
    app.bootstrap().await;
    let mut created = Vec::new();
    for slug in ["acme", "globex", "initech"] {
        created.push((slug, app.onboard(slug).await));
    }
    // Read each organization once (its profile is cached), then forget the keys so each costs
    // exactly one lookup of org_api_keys.
    for (slug, key) in &created {
        assert_eq!(app.get(&format!("/api/v1/organizations/{slug}"), Key::Api(key)).await.status, StatusCode::OK);
    }
    app.state.auth.clear();
    log.reset();
    for (slug, key) in &created {
        let r = app.get(&format!("/api/v1/organizations/{slug}"), Key::Api(key)).await;
        assert_eq!(r.status, StatusCode::OK, "{slug}: valid keys never spend the budget: {}", r.body);
    }
    assert_eq!(key_lookups(&log), 3);
    // The budget of 2 is intact for failures.
    for i in 0..2 {
        app.get("/api/v1/organizations/acme", Key::Api(&fake_key(i))).await.assert_error(401, "unauthorized");
    }
    app.get("/api/v1/organizations/acme", Key::Api(&fake_key(2))).await.assert_error(429, "rate_limited");
}

#[tokio::test]
async fn the_per_address_limit_holds_whatever_x_forwarded_for_says() {
    // Locally (TRUSTED_PROXY_HOPS=0) the header is ignored: the socket peer is the client.
    let app = TestApp::spawn_with(&[("RATE_LIMIT_ADDRESS_PER_SECOND", "1"), ("RATE_LIMIT_ADDRESS_BURST", "5")]).await;
    let get =
        |forwarded: String| app.client.get(format!("{}/health", app.base)).header("X-Forwarded-For", forwarded).send();
    let mut statuses = Vec::new();
    for i in 0..8 {
        statuses.push(TestApp::reply(get(format!("198.51.100.{i}")).await.unwrap()).await);
    }
    assert!(statuses[..5].iter().all(|r| r.status == StatusCode::OK));
    let limited = statuses.last().unwrap();
    limited.assert_error(429, "rate_limited");
    let retry: u64 = limited.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");

    // Behind Google's load balancer (2 hops: <client>, <lb>): what the client wrote to the left
    // changes nothing; the address the load balancer appended is the key.
    let app = TestApp::spawn_with(&[
        ("TRUSTED_PROXY_HOPS", "2"),
        ("RATE_LIMIT_ADDRESS_PER_SECOND", "1"),
        ("RATE_LIMIT_ADDRESS_BURST", "5"),
    ])
    .await;
    let via_lb = |spoofed: String, client: &str| {
        app.client
            .get(format!("{}/health", app.base))
            .header("X-Forwarded-For", format!("{spoofed}, {client}, 34.120.0.1"))
            .send()
    };
    let mut statuses = Vec::new();
    for i in 0..8 {
        statuses.push(via_lb(format!("10.9.8.{i}, 192.0.2.{i}"), "203.0.113.7").await.unwrap().status());
    }
    assert!(statuses[..5].iter().all(|s| *s == StatusCode::OK), "{statuses:?}");
    assert_eq!(statuses[7], StatusCode::TOO_MANY_REQUESTS, "{statuses:?}");
    // Another client behind the same load balancer has its own budget.
    assert_eq!(via_lb("203.0.113.7".into(), "203.0.113.99").await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn the_per_identity_limit_follows_the_verified_key_not_the_header_text() {
    let app = TestApp::spawn_with(&[("RATE_LIMIT_PER_SECOND", "1"), ("RATE_LIMIT_BURST", "4")]).await;
    app.bootstrap().await;
    let key = app.onboard("acme").await;
    let other = app.onboard("globex").await;
    // Whatever else the requests carry (forwarded addresses, request ids), one key has one budget.
    let mut statuses = Vec::new();
    for i in 0..6 {
        let r = app
            .client
            .get(format!("{}/api/v1/organizations/acme", app.base))
            .header("X-API-Key", &key)
            .header("X-Forwarded-For", format!("198.51.100.{i}"))
            .header("X-Request-ID", format!("client-{i}"))
            .send()
            .await
            .unwrap();
        statuses.push(TestApp::reply(r).await);
    }
    assert!(statuses[..4].iter().all(|r| r.status == StatusCode::OK));
    let limited = statuses.last().unwrap();
    assert!(limited.assert_error(429, "rate_limited").contains("with this key"), "{}", limited.body);
    assert!(limited.headers.get("retry-after").is_some());
    // Another organization's key, from the same address, has its own budget; so has root.
    assert_eq!(app.get("/api/v1/organizations/globex", Key::Api(&other)).await.status, StatusCode::OK);
    assert_eq!(app.get("/api/v1/organizations/acme", Key::Root).await.status, StatusCode::OK);
    // Invalid key texts do not reach, or spend, the key's budget: they are failed authentications.
    for i in 0..3 {
        app.get("/api/v1/organizations/acme", Key::Api(&fake_key(i))).await.assert_error(401, "unauthorized");
    }
}

/// The organization of a request comes from one place, `common::http::OrgAccess` (the key checked
/// against the path's `{org}`, then the slug parsed): no handler checks the key against a slug or
/// parses one from its path itself, and none reads the organization directory around it. The
/// slugs parsed elsewhere are bodies: onboarding's request and the queue's push message.
#[test]
fn handlers_get_their_organization_only_from_the_org_extractor() {
    let parsed_from_bodies = ["onboard/src/request.rs", "pipelines-run/src/push.rs"];
    let mut found = Vec::new();
    let functions = repo().join("functions");
    let mut dirs = vec![functions.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let rel = path.strip_prefix(&functions).unwrap().to_string_lossy().replace('\\', "/");
            if !rel.contains("/src/") || path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let src = std::fs::read_to_string(&path).unwrap();
            for needle in [".require_org(", ".orgs.get(", "ApiPath<String>", "ApiPath<(String"] {
                if src.contains(needle) {
                    found.push(format!("{rel}: {needle}"));
                }
            }
            if src.contains("OrgSlug::parse(") && !parsed_from_bodies.contains(&rel.as_str()) {
                found.push(format!("{rel}: OrgSlug::parse("));
            }
        }
    }
    assert!(found.is_empty(), "use common::http::OrgAccess instead:\n{}", found.join("\n"));
}
