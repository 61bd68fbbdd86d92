//! Google Cloud: a service-account JSON key reading the organization's billing export in BigQuery.
//!
//! Validation: parse the key (`type`, `client_email`, `private_key` PEM, `token_uri`,
//! `project_id`), exchange a self-signed RS256 JWT for an access token at the key's `token_uri`
//! (the OAuth 2.0 JWT-bearer grant, scope `bigquery.readonly`), then `tables.get` on the billing
//! export table the organization names, at `{BIGQUERY_API_BASE}/bigquery/v2/…`.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;
use serde_json::{json, Value};

use super::{common_outcome, provider_message, redact, ProviderHttp, Validation};

pub const NAME: &str = "Google Cloud";
pub const DEFAULT_BIGQUERY_BASE: &str = "https://bigquery.googleapis.com";
pub const SCOPE: &str = "https://www.googleapis.com/auth/bigquery.readonly";
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The token endpoints Google puts in service-account keys; the only ones a key may name, in every
/// environment, so a key cannot make the server post to an address of the caller's choosing
/// (tests reach a fake through the development-only `GOOGLE_TOKEN_URL` setting instead).
pub const GOOGLE_TOKEN_URIS: [&str; 2] =
    ["https://oauth2.googleapis.com/token", "https://accounts.google.com/o/oauth2/token"];

/// A parsed service-account key. The private key never prints.
#[derive(Clone)]
pub struct ServiceAccountKey {
    pub client_email: String,
    pub project_id: String,
    pub private_key_id: Option<String>,
    pub token_uri: String,
    private_key: String,
}

impl fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("project_id", &self.project_id)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

impl ServiceAccountKey {
    /// Parses the key; every problem names its field (`service_account_json.<field>`) and never
    /// quotes the private key. `allow_sandbox` accepts a sandbox key (`project_id` `sandbox`,
    /// outside production), which never signs a token.
    pub fn parse(key: &Value, allow_sandbox: bool) -> Result<ServiceAccountKey, String> {
        let field = |name: &str| key.get(name).and_then(Value::as_str).map(str::trim).filter(|v| !v.is_empty());
        let Some(_) = key.as_object() else {
            return Err(
                "service_account_json must be the service-account key file (a JSON object, or a string holding one)"
                    .into(),
            );
        };
        let mut problems = Vec::new();
        match field("type") {
            Some("service_account") => {}
            Some(_) => problems.push("service_account_json.type must be \"service_account\" (a service-account key file, not user credentials)".to_string()),
            None => problems.push("service_account_json.type is missing; it must be \"service_account\"".to_string()),
        }
        let client_email = field("client_email").unwrap_or_default().to_string();
        if !(client_email.contains('@') && client_email.len() <= 320 && !client_email.contains(char::is_whitespace)) {
            problems.push(
                "service_account_json.client_email must be the service account's e-mail (…@….iam.gserviceaccount.com)"
                    .into(),
            );
        }
        let project_id = field("project_id").unwrap_or_default().to_string();
        if project_id.is_empty() || project_id.len() > 64 {
            problems.push("service_account_json.project_id is missing".into());
        }
        let private_key = field("private_key").unwrap_or_default().to_string();
        // A sandbox key (outside production) reads the local sandbox export: it never signs a
        // token, so any key material will do.
        let sandbox = allow_sandbox && project_id == SANDBOX_PROJECT;
        if sandbox {
            if private_key.is_empty() {
                problems.push("service_account_json.private_key is missing (a sandbox key may hold any text)".into());
            }
        } else if !(private_key.starts_with("-----BEGIN PRIVATE KEY-----")
            || private_key.starts_with("-----BEGIN RSA PRIVATE KEY-----"))
        {
            problems.push("service_account_json.private_key must be the PEM private key of the key file (-----BEGIN PRIVATE KEY-----…)".into());
        } else if jsonwebtoken::EncodingKey::from_rsa_pem(private_key.as_bytes()).is_err() {
            problems.push("service_account_json.private_key is not a readable RSA private key in PEM form".into());
        }
        let token_uri = field("token_uri").unwrap_or_default().to_string();
        if !sandbox && !GOOGLE_TOKEN_URIS.contains(&token_uri.as_str()) {
            problems.push(format!(
                "service_account_json.token_uri must be Google's token endpoint ({})",
                GOOGLE_TOKEN_URIS[0]
            ));
        }
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        let private_key_id = field("private_key_id").map(str::to_string);
        Ok(ServiceAccountKey { client_email, project_id, private_key_id, token_uri, private_key })
    }

