//! The API contract of the book entries. Their columns come from the configs (the book tables'
//! and the catalog's schemas under `configs/`, the value columns' rules in
//! `common::pricebook::records`), so their schemas are generated from the loaded [`Configs`] when
//! the document is built ([`complete`]); the handlers' annotations name them through the markers
//! below, each a `$ref` to the component [`complete`] writes.

use std::collections::BTreeMap;

use common::configs::schema::{Field, Mode, TableSchema};
use common::configs::{Configs, PRICE_CATALOG_TABLE};
use common::http::openapi::{field_schema, row_schema, DECIMAL_PATTERN};
use common::pricebook::records::{BookKind, Column, Kind};
use utoipa::openapi::schema::{
    AdditionalProperties, Discriminator, KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, SchemaType,
    Type,
};
use utoipa::openapi::{OpenApi, Ref, RefOr};

/// A type whose schema is the component of its name, written by [`complete`].
macro_rules! generated_schema {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        pub struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                Ref::from_schema_name(stringify!($name)).into()
            }
        }

        impl utoipa::ToSchema for $name {}
    )*};
}

generated_schema!(
    /// A version of a catalog price as the pricing routes show it (`source: catalog`).
    CatalogPrice,
    /// A version of an organization's override of a catalog price (`source: override`).
    PricingOverride,
    /// A row of the merged pricing view: a catalog price or an override, told apart by `source`.
    PricingEntry,
    /// A version of a plan of the subscriptions book.
    SubscriptionPlan,
    /// The body that adds a price to the pricing book.
    NewPricing,
    /// The body of a new version of a price: the columns that change.
    PricingChanges,
    /// The body that adds a plan to the subscriptions book.
    NewSubscription,
    /// The body of a new version of a plan: the columns that change.
    SubscriptionChanges,
);

/// Writes the generated components into the function's document.
pub fn complete(doc: &mut OpenApi, configs: &Configs) {
    let pricing = book_table(configs, BookKind::Pricing);
    let subscriptions = book_table(configs, BookKind::Subscriptions);
    let has_catalog = configs.central_table_names().contains(&PRICE_CATALOG_TABLE);
    let catalog = if has_catalog { configs.central_table(PRICE_CATALOG_TABLE).clone() } else { empty_table() };

    let source = |value: &str, what: &str| {
        ObjectBuilder::new().schema_type(Type::String).enum_values(Some([value])).description(Some(what))
    };
    let catalog_source = catalog.field("source").map(|f| {
        let mut f = f.clone();
        f.description = format!("Where the catalog got this price: {}", f.description);
        field_schema(&f)
    });
    let mut catalog_price = row_schema(&catalog, &["source", "superseded_at", "superseded_by"])
        .description(Some("A catalog price, in force for the days its version covers."))
        .property("source", source("catalog", "The price is the system-wide catalog's."))
        .required("source");
    if let Some(origin) = catalog_source {
        catalog_price = catalog_price.property("catalog_source", origin).required("catalog_source");
    }
    let pricing_override = row_schema(&pricing, &["org_slug", "source"])
        .description(Some("The organization's own price of a model, in force for the days its version covers."))
        .property("source", source("override", "The price is the organization's override of the catalog."))
        .required("source");
    let entry = OneOfBuilder::new()
        .item(Ref::from_schema_name("CatalogPrice"))
        .item(Ref::from_schema_name("PricingOverride"))
        .discriminator(Some(Discriminator::with_mapping(
            "source",
            [("catalog", "#/components/schemas/CatalogPrice"), ("override", "#/components/schemas/PricingOverride")],
        )))
        .description(Some("A price of the merged view: the catalog's, or the organization's override."));
    let plan = row_schema(&subscriptions, &["org_slug"]).description(Some("A version of a plan."));

    let components = doc.components.get_or_insert_with(Default::default);
    let schemas: [(&str, Schema); 8] = [
        ("CatalogPrice", catalog_price.build().into()),
        ("PricingOverride", pricing_override.build().into()),
        ("PricingEntry", entry.build().into()),
        ("SubscriptionPlan", plan.build().into()),
        ("NewPricing", body(BookKind::Pricing, true)),
        ("PricingChanges", body(BookKind::Pricing, false)),
        ("NewSubscription", body(BookKind::Subscriptions, true)),
        ("SubscriptionChanges", body(BookKind::Subscriptions, false)),
    ];
    for (name, schema) in schemas {
        components.schemas.insert(name.into(), schema.into());
    }
}

/// A book's table as every provider has it: the columns of any provider's table, required
/// where every provider's requires them (the providers' tables are alike today; nothing
/// promises they stay so).
fn book_table(configs: &Configs, kind: BookKind) -> TableSchema {
    let mut fields: BTreeMap<&str, Field> = BTreeMap::new();
    let mut order: Vec<&str> = Vec::new();
    let seeds: Vec<&TableSchema> = configs.price_books.values().map(|seed| seed.schema(kind)).collect();
    for schema in &seeds {
        for field in &schema.fields {
            if !fields.contains_key(field.name.as_str()) {
                order.push(&field.name);
                fields.insert(&field.name, field.clone());
            }
        }
    }
    for (name, field) in fields.iter_mut() {
        if seeds.iter().any(|s| s.field(name).is_none_or(|f| f.mode != Mode::Required)) {
            field.mode = Mode::Nullable;
        }
    }
    let mut table = empty_table();
    table.fields = order.iter().filter_map(|name| fields.remove(name)).collect();
    table
}

