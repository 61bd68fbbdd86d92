//! The processors' table schemas: `configs/{provider}/schemas/<table>.json`, loaded and checked
//! with the other configs at start-up ([`Configs::table_schema`]), never read from disk by a step.

use crate::configs::Configs;
use crate::pipeline::StepError;
use crate::warehouse::TableSchema;

/// The schema of a provider table a step reads or writes.
pub fn table_schema<'a>(configs: &'a Configs, provider: &str, table: &str) -> Result<&'a TableSchema, StepError> {
    // Start-up refuses a pipeline whose processor names a table without a schema, so this fails
    // only for configs loaded without that check (a processor run by hand in a test).
    configs.table_schema(provider, table).ok_or_else(|| {
        StepError::Failed(format!("table {table} has no schema: configs/{provider}/schemas/{table}.json is not loaded"))
    })
}

/// The shipped configs, loaded once for the unit tests.
#[cfg(test)]
pub(crate) fn shipped_configs() -> &'static Configs {
    static CONFIGS: std::sync::OnceLock<Configs> = std::sync::OnceLock::new();
    CONFIGS.get_or_init(|| {
        let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../configs"));
        Configs::load(root, &super::REGISTRY).unwrap_or_else(|e| panic!("{e}"))
    })
}

/// A shipped provider table's schema, for the unit tests.
#[cfg(test)]
pub(crate) fn shipped_schema(provider: &str, table: &str) -> TableSchema {
    table_schema(shipped_configs(), provider, table).unwrap_or_else(|e| panic!("{e}")).clone()
}

#[cfg(test)]
mod tests {
    use crate::configs::pipelines::StepTypes;
    use crate::processors::REGISTRY;

    /// Every table a processor names has a schema with the columns a window write filters on.
    #[test]
    fn processor_tables_have_window_columns() {
        let mut tables = 0;
        for ps_type in REGISTRY.types() {
            let provider = ps_type.split('.').next().unwrap_or_default();
            for table in REGISTRY.tables(ps_type) {
                let s = super::shipped_schema(provider, table);
                let usage_date = s.field("usage_date").map(|f| f.field_type);
                assert_eq!(usage_date, Some(crate::warehouse::FieldType::Date), "{table}");
                assert!(s.field("org_slug").is_some(), "{table}");
                tables += 1;
            }
        }
        assert!(tables >= 5, "the processors name their tables");
    }
}
