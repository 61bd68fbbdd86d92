//! The ten book routes: list, add, update, delete and reset, for `pricing` and for
//! `subscriptions`. Each checks the key against the org (before anything is read), the org slug,
//! the provider (an LLM provider with a price book, else 404 naming them), then the input; every
//! change writes an audit row. And the catalog's read route: the system-wide prices are the
//! same for everyone, so any valid key may read them.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use common::audit::AuditEvent;
use common::auth::Caller;
use common::http::error::ApiResult;
use common::http::{ApiJson, ApiPath, OptionalJson, OrgAccess, ProviderPath};
use common::pricebook::{self, records, Book, BookKind};
use common::{ApiError, AppState};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::input::{self, RawBody};
use crate::schemas::{
    CatalogPrice, NewPricing, NewSubscription, PricingChanges, PricingEntry, PricingOverride, SubscriptionChanges,
    SubscriptionPlan,
};

type OrgProvider = ApiPath<ProviderPath>;
type OrgProviderKey = ApiPath<EntryPath>;

/// The provider and entry a book entry's route names: `{model_id}` of a price, `{plan_name}` of a
/// plan (`{org}` is [`OrgAccess`]'s).
#[derive(Debug, Deserialize)]
pub struct EntryPath {
    provider: String,
    #[serde(alias = "model_id", alias = "plan_name")]
    key: String,
}

/// Resolves the book of an organization the caller may use ([`OrgAccess`]): a provider with a
/// price book (404 naming them), then an onboarded organization (404).
pub(crate) async fn open<'a>(
    state: &'a AppState,
    access: &'a OrgAccess,
    provider: &'a str,
    kind: BookKind,
) -> ApiResult<Book<'a>> {
    let book = Book::open(state, access.slug.as_str(), provider, kind)?;
    access.organization(state).await?;
    Ok(book)
}

/// A row as the routes show it: pricing rows say whether they are a catalog price or an override.
fn show(kind: BookKind, row: &common::warehouse::Row) -> Value {
    match kind {
        BookKind::Pricing => pricebook::pricing_view(row),
        BookKind::Subscriptions => pricebook::present(kind, row),
    }
}

fn invalid(problems: Vec<String>) -> ApiError {
    ApiError::bad_request(problems.join("; "))
}

async fn record(state: &AppState, access: &OrgAccess, action: &str, resource: &str, details: Value) {
    let resource_type = if action.starts_with("pricing") { "model_pricing" } else { "subscription_plan" };
    state
        .audit(
            &access.caller,
            AuditEvent {
                org_slug: Some(access.slug.as_str()),
                action,
                resource_type,
                resource_id: Some(resource),
                success: true,
                details,
            },
        )
        .await;
}

/// What a list route answers besides its entries.
struct Listed {
    as_of: Option<String>,
    history: bool,
    items: Vec<Value>,
}

async fn list(
    state: &AppState,
    access: &OrgAccess,
    provider: &str,
    query: HashMap<String, String>,
    kind: BookKind,
) -> ApiResult<Listed> {
    let book = open(state, access, provider, kind).await?;
    let q = input::parse_query(kind, &query, pricebook::today()).map_err(ApiError::bad_request)?;
    book.require_exists().await?;
    let items = book.view(q.key.as_deref(), q.as_of).await?;
    Ok(Listed { as_of: q.as_of.map(|d| d.format("%Y-%m-%d").to_string()), history: q.as_of.is_none(), items })
}

async fn add(
    state: AppState,
    access: OrgAccess,
    provider: String,
    body: RawBody,
    kind: BookKind,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let book = open(&state, &access, &provider, kind).await?;
    let body = input::parse_body(body).map_err(invalid)?;
    let mut values = body.values;
    // A price book has one currency per row; USD unless the caller says otherwise.
    if kind.column("currency").is_some() {
        values.entry("currency".into()).or_insert_with(|| pricebook::Input::Text("USD".into()));
    }
    let entry = records::check_entry(kind, values.iter().map(|(k, v)| (k.as_str(), v.clone()))).map_err(invalid)?;
    let row = book.add(entry, body.effective_from, &access.actor()).await?;
    let key = row.get(kind.key_column()).and_then(Value::as_str).unwrap_or_default().to_string();
    let shown = show(kind, &row);
    record(&state, &access, &format!("{}.add", kind.noun()), &format!("{provider}/{key}"), shown.clone()).await;
    Ok((StatusCode::CREATED, Json(shown)))
}