fn empty_table() -> TableSchema {
    TableSchema {
        name: String::new(),
        description: String::new(),
        partitioning: None,
        clustering: Vec::new(),
        fields: Vec::new(),
    }
}

/// A request body of a book: its value columns, with what each accepts (amounts as decimal text or
/// a JSON number, kept exact), and `effective_from`. `new`: an entry to add (its required columns
/// required; `currency` defaults to USD), else the columns of a new version.
fn body(kind: BookKind, new: bool) -> Schema {
    let mut object = ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .description(Some(if new {
            format!("A new {}: its columns; absent optional columns are null.", kind.entry())
        } else {
            format!(
                "The columns of the {}'s new version that change (`{}` may be repeated, not changed).",
                kind.entry(),
                kind.key_column()
            )
        }));
    for column in kind.columns() {
        object = object.property(column.name, input_schema(kind, column));
        if new && column.required && column.name != "currency" {
            object = object.required(column.name);
        }
    }
    object = object.property(
        "effective_from",
        ObjectBuilder::new()
            .schema_type([Type::String, Type::Null].into_iter().collect::<SchemaType>())
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Date)))
            .description(Some("The day the version takes effect (YYYY-MM-DD; default today).")),
    );
    object.build().into()
}

/// What one column of a request accepts. Lenient where the handler is (a value is trimmed, an
/// empty optional value is null), so nothing documented as invalid is accepted; the rules are
/// in the description and the 400 names the one broken.
fn input_schema(kind: BookKind, column: &Column) -> ObjectBuilder {
    let types = |mut types: Vec<Type>| -> SchemaType {
        if !column.required {
            types.push(Type::Null);
        }
        if types.len() == 1 {
            types.remove(0).into()
        } else {
            types.into_iter().collect()
        }
    };
    let (schema_type, what) = match column.kind {
        Kind::Key => (types(vec![Type::String]), format!("The {} (the entry's key).", kind.entry())),
        Kind::Money => (
            types(vec![Type::String, Type::Number]),
            format!(
                "A non-negative amount, at most 9 decimal places: decimal text ({DECIMAL_PATTERN}) or a JSON number, \
                 read exactly."
            ),
        ),
        Kind::Factor => (
            types(vec![Type::String, Type::Number]),
            "A factor above 0, at most 9 decimal places: decimal text or a JSON number, read exactly.".to_string(),
        ),
        Kind::Count => (types(vec![Type::Integer, Type::String]), "A positive whole number.".to_string()),
        Kind::Currency => (types(vec![Type::String]), "An ISO 4217 code (default USD).".to_string()),
        Kind::Date => (types(vec![Type::String]), "A date, YYYY-MM-DD.".to_string()),
        Kind::OneOf(options) => (types(vec![Type::String]), format!("One of: {}.", options.join(", "))),
        Kind::Text => (types(vec![Type::String]), "Text, at most 500 characters, no control characters.".to_string()),
    };
    let mut schema = ObjectBuilder::new().schema_type(schema_type).description(Some(what));
    if let (Kind::OneOf(options), true) = (column.kind, column.required) {
        schema = schema.enum_values(Some(options.iter().copied()));
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_of_the_books_is_in_the_contract() {
        let configs = Configs::load(
            std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs")),
            &common::processors::REGISTRY,
        )
        .expect("the repository's configs");
        let mut doc = OpenApi::default();
        complete(&mut doc, &configs);
        let json = serde_json::to_value(&doc).unwrap();
        let schemas = &json["components"]["schemas"];
        for kind in [BookKind::Pricing, BookKind::Subscriptions] {
            let (row, new) = match kind {
                BookKind::Pricing => ("PricingOverride", "NewPricing"),
                BookKind::Subscriptions => ("SubscriptionPlan", "NewSubscription"),
            };
            for column in kind.columns() {
                assert!(schemas[row]["properties"].get(column.name).is_some(), "{row} lacks {}", column.name);
                assert!(schemas[new]["properties"].get(column.name).is_some(), "{new} lacks {}", column.name);
            }
            assert!(schemas[row]["properties"].get("org_slug").is_none(), "{row} shows org_slug");
        }
        let price = &schemas["PricingOverride"]["properties"];
        assert_eq!(price["input_per_1m"]["pattern"], DECIMAL_PATTERN);
        assert_eq!(price["cached_input_per_1m"]["type"], serde_json::json!(["string", "null"]));
        assert_eq!(price["effective_from"]["format"], "date");
        assert_eq!(price["created_at"]["format"], "date-time");
        assert_eq!(price["source"]["enum"], serde_json::json!(["override"]));
        let required = schemas["PricingOverride"]["required"].as_array().unwrap();
        assert!(required.contains(&"model_id".into()) && !required.contains(&"effective_to".into()));
        let catalog = &schemas["CatalogPrice"]["properties"];
        assert_eq!(catalog["source"]["enum"], serde_json::json!(["catalog"]));
        assert!(catalog.get("catalog_source").is_some() && catalog.get("superseded_at").is_none());
        assert_eq!(schemas["NewPricing"]["additionalProperties"], false);
    }
}
