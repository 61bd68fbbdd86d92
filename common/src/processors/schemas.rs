//! The processors' table schemas: `configs/{provider}/schemas/<table>.json`.

use crate::configs::Configs;
use crate::pipeline::StepError;
use crate::warehouse::TableSchema;

/// `configs/{provider}/schemas/{table}.json`, checked.
pub fn table_schema(configs: &Configs, provider: &str, table: &str) -> Result<TableSchema, StepError> {
    load_schema(&configs.root, provider, table).map_err(StepError::Failed)
}

fn load_schema(root: &std::path::Path, provider: &str, table: &str) -> Result<TableSchema, String> {
    let path = root.join(provider).join("schemas").join(format!("{table}.json"));
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let mut schema: TableSchema = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    schema.name = table.to_string();
    let problems = schema.problems();
    if problems.is_empty() {
        Ok(schema)
    } else {
        Err(format!("{}: {}", path.display(), problems.join("; ")))
    }
}

/// A shipped provider table's schema, for the unit tests.
#[cfg(test)]
pub(crate) fn shipped_schema(provider: &str, table: &str) -> TableSchema {
    let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../configs"));
    load_schema(root, provider, table).unwrap_or_else(|e| panic!("{e}"))
}

#[cfg(test)]
mod tests {
    use crate::processors::{anthropic, openai};

    #[test]
    fn shipped_schemas_are_valid() {
        for (provider, table) in [
            ("openai", openai::usage::TABLE),
            ("openai", openai::cost::TABLE),
            ("openai", openai::subscriptions::TABLE),
            ("anthropic", anthropic::usage::TABLE),
            ("anthropic", anthropic::cost::TABLE),
        ] {
            let s = super::shipped_schema(provider, table);
            assert_eq!(s.field("usage_date").map(|f| f.field_type), Some(crate::warehouse::FieldType::Date), "{table}");
            assert!(s.field("org_slug").is_some(), "{table}");
        }
    }
}
