//! Verification of the Google-signed OIDC ID tokens that Pub/Sub push deliveries and Cloud
//! Scheduler send to the internal endpoints (DESIGN §6, §12).
//!
//! A token is accepted when it is an RS256 JWT whose signature verifies against one of Google's
//! published keys, `iss` is Google's, `aud` is the configured audience, `email` is one of the
//! configured invokers with `email_verified` true, and `exp`/`iat`/`nbf` hold within a small
//! clock skew. Nothing else is accepted: `alg` none and HMAC are refused before any key is used.
//!
//! Google's keys (a JWKS) are fetched on first use and cached for their `Cache-Control: max-age`,
//! clamped to [`MIN_KEYS_TTL`, `MAX_KEYS_TTL`]. A token whose `kid` is not in the cache triggers
//! a refresh (Google publishes new keys before signing with them, so this is rare), at most once
//! per `min_refresh_interval`: a flood of made-up key ids costs one fetch, not one per request.
//! Concurrent refreshes wait for one fetch instead of each making their own.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

/// Where Google publishes the keys that sign its ID tokens.
pub const GOOGLE_JWKS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";
/// The `iss` values Google's ID tokens carry (both forms are in use).
pub const GOOGLE_ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];
/// Clock difference tolerated between Google and this instance on `exp`, `iat` and `nbf`.
pub const CLOCK_SKEW_SECS: f64 = 60.0;
/// Bounds on how long fetched keys are trusted, whatever `max-age` says: a tiny or absent one
/// must not turn every request into a fetch, a huge one must not pin a retired key for days.
pub const MIN_KEYS_TTL: Duration = Duration::from_secs(60);
pub const MAX_KEYS_TTL: Duration = Duration::from_secs(24 * 3600);
/// Used when the response has no `max-age` (Google always sends one).
const DEFAULT_KEYS_TTL: Duration = Duration::from_secs(300);
/// Default least time between two refreshes caused by unknown key ids.
pub const DEFAULT_MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// After a failed fetch, requests fail at once for this long instead of each waiting on a
/// fetch that is likely to fail again.
const FAILED_FETCH_BACKOFF: Duration = Duration::from_secs(5);
/// Google's key set is about 2 KB; anything far larger is not a key set.
const MAX_JWKS_BYTES: usize = 64 * 1024;
/// Google's ID tokens are about 1 KB; a larger header is not worth parsing.
const MAX_TOKEN_BYTES: usize = 8 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a token was refused. Messages say which check failed and never contain the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    #[error("the token is malformed: {0}")]
    Malformed(&'static str),
    #[error("the token is not signed with RS256, the only algorithm accepted")]
    UnsupportedAlgorithm,
    #[error("the token's key id (kid) is not one of Google's current signing keys")]
    UnknownKeyId,
    #[error("the token's signature does not verify against Google's key")]
    BadSignature,
    #[error("the token has expired (exp is in the past)")]
    Expired,
    #[error("the token is not valid yet (iat or nbf is in the future)")]
    NotYetValid,
    #[error("the token's audience (aud) is not this service's OIDC_AUDIENCE")]
    WrongAudience,
    #[error("the token's issuer (iss) is not Google (https://accounts.google.com)")]
    WrongIssuer,
    #[error("the token's email is not one of the allowed invokers (OIDC_INVOKERS)")]
    EmailNotAllowed,
    #[error("the token's email is not verified (email_verified is not true)")]
    EmailNotVerified,
    /// Google's keys could not be fetched or read: nothing is known about the token.
    #[error("Google's signing keys cannot be fetched: {0}")]
    KeysUnavailable(String),
}

impl OidcError {
    /// A failure on our side (the keys), not the caller's: worth retrying.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, OidcError::KeysUnavailable(_))
    }
}

/// What the verifier checks tokens against.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The `aud` every token must carry (`OIDC_AUDIENCE`).
    pub audience: String,
    /// Service-account emails allowed to call (`OIDC_INVOKERS`).
    pub invokers: Vec<String>,
    /// The JWKS URL (`OIDC_JWKS_URL`; [`GOOGLE_JWKS_URL`] unless overridden in development).
    pub jwks_url: String,
}

/// The claims of a token that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The invoking service account (lowercase).
    pub email: String,
    /// Google's stable id of that account.
    pub sub: String,
}

