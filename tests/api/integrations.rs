//! Provider credentials: setup (validated with the provider before anything is stored), read,
//! re-validate, delete; for openai, anthropic and gcp, against local doubles of the providers.
//!
//! Setting up an LLM provider seeds its price book: checked here through the pricing route; the
//! book's own behaviour is tested in pricing.rs.

use std::sync::{Arc, Mutex};

use common::warehouse::{Params, Row};
use convergence_tests::fakes::providers::{Behaviour, FakeProviders};
use convergence_tests::{Key, Reply, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

const LLM: [&str; 2] = ["openai", "anthropic"];
const TABLE: &str = "acme-billing.billing.gcp_billing_export_v1_010101_F0FFF0_61C528";

async fn spawn(fake: &FakeProviders, extra: &[(&str, &str)]) -> TestApp {
    let env = fake.env();
    let mut vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    vars.extend_from_slice(extra);
    TestApp::spawn_with(&vars).await
}

/// An app pointed at the fakes, bootstrapped, with organization `acme` (returns its key).
async fn app() -> (TestApp, FakeProviders, String) {
    let fake = FakeProviders::start().await;
    fake.add_table(TABLE);
    let app = spawn(&fake, &[]).await;
    app.bootstrap().await;
    let key = app.onboard("acme").await;
    (app, fake, key)
}

fn path(org: &str, provider: &str, action: &str) -> String {
    if action.is_empty() {
        format!("/api/v1/integrations/{org}/{provider}")
    } else {
        format!("/api/v1/integrations/{org}/{provider}/{action}")
    }
}

/// A valid setup body for `provider` with the behaviour asked; returns (body, the secret).
fn body(fake: &FakeProviders, provider: &str, behaviour: Behaviour) -> (Value, String) {
    if provider == "gcp" {
        let sa = fake.service_account(behaviour);
        let secret = sa["private_key"].as_str().unwrap().to_string();
        (
            json!({"service_account_json": sa, "billing_export_table": TABLE, "credential_name": "billing reader"}),
            secret,
        )
    } else {
        let key = fake.mint_key(provider, behaviour);
        (json!({"credential": key, "credential_name": "prod admin key"}), key)
    }
}

/// The credential rows of an organization, every column.
async fn rows(app: &TestApp, org: &str) -> Vec<Row> {
    let t = app.state.central_table("org_integration_credentials").unwrap();
    app.warehouse()
        .query(&format!("SELECT * FROM {t} WHERE org_slug = @o ORDER BY provider"), &Params::new().bind("o", org))
        .await
        .unwrap()
}

async fn audit_actions(app: &TestApp) -> Vec<String> {
    let t = app.state.central_table("org_audit_logs").unwrap();
    let rows = app
        .warehouse()
        .query(
            &format!("SELECT action, status FROM {t} WHERE action LIKE 'integration.%' ORDER BY created_at"),
            &Params::new(),
        )
        .await
        .unwrap();
    rows.iter().map(|r| format!("{}:{}", r["action"].as_str().unwrap(), r["status"].as_str().unwrap())).collect()
}

#[tokio::test]
async fn every_provider_sets_up_reads_validates_and_deletes() {
    let (app, fake, key) = app().await;
    let list = app.get("/api/v1/integrations/acme", Key::Api(&key)).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    let providers: Vec<&str> =
        list.body["integrations"].as_array().unwrap().iter().map(|i| i["provider"].as_str().unwrap()).collect();
    assert_eq!(providers, ["anthropic", "gcp", "openai"]);
    assert!(list.body["integrations"].as_array().unwrap().iter().all(|i| i["status"] == "NOT_CONFIGURED"));

    for provider in ["openai", "anthropic", "gcp"] {
        let (req, secret) = body(&fake, provider, Behaviour::Admin);
        let r = app.post(&path("acme", provider, "setup"), Key::Api(&key), req).await;
        assert_eq!(r.status, StatusCode::CREATED, "{provider}: {}", r.body);
        assert_eq!(r.body["status"], "VALID", "{provider}");
        assert_eq!(r.body["replaced"], false);
        assert!(r.body["validated_at"].is_string());
        assert!(r.body["last_error"].is_null());
        let fingerprint = r.body["fingerprint"].as_str().unwrap();
        assert_eq!(fingerprint.chars().count(), 5, "…+4: {fingerprint}");
        if provider == "gcp" {
            assert_eq!(r.body["credential_name"], "billing reader");
            assert_eq!(r.body["metadata"]["billing_export_table"], TABLE);
            assert!(r.body["metadata"]["client_email"].as_str().unwrap().ends_with(".iam.gserviceaccount.com"));
            assert!(r.body.get("price_book").is_none(), "gcp has no price book");
        } else {
            assert_eq!(r.body["credential_name"], "prod admin key");
            assert!(secret.ends_with(&fingerprint[fingerprint.len() - 4..]));
            assert_eq!(r.body["price_book"]["seeded"], true, "{}", r.body);
            let prices = app.get(&format!("/api/v1/integrations/acme/{provider}/pricing"), Key::Api(&key)).await;
            assert_eq!(prices.status, StatusCode::OK, "{}", prices.body);
            assert!(
                prices.body.to_string().contains(if provider == "openai" { "gpt-4o-mini" } else { "claude-haiku-4-5" }),
                "{}",
                prices.body
            );
        }
        assert!(!r.body.to_string().contains(&secret));

        let one = app.get(&path("acme", provider, ""), Key::Api(&key)).await;
        assert_eq!(one.status, StatusCode::OK);
        assert_eq!(one.body["status"], "VALID");
        assert_eq!(one.body["fingerprint"], fingerprint);

        let v = app.post(&path("acme", provider, "validate"), Key::Api(&key), json!({})).await;
        assert_eq!(v.status, StatusCode::OK, "{provider}: {}", v.body);
        assert_eq!(v.body["valid"], true);
        assert_eq!(v.body["status"], "VALID");
    }
    let list = app.get("/api/v1/integrations/acme", Key::Root).await;
    assert_eq!(list.body["configured"], 3, "{}", list.body);
    let stored = rows(&app, "acme").await;
    assert_eq!(stored.len(), 3);
    for row in &stored {
        assert_eq!(row["status"], "VALID");
        assert!(!row["encrypted_credential"].as_str().unwrap().is_empty());
    }

    for provider in ["openai", "anthropic", "gcp"] {
        let d = app.request(reqwest::Method::DELETE, &path("acme", provider, ""), Key::Api(&key), None).await;
        assert_eq!(d.status, StatusCode::OK, "{provider}: {}", d.body);
        assert_eq!(d.body["deleted"], true);
        let again = app.request(reqwest::Method::DELETE, &path("acme", provider, ""), Key::Api(&key), None).await;
        again.assert_error(404, "not_found");
        assert_eq!(app.get(&path("acme", provider, ""), Key::Api(&key)).await.body["status"], "NOT_CONFIGURED");
        app.post(&path("acme", provider, "validate"), Key::Api(&key), json!({})).await.assert_error(404, "not_found");
    }
    assert!(rows(&app, "acme").await.is_empty());
    let actions = audit_actions(&app).await;
    for a in ["integration.setup:SUCCESS", "integration.validate:SUCCESS", "integration.delete:SUCCESS"] {
        assert_eq!(actions.iter().filter(|x| *x == a).count(), 3, "{a} in {actions:?}");
    }
}

#[tokio::test]
async fn a_second_setup_replaces_the_first_and_is_audited() {
    let (app, fake, key) = app().await;
    for provider in ["openai", "gcp"] {
        let (first, _) = body(&fake, provider, Behaviour::Admin);
        let r1 = app.post(&path("acme", provider, "setup"), Key::Api(&key), first).await;
        assert_eq!(r1.status, StatusCode::CREATED, "{}", r1.body);
        let (second, _) = body(&fake, provider, Behaviour::Admin);
        let r2 = app.post(&path("acme", provider, "setup"), Key::Root, second).await;
        assert_eq!(r2.status, StatusCode::CREATED, "{}", r2.body);
        assert_eq!(r2.body["replaced"], true);
        assert_eq!(r2.body["replaced_fingerprint"], r1.body["fingerprint"]);
        assert_ne!(r2.body["credential_id"], r1.body["credential_id"]);
    }
    let stored = rows(&app, "acme").await;
    assert_eq!(stored.len(), 2, "one row per provider");
    let actions = audit_actions(&app).await;
    assert_eq!(actions.iter().filter(|a| *a == "integration.replace:SUCCESS").count(), 2, "{actions:?}");
}

async fn assert_nothing_stored(app: &TestApp) {
    assert!(rows(app, "acme").await.is_empty(), "nothing may be stored");
}

#[tokio::test]
async fn llm_keys_the_provider_refuses_are_422_with_its_reason_and_nothing_is_stored() {
    let (app, fake, key) = app().await;
    for provider in LLM {
        // An unknown key: the provider's own reason comes back, without the key.
        let bad = if provider == "openai" { "sk-admin-not-a-real-key-0000" } else { "sk-ant-admin01-not-real-0000" };
        let r = app.post(&path("acme", provider, "setup"), Key::Api(&key), json!({"credential": bad})).await;
        let msg = r.assert_error(422, "credential_rejected");
        let reason = if provider == "openai" { "Incorrect API key provided" } else { "invalid x-api-key" };
        assert!(msg.contains(reason), "{provider}: {msg}");
        assert!(!r.body.to_string().contains(bad), "the key is never echoed: {msg}");
        assert!(msg.contains("nothing was stored"));

        // Project/workspace keys and other non-admin keys: refused, asking for an admin key.
        for behaviour in [Behaviour::Project, Behaviour::NonAdmin] {
            let (req, secret) = body(&fake, provider, behaviour);
            let r = app.post(&path("acme", provider, "setup"), Key::Api(&key), req).await;
            let msg = r.assert_error(422, "credential_rejected");
            let wanted = if provider == "openai" { "admin key (sk-admin-" } else { "Admin key (sk-ant-admin" };
            assert!(msg.contains(wanted), "{provider} {behaviour:?}: {msg}");
            assert!(!msg.contains(&secret));
        }
        assert_nothing_stored(&app).await;
    }
    let actions = audit_actions(&app).await;
    assert!(actions.iter().all(|a| a == "integration.setup:FAILURE"), "{actions:?}");
}

#[tokio::test]
async fn provider_outages_are_429_502_504_and_nothing_is_stored() {
    let (app, fake, key) = app().await;
    for provider in ["openai", "anthropic", "gcp"] {
        let (req, _) = body(&fake, provider, Behaviour::RateLimited);
        let r = app.post(&path("acme", provider, "setup"), Key::Api(&key), req).await;
        r.assert_error(429, "provider_rate_limited");
        assert_eq!(r.headers["retry-after"], "7", "{provider}");

        let (req, _) = body(&fake, provider, Behaviour::ServerError);
        let r = app.post(&path("acme", provider, "setup"), Key::Api(&key), req).await;
        let msg = r.assert_error(502, "provider_unreachable");
        assert!(msg.contains("500"), "{msg}");

        let (req, _) = body(&fake, provider, Behaviour::Slow);
        let started = std::time::Instant::now();
        let r = app.post(&path("acme", provider, "setup"), Key::Api(&key), req).await;
        let msg = r.assert_error(504, "provider_timeout");
        assert!(msg.contains("did not answer within 1 s"), "{msg}");
        assert!(started.elapsed() < std::time::Duration::from_millis(2900), "the timeout cut the call short");
        assert_nothing_stored(&app).await;
    }

    // Nobody listening at all.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://127.0.0.1:{}", l.local_addr().unwrap().port())
    };
    let down =
        spawn(&fake, &[("OPENAI_API_BASE", &closed), ("ANTHROPIC_API_BASE", &closed), ("BIGQUERY_API_BASE", &closed)])
            .await;
    down.bootstrap().await;
    let k = down.onboard("acme").await;
    for provider in LLM {
        let (req, _) = body(&fake, provider, Behaviour::Admin);
        let r = down.post(&path("acme", provider, "setup"), Key::Api(&k), req).await;
        let msg = r.assert_error(502, "provider_unreachable");
        assert!(msg.contains("could not be reached"), "{msg}");
    }
    // gcp: the token endpoint answers, BigQuery does not; then a token endpoint that is down.
    let (req, _) = body(&fake, "gcp", Behaviour::Admin);
    down.post(&path("acme", "gcp", "setup"), Key::Api(&k), req).await.assert_error(502, "provider_unreachable");
    let no_tokens = spawn(&fake, &[("GOOGLE_TOKEN_URL", &format!("{closed}/token"))]).await;
    no_tokens.bootstrap().await;
    let k = no_tokens.onboard("acme").await;
    let (req, _) = body(&fake, "gcp", Behaviour::Admin);
    no_tokens.post(&path("acme", "gcp", "setup"), Key::Api(&k), req).await.assert_error(502, "provider_unreachable");
    assert!(rows(&down, "acme").await.is_empty() && rows(&no_tokens, "acme").await.is_empty());
    assert_nothing_stored(&app).await;
}

