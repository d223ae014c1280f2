//! GraphQL over the catalog's views (DESIGN.md §5): `POST /graphql` for
//! queries, `GET /graphql` for GraphiQL in a browser, and subscriptions
//! over WebSocket on `GET /graphql` (`graphql-transport-ws`, and the older
//! `graphql-ws`).
//!
//! The schema is derived from the catalog ([`schema`]) and follows it:
//! each operation runs against the schema of the views installed when it
//! starts, built again only when a view's dataflow changed ([`LiveSchema`]).
//!
//! # Layout
//! - `schema`: the types and fields of each view.
//! - `read`: a view's query field, read through the REST API's read path.
//! - `operation`: one read time for an operation's fields.
//! - `changes`: a view's subscription field, fed by [`super::feed`].
//! - `values`: types, values and errors between weir and GraphQL.

mod changes;
mod operation;
mod read;
mod schema;
mod values;

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};

use async_graphql::futures_util::stream::BoxStream;
use async_graphql::http::GraphiQLSource;
use async_graphql::{BatchRequest, BatchResponse, Data, Executor, Request, Response as GraphqlResponse, ServerError};
use async_graphql_axum::{GraphQLResponse, GraphQLSubscription};
use axum::body::Body;
use axum::extract::{Request as HttpRequest, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use futures_util::StreamExt;
use tower::ServiceExt;

use self::operation::OperationTime;
use super::{body_bytes, Api};
use weir_dataflows::catalog::DataflowId;

use crate::engine::{Engine, ViewShape};
use crate::shared::lock;

/// The path of the GraphQL endpoint.
pub const PATH: &str = "/graphql";

/// Operations per batch request, at most.
pub const MAX_BATCH: usize = 100;

/// The schema of the views installed now (see the module doc).
#[derive(Clone)]
pub struct LiveSchema {
    engine: Arc<Engine>,
    built: Arc<Mutex<Option<Current>>>,
}

/// The last schema built, and the views (name, dataflow) it was built
/// from: a view's shape changes only with its dataflow.
struct Current {
    versions: Vec<(String, DataflowId)>,
    schema: async_graphql::dynamic::Schema,
    views: Arc<HashSet<String>>,
}

impl LiveSchema {
    pub fn new(engine: Arc<Engine>) -> LiveSchema {
        LiveSchema {
            engine,
            built: Arc::default(),
        }
    }

    /// The schema of the views installed now, and the views it has.
    fn current(&self) -> Result<(async_graphql::dynamic::Schema, Arc<HashSet<String>>), String> {
        let versions = self.engine.view_dataflows();
        let mut built = lock(&self.built);
        if let Some(c) = built.as_ref().filter(|c| c.versions == versions) {
            return Ok((c.schema.clone(), Arc::clone(&c.views)));
        }
        let shapes: Vec<ViewShape> = self.engine.view_shapes();
        let b =
            schema::build(&shapes, &self.engine).map_err(|e| format!("the GraphQL schema could not be built: {e}"))?;
        let views = Arc::new(b.views.into_iter().collect::<HashSet<_>>());
        *built = Some(Current {
            // What the shapes were read from (the catalog may have moved on
            // since `versions` was read).
            versions: shapes.iter().map(|s| (s.name.clone(), s.df)).collect(),
            schema: b.schema.clone(),
            views: Arc::clone(&views),
        });
        Ok((b.schema, views))
    }
}

fn internal(message: String) -> GraphqlResponse {
    GraphqlResponse::from_errors(vec![ServerError::new(message, None)])
}

impl Executor for LiveSchema {
    fn execute(&self, request: Request) -> impl Future<Output = GraphqlResponse> + Send {
        let current = self.current();
        async move {
            let (schema, views) = match current {
                Ok(c) => c,
                Err(e) => return internal(e),
            };
            let request = match OperationTime::plan(&request, &views) {
                Some(time) => request.data(Arc::new(time)),
                None => request,
            };
            schema.execute(request).await
        }
    }

    fn execute_stream(&self, request: Request, session_data: Option<Arc<Data>>) -> BoxStream<'static, GraphqlResponse> {
        match self.current() {
            Ok((schema, _)) => schema
                .execute_stream_with_session_data(request, session_data.unwrap_or_default())
                .boxed(),
            Err(e) => futures_util::stream::once(async move { internal(e) }).boxed(),
        }
    }
}

/// `POST /graphql`: a query (or a batch of them) as JSON, the body
/// bounded like every other.
pub async fn post(State(api): State<Api>, body: Body) -> Response {
    let bytes = match body_bytes(body, api.max_body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let batch: BatchRequest = match serde_json::from_slice(&bytes) {
        Ok(b) => b,
        Err(e) => {
            let message = format!(
                "the body is not a GraphQL request (JSON with a \"query\"): line {}, column {}: {e}",
                e.line(),
                e.column()
            );
            let r = BatchResponse::Single(internal(message));
            return (StatusCode::BAD_REQUEST, GraphQLResponse::from(r)).into_response();
        }
    };
    if let BatchRequest::Batch(ops) = &batch {
        if ops.len() > MAX_BATCH {
            let message = format!(
                "a batch holds at most {MAX_BATCH} operations; this one has {}",
                ops.len()
            );
            let r = BatchResponse::Single(internal(message));
            return (StatusCode::BAD_REQUEST, GraphQLResponse::from(r)).into_response();
        }
    }
    GraphQLResponse::from(api.graphql.execute_batch(batch).await).into_response()
}

/// `GET /graphql`: a WebSocket for subscriptions when the request asks to
/// upgrade, else GraphiQL.
pub async fn get(State(api): State<Api>, request: HttpRequest) -> Response {
    let upgrade = request
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if upgrade {
        return match GraphQLSubscription::new(api.graphql.clone()).oneshot(request).await {
            Ok(r) => r.into_response(),
            Err(never) => match never {},
        };
    }
    Html(
        GraphiQLSource::build()
            .endpoint(PATH)
            .subscription_endpoint(PATH)
            .finish(),
    )
    .into_response()
}