pub struct OidcVerifier {
    audience: String,
    invokers: HashSet<String>,
    jwks_url: String,
    client: reqwest::Client,
    min_refresh_interval: Duration,
    /// The current key set; read without waiting by every request.
    keys: RwLock<Option<Arc<KeySet>>>,
    /// Held while fetching, so concurrent refreshes share one fetch.
    refresh: tokio::sync::Mutex<FetchHistory>,
}

struct KeySet {
    keys: HashMap<String, DecodingKey>,
    expires_at: Instant,
}

#[derive(Default)]
struct FetchHistory {
    last_attempt: Option<Instant>,
    last_failed: bool,
}

impl OidcVerifier {
    pub fn new(config: OidcConfig) -> Result<OidcVerifier, OidcError> {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            // The key URL never redirects; following one would trust keys from elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("convergence/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| OidcError::KeysUnavailable(format!("cannot build the HTTP client: {e}")))?;
        Ok(OidcVerifier {
            audience: config.audience,
            invokers: config.invokers.iter().map(|e| e.trim().to_ascii_lowercase()).collect(),
            jwks_url: config.jwks_url,
            client,
            min_refresh_interval: DEFAULT_MIN_REFRESH_INTERVAL,
            keys: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(FetchHistory::default()),
        })
    }

    /// Sets the least time between two refreshes caused by unknown key ids.
    pub fn with_min_refresh_interval(mut self, interval: Duration) -> OidcVerifier {
        self.min_refresh_interval = interval;
        self
    }

    /// Verifies `token` (the part after `Bearer `) and returns who sent it.
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, OidcError> {
        let kid = key_id(token)?;
        let keys = self.keys_with(&kid).await?;
        let key = keys.keys.get(&kid).ok_or(OidcError::UnknownKeyId)?;
        let claims = verify_signature(token, key)?;
        self.check_claims(&claims, unix_now())
    }

    /// A key set that holds `kid`: the cached one, or a fresh one when the cache is stale or
    /// lacks `kid` (then subject to the refresh interval).
    async fn keys_with(&self, kid: &str) -> Result<Arc<KeySet>, OidcError> {
        if let Some(keys) = self.current_keys() {
            if keys.expires_at > Instant::now() && keys.keys.contains_key(kid) {
                return Ok(keys);
            }
        }
        let mut history = self.refresh.lock().await;
        // Another request may have refreshed while this one waited for the lock.
        let now = Instant::now();
        let since_last_attempt = history.last_attempt.map(|at| now.duration_since(at));
        match self.current_keys() {
            Some(keys) if keys.expires_at > now => {
                if keys.keys.contains_key(kid) {
                    return Ok(keys);
                }
                if since_last_attempt.is_some_and(|d| d < self.min_refresh_interval) {
                    return Err(OidcError::UnknownKeyId);
                }
            }
            _ => {
                if history.last_failed && since_last_attempt.is_some_and(|d| d < FAILED_FETCH_BACKOFF) {
                    return Err(OidcError::KeysUnavailable(
                        "the last attempt failed a moment ago; retry shortly".into(),
                    ));
                }
            }
        }
        history.last_attempt = Some(now);
        let fetched = self.fetch().await;
        history.last_failed = fetched.is_err();
        let keys = Arc::new(fetched?);
        *self.keys.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(keys.clone());
        if keys.keys.contains_key(kid) {
            Ok(keys)
        } else {
            Err(OidcError::UnknownKeyId)
        }
    }

