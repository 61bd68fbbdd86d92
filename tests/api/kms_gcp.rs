//! `CloudKms` (the official Cloud KMS client) against the local fake of the KMS REST API, and the
//! whole app with `KMS_BACKEND=gcp`.

use common::kms::{CloudKms, Kms, KmsError};
use convergence_tests::fakes::kms::FakeKms;
use convergence_tests::{Key, TestApp};
use reqwest::StatusCode;
use serde_json::json;

const KEY: &str = "projects/p/locations/global/keyRings/r/cryptoKeys/k";
const OTHER: &str = "projects/p/locations/global/keyRings/r/cryptoKeys/other";
const SECRET: &[u8] = b"sk-live-very-secret-provider-credential";

async fn kms_for(fake: &FakeKms, key: &str) -> CloudKms {
    CloudKms::new(key, Some(fake.base_url())).await.expect("client")
}

#[tokio::test]
async fn round_trip_through_the_rest_api() {
    let fake = FakeKms::start(&[KEY]).await;
    let kms = kms_for(&fake, KEY).await;
    assert_eq!(kms.backend_name(), "gcp");
    let sealed = kms.encrypt(SECRET, b"acme").await.unwrap();
    assert!(!sealed.windows(SECRET.len()).any(|w| w == SECRET), "ciphertext is opaque");
    assert_eq!(kms.decrypt(&sealed, b"acme").await.unwrap(), SECRET);
    assert_eq!((fake.encrypt_requests(), fake.decrypt_requests()), (1, 1));
    let log = fake.request_log();
    // `$alt=json;enum-encoding=int`, URL-encoded.
    assert_eq!(log[0], format!("POST /v1/{KEY}:encrypt?%24alt=json%3Benum-encoding%3Dint"), "{log:?}");
    assert_eq!(log[1], format!("POST /v1/{KEY}:decrypt?%24alt=json%3Benum-encoding%3Dint"), "{log:?}");
}

#[tokio::test]
async fn the_same_plaintext_encrypts_differently_each_time() {
    let fake = FakeKms::start(&[KEY]).await;
    let kms = kms_for(&fake, KEY).await;
    let a = kms.encrypt(SECRET, b"acme").await.unwrap();
    let b = kms.encrypt(SECRET, b"acme").await.unwrap();
    assert_ne!(a, b);
    assert_eq!(kms.decrypt(&b, b"acme").await.unwrap(), SECRET);
}

#[tokio::test]
async fn wrong_associated_data_tampering_and_another_key_are_decrypt_errors() {
    let fake = FakeKms::start(&[KEY, OTHER]).await;
    let kms = kms_for(&fake, KEY).await;
    let sealed = kms.encrypt(SECRET, b"acme").await.unwrap();
    assert!(matches!(kms.decrypt(&sealed, b"globex").await, Err(KmsError::Decrypt)), "wrong AAD");
    assert!(matches!(kms.decrypt(&sealed, b"").await, Err(KmsError::Decrypt)), "missing AAD");
    for i in [0, 7, sealed.len() / 2, sealed.len() - 1] {
        let mut bad = sealed.clone();
        bad[i] ^= 0x01;
        assert!(matches!(kms.decrypt(&bad, b"acme").await, Err(KmsError::Decrypt)), "byte {i}");
    }
    assert!(matches!(kms.decrypt(&sealed[..10], b"acme").await, Err(KmsError::Decrypt)), "truncated");
    let other = kms_for(&fake, OTHER).await;
    assert!(matches!(other.decrypt(&sealed, b"acme").await, Err(KmsError::Decrypt)), "another key");
    // The untouched ciphertext still opens.
    assert_eq!(kms.decrypt(&sealed, b"acme").await.unwrap(), SECRET);
}

#[tokio::test]
async fn an_unknown_key_is_unavailable_and_named_without_the_plaintext() {
    let fake = FakeKms::start(&[KEY]).await;
    let missing = "projects/p/locations/global/keyRings/r/cryptoKeys/missing";
    let kms = kms_for(&fake, missing).await;
    let err = kms.encrypt(SECRET, b"acme").await.unwrap_err();
    let KmsError::Unavailable(message) = &err else { panic!("{err:?}") };
    assert!(message.contains(missing) && message.contains("NOT_FOUND"), "{message}");
    assert_no_secret(&err);
    let err = kms.decrypt(b"whatever-ciphertext-bytes-0123456789", b"acme").await.unwrap_err();
    assert!(matches!(err, KmsError::Unavailable(_)), "{err:?}");
    assert_no_secret(&err);
}