async fn update(
    state: AppState,
    access: OrgAccess,
    EntryPath { provider, key }: EntryPath,
    body: RawBody,
    kind: BookKind,
) -> ApiResult<(Value, Value)> {
    let book = open(&state, &access, &provider, kind).await?;
    records::check_key(kind, &key).map_err(ApiError::bad_request)?;
    let body = input::parse_body(body).map_err(invalid)?;
    let mut changes = body.values;
    if let Some(sent) = changes.remove(kind.key_column()) {
        if sent != pricebook::Input::Text(key.clone()) {
            return Err(ApiError::bad_request(format!(
                "{} cannot be changed: delete this {} and add the new one",
                kind.key_column(),
                kind.entry()
            )));
        }
    }
    let mut problems = Vec::new();
    for (name, value) in &changes {
        match kind.column(name) {
            Some(column) => {
                if let Err(e) = records::check_value(kind, column, value) {
                    problems.push(e);
                }
            }
            None => problems.push(format!(
                "{name} is not a {} field; use {}",
                kind.noun(),
                kind.columns().iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
            )),
        }
    }
    if !problems.is_empty() {
        return Err(invalid(problems));
    }
    if changes.is_empty() {
        return Err(ApiError::bad_request(format!(
            "nothing to change: send at least one of {}",
            kind.columns().iter().skip(1).map(|c| c.name).collect::<Vec<_>>().join(", ")
        )));
    }
    let (closed, new) = book.update(&key, &changes, body.effective_from, &access.actor()).await?;
    let previous = show(kind, &closed);
    let current = show(kind, &new);
    record(
        &state,
        &access,
        &format!("{}.update", kind.noun()),
        &format!("{provider}/{key}"),
        json!({"previous": previous, "current": current}),
    )
    .await;
    Ok((previous, current))
}

async fn delete(
    state: AppState,
    access: OrgAccess,
    EntryPath { provider, key }: EntryPath,
    kind: BookKind,
) -> ApiResult<Value> {
    let book = open(&state, &access, &provider, kind).await?;
    records::check_key(kind, &key).map_err(ApiError::bad_request)?;
    let closed = book.delete(&key, &access.actor()).await?;
    let shown = show(kind, &closed);
    record(&state, &access, &format!("{}.delete", kind.noun()), &format!("{provider}/{key}"), shown.clone()).await;
    Ok(shown)
}

async fn reset(
    state: AppState,
    access: OrgAccess,
    provider: String,
    body: RawBody,
    kind: BookKind,
) -> ApiResult<Json<BookReset>> {
    let book = open(&state, &access, &provider, kind).await?;
    let body = input::parse_body(body).map_err(invalid)?;
    if let Some(name) = body.values.keys().next() {
        return Err(ApiError::bad_request(format!("{name} is not accepted by reset; send only effective_from")));
    }
    let report = book.reset(body.effective_from, &access.actor()).await?;
    let details = serde_json::to_value(&report).map_err(|e| ApiError::internal(e.to_string()))?;
    record(&state, &access, &format!("{}.reset", kind.noun()), &provider, details).await;
    Ok(Json(BookReset { org_slug: access.slug.as_str().to_string(), provider, book: kind.noun(), reset: report }))
}

