//! A view's query field: its arguments as a view read (filters, `limit`,
//! `asOf`, `after`, `timeoutMs`), answered by the same read path as
//! `GET /v1/views/{view}` (the read copy, else the workers), with the
//! answer's `asOf`.
//!
//! The fields of one query operation that give no `asOf` of their own are
//! read at one time, complete in every view they read and after every
//! write any of them names in `after` ([`OperationTime`]), so that one
//! request sees the views mutually consistent.

use std::sync::Arc;
use std::time::Duration;

use async_graphql::dynamic::{Field, FieldFuture, FieldValue, InputValue, Object, ResolverContext, TypeRef};
use async_graphql::{Error, Name, Value};
use weir_queries::reader::{ReadOptions, ViewAnswer};
use weir_queries::Token;

use super::operation::OperationTime;
use super::schema::{filter_arguments, member, ViewTypes};
use super::values::{filter_text, graphql_error, row_object, tick_arg, BIG_INT};
use crate::engine::{Engine, EngineError};
use crate::http::views::DEFAULT_TIMEOUT_MS;
use crate::shared::now_ms;

/// `v_result`: an answer and its time.
pub fn result_type(t: &ViewTypes) -> Object {
    Object::new(&t.result)
        .description(format!("Rows of view {} as of one time.", t.view))
        .field(member("asOf", TypeRef::named_nn(BIG_INT)).description("The time the rows are as of."))
        .field(member("lagMs", TypeRef::named_nn(BIG_INT)).description("How far asOf is behind the wall clock, in ms."))
        .field(member("rows", TypeRef::named_nn_list_nn(&t.row)))
}

/// `Query.v`.
pub fn field(t: &ViewTypes, engine: &Arc<Engine>) -> Field {
    let engine = Arc::clone(engine);
    let view = t.view.clone();
    let filters: Vec<String> = t.filters.iter().map(|(n, _)| n.clone()).collect();
    let mut field = Field::new(&t.view, TypeRef::named_nn(&t.result), move |ctx| {
        let engine = Arc::clone(&engine);
        let view = view.clone();
        let filters = filters.clone();
        FieldFuture::new(async move {
            let answer = read(&ctx, &engine, &view, &filters).await?;
            Ok(Some(FieldValue::value(answer_object(&answer))))
        })
    })
    .description(format!(
        "View {}: the rows whose columns equal the given arguments, as of the latest complete time (or asOf), after the writes in after.",
        t.view
    ));
    for arg in filter_arguments(t) {
        field = field.argument(arg);
    }
    field
        .argument(InputValue::new("limit", TypeRef::named(TypeRef::INT)).description("At most this many rows."))
        .argument(InputValue::new("asOf", TypeRef::named(BIG_INT)).description("Read exactly as of this time."))
        .argument(
            InputValue::new("after", TypeRef::named_list(TypeRef::STRING))
                .description("Write tokens (from an ingest's answer) the rows must reflect."),
        )
        .argument(
            InputValue::new("timeoutMs", TypeRef::named(TypeRef::INT))
                .description("How long to wait for asOf and after, in ms (default 5000)."),
        )
}

/// The read a field's arguments ask for.
pub struct ReadArgs {
    pub filters: Vec<(String, String)>,
    pub limit: Option<usize>,
    pub opts: ReadOptions,
}

/// The filters among a field's arguments.
pub fn filters(ctx: &ResolverContext<'_>, columns: &[String]) -> Result<Vec<(String, String)>, Error> {
    let mut out = Vec::new();
    for c in columns {
        if let Some(v) = ctx.args.get(c) {
            if let Some(text) = filter_text(c, v)? {
                out.push((c.clone(), text));
            }
        }
    }
    Ok(out)
}

fn read_args(ctx: &ResolverContext<'_>, columns: &[String]) -> Result<ReadArgs, Error> {
    let limit = match ctx.args.get("limit").filter(|v| !v.is_null()) {
        Some(v) => {
            let n = v.i64()?;
            Some(usize::try_from(n).map_err(|_| Error::new(format!("argument limit: {n} is negative")))?)
        }
        None => None,
    };
    let after = match ctx.args.get("after").filter(|v| !v.is_null()) {
        Some(v) => tokens(v.list()?.iter().map(|t| t.string()))?,
        None => Vec::new(),
    };
    let timeout = match ctx.args.get("timeoutMs").filter(|v| !v.is_null()) {
        Some(v) => {
            let ms = v.i64()?;
            Duration::from_millis(u64::try_from(ms).unwrap_or(0).min(600_000))
        }
        None => Duration::from_millis(DEFAULT_TIMEOUT_MS),
    };
    let as_of = match ctx.args.get("asOf") {
        Some(v) => tick_arg("asOf", v)?,
        None => None,
    };
    Ok(ReadArgs {
        filters: filters(ctx, columns)?,
        limit,
        opts: ReadOptions { after, as_of, timeout },
    })
}

/// Write tokens, each refused with its reason when malformed.
pub fn tokens<'a>(texts: impl Iterator<Item = Result<&'a str, Error>>) -> Result<Vec<Token>, Error> {
    texts
        .map(|t| {
            let t = t?;
            Token::parse(t).map_err(|e| graphql_error(EngineError::from(e)))
        })
        .collect()
}

async fn read(ctx: &ResolverContext<'_>, engine: &Engine, view: &str, columns: &[String]) -> Result<ViewAnswer, Error> {
    let mut args = read_args(ctx, columns)?;
    if args.opts.as_of.is_none() {
        if let Some(time) = ctx.data_opt::<Arc<OperationTime>>().filter(|t| t.covers(view)) {
            args.opts.as_of = Some(time.at(engine).await?);
        }
    }
    engine
        .read_view(view, &args.filters, args.limit, &args.opts)
        .await
        .map_err(graphql_error)
}

fn answer_object(a: &ViewAnswer) -> Value {
    let rows = a.rows.iter().map(|r| row_object(r, &a.schema)).collect();
    Value::Object(
        [
            (Name::new("asOf"), Value::from(a.as_of)),
            (Name::new("lagMs"), Value::from(now_ms().saturating_sub(a.as_of))),
            (Name::new("rows"), Value::List(rows)),
        ]
        .into_iter()
        .collect(),
    )
}