/// A provider answering a key check with more than such an answer may be (2 MB) is not read
/// whole: the setup fails saying so, and nothing is stored.
#[tokio::test]
async fn an_oversized_answer_is_not_read_and_nothing_is_stored() {
    let (app, fake, key) = app().await;
    for provider in LLM {
        let (req, _) = body(&fake, provider, Behaviour::Oversized);
        let r = app.post(&path("acme", provider, "setup"), Key::Api(&key), req).await;
        let msg = r.assert_error(502, "provider_unreachable");
        assert!(msg.contains("answered with more than 1024 KB"), "{provider}: {msg}");
    }
    assert_nothing_stored(&app).await;
}

/// A key file cannot make the server post anywhere: its `token_uri` must be Google's, in
/// development too (tests reach their fake through `GOOGLE_TOKEN_URL`, which only development
/// accepts); the refusal names the field and nothing is sent to the address.
#[tokio::test]
async fn a_service_account_naming_another_token_endpoint_is_refused_before_any_call() {
    let (app, fake, key) = app().await;
    let elsewhere = FakeProviders::start().await;
    let (mut req, _) = body(&fake, "gcp", Behaviour::Admin);
    req["service_account_json"]["token_uri"] = json!(elsewhere.token_uri());
    let r = app.post(&path("acme", "gcp", "setup"), Key::Api(&key), req).await;
    let msg = r.assert_error(400, "invalid_request");
    assert!(msg.contains("service_account_json.token_uri must be Google's token endpoint"), "{msg}");
    assert!(elsewhere.requests().is_empty(), "nothing was sent: {:?}", elsewhere.requests());
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn gcp_refusals_name_the_cause_and_store_nothing() {
    let (app, fake, key) = app().await;
    let (req, _) = body(&fake, "gcp", Behaviour::WrongKey);
    let msg = app
        .post(&path("acme", "gcp", "setup"), Key::Api(&key), req)
        .await
        .assert_error(422, "credential_rejected")
        .to_string();
    assert!(msg.contains("Invalid JWT Signature"), "{msg}");

    let (req, _) = body(&fake, "gcp", Behaviour::NoAccess);
    let msg = app
        .post(&path("acme", "gcp", "setup"), Key::Api(&key), req)
        .await
        .assert_error(422, "credential_rejected")
        .to_string();
    assert!(
        msg.contains("roles/bigquery.dataViewer") && msg.contains("Permission bigquery.tables.get denied"),
        "{msg}"
    );

    let (mut req, _) = body(&fake, "gcp", Behaviour::Admin);
    req["billing_export_table"] = json!("acme-billing.billing.gcp_billing_export_v1_999999_000000_000000");
    let msg = app
        .post(&path("acme", "gcp", "setup"), Key::Api(&key), req)
        .await
        .assert_error(422, "credential_rejected")
        .to_string();
    assert!(msg.contains("was not found"), "{msg}");

    // The key file as a string works like the object.
    let (mut req, _) = body(&fake, "gcp", Behaviour::Admin);
    req["service_account_json"] = json!(req["service_account_json"].to_string());
    assert_eq!(app.post(&path("acme", "gcp", "setup"), Key::Api(&key), req).await.status, StatusCode::CREATED);
    assert_eq!(rows(&app, "acme").await.len(), 1);
}

#[tokio::test]
async fn bad_bodies_are_400_naming_the_field_and_call_no_provider() {
    let (app, fake, key) = app().await;
    let before = fake.requests().len();
    let cases: Vec<(&str, Value, &str)> = vec![
        ("openai", json!({}), "credential is required"),
        ("openai", json!({"credential": ""}), "credential must not be empty"),
        ("openai", json!({"credential": "sk admin with spaces"}), "credential must be an API key"),
        ("openai", json!({"credential": 42}), "credential"),
        (
            "openai",
            json!({"credential": "sk-admin-abcdefgh", "billing_export_table": TABLE}),
            "billing_export_table is only for gcp",
        ),
        (
            "anthropic",
            json!({"credential": "sk-ant-admin01-abcdefgh", "credential_name": "x".repeat(101)}),
            "credential_name",
        ),
        (
            "anthropic",
            json!({"credential": "sk-ant-admin01-abcdefgh", "credential_name": "Prod\u{202E}yek"}),
            "credential_name contains a bidirectional control (U+202E)",
        ),
        (
            "openai",
            json!({"credential": "sk-admin-abcdefgh", "credential_name": "Prod\u{200B}key"}),
            "credential_name contains a zero-width character (U+200B)",
        ),
        ("anthropic", json!({"credential": "sk-ant-admin01-abcdefgh", "api_key": "x"}), "unknown field `api_key`"),
        ("gcp", json!({"billing_export_table": TABLE}), "service_account_json is required"),
        (
            "gcp",
            json!({"service_account_json": {"type": "service_account"}, "billing_export_table": "nope"}),
            "billing_export_table must be project.dataset.gcp_billing_export_v1_",
        ),
        (
            "gcp",
            json!({"service_account_json": {"type": "authorized_user"}, "billing_export_table": TABLE}),
            "service_account_json.type",
        ),
        (
            "gcp",
            json!({"service_account_json": "not json", "billing_export_table": TABLE}),
            "service_account_json must be the service-account key file",
        ),
        (
            "gcp",
            json!({"credential": "sk-x-12345678", "service_account_json": {}, "billing_export_table": TABLE}),
            "credential is not used for gcp",
        ),
    ];
    for (provider, req, wanted) in cases {
        let r = app.post(&path("acme", provider, "setup"), Key::Api(&key), req.clone()).await;
        let msg = r.assert_error(400, "invalid_request");
        assert!(msg.contains(wanted), "{provider} {req}: {msg}");
    }
    let (mut req, _) = body(&fake, "gcp", Behaviour::Admin);
    req["service_account_json"]["private_key"] =
        json!("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
    req["service_account_json"]["client_email"] = json!("nobody");
    let r = app.post(&path("acme", "gcp", "setup"), Key::Api(&key), req).await;
    let msg = r.assert_error(400, "invalid_request");
    assert!(
        msg.contains("service_account_json.private_key") && msg.contains("service_account_json.client_email"),
        "{msg}"
    );
    assert!(!msg.contains("AAAA"));
    // Not JSON at all.
    let raw = app
        .client
        .post(format!("{}{}", app.base, path("acme", "openai", "setup")))
        .header("X-API-Key", &key)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    TestApp::reply(raw).await.assert_error(400, "invalid_json");
    assert_eq!(fake.requests().len(), before, "no provider was called: {:?}", fake.requests());
    assert_nothing_stored(&app).await;
}

#[tokio::test]
async fn other_orgs_unknown_providers_and_missing_keys_are_refused() {
    let (app, fake, key) = app().await;
    let other_key = app.onboard("globex").await;
    let (req, _) = body(&fake, "openai", Behaviour::Admin);
    assert_eq!(
        app.post(&path("acme", "openai", "setup"), Key::Api(&key), req.clone()).await.status,
        StatusCode::CREATED
    );

    // globex's key on acme's routes: 403 on every route, before anything is read or called.
    let calls = fake.requests().len();
    app.get("/api/v1/integrations/acme", Key::Api(&other_key)).await.assert_error(403, "forbidden");
    app.get(&path("acme", "openai", ""), Key::Api(&other_key)).await.assert_error(403, "forbidden");
    app.post(&path("acme", "openai", "setup"), Key::Api(&other_key), req.clone()).await.assert_error(403, "forbidden");
    app.post(&path("acme", "openai", "validate"), Key::Api(&other_key), json!({})).await.assert_error(403, "forbidden");
    app.request(reqwest::Method::DELETE, &path("acme", "openai", ""), Key::Api(&other_key), None)
        .await
        .assert_error(403, "forbidden");
    assert_eq!(fake.requests().len(), calls);
    assert_eq!(rows(&app, "acme").await.len(), 1);
    // globex sees only its own (none).
    let g = app.get("/api/v1/integrations/globex", Key::Api(&other_key)).await;
    assert!(g.body["integrations"].as_array().unwrap().iter().all(|i| i["status"] == "NOT_CONFIGURED"));

    // Unknown provider: 404 naming the known ones, on every provider route.
    for r in [
        app.post(&path("acme", "azure", "setup"), Key::Api(&key), req.clone()).await,
        app.post(&path("acme", "azure", "validate"), Key::Api(&key), json!({})).await,
        app.get(&path("acme", "azure", ""), Key::Api(&key)).await,
        app.request(reqwest::Method::DELETE, &path("acme", "azure", ""), Key::Api(&key), None).await,
    ] {
        let msg = r.assert_error(404, "not_found");
        assert!(msg.contains("azure") && msg.contains("anthropic, gcp, openai"), "{msg}");
    }
    // Unknown org (root), bad slug, no key.
    app.get("/api/v1/integrations/nobody", Key::Root).await.assert_error(404, "not_found");
    app.post(&path("nobody", "openai", "setup"), Key::Root, req.clone()).await.assert_error(404, "not_found");
    app.get("/api/v1/integrations/NO!", Key::Root).await.assert_error(400, "invalid_request");
    app.get("/api/v1/integrations/acme", Key::None).await.assert_error(401, "unauthorized");
    app.post(&path("acme", "openai", "setup"), Key::None, req).await.assert_error(401, "unauthorized");
}

#[tokio::test]
async fn validate_records_invalid_and_error_and_recovers() {
    let (app, fake, key) = app().await;
    let (req, secret) = body(&fake, "openai", Behaviour::Admin);
    let set = app.post(&path("acme", "openai", "setup"), Key::Api(&key), req).await;
    assert_eq!(set.status, StatusCode::CREATED);
    let first_validated = set.body["validated_at"].as_str().unwrap().to_string();

    // The provider can't be asked: ERROR, validated_at keeps the last real answer.
    fake.set_behaviour(&secret, Some(Behaviour::ServerError));
    let v = app.post(&path("acme", "openai", "validate"), Key::Api(&key), json!({})).await;
    assert_eq!(v.status, StatusCode::OK, "{}", v.body);
    assert_eq!(v.body["status"], "ERROR");
    assert_eq!(v.body["outcome"], "unreachable");
    assert_eq!(v.body["validated_at"], first_validated.as_str());
    assert!(v.body["last_error"].as_str().unwrap().contains("500"));
    fake.set_behaviour(&secret, Some(Behaviour::RateLimited));
    let v = app.post(&path("acme", "openai", "validate"), Key::Api(&key), json!({})).await;
    assert_eq!((v.body["status"].as_str(), v.body["retry_after_secs"].as_u64()), (Some("ERROR"), Some(7)));

    // Revoked at the provider: INVALID with the provider's reason, never the key.
    fake.set_behaviour(&secret, None);
    let v = app.post(&path("acme", "openai", "validate"), Key::Api(&key), json!({})).await;
    assert_eq!(v.body["status"], "INVALID", "{}", v.body);
    assert_eq!(v.body["valid"], false);
    assert!(v.body["last_error"].as_str().unwrap().contains("Incorrect API key provided"));
    assert!(!v.body.to_string().contains(&secret));
    assert_ne!(v.body["validated_at"], first_validated.as_str());
    let row = &rows(&app, "acme").await[0];
    assert_eq!(row["status"], "INVALID");
    assert!(!row["last_error"].as_str().unwrap().contains(&secret));

    // Valid again.
    fake.set_behaviour(&secret, Some(Behaviour::Admin));
    let v = app.post(&path("acme", "openai", "validate"), Key::Root, json!({})).await;
    assert_eq!(v.body["status"], "VALID");
    assert!(v.body["last_error"].is_null());

    // gcp: the table's access is checked again too.
    let (req, _) = body(&fake, "gcp", Behaviour::Admin);
    assert_eq!(app.post(&path("acme", "gcp", "setup"), Key::Api(&key), req).await.status, StatusCode::CREATED);
    let v = app.post(&path("acme", "gcp", "validate"), Key::Api(&key), json!({})).await;
    assert_eq!(v.body["status"], "VALID", "{}", v.body);
    assert_eq!(v.body["metadata"]["billing_export_table"], TABLE);
}

#[tokio::test]
async fn the_plans_integration_quota_is_enforced() {
    let (app, fake, key) = app().await;
    let t = app.state.central_table("org_usage_quotas").unwrap();
    app.warehouse()
        .execute(&format!("UPDATE {t} SET max_integrations = 1 WHERE org_slug = @o"), &Params::new().bind("o", "acme"))
        .await
        .unwrap();
    app.state.orgs.invalidate("acme");
    let (req, _) = body(&fake, "openai", Behaviour::Admin);
    assert_eq!(app.post(&path("acme", "openai", "setup"), Key::Api(&key), req).await.status, StatusCode::CREATED);
    let calls = fake.requests().len();
    let (req, _) = body(&fake, "anthropic", Behaviour::Admin);
    let r = app.post(&path("acme", "anthropic", "setup"), Key::Api(&key), req).await;
    let msg = r.assert_error(403, "quota_exceeded");
    assert!(msg.contains("allows 1 integration"), "{msg}");
    assert_eq!(fake.requests().len(), calls, "the provider is not asked when the quota refuses");
    // Replacing the credential of a provider already set up is not a new integration.
    let (req, _) = body(&fake, "openai", Behaviour::Admin);
    assert_eq!(app.post(&path("acme", "openai", "setup"), Key::Api(&key), req).await.status, StatusCode::CREATED);
    // After a delete there is room again.
    app.request(reqwest::Method::DELETE, &path("acme", "openai", ""), Key::Api(&key), None).await;
    let (req, _) = body(&fake, "anthropic", Behaviour::Admin);
    assert_eq!(app.post(&path("acme", "anthropic", "setup"), Key::Api(&key), req).await.status, StatusCode::CREATED);
}

/// A `tracing` writer that keeps everything in memory.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs (once per test process) a global subscriber that keeps every event at every level in
/// memory, in the production JSON format. Global rather than per-thread: the server's tasks and
/// HTTP clients may log from any thread, and a scoped subscriber can miss callsites that another
/// test thread registers first. Other tests' lines land in it too; the test searches all of them.
fn capture_logs() -> Capture {
    static CAPTURE: std::sync::OnceLock<Capture> = std::sync::OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let capture = Capture::default();
            let writer = capture.clone();
            let subscriber = tracing_subscriber::fmt()
                .event_format(common::logging::CloudLoggingJson { project: None })
                .with_max_level(tracing::Level::TRACE)
                .with_writer(move || writer.clone())
                .finish();
            tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber in the tests");
            capture
        })
        .clone()
}

