//! How `BigQueryWarehouse` treats failures, against a scripted BigQuery REST endpoint: 429, 5xx
//! and rate/quota errors are retried with backoff; a bad query is not; a job that is not complete
//! yet is polled to the end.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use common::warehouse::bigquery::BigQueryWarehouse;
use common::warehouse::{Params, Warehouse, WarehouseError};
use serde_json::{json, Value};

/// Answers `jobs.query` with the scripted responses in turn (the last one repeats), and
/// `getQueryResults` with a completed one-row result.
#[derive(Clone)]
struct Script {
    replies: Arc<Vec<(u16, Value)>>,
    calls: Arc<AtomicUsize>,
    polls: Arc<AtomicUsize>,
    /// The `requestId` of each `jobs.query` call, in order.
    request_ids: Arc<std::sync::Mutex<Vec<Value>>>,
}

fn google_error(code: u16, reason: &str, status: &str) -> Value {
    json!({"error": {"code": code, "message": format!("scripted {reason}"), "errors": [{"domain": "global", "reason": reason, "message": "scripted"}], "status": status}})
}

fn one_row(complete: bool) -> Value {
    let mut body = json!({
        "kind": "bigquery#queryResponse",
        "jobReference": {"projectId": "test-project", "jobId": "job_1", "location": "US"},
        "jobComplete": complete,
    });
    if complete {
        body["schema"] = json!({"fields": [{"name": "one", "type": "INTEGER", "mode": "NULLABLE"}]});
        body["rows"] = json!([{"f": [{"v": "1"}]}]);
        body["totalRows"] = json!("1");
    }
    body
}

async fn start(replies: Vec<(u16, Value)>) -> (String, Script) {
    let script = Script {
        replies: Arc::new(replies),
        calls: Arc::default(),
        polls: Arc::default(),
        request_ids: Arc::default(),
    };
    async fn query(State(s): State<Script>, Json(request): Json<Value>) -> impl IntoResponse {
        s.request_ids.lock().unwrap().push(request["requestId"].clone());
        let n = s.calls.fetch_add(1, Ordering::SeqCst);
        let (status, body) = s.replies[n.min(s.replies.len() - 1)].clone();
        (StatusCode::from_u16(status).unwrap(), Json(body))
    }
    async fn results(State(s): State<Script>) -> impl IntoResponse {
        s.polls.fetch_add(1, Ordering::SeqCst);
        Json(one_row(true))
    }
    let app = Router::new()
        .route("/bigquery/v2/projects/{p}/queries", post(query))
        .route("/bigquery/v2/projects/{p}/queries/{job}", get(results))
        .with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, script)
}

async fn warehouse(url: &str) -> BigQueryWarehouse {
    BigQueryWarehouse::connect("test-project", "US", Some(url)).await.unwrap()
}

#[tokio::test]
async fn server_errors_and_rate_limits_are_retried_then_succeed() {
    let (url, script) = start(vec![
        (503, google_error(503, "backendError", "UNAVAILABLE")),
        (429, google_error(429, "rateLimitExceeded", "RESOURCE_EXHAUSTED")),
        (403, google_error(403, "quotaExceeded", "PERMISSION_DENIED")),
        (200, one_row(true)),
    ])
    .await;
    let rows = warehouse(&url).await.query("SELECT 1 AS one", &Params::new()).await.unwrap();
    assert_eq!(rows[0]["one"], 1);
    assert_eq!(script.calls.load(Ordering::SeqCst), 4, "three retries, then the answer");
    // Every attempt is the same request to BigQuery, so a retried write runs once.
    let ids = script.request_ids.lock().unwrap().clone();
    assert!(ids[0].as_str().is_some_and(|id| id.len() == 36), "a UUID requestId: {ids:?}");
    assert!(ids.iter().all(|id| *id == ids[0]), "one requestId for every attempt: {ids:?}");
    // The next statement is another request.
    warehouse(&url).await.query("SELECT 1 AS one", &Params::new()).await.unwrap();
    assert_ne!(script.request_ids.lock().unwrap()[4], ids[0], "a new statement, a new requestId");
}

