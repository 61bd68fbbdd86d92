//! Domain newtypes parsed at the edge, and the small primitives (random tokens, digests, private
//! files) that keys and secrets are built from, and the size-capped read every outbound HTTP
//! answer goes through ([`read_capped_body`]).

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::sync::LazyLock;

use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::OsRng;
use regex::Regex;
use serde::Serialize;
use sha2::{Digest, Sha256};

static SLUG_RE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-z_][a-z0-9_]{2,49}$").unwrap());

/// An organization's slug: `^[a-z_][a-z0-9_]{2,49}$`. It becomes part of a dataset name, so nothing
/// else ever gets that far, and like an identifier it does not start with a digit (`000` made
/// the dataset `000_dev`, which no backend takes: onboarding answered 500; found by schemathesis).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct OrgSlug(String);

impl OrgSlug {
    pub fn parse(raw: &str) -> Result<OrgSlug, String> {
        if SLUG_RE.is_match(raw) {
            Ok(OrgSlug(raw.to_string()))
        } else {
            Err(format!(
                "org_slug must be 3 to 50 characters of lowercase letters, digits and underscores, not starting with a digit (got {} characters{})",
                raw.chars().count(),
                if raw.chars().any(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')) {
                    ", including characters outside a-z, 0-9 and _"
                } else {
                    ""
                }
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrgSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

static EMAIL_RE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$").unwrap()
});

/// An e-mail address in the usual `local@domain.tld` shape, at most 254 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Email, String> {
        let raw = raw.trim();
        if raw.len() <= 254 && EMAIL_RE.is_match(raw) {
            Ok(Email(raw.to_ascii_lowercase()))
        } else {
            Err("admin_email must be an e-mail address such as admin@example.com".into())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `bytes` random bytes from the OS, hex-encoded (so `2 * bytes` characters).
static IDENT_RE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[A-Za-z_][A-Za-z0-9_]{0,299}$").unwrap());

/// Whether `name` is safe to use as a dataset, table or column name on both backends.
pub fn is_identifier(name: &str) -> bool {
    IDENT_RE.is_match(name)
}

/// BigQuery project ids: 6–30 lowercase letters, digits and hyphens, starting with a letter
/// (optionally `domain:` scoped).
pub fn is_project_id(project: &str) -> bool {
    let id = project.rsplit_once(':').map_or(project, |(_, id)| id);
    (6..=30).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && !id.ends_with('-')
        && id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A plain `YYYY-MM-DD` date (surrounding spaces ignored) between 1970 and 9999: exactly four
/// year digits, two month and two day digits. chrono alone also takes signs (`-999-01-01`,
/// `+2026-…`) and unpadded fields, which no API of ours promises.
pub fn parse_date(text: &str) -> Option<chrono::NaiveDate> {
    let text = text.trim();
    let shaped = text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() });
    let day = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok().filter(|_| shaped)?;
    (1970..=9999).contains(&chrono::Datelike::year(&day)).then_some(day)
}

/// Why `text` cannot be a display name (a company or credential name shown to people), if it
/// cannot: control characters, bidirectional controls (U+202A–U+202E, U+2066–U+2069, U+200E,
/// U+200F, U+061C), which make a name read differently from what it is, and zero-width characters
/// (U+200B–U+200D, U+2060, U+FEFF), which make two names that look alike differ.
pub fn display_text_problem(text: &str) -> Option<String> {
    text.chars().find_map(|c| {
        let kind = match c {
            c if c.is_control() => "a control character",
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}' => {
                "a bidirectional control"
            }
            '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' => "a zero-width character",
            _ => return None,
        };
        Some(format!("contains {kind} (U+{:04X})", u32::from(c)))
    })
}

pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The part of a key that may be shown: its last four characters.
pub fn fingerprint(secret: &str) -> String {
    let tail: String = secret.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
    format!("…{tail}")
}

/// Writes a file only its owner can read (0600), creating it atomically so no other process
/// ever sees it half-written or with wider permissions.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// The text of an exact decimal amount (`"2.50"`, `"0.075"`): amounts are never JSON numbers,
/// so no client reads them into a float.
pub const DECIMAL_PATTERN: &str = r"^-?[0-9]+(\.[0-9]+)?$";

/// An exact decimal amount as text (what `rust_decimal` and the warehouse's NUMERIC serialize
/// to), for the API contract.
pub struct DecimalText;

impl utoipa::PartialSchema for DecimalText {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(DECIMAL_PATTERN))
            .description(Some("An exact decimal number as text, e.g. \"2.50\"."))
            .into()
    }
}