/// The secret of every credential, through every route and failure, appears in no log line, no
/// response and no warehouse row or file, except as ciphertext.
#[tokio::test]
async fn credentials_never_appear_in_logs_responses_or_the_warehouse() {
    let capture = capture_logs();
    let from = capture.0.lock().unwrap().len();
    let (app, fake, key) = app().await;
    let mut secrets = Vec::new();
    let mut replies: Vec<Reply> = Vec::new();
    for provider in ["openai", "anthropic", "gcp"] {
        for behaviour in
            [Behaviour::Project, Behaviour::NonAdmin, Behaviour::RateLimited, Behaviour::ServerError, Behaviour::Admin]
        {
            if provider == "gcp" && matches!(behaviour, Behaviour::Project | Behaviour::NonAdmin) {
                continue;
            }
            let (req, secret) = body(&fake, provider, behaviour);
            secrets.push(secret);
            replies.push(app.post(&path("acme", provider, "setup"), Key::Api(&key), req).await);
        }
        let (req, secret) = body(&fake, provider, Behaviour::WrongKey);
        if provider == "gcp" {
            secrets.push(secret);
            replies.push(app.post(&path("acme", provider, "setup"), Key::Api(&key), req).await);
        }
        replies.push(app.post(&path("acme", provider, "validate"), Key::Api(&key), json!({})).await);
        replies.push(app.get(&path("acme", provider, ""), Key::Api(&key)).await);
    }
    // A key the provider does not know (OpenAI's fake quotes it whole in its 401), as setup and
    // after a revocation at the provider.
    let unknown = "sk-admin-unknownsecretvalue-4242";
    secrets.push(unknown.to_string());
    replies.push(app.post(&path("acme", "openai", "setup"), Key::Api(&key), json!({"credential": unknown})).await);
    let stored_openai = secrets.iter().find(|s| s.starts_with("sk-admin-") && s.as_str() != unknown).cloned().unwrap();
    fake.set_behaviour(&stored_openai, None);
    replies.push(app.post(&path("acme", "openai", "validate"), Key::Api(&key), json!({})).await);
    // A malformed body carrying a secret in a wrong field.
    replies
        .push(app.post(&path("acme", "openai", "setup"), Key::Api(&key), json!({"credentail": stored_openai})).await);
    replies.push(app.get("/api/v1/integrations/acme", Key::Api(&key)).await);

    let logs = String::from_utf8_lossy(&capture.0.lock().unwrap()[from..]).to_string();
    assert!(
        logs.contains("provider validation") && logs.contains("/api/v1/integrations/acme/openai/setup"),
        "the capture works"
    );
    let bodies: String = replies.iter().map(|r| r.body.to_string()).collect();
    let mut warehouse = String::new();
    for table in ["org_integration_credentials", "org_audit_logs"] {
        let t = app.state.central_table(table).unwrap();
        for row in app.warehouse().query(&format!("SELECT * FROM {t}"), &Params::new()).await.unwrap() {
            warehouse.push_str(&Value::Object(row).to_string());
        }
    }
    assert_eq!(rows(&app, "acme").await.len(), 3, "one stored credential per provider");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(app.data_dir.path()).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            files.extend(std::fs::read(&p).unwrap());
        }
    }
    use base64::Engine;
    for secret in &secrets {
        // For the service account: its private key, by a line of its base64 body.
        let needle =
            if secret.starts_with("-----BEGIN") { secret.lines().nth(3).unwrap().to_string() } else { secret.clone() };
        assert!(!logs.contains(&needle), "secret in the logs");
        assert!(!bodies.contains(&needle), "secret in a response");
        assert!(!warehouse.contains(&needle), "secret in a warehouse row");
        let b64 = base64::engine::general_purpose::STANDARD.encode(needle.as_bytes());
        assert!(!warehouse.contains(b64.trim_end_matches('=')), "secret stored as plain base64");
        assert!(!files.windows(needle.len()).any(|w| w == needle.as_bytes()), "secret in a data file");
    }
}