/// `GET /api/v1/pricing/catalog/{provider}`: the catalog in force today (`?as_of=` another day,
/// `?history=true` every live version; `?model=` one model).
#[utoipa::path(
    get,
    path = "/api/v1/pricing/catalog/{provider}",
    tag = "pricing",
    summary = "The system-wide price catalog of an LLM provider.",
    params(("provider" = String, Path, description = "An LLM provider with a catalog: openai or anthropic."), ("model" = Option<String>, Query, description = "Only this model."), ("as_of" = Option<String>, Query, description = "The versions in force on this day (YYYY-MM-DD; default today)."), ("history" = Option<bool>, Query, description = "Every version (not with as_of).")),
    responses(
        (status = 200, description = "The catalog entries.", body = CatalogPage),
        (status = 404, description = "No catalog for this provider.", body = common::http::openapi::ErrorBody),
    ),
    security(("api_key" = []), ("root_key" = [])),
)]
pub async fn read_catalog(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath(ProviderPath { provider }): ApiPath<ProviderPath>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<CatalogPage>> {
    pricebook::price_book_seed(&state.configs, &provider)?;
    let q = input::parse_query(BookKind::Pricing, &query, pricebook::today()).map_err(ApiError::bad_request)?;
    let what = match q.as_of {
        Some(day) => pricebook::CatalogRead::AsOf(day, q.key.as_deref()),
        None => pricebook::CatalogRead::History(q.key.as_deref()),
    };
    let catalog = pricebook::Catalog::new(state.warehouse.as_ref(), &state.configs);
    let items: Vec<Value> = catalog.read(&provider, what).await?.iter().map(pricebook::catalog_view).collect();
    Ok(Json(CatalogPage {
        provider,
        as_of: q.as_of.map(|d| d.format("%Y-%m-%d").to_string()),
        history: q.as_of.is_none(),
        count: items.len(),
        catalog: items,
    }))
}

#[utoipa::path(
    get,
    path = "/api/v1/integrations/{org}/{provider}/pricing",
    tag = "pricing",
    summary = "The organization's pricing book, as of a day or with history.",
    params(("org" = String, Path, description = "The organization's slug.", pattern = r"^[a-z_][a-z0-9_]{2,49}$"), ("provider" = String, Path, description = "A provider: openai, anthropic or gcp."), ("model" = Option<String>, Query, description = "Only this model."), ("as_of" = Option<String>, Query, description = "The versions in force on this day (YYYY-MM-DD; default today)."), ("history" = Option<bool>, Query, description = "Every version (not with as_of).")),
    responses(
        (status = 200, description = "The entries.", body = PricingPage),
        (status = 404, description = "No such organization or provider, or its book is not created yet.", body = common::http::openapi::ErrorBody),
    ),
    security(("api_key" = []), ("root_key" = [])),
)]
pub async fn list_pricing(
    State(state): State<AppState>,
    access: OrgAccess,
    ApiPath(ProviderPath { provider }): OrgProvider,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<PricingPage>> {
    let Listed { as_of, history, items } = list(&state, &access, &provider, query, BookKind::Pricing).await?;
    let org_slug = access.slug.as_str().to_string();
    Ok(Json(PricingPage { org_slug, provider, as_of, history, count: items.len(), pricing: items }))
}

#[utoipa::path(
    post,
    path = "/api/v1/integrations/{org}/{provider}/pricing",
    tag = "pricing",
    summary = "Add an entry to the pricing book.",
    params(("org" = String, Path, description = "The organization's slug.", pattern = r"^[a-z_][a-z0-9_]{2,49}$"), ("provider" = String, Path, description = "A provider: openai, anthropic or gcp.")),
    request_body = NewPricing,
    responses(
        (status = 201, description = "The entry as stored.", body = PricingOverride),
        (status = 404, description = "No such organization or provider, or its book is not created yet.", body = common::http::openapi::ErrorBody),
        (status = 409, description = "The entry exists.", body = common::http::openapi::ErrorBody),
    ),
    security(("api_key" = []), ("root_key" = [])),
)]
pub async fn add_pricing(
    State(state): State<AppState>,
    access: OrgAccess,
    ApiPath(ProviderPath { provider }): OrgProvider,
    ApiJson(body): ApiJson<RawBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    add(state, access, provider, body, BookKind::Pricing).await
}