    fn current_keys(&self) -> Option<Arc<KeySet>> {
        self.keys.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    async fn fetch(&self) -> Result<KeySet, OidcError> {
        let unavailable = |reason: String| OidcError::KeysUnavailable(format!("{}: {reason}", self.jwks_url));
        let response =
            self.client.get(&self.jwks_url).send().await.map_err(|e| unavailable(format!("no answer ({e})")))?;
        let status = response.status();
        if !status.is_success() {
            return Err(unavailable(format!("HTTP {status}")));
        }
        let ttl = keys_ttl(response.headers().get(reqwest::header::CACHE_CONTROL).and_then(|v| v.to_str().ok()));
        let mut body = Vec::new();
        crate::domain::read_capped_body(response, &mut body, MAX_JWKS_BYTES).await.map_err(|e| match e {
            crate::domain::BodyError::TooLarge => {
                unavailable(format!("the key set is larger than {MAX_JWKS_BYTES} bytes"))
            }
            crate::domain::BodyError::Read(e) => unavailable(format!("reading the keys: {e}")),
        })?;
        let keys = parse_jwks(&body).map_err(|reason| unavailable(reason.into()))?;
        tracing::info!(keys = keys.len(), ttl_secs = ttl.as_secs(), url = %self.jwks_url, "OIDC signing keys fetched");
        Ok(KeySet { keys, expires_at: Instant::now() + ttl })
    }

    /// Every claim check, in the order a caller fixes them; `now` in Unix seconds.
    fn check_claims(&self, claims: &TokenClaims, now: f64) -> Result<VerifiedToken, OidcError> {
        match claims.iss.as_deref() {
            None => return Err(OidcError::Malformed("it has no iss claim")),
            Some(iss) if !GOOGLE_ISSUERS.contains(&iss) => return Err(OidcError::WrongIssuer),
            Some(_) => {}
        }
        let audience_matches = match &claims.aud {
            None => return Err(OidcError::Malformed("it has no aud claim")),
            Some(Value::String(aud)) => *aud == self.audience,
            // A list is allowed by the JWT spec; Google sends one string. Only a list of exactly
            // this audience is as specific.
            Some(Value::Array(auds)) => auds.len() == 1 && auds[0].as_str() == Some(self.audience.as_str()),
            Some(_) => return Err(OidcError::Malformed("its aud claim is neither a string nor a list")),
        };
        if !audience_matches {
            return Err(OidcError::WrongAudience);
        }
        let exp = claims.exp.ok_or(OidcError::Malformed("it has no exp claim"))?;
        if exp + CLOCK_SKEW_SECS < now {
            return Err(OidcError::Expired);
        }
        let iat = claims.iat.ok_or(OidcError::Malformed("it has no iat claim"))?;
        if iat > now + CLOCK_SKEW_SECS || claims.nbf.is_some_and(|nbf| nbf > now + CLOCK_SKEW_SECS) {
            return Err(OidcError::NotYetValid);
        }
        let email = claims.email.as_deref().ok_or(OidcError::Malformed("it has no email claim"))?.to_ascii_lowercase();
        if !self.invokers.contains(&email) {
            return Err(OidcError::EmailNotAllowed);
        }
        // Google sends a boolean; some older tokens carried the string "true".
        let verified = matches!(&claims.email_verified, Some(Value::Bool(true)))
            || matches!(&claims.email_verified, Some(Value::String(s)) if s == "true");
        if !verified {
            return Err(OidcError::EmailNotVerified);
        }
        let sub = claims.sub.clone().filter(|s| !s.is_empty()).ok_or(OidcError::Malformed("it has no sub claim"))?;
        Ok(VerifiedToken { email, sub })
    }
}

/// The claims read from a token. Every one is optional here so that a missing claim is reported
/// by name instead of as a parse error.
#[derive(Debug, Default, Deserialize)]
struct TokenClaims {
    iss: Option<String>,
    aud: Option<Value>,
    exp: Option<f64>,
    iat: Option<f64>,
    nbf: Option<f64>,
    sub: Option<String>,
    email: Option<String>,
    email_verified: Option<Value>,
}

/// The header fields that decide how a token is checked.
#[derive(Deserialize)]
struct TokenHeader {
    alg: Option<String>,
    kid: Option<String>,
    crit: Option<Value>,
}

/// Reads the header itself (not through `jsonwebtoken`, which cannot even parse `alg: none`) so
/// that any algorithm but RS256 is refused by name before a key is looked up.
fn key_id(token: &str) -> Result<String, OidcError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(OidcError::Malformed("it is too long to be a Google ID token"));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(_payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(OidcError::Malformed("it is not a JWT (three base64url parts separated by dots)"));
    };
    let header = URL_SAFE_NO_PAD.decode(header).map_err(|_| OidcError::Malformed("its header is not base64url"))?;
    let header: TokenHeader =
        serde_json::from_slice(&header).map_err(|_| OidcError::Malformed("its header is not a JSON object"))?;
    if header.alg.as_deref() != Some("RS256") {
        return Err(OidcError::UnsupportedAlgorithm);
    }
    if header.crit.is_some() {
        return Err(OidcError::Malformed("it has critical header extensions (crit), which are not supported"));
    }
    header.kid.filter(|k| !k.is_empty()).ok_or(OidcError::Malformed("its header has no key id (kid)"))
}