#[tokio::test]
async fn a_disabled_key_is_unavailable_not_a_bad_ciphertext() {
    let fake = FakeKms::start(&[KEY]).await;
    let kms = kms_for(&fake, KEY).await;
    let sealed = kms.encrypt(SECRET, b"acme").await.unwrap();
    fake.disable(KEY);
    for err in [kms.decrypt(&sealed, b"acme").await.unwrap_err(), kms.encrypt(SECRET, b"acme").await.unwrap_err()] {
        let KmsError::Unavailable(message) = &err else { panic!("{err:?}") };
        assert!(message.contains(KEY) && message.contains("FAILED_PRECONDITION"), "{message}");
        assert_no_secret(&err);
    }
    fake.enable(KEY);
    assert_eq!(kms.decrypt(&sealed, b"acme").await.unwrap(), SECRET);
}

#[tokio::test]
async fn data_corrupted_in_transit_is_caught_by_the_checksums() {
    let fake = FakeKms::start(&[KEY]).await;
    let kms = kms_for(&fake, KEY).await;
    let sealed = kms.encrypt(SECRET, b"acme").await.unwrap();
    fake.corrupt_responses(true);
    for err in [kms.encrypt(SECRET, b"acme").await.unwrap_err(), kms.decrypt(&sealed, b"acme").await.unwrap_err()] {
        let KmsError::Unavailable(message) = &err else { panic!("{err:?}") };
        assert!(message.contains("checksum"), "{message}");
        assert_no_secret(&err);
    }
    fake.corrupt_responses(false);
    assert_eq!(kms.decrypt(&sealed, b"acme").await.unwrap(), SECRET);
}

#[tokio::test]
async fn an_unreachable_endpoint_is_unavailable() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let deadline = std::time::Duration::from_secs(1);
    let kms = CloudKms::with_deadline(KEY, Some(&format!("http://127.0.0.1:{port}")), deadline).await.unwrap();
    let started = std::time::Instant::now();
    let err = kms.encrypt(SECRET, b"acme").await.unwrap_err();
    assert!(started.elapsed() < deadline * 5, "retries are bounded: {:?}", started.elapsed());
    let KmsError::Unavailable(message) = &err else { panic!("{err:?}") };
    assert!(message.contains(KEY), "{message}");
    assert_no_secret(&err);
}

#[track_caller]
fn assert_no_secret(err: &KmsError) {
    let secret = std::str::from_utf8(SECRET).unwrap();
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains(secret), "{text}");
        assert!(!text.contains("c2stbGl2ZS"), "no base64 of the plaintext either: {text}");
    }
}

#[tokio::test]
async fn the_app_runs_on_cloud_kms() {
    let fake = FakeKms::start(&[KEY]).await;
    let app =
        TestApp::spawn_with(&[("KMS_BACKEND", "gcp"), ("KMS_KEY_NAME", KEY), ("KMS_API_BASE", fake.base_url())]).await;
    let r = app.get("/health", Key::None).await;
    assert_eq!(r.body["kms"], "gcp", "{}", r.body);
    app.bootstrap().await;
    let key = app.onboard("acme").await;
    assert_eq!(fake.encrypt_requests(), 0, "no copy of an organization's API key is sealed, with KMS or otherwise");
    let r = app.post("/api/v1/organizations/acme/api-key/rotate", Key::Api(&key), json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(fake.encrypt_requests(), 0, "nor of a rotated one");
    let new = r.body["api_key"].as_str().unwrap().to_string();
    assert_eq!(app.get("/api/v1/organizations/acme", Key::Api(&new)).await.status, StatusCode::OK);

    // What is sealed (a Slack webhook) is sealed by Cloud KMS.
    let webhook = json!({"slack_webhook_url": "https://hooks.slack.com/services/T0/B0/kms-sealed"});
    let r = app.put("/api/v1/organizations/acme/notifications", Key::Api(&new), webhook.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(fake.encrypt_requests(), 1, "the webhook is encrypted by KMS");

    // A disabled key: state changes fail with a 503 that says nothing internal.
    fake.disable(KEY);
    let r = app.put("/api/v1/organizations/acme/notifications", Key::Api(&new), webhook).await;
    let message = r.assert_error(503, "unavailable");
    assert!(!message.contains(KEY) && !message.contains("FAILED_PRECONDITION"), "{}", r.body);
}