impl utoipa::ToSchema for DecimalText {}

/// Why an answer's body was not read.
#[derive(Debug)]
pub enum BodyError {
    Read(reqwest::Error),
    /// Longer than the limit (announced by Content-Length, or found while streaming): not read.
    TooLarge,
}

/// An HTTP answer's body as bytes, read chunk by chunk and refused as soon as it is longer than
/// `limit`: an answer from outside (a provider, an organization's BigQuery export) is never
/// held whole before its size is known. One buffer sized from Content-Length: a page is
/// megabytes, and `Response::bytes` gathers the chunks and then copies them (twice the memory);
/// the caller may reuse `body` across pages.
pub async fn read_capped_body(
    mut response: reqwest::Response,
    body: &mut Vec<u8>,
    limit: usize,
) -> Result<(), BodyError> {
    body.clear();
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    let expected = response.content_length().unwrap_or(0).min(limit as u64);
    body.reserve(expected as usize);
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        for ok in ["abc", "acme_corp", "a1_b2_c3", "_ab", &"x".repeat(50)] {
            assert!(OrgSlug::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "",
            // A dataset name starts with a letter or an underscore.
            "000",
            "1acme",
            "Acme",
            "acme-corp",
            "acme corp",
            "acme;drop",
            "ac\u{e9}me",
            "a\"b\"c",
            "../etc",
            &"x".repeat(51),
            "acme\n",
        ] {
            assert!(OrgSlug::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn emails() {
        assert_eq!(Email::parse(" Admin@Example.com ").unwrap().as_str(), "admin@example.com");
        for bad in ["", "a", "a@", "@b.com", "a@b", "a b@c.com", "a@b..com"] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tokens_are_random_and_long() {
        let a = random_token(16);
        assert_eq!(a.len(), 32);
        assert_ne!(a, random_token(16));
    }

    #[test]
    fn display_text_refuses_controls_bidi_and_zero_width() {
        for good in ["Acme Inc.", "Société Générale", "株式会社アクメ", "שלום בע״מ", "O'Brien & Sons — Ltd"]
        {
            assert_eq!(display_text_problem(good), None, "{good}");
        }
        let cases = [
            ('\u{7}', "a control character (U+0007)"),
            ('\n', "a control character (U+000A)"),
            ('\u{202A}', "a bidirectional control (U+202A)"),
            ('\u{202E}', "a bidirectional control (U+202E)"),
            ('\u{2066}', "a bidirectional control (U+2066)"),
            ('\u{2069}', "a bidirectional control (U+2069)"),
            ('\u{200E}', "a bidirectional control (U+200E)"),
            ('\u{200F}', "a bidirectional control (U+200F)"),
            ('\u{061C}', "a bidirectional control (U+061C)"),
            ('\u{200B}', "a zero-width character (U+200B)"),
            ('\u{200D}', "a zero-width character (U+200D)"),
            ('\u{2060}', "a zero-width character (U+2060)"),
            ('\u{FEFF}', "a zero-width character (U+FEFF)"),
        ];
        for (c, expected) in cases {
            assert_eq!(display_text_problem(&format!("Acme{c}Corp")), Some(format!("contains {expected}")));
        }
    }

    #[test]
    fn fingerprint_shows_only_the_tail() {
        assert_eq!(fingerprint("acme_api_0123456789abcdef"), "…cdef");
    }

    #[test]
    fn private_files_are_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        write_private_file(&path, b"x").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert!(write_private_file(&path, b"y").is_err(), "never overwrites");
    }
}