/// Checks the RS256 signature and reads the claims; nothing about the claims is judged here.
fn verify_signature(token: &str, key: &DecodingKey) -> Result<TokenClaims, OidcError> {
    let mut validation = Validation::new(Algorithm::RS256);
    // The claims are checked by `check_claims`, with named errors and a clock tests can set.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims = HashSet::new();
    jsonwebtoken::decode::<TokenClaims>(token, key, &validation).map(|data| data.claims).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        match e.kind() {
            ErrorKind::InvalidSignature => OidcError::BadSignature,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => OidcError::UnsupportedAlgorithm,
            ErrorKind::Json(_) => OidcError::Malformed("its claims are not a JSON object of the expected types"),
            _ => OidcError::Malformed("its parts are not valid base64url JSON and signature"),
        }
    })
}

/// The RSA signing keys of a JWKS document, by key id. Keys of other types or uses are skipped
/// (a set may hold them); a set with no usable key is an error.
fn parse_jwks(body: &[u8]) -> Result<HashMap<String, DecodingKey>, &'static str> {
    #[derive(Deserialize)]
    struct Jwks {
        keys: Vec<Value>,
    }
    #[derive(Deserialize)]
    struct Jwk {
        kty: Option<String>,
        kid: Option<String>,
        alg: Option<String>,
        #[serde(rename = "use")]
        key_use: Option<String>,
        n: Option<String>,
        e: Option<String>,
    }
    let set: Jwks = serde_json::from_slice(body).map_err(|_| "the answer is not a JWKS ({\"keys\": [...]})")?;
    let mut keys = HashMap::new();
    for raw in set.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(raw) else { continue };
        let usable = jwk.kty.as_deref() == Some("RSA")
            && jwk.alg.as_deref().is_none_or(|alg| alg == "RS256")
            && jwk.key_use.as_deref().is_none_or(|u| u == "sig");
        let (true, Some(kid), Some(n), Some(e)) = (usable, jwk.kid, jwk.n, jwk.e) else { continue };
        if let Ok(key) = DecodingKey::from_rsa_components(&n, &e) {
            keys.insert(kid, key);
        }
    }
    if keys.is_empty() {
        return Err("the key set holds no RS256 signing key");
    }
    Ok(keys)
}