#[utoipa::path(
    put,
    path = "/api/v1/integrations/{org}/{provider}/pricing/{model_id}",
    tag = "pricing",
    summary = "A new version of an entry of the pricing book.",
    params(("org" = String, Path, description = "The organization's slug.", pattern = r"^[a-z_][a-z0-9_]{2,49}$"), ("provider" = String, Path, description = "A provider: openai, anthropic or gcp."), ("model_id" = String, Path, description = "A model id of the pricing book.")),
    request_body = PricingChanges,
    responses(
        (status = 200, description = "The entry as stored.", body = PricingUpdate),
        (status = 404, description = "No such organization, provider, book or entry.", body = common::http::openapi::ErrorBody),
        (status = 409, description = "A version for that day exists.", body = common::http::openapi::ErrorBody),
    ),
    security(("api_key" = []), ("root_key" = [])),
)]
pub async fn update_pricing(
    State(state): State<AppState>,
    access: OrgAccess,
    ApiPath(path): OrgProviderKey,
    ApiJson(body): ApiJson<RawBody>,
) -> ApiResult<Json<PricingUpdate>> {
    let (previous, current) = update(state, access, path, body, BookKind::Pricing).await?;
    Ok(Json(PricingUpdate { previous, current }))
}

#[utoipa::path(
    delete,
    path = "/api/v1/integrations/{org}/{provider}/pricing/{model_id}",
    tag = "pricing",
    summary = "End an entry of the pricing book.",
    params(("org" = String, Path, description = "The organization's slug.", pattern = r"^[a-z_][a-z0-9_]{2,49}$"), ("provider" = String, Path, description = "A provider: openai, anthropic or gcp."), ("model_id" = String, Path, description = "A model id of the pricing book.")),
    responses(
        (status = 200, description = "What was ended.", body = PricingDeleted),
        (status = 404, description = "No such organization, provider, book or entry.", body = common::http::openapi::ErrorBody),
    ),
    security(("api_key" = []), ("root_key" = [])),
)]
pub async fn delete_pricing(
    State(state): State<AppState>,
    access: OrgAccess,
    ApiPath(path): OrgProviderKey,
) -> ApiResult<Json<PricingDeleted>> {
    Ok(Json(PricingDeleted { deleted: delete(state, access, path, BookKind::Pricing).await? }))
}

#[utoipa::path(
    post,
    path = "/api/v1/integrations/{org}/{provider}/pricing/reset",
    tag = "pricing",
    summary = "Reset the pricing book to the defaults (creating it when missing).",
    params(("org" = String, Path, description = "The organization's slug.", pattern = r"^[a-z_][a-z0-9_]{2,49}$"), ("provider" = String, Path, description = "A provider: openai, anthropic or gcp.")),
    request_body = Option<ResetBody>,
    responses(
        (status = 200, description = "What the reset changed.", body = BookReset),
        (status = 404, description = "No such organization or provider.", body = common::http::openapi::ErrorBody),
    ),
    security(("api_key" = []), ("root_key" = [])),
)]
pub async fn reset_pricing(
    State(state): State<AppState>,
    access: OrgAccess,
    ApiPath(ProviderPath { provider }): OrgProvider,
    OptionalJson(body): OptionalJson<RawBody>,
) -> ApiResult<Json<BookReset>> {
    reset(state, access, provider, body, BookKind::Pricing).await
}

