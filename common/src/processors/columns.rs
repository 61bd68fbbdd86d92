//! Column positions: where the columns a processor writes or reads sit in a table, found in the
//! table's schema once per step, so records are built and read by position, never by name.

use crate::pipeline::StepError;
use crate::warehouse::TableSchema;

/// Declares where the columns a processor writes or reads sit in a table: a struct with one
/// position per column, named like the column, found in the table's schema once per step by
/// `new` (a schema without one of them is a clear step error, not a misplaced cell). Records are
/// then built and read by position (`record[cols.model]`), with no name lookup per row.
macro_rules! table_columns {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($column:ident),+ $(,)? }) => {
        $(#[$meta])*
        $vis struct $name {
            /// Columns of the whole table (a record's length).
            #[allow(dead_code, reason = "a set of columns that is only read or only part of a record builds none")]
            width: usize,
            $(pub $column: usize,)+
        }

        impl $name {
            pub fn new(schema: &$crate::warehouse::TableSchema) -> Result<Self, $crate::pipeline::StepError> {
                Ok($name {
                    width: schema.fields.len(),
                    $($column: $crate::processors::columns::column_at(schema, stringify!($column))?,)+
                })
            }

            /// A record of the table with every cell NULL.
            #[allow(dead_code, reason = "a set of columns that is only read or only part of a record builds none")]
            pub fn record(&self) -> $crate::warehouse::Record {
                vec![$crate::warehouse::Cell::Null; self.width]
            }
        }

        impl $crate::processors::columns::TableColumns for $name {
            fn new(schema: &$crate::warehouse::TableSchema) -> Result<Self, $crate::pipeline::StepError> {
                $name::new(schema)
            }
        }
    };
}
pub(crate) use table_columns;

/// A set of column positions declared with [`table_columns!`].
pub(crate) trait TableColumns: Sized {
    /// Finds every column in `schema`, or names the one it lacks.
    fn new(schema: &TableSchema) -> Result<Self, StepError>;
}

/// The position of a column in a table's schema, or the step error naming what is missing.
pub(crate) fn column_at(schema: &TableSchema, column: &str) -> Result<usize, StepError> {
    schema.fields.iter().position(|f| f.name == column).ok_or_else(|| {
        StepError::Failed(format!(
            "table {} has no column {column}: its schema file (configs/*/schemas/{}.json) must define it",
            schema.name, schema.name
        ))
    })
}

#[cfg(test)]
mod tests {
    use crate::processors::openai;

    #[test]
    fn columns_are_found_once_or_named_missing() {
        let schema = crate::processors::shipped_schema("openai", openai::usage::TABLE);
        let columns = openai::usage::RawColumns::new(&schema).unwrap();
        assert_eq!(schema.fields[columns.model].name, "model");
        assert_eq!(columns.record().len(), schema.fields.len());
        let mut lacking = schema.clone();
        lacking.fields.retain(|f| f.name != "service_tier");
        let e = openai::usage::RawColumns::new(&lacking).err().expect("a schema without service_tier is refused");
        assert!(e.to_string().contains("has no column service_tier"), "{e}");
    }
}