    /// The JWT-bearer assertion: RS256 over `{iss, scope, aud, iat, exp}`, valid one hour.
    pub fn assertion(&self, scope: &str, now: i64) -> Result<String, String> {
        #[derive(Serialize)]
        struct Claims<'a> {
            iss: &'a str,
            scope: &'a str,
            aud: &'a str,
            iat: i64,
            exp: i64,
        }
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = self.private_key_id.clone();
        let claims = Claims { iss: &self.client_email, scope, aud: &self.token_uri, iat: now, exp: now + 3600 };
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(self.private_key.as_bytes())
            .map_err(|_| "the service account's private key cannot be read".to_string())?;
        // The error of `encode` says why signing failed (e.g. key too short), never the key.
        jsonwebtoken::encode(&header, &claims, &key)
            .map_err(|e| format!("the service account's private key cannot sign a token ({e})"))
    }
}

static PROJECT_RE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$").unwrap());
static DATASET_RE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_]{1,1024}$").unwrap());
/// The project of sandbox service-account keys and billing export tables (local mode only).
pub const SANDBOX_PROJECT: &str = "sandbox";

/// A sandbox export table id may carry `-` knobs (`gcp_billing_export_v1_acme-rows1000`).
static SANDBOX_TABLE_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^gcp_billing_export_(resource_)?v1_[A-Za-z0-9_-]{1,200}$").unwrap());
static EXPORT_TABLE_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^gcp_billing_export_(resource_)?v1_[A-Za-z0-9_]{1,200}$").unwrap());

/// `project.dataset.gcp_billing_export_v1_XXXX` (or the detailed `…_resource_v1_…` export).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BillingExportTable {
    pub project: String,
    pub dataset: String,
    pub table: String,
}

impl BillingExportTable {
    pub fn parse(raw: &str) -> Result<BillingExportTable, String> {
        let bad = || {
            format!(
                "billing_export_table must be project.dataset.gcp_billing_export_v1_<BILLING_ACCOUNT_ID> \
                 (e.g. my-project.billing.gcp_billing_export_v1_010101_F0FFF0_61C528), got {} characters",
                raw.chars().count()
            )
        };
        let parts: Vec<&str> = raw.trim().split('.').collect();
        let [project, dataset, table] = parts.as_slice() else { return Err(bad()) };
        let table_ok =
            EXPORT_TABLE_RE.is_match(table) || (*project == SANDBOX_PROJECT && SANDBOX_TABLE_RE.is_match(table));
        if !PROJECT_RE.is_match(project) || !DATASET_RE.is_match(dataset) || !table_ok {
            return Err(bad());
        }
        Ok(BillingExportTable { project: project.to_string(), dataset: dataset.to_string(), table: table.to_string() })
    }
}

impl fmt::Display for BillingExportTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.project, self.dataset, self.table)
    }
}

pub struct Gcp<'a> {
    pub http: &'a ProviderHttp,
    /// `BIGQUERY_API_BASE` or [`DEFAULT_BIGQUERY_BASE`], without a trailing slash.
    pub bigquery_base: &'a str,
    /// Where token requests go instead of the key's `token_uri` (`GOOGLE_TOKEN_URL`, development
    /// only: a fake of Google's endpoint in tests). The assertion's audience stays the key's.
    pub token_url: Option<&'a str>,
}