#[utoipa::path(
    get,
    path = "/api/v1/integrations/{org}/{provider}/subscriptions",
    tag = "pricing",
    summary = "The organization's subscriptions book, as of a day or with history.",
    params(("org" = String, Path, description = "The organization's slug.", pattern = r"^[a-z_][a-z0-9_]{2,49}$"), ("provider" = String, Path, description = "A provider: openai, anthropic or gcp."), ("plan" = Option<String>, Query, description = "Only this plan."), ("as_of" = Option<String>, Query, description = "The versions in force on this day (YYYY-MM-DD; default today)."), ("history" = Option<bool>, Query, description = "Every version (not with as_of).")),
    responses(
        (status = 200, description = "The entries.", body = SubscriptionsPage),
        (status = 404, description = "No such organization or provider, or its book is not created yet.", body = common::http::openapi::ErrorBody),
    ),
    security(("api_key" = []), ("root_key" = [])),
)]
pub async fn list_subscriptions(
    State(state): State<AppState>,
    access: OrgAccess,
    ApiPath(ProviderPath { provider }): OrgProvider,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<SubscriptionsPage>> {
    let Listed { as_of, history, items } = list(&state, &access, &provider, query, BookKind::Subscriptions).await?;
    let org_slug = access.slug.as_str().to_string();
    Ok(Json(SubscriptionsPage { org_slug, provider, as_of, history, count: items.len(), subscriptions: items }))
}

#[utoipa::path(
    post,
    path = "/api/v1/integrations/{org}/{provider}/subscriptions",
    tag = "pricing",
    summary = "Add an entry to the subscriptions book.",
    params(("org" = String, Path, description = "The organization's slug.", pattern = r"^[a-z_][a-z0-9_]{2,49}$"), ("provider" = String, Path, description = "A provider: openai, anthropic or gcp.")),
    request_body = NewSubscription,
    responses(
        (status = 201, description = "The entry as stored.", body = SubscriptionPlan),
        (status = 404, description = "No such organization or provider, or its book is not created yet.", body = common::http::openapi::ErrorBody),
        (status = 409, description = "The entry exists.", body = common::http::openapi::ErrorBody),
    ),
    security(("api_key" = []), ("root_key" = [])),
)]
pub async fn add_subscription(
    State(state): State<AppState>,
    access: OrgAccess,
    ApiPath(ProviderPath { provider }): OrgProvider,
    ApiJson(body): ApiJson<RawBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    add(state, access, provider, body, BookKind::Subscriptions).await
}

#[utoipa::path(
    put,
    path = "/api/v1/integrations/{org}/{provider}/subscriptions/{plan_name}",
    tag = "pricing",
    summary = "A new version of an entry of the subscriptions book.",
    params(("org" = String, Path, description = "The organization's slug.", pattern = r"^[a-z_][a-z0-9_]{2,49}$"), ("provider" = String, Path, description = "A provider: openai, anthropic or gcp."), ("plan_name" = String, Path, description = "A plan of the subscriptions book.")),
    request_body = SubscriptionChanges,
    responses(
        (status = 200, description = "The entry as stored.", body = SubscriptionPlanUpdate),
        (status = 404, description = "No such organization, provider, book or entry.", body = common::http::openapi::ErrorBody),
        (status = 409, description = "A version for that day exists.", body = common::http::openapi::ErrorBody),
    ),
    security(("api_key" = []), ("root_key" = [])),
)]
pub async fn update_subscription(
    State(state): State<AppState>,
    access: OrgAccess,
    ApiPath(path): OrgProviderKey,
    ApiJson(body): ApiJson<RawBody>,
) -> ApiResult<Json<SubscriptionPlanUpdate>> {
    let (previous, current) = update(state, access, path, body, BookKind::Subscriptions).await?;
    Ok(Json(SubscriptionPlanUpdate { previous, current }))
}

#[utoipa::path(
    delete,
    path = "/api/v1/integrations/{org}/{provider}/subscriptions/{plan_name}",
    tag = "pricing",
    summary = "End an entry of the subscriptions book.",
    params(("org" = String, Path, description = "The organization's slug.", pattern = r"^[a-z_][a-z0-9_]{2,49}$"), ("provider" = String, Path, description = "A provider: openai, anthropic or gcp."), ("plan_name" = String, Path, description = "A plan of the subscriptions book.")),
    responses(
        (status = 200, description = "What was ended.", body = SubscriptionPlanDeleted),
        (status = 404, description = "No such organization, provider, book or entry.", body = common::http::openapi::ErrorBody),
    ),
    security(("api_key" = []), ("root_key" = [])),
)]
pub async fn delete_subscription(
    State(state): State<AppState>,
    access: OrgAccess,
    ApiPath(path): OrgProviderKey,
) -> ApiResult<Json<SubscriptionPlanDeleted>> {
    Ok(Json(SubscriptionPlanDeleted { deleted: delete(state, access, path, BookKind::Subscriptions).await? }))
}