#[tokio::test]
async fn a_bad_query_is_not_retried() {
    let (url, script) = start(vec![(400, google_error(400, "invalidQuery", "INVALID_ARGUMENT"))]).await;
    let err = warehouse(&url).await.query("SELEC 1", &Params::new()).await.unwrap_err();
    assert!(matches!(err, WarehouseError::Invalid(_)), "{err:?}");
    assert_eq!(script.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn persistent_outage_gives_up_as_unavailable() {
    let (url, script) = start(vec![(500, google_error(500, "backendError", "INTERNAL"))]).await;
    let err = warehouse(&url).await.query("SELECT 1", &Params::new()).await.unwrap_err();
    assert!(matches!(err, WarehouseError::Unavailable(_)), "{err:?}");
    assert_eq!(script.calls.load(Ordering::SeqCst), 5, "capped attempts");
}

#[tokio::test]
async fn incomplete_jobs_are_polled() {
    let (url, script) = start(vec![(200, one_row(false))]).await;
    let rows = warehouse(&url).await.query("SELECT 1 AS one", &Params::new()).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["one"], 1);
    assert_eq!(script.polls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn not_found_and_already_exists_are_told_apart() {
    let (url, _) = start(vec![(
        200,
        json!({
            "kind": "bigquery#queryResponse", "jobReference": {"projectId": "test-project", "jobId": "j"},
            "jobComplete": true, "errors": [{"reason": "notFound", "message": "Not found: table x"}]
        }),
    )])
    .await;
    let err = warehouse(&url).await.query("SELECT * FROM `test-project.d.x`", &Params::new()).await.unwrap_err();
    assert!(matches!(err, WarehouseError::NotFound(_)), "{err:?}");
}

/// `datasets.insert` (sent as plain REST, for its access list): retried like the other calls;
/// 409 is "already there"; 403 (no `bigquery.datasets.create`, which BigQuery answers even for a
/// dataset that exists) is an error, not "already there".
#[tokio::test]
async fn dataset_inserts_are_retried_and_a_refusal_is_not_taken_for_existing() {
    /// The scripted replies and how many calls were answered.
    type Replies = (Arc<Vec<(u16, Value)>>, Arc<AtomicUsize>);
    async fn serve(replies: Vec<(u16, Value)>) -> (String, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let state = (Arc::new(replies), calls.clone());
        async fn insert(State((replies, calls)): State<Replies>) -> impl IntoResponse {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            let (status, body) = replies[n.min(replies.len() - 1)].clone();
            (StatusCode::from_u16(status).unwrap(), Json(body))
        }
        let app = Router::new().route("/bigquery/v2/projects/{p}/datasets", post(insert)).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, calls)
    }
    let created = json!({"datasetReference": {"projectId": "test-project", "datasetId": "d"}});
    let options = common::warehouse::DatasetOptions::default();

    let (url, calls) = serve(vec![(503, google_error(503, "backendError", "UNAVAILABLE")), (200, created)]).await;
    assert!(warehouse(&url).await.create_dataset("d", &options).await.unwrap());
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one retry, then the answer");

    let (url, _) = serve(vec![(409, google_error(409, "duplicate", "ALREADY_EXISTS"))]).await;
    assert!(!warehouse(&url).await.create_dataset("d", &options).await.unwrap(), "409: it existed");

    let (url, calls) = serve(vec![(403, google_error(403, "accessDenied", "PERMISSION_DENIED"))]).await;
    let err = warehouse(&url).await.create_dataset("d", &options).await.unwrap_err();
    assert!(matches!(&err, WarehouseError::Backend(m) if m.contains("403")), "{err:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "a refusal is not retried");
}

/// A result whose page tokens run `first`, then `then` in turn: paging that loops when a token
/// comes again. Returns the URL and the number of `getQueryResults` calls.
async fn paging(first: &'static str, then: Vec<&'static str>) -> (String, Arc<AtomicUsize>) {
    let polls = Arc::new(AtomicUsize::new(0));
    let page = |token: &str| {
        let mut body = one_row(true);
        body["pageToken"] = json!(token);
        body["totalRows"] = json!("1000");
        body
    };
    let first = page(first);
    let then: Arc<Vec<Value>> = Arc::new(then.into_iter().map(page).collect());
    let counter = polls.clone();
    let app = Router::new().route("/bigquery/v2/projects/{p}/queries", post(move || async move { Json(first) })).route(
        "/bigquery/v2/projects/{p}/queries/{job}",
        get(move || async move {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            Json(then[n.min(then.len() - 1)].clone())
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, polls)
}

#[tokio::test]
async fn page_tokens_that_loop_end_the_read_with_an_error() {
    // The same token again, then a cycle through two: caught when a token comes back, not read
    // forever (the billing export reader pages an organization's BigQuery this way too).
    for (first, then, polls_expected) in [("tok_a", vec!["tok_a"], 1), ("tok_a", vec!["tok_b", "tok_a"], 2)] {
        let (url, polls) = paging(first, then).await;
        let w = warehouse(&url).await;
        let err = w.query("SELECT 1 AS one", &Params::new()).await.unwrap_err();
        match &err {
            WarehouseError::Backend(m) => assert!(m.contains("\"tok_a\"") && m.contains("paging loops"), "{m}"),
            other => panic!("expected a backend error, got {other:?}"),
        }
        assert_eq!(polls.load(Ordering::SeqCst), polls_expected);
        let mut batches = w.query_batches("SELECT 1 AS one", &Params::new(), 10).await.unwrap();
        let mut failed = false;
        while let Some(batch) = batches.next().await {
            if let Err(e) = batch {
                assert!(e.to_string().contains("paging loops"), "{e}");
                failed = true;
            }
        }
        assert!(failed, "the batches end with the error");
    }
}

/// A result whose first page (from `jobs.query`) is small and whose second page (from
/// `getQueryResults`) is `bytes` long, its size announced by Content-Length or not (sent
/// chunked, found only while reading). Returns the URL and the number of `getQueryResults` calls.
async fn flood(bytes: usize, announced: bool) -> (String, Arc<AtomicUsize>) {
    use axum::body::Body;
    let polls = Arc::new(AtomicUsize::new(0));
    let page = |rows: Value| {
        json!({
            "kind": "bigquery#getQueryResultsResponse",
            "jobReference": {"projectId": "test-project", "jobId": "job_1", "location": "US"},
            "jobComplete": true,
            "schema": {"fields": [{"name": "s", "type": "STRING", "mode": "NULLABLE"}]},
            "totalRows": "2",
            "rows": rows,
        })
    };
    let mut first = page(json!([{"f": [{"v": "small"}]}]));
    first["pageToken"] = json!("page_2");
    // A row of the organization's data, which must not reach any message.
    let second = page(json!([{"f": [{"v": "row-data-".repeat(bytes / 9)}]}]));
    let second = serde_json::to_vec(&second).unwrap();
    assert!(second.len() > bytes);
    let counter = polls.clone();
    let app = Router::new().route("/bigquery/v2/projects/{p}/queries", post(move || async move { Json(first) })).route(
        "/bigquery/v2/projects/{p}/queries/{job}",
        get(move || async move {
            counter.fetch_add(1, Ordering::SeqCst);
            if announced {
                Body::from(second).into_response()
            } else {
                Body::from_stream(Body::from(second).into_data_stream()).into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, polls)
}

/// A page of results over `BIGQUERY_MAX_RESPONSE_MB` (an organization's export can hold rows of
/// any size) fails the read with the call and the limit named, without being read whole, without
/// a retry (it would be as large again) and without any of the rows in the message; the pages
/// before it were handed over.
#[tokio::test]
async fn a_results_page_over_the_size_cap_fails_the_read_unread() {
    for announced in [true, false] {
        let (url, polls) = flood(3 << 20, announced).await;
        let w = warehouse(&url).await.with_max_response_bytes(1 << 20);
        let err = w.query("SELECT 1 AS one", &Params::new()).await.unwrap_err();
        match &err {
            WarehouseError::Backend(m) => {
                assert_eq!(
                    m,
                    "BigQuery jobs.getQueryResults answered more than 1 MB (BIGQUERY_MAX_RESPONSE_MB); the answer was \
                     not read",
                    "announced: {announced}"
                );
            }
            other => panic!("expected a backend error, got {other:?}"),
        }
        assert_eq!(polls.load(Ordering::SeqCst), 1, "not retried (announced: {announced})");

        let mut batches = w.query_batches("SELECT 1 AS one", &Params::new(), 10).await.unwrap();
        let first = batches.next().await.expect("the first page").expect("within the cap");
        assert_eq!(first.len(), 1);
        let err = batches.next().await.expect("then the error").unwrap_err();
        assert!(err.to_string().contains("BIGQUERY_MAX_RESPONSE_MB") && !err.to_string().contains("row-data"), "{err}");
        assert!(batches.next().await.is_none());

        // The same page within a larger cap is read.
        let w = warehouse(&url).await.with_max_response_bytes(4 << 20);
        let rows = w.query("SELECT 1 AS one", &Params::new()).await.unwrap();
        assert_eq!(rows.len(), 2, "announced: {announced}");
        assert_eq!(rows[0]["s"], "small");
    }
}