impl Gcp<'_> {
    /// An access token for `scope`, or the outcome that stopped it.
    pub async fn access_token(&self, key: &ServiceAccountKey, scope: &str) -> Result<String, Validation> {
        let assertion = key
            .assertion(scope, chrono::Utc::now().timestamp())
            .map_err(|reason| Validation::Rejected { provider_status: 0, reason })?;
        let request = self
            .http
            .client
            .post(self.token_url.unwrap_or(&key.token_uri))
            .form(&[("grant_type", JWT_BEARER_GRANT), ("assertion", assertion.as_str())]);
        let (status, headers, body) = self.http.send(NAME, request).await?;
        if (200..300).contains(&status) {
            return body.get("access_token").and_then(Value::as_str).map(str::to_string).ok_or_else(|| {
                Validation::Unreachable {
                    status: 502,
                    message: "Google's token endpoint answered without an access token; try again later".into(),
                }
            });
        }
        if let Some(outcome) = common_outcome(NAME, status, &headers) {
            return Err(outcome);
        }
        let error = body.get("error").and_then(Value::as_str).unwrap_or("error");
        let said = provider_message(&body).map(|m| redact(&m, &assertion)).unwrap_or_else(|| format!("HTTP {status}"));
        Err(Validation::Rejected {
            provider_status: status,
            reason: format!(
                "Google refused the service account's token request ({error}: {said}); check that the key is \
                 current (not deleted or disabled) and belongs to {}",
                key.client_email
            ),
        })
    }

    /// Token, then `tables.get` on the billing export table.
    pub async fn validate(&self, key: &ServiceAccountKey, table: &BillingExportTable) -> Validation {
        let token = match self.access_token(key, SCOPE).await {
            Ok(t) => t,
            Err(outcome) => return outcome,
        };
        let url = format!(
            "{}/bigquery/v2/projects/{}/datasets/{}/tables/{}",
            self.bigquery_base, table.project, table.dataset, table.table
        );
        let request = self.http.client.get(url).bearer_auth(&token);
        let (status, headers, body) = match self.http.send(NAME, request).await {
            Ok(r) => r,
            Err(outcome) => return outcome,
        };
        if (200..300).contains(&status) {
            return Validation::Valid {
                details: json!({
                    "client_email": key.client_email,
                    "service_account_project_id": key.project_id,
                    "billing_export_table": table.to_string(),
                    "table_type": body.get("type"),
                    "table_location": body.get("location"),
                    "num_rows": body.get("numRows"),
                }),
            };
        }
        if let Some(outcome) = common_outcome(NAME, status, &headers) {
            return outcome;
        }
        let said = provider_message(&body).map(|m| redact(&m, &token)).unwrap_or_else(|| format!("HTTP {status}"));
        let advice = match status {
            404 => format!("the billing export table {table} was not found; check the name and that the export is enabled"),
            401 | 403 => format!(
                "{} cannot read {table}; grant it roles/bigquery.dataViewer on the dataset (and roles/bigquery.jobUser on a project)",
                key.client_email
            ),
            _ => format!("BigQuery refused tables.get on {table}"),
        };
        Validation::Rejected { provider_status: status, reason: format!("{advice} (BigQuery said: {said})") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn billing_export_table_format() {
        let t = BillingExportTable::parse("my-project.billing.gcp_billing_export_v1_010101_F0FFF0_61C528").unwrap();
        assert_eq!(t.project, "my-project");
        assert_eq!(t.to_string(), "my-project.billing.gcp_billing_export_v1_010101_F0FFF0_61C528");
        assert!(BillingExportTable::parse("my-project.billing.gcp_billing_export_resource_v1_0101").is_ok());
        for bad in [
            "",
            "p.d",
            "my-project.billing.other_table",
            "My-Project.billing.gcp_billing_export_v1_0101",
            "my-project.bil-ling.gcp_billing_export_v1_0101",
            "my-project.billing.gcp_billing_export_v1_0101.x",
            "my-project.billing.gcp_billing_export_v1_01`; DROP",
        ] {
            assert!(BillingExportTable::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_problems_name_fields_and_never_the_private_key() {
        let err = ServiceAccountKey::parse(
            &json!({"type": "authorized_user", "private_key": "-----BEGIN PRIVATE KEY-----\nSECRETSTUFF\n-----END PRIVATE KEY-----\n"}),
            true,
        )
        .unwrap_err();
        for field in ["type", "client_email", "project_id", "private_key", "token_uri"] {
            assert!(err.contains(&format!("service_account_json.{field}")), "{field}: {err}");
        }
        assert!(!err.contains("SECRETSTUFF"));
        assert!(ServiceAccountKey::parse(&json!("x"), true).unwrap_err().contains("JSON object"));
    }
}