/// The same SQL on BigQuery (the emulator): setup → replace → validate → list → delete.
#[tokio::test(flavor = "multi_thread")]
async fn setup_validate_delete_on_bigquery() {
    let fake = FakeProviders::start().await;
    // BIGQUERY_API_BASE is the warehouse's emulator here, so only the LLM providers are faked.
    let (openai, anthropic) = (fake.openai_base(), fake.anthropic_base());
    let app = TestApp::spawn_bigquery(&[
        ("OPENAI_API_BASE", &openai),
        ("ANTHROPIC_API_BASE", &anthropic),
        ("PROVIDER_TIMEOUT_SECS", "2"),
    ])
    .await;
    app.bootstrap().await;
    let key = app.onboard("acme").await;
    for provider in LLM {
        let (req, secret) = body(&fake, provider, Behaviour::Admin);
        let r = app.post(&path("acme", provider, "setup"), Key::Api(&key), req).await;
        assert_eq!(r.status, StatusCode::CREATED, "{provider}: {}", r.body);
        assert_eq!(r.body["status"], "VALID");
        let (req, _) = body(&fake, provider, Behaviour::Admin);
        let r = app.post(&path("acme", provider, "setup"), Key::Api(&key), req).await;
        assert_eq!(r.body["replaced"], true, "{}", r.body);
        let v = app.post(&path("acme", provider, "validate"), Key::Api(&key), json!({})).await;
        assert_eq!(v.status, StatusCode::OK, "{}", v.body);
        assert_eq!(v.body["status"], "VALID");
        assert!(!r.body.to_string().contains(&secret));
    }
    let stored = rows(&app, "acme").await;
    assert_eq!(stored.len(), 2, "{stored:?}");
    let list = app.get("/api/v1/integrations/acme", Key::Api(&key)).await;
    assert_eq!(list.body["configured"], 2, "{}", list.body);
    for provider in LLM {
        let d = app.request(reqwest::Method::DELETE, &path("acme", provider, ""), Key::Api(&key), None).await;
        assert_eq!(d.status, StatusCode::OK, "{}", d.body);
    }
    assert!(rows(&app, "acme").await.is_empty());
}