/// How long a fetched key set is trusted: its `max-age`, within the bounds.
fn keys_ttl(cache_control: Option<&str>) -> Duration {
    let max_age = cache_control.and_then(|value| {
        value.split(',').find_map(|directive| {
            let (name, secs) = directive.trim().split_once('=')?;
            if !name.trim().eq_ignore_ascii_case("max-age") {
                return None;
            }
            secs.trim().trim_matches('"').parse::<u64>().ok()
        })
    });
    max_age.map(Duration::from_secs).unwrap_or(DEFAULT_KEYS_TTL).clamp(MIN_KEYS_TTL, MAX_KEYS_TTL)
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const AUDIENCE: &str = "https://pipelines-run.example.com/api/v1/pipelines/push";
    const INVOKER: &str = "pubsub-push@acme-prod.iam.gserviceaccount.com";
    const NOW: f64 = 1_800_000_000.0;

    fn verifier() -> OidcVerifier {
        OidcVerifier::new(OidcConfig {
            audience: AUDIENCE.into(),
            invokers: vec![INVOKER.to_uppercase(), "scheduler@acme-prod.iam.gserviceaccount.com".into()],
            jwks_url: "http://127.0.0.1:9/certs".into(),
        })
        .unwrap()
    }

    fn claims() -> TokenClaims {
        TokenClaims {
            iss: Some("https://accounts.google.com".into()),
            aud: Some(json!(AUDIENCE)),
            exp: Some(NOW + 3600.0),
            iat: Some(NOW - 10.0),
            nbf: None,
            sub: Some("112233445566778899000".into()),
            email: Some(INVOKER.into()),
            email_verified: Some(json!(true)),
        }
    }

    fn check(edit: impl FnOnce(&mut TokenClaims)) -> Result<VerifiedToken, OidcError> {
        let mut c = claims();
        edit(&mut c);
        verifier().check_claims(&c, NOW)
    }

    fn segment(value: Value) -> String {
        URL_SAFE_NO_PAD.encode(value.to_string())
    }

    #[test]
    fn good_claims_pass_and_name_the_caller() {
        let ok = check(|_| {}).unwrap();
        assert_eq!(ok, VerifiedToken { email: INVOKER.into(), sub: "112233445566778899000".into() });
        assert!(check(|c| c.iss = Some("accounts.google.com".into())).is_ok());
        assert!(check(|c| c.aud = Some(json!([AUDIENCE]))).is_ok());
        assert!(check(|c| c.email = Some(INVOKER.to_uppercase())).is_ok(), "emails compare case-insensitively");
        assert!(check(|c| c.email_verified = Some(json!("true"))).is_ok());
    }

    #[test]
    fn each_claim_failure_is_named() {
        assert_eq!(check(|c| c.iss = Some("https://evil.example.com".into())), Err(OidcError::WrongIssuer));
        assert_eq!(check(|c| c.aud = Some(json!("https://other.example.com"))), Err(OidcError::WrongAudience));
        assert_eq!(check(|c| c.aud = Some(json!([AUDIENCE, "other"]))), Err(OidcError::WrongAudience));
        assert_eq!(
            check(|c| c.email = Some("intruder@evil.iam.gserviceaccount.com".into())),
            Err(OidcError::EmailNotAllowed)
        );
        assert_eq!(check(|c| c.email_verified = Some(json!(false))), Err(OidcError::EmailNotVerified));
        assert_eq!(check(|c| c.email_verified = None), Err(OidcError::EmailNotVerified));
        for (missing, edit) in [
            ("iss", (|c: &mut TokenClaims| c.iss = None) as fn(&mut TokenClaims)),
            ("aud", |c| c.aud = None),
            ("exp", |c| c.exp = None),
            ("iat", |c| c.iat = None),
            ("email", |c| c.email = None),
            ("sub", |c| c.sub = None),
        ] {
            let err = check(edit).unwrap_err();
            assert!(matches!(err, OidcError::Malformed(_)), "{missing}: {err}");
            assert!(err.to_string().contains(missing), "{missing}: {err}");
        }
    }

    #[test]
    fn time_claims_allow_a_small_skew() {
        assert!(check(|c| c.exp = Some(NOW - 30.0)).is_ok(), "within the skew");
        assert_eq!(check(|c| c.exp = Some(NOW - 61.0)), Err(OidcError::Expired));
        assert!(check(|c| c.iat = Some(NOW + 30.0)).is_ok(), "within the skew");
        assert_eq!(check(|c| c.iat = Some(NOW + 120.0)), Err(OidcError::NotYetValid));
        assert!(check(|c| c.nbf = Some(NOW + 30.0)).is_ok());
        assert_eq!(check(|c| c.nbf = Some(NOW + 120.0)), Err(OidcError::NotYetValid));
    }

    #[test]
    fn only_rs256_headers_with_a_key_id_are_read() {
        let token = |header: Value| format!("{}.{}.c2ln", segment(header), segment(json!({})));
        assert_eq!(key_id(&token(json!({"alg": "RS256", "kid": "k1", "typ": "JWT"}))), Ok("k1".into()));
        for alg in ["none", "None", "HS256", "HS512", "RS512", "ES256", "PS256"] {
            assert_eq!(key_id(&token(json!({"alg": alg, "kid": "k1"}))), Err(OidcError::UnsupportedAlgorithm), "{alg}");
        }
        assert_eq!(key_id(&token(json!({"kid": "k1"}))), Err(OidcError::UnsupportedAlgorithm));
        assert!(matches!(key_id(&token(json!({"alg": "RS256"}))), Err(OidcError::Malformed(m)) if m.contains("kid")));
        assert!(matches!(
            key_id(&token(json!({"alg": "RS256", "kid": "k1", "crit": ["exp"]}))),
            Err(OidcError::Malformed(_))
        ));
        // An unsigned token has an empty third part: still refused for its algorithm.
        let unsigned = format!("{}.{}.", segment(json!({"alg": "none", "kid": "k1"})), segment(json!({})));
        assert_eq!(key_id(&unsigned), Err(OidcError::UnsupportedAlgorithm));
        for bad in ["", "abc", "a.b", "a.b.c.d", "!!!.e30.c2ln", &"a".repeat(MAX_TOKEN_BYTES + 1)] {
            assert!(matches!(key_id(bad), Err(OidcError::Malformed(_))), "{bad:.20}");
        }
    }

    #[test]
    fn errors_never_echo_the_token() {
        let secret_looking = format!("{}.{}.c2lnbmF0dXJl", segment(json!({"alg": "HS256"})), segment(json!({})));
        let err = key_id(&secret_looking).unwrap_err().to_string();
        assert!(!err.contains("c2lnbmF0dXJl") && !err.contains(&secret_looking[..10]), "{err}");
    }

    #[test]
    fn signatures_are_checked_before_claims_are_read() {
        // A well-formed RSA key that did not sign the token.
        let n = URL_SAFE_NO_PAD.encode([0xc5u8; 256]);
        let key = DecodingKey::from_rsa_components(&n, "AQAB").unwrap();
        let body = json!({"iss": "https://accounts.google.com", "aud": AUDIENCE});
        let forged = format!(
            "{}.{}.{}",
            segment(json!({"alg": "RS256", "kid": "k1"})),
            segment(body),
            URL_SAFE_NO_PAD.encode([7u8; 256])
        );
        assert!(matches!(verify_signature(&forged, &key), Err(OidcError::BadSignature)));
    }

    #[test]
    fn jwks_keeps_rsa_signing_keys_by_kid() {
        let n = URL_SAFE_NO_PAD.encode([0xc5u8; 256]);
        let body = json!({"keys": [
            {"kty": "RSA", "kid": "a", "alg": "RS256", "use": "sig", "n": n, "e": "AQAB"},
            {"kty": "RSA", "kid": "b", "n": n, "e": "AQAB"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": n, "e": "AQAB"},
            {"kty": "RSA", "kid": "ps", "alg": "PS256", "n": n, "e": "AQAB"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"},
            {"kty": "RSA", "n": n, "e": "AQAB"},
            "not an object"
        ]});
        let keys = parse_jwks(body.to_string().as_bytes()).unwrap();
        let mut kids: Vec<_> = keys.keys().cloned().collect();
        kids.sort();
        assert_eq!(kids, ["a", "b"]);
        assert!(parse_jwks(b"{\"keys\": []}").is_err());
        assert!(parse_jwks(b"<html>").is_err());
        assert!(
            parse_jwks(json!({"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]}).to_string().as_bytes()).is_err()
        );
    }

    #[test]
    fn key_lifetime_follows_max_age_within_bounds() {
        assert_eq!(keys_ttl(Some("public, max-age=22150, must-revalidate, no-transform")), Duration::from_secs(22150));
        assert_eq!(keys_ttl(Some("MAX-AGE = \"600\"")), Duration::from_secs(600));
        assert_eq!(keys_ttl(Some("max-age=0")), MIN_KEYS_TTL);
        assert_eq!(keys_ttl(Some("max-age=99999999")), MAX_KEYS_TTL);
        assert_eq!(keys_ttl(Some("no-cache")), DEFAULT_KEYS_TTL);
        assert_eq!(keys_ttl(Some("max-age=soon")), DEFAULT_KEYS_TTL);
        assert_eq!(keys_ttl(None), DEFAULT_KEYS_TTL);
    }

    #[tokio::test]
    async fn unreachable_keys_are_reported_as_unavailable_then_backed_off() {
        let token = format!("{}.{}.c2ln", segment(json!({"alg": "RS256", "kid": "k1"})), segment(json!({})));
        let v = verifier();
        let first = v.verify(&token).await.unwrap_err();
        assert!(first.is_unavailable(), "{first}");
        assert!(first.to_string().contains("127.0.0.1:9"), "{first}");
        let second = v.verify(&token).await.unwrap_err();
        assert!(second.to_string().contains("failed a moment ago"), "{second}");
    }
}