#[utoipa::path(
    post,
    path = "/api/v1/integrations/{org}/{provider}/subscriptions/reset",
    tag = "pricing",
    summary = "Reset the subscriptions book to the defaults (creating it when missing).",
    params(("org" = String, Path, description = "The organization's slug.", pattern = r"^[a-z_][a-z0-9_]{2,49}$"), ("provider" = String, Path, description = "A provider: openai, anthropic or gcp.")),
    request_body = Option<ResetBody>,
    responses(
        (status = 200, description = "What the reset changed.", body = BookReset),
        (status = 404, description = "No such organization or provider.", body = common::http::openapi::ErrorBody),
    ),
    security(("api_key" = []), ("root_key" = [])),
)]
pub async fn reset_subscriptions(
    State(state): State<AppState>,
    access: OrgAccess,
    ApiPath(ProviderPath { provider }): OrgProvider,
    OptionalJson(body): OptionalJson<RawBody>,
) -> ApiResult<Json<BookReset>> {
    reset(state, access, provider, body, BookKind::Subscriptions).await
}

/// `GET /api/v1/pricing/catalog/{provider}`'s answer.
#[derive(Serialize, ToSchema)]
pub struct CatalogPage {
    provider: String,
    /// The day read (YYYY-MM-DD); null with `history=true`.
    #[schema(format = Date)]
    as_of: Option<String>,
    /// Every live version, not those of one day.
    history: bool,
    count: usize,
    #[schema(value_type = Vec<CatalogPrice>)]
    catalog: Vec<Value>,
}

/// The pricing list's answer: the catalog merged with the organization's overrides.
#[derive(Serialize, ToSchema)]
pub struct PricingPage {
    org_slug: String,
    provider: String,
    /// The day read (YYYY-MM-DD); null with `history=true`.
    #[schema(format = Date)]
    as_of: Option<String>,
    /// Every version, not those of one day.
    history: bool,
    count: usize,
    #[schema(value_type = Vec<PricingEntry>)]
    pricing: Vec<Value>,
}

/// The subscriptions list's answer.
#[derive(Serialize, ToSchema)]
pub struct SubscriptionsPage {
    org_slug: String,
    provider: String,
    /// The day read (YYYY-MM-DD); null with `history=true`.
    #[schema(format = Date)]
    as_of: Option<String>,
    /// Every version, not those of one day.
    history: bool,
    count: usize,
    #[schema(value_type = Vec<SubscriptionPlan>)]
    subscriptions: Vec<Value>,
}

/// A price's new version: the version it replaced (a catalog price, when this is the model's
/// first override) and the new one.
#[derive(Serialize, ToSchema)]
pub struct PricingUpdate {
    #[schema(value_type = PricingEntry)]
    previous: Value,
    #[schema(value_type = PricingOverride)]
    current: Value,
}

/// A plan's new version, and the version it closed.
#[derive(Serialize, ToSchema)]
pub struct SubscriptionPlanUpdate {
    #[schema(value_type = SubscriptionPlan)]
    previous: Value,
    #[schema(value_type = SubscriptionPlan)]
    current: Value,
}

/// The price version a delete ended (its `effective_to` set).
#[derive(Serialize, ToSchema)]
pub struct PricingDeleted {
    #[schema(value_type = PricingEntry)]
    deleted: Value,
}

/// The plan version a delete ended (its `effective_to` set).
#[derive(Serialize, ToSchema)]
pub struct SubscriptionPlanDeleted {
    #[schema(value_type = SubscriptionPlan)]
    deleted: Value,
}

/// A reset's optional body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // read field by field by `input::parse_body`, as the other bodies are
pub struct ResetBody {
    /// The day the reset takes effect (YYYY-MM-DD; default today).
    #[schema(format = Date)]
    effective_from: Option<String>,
}

/// What a reset changed.
#[derive(Serialize, ToSchema)]
pub struct BookReset {
    org_slug: String,
    provider: String,
    /// `pricing` or `subscriptions`.
    #[schema(value_type = String, pattern = "^(pricing|subscriptions)$")]
    book: &'static str,
    reset: pricebook::ResetReport,
}
