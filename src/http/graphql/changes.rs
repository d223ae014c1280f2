//! A view's subscription field: the same change stream as
//! `GET /v1/views/{view}/changes` ([`crate::http::feed`]), one GraphQL
//! event per snapshot chunk, completed time or reset. The stream's final
//! error (`slow_consumer`, `view_gone`, …) arrives as a GraphQL error
//! with that code, and the subscription completes.

use std::sync::Arc;

use async_graphql::dynamic::{FieldValue, InputValue, Object, SubscriptionField, SubscriptionFieldFuture, TypeRef};
use async_graphql::{Error, ErrorExtensions, Name, Value};
use futures_util::StreamExt;
use weir_operators::repr::{Diff, Row, Schema, Tick};
use weir_queries::subscribe::Event;

use super::read::filters;
use super::schema::{filter_arguments, member, ViewTypes, CHANGE_KIND, FROM_AS_OF};
use super::values::{graphql_error, row_object, tick_arg, BIG_INT};
use crate::engine::Engine;
use crate::http::feed::{self, Encode};

/// `v_change` and `v_update`.
pub fn types(t: &ViewTypes) -> [Object; 2] {
    [
        Object::new(&t.change)
            .description(format!(
                "A change event of view {}: a chunk of a snapshot, the changes of one completed time, or a reset (a snapshot follows).",
                t.view
            ))
            .field(member("kind", TypeRef::named_nn(CHANGE_KIND)))
            .field(member("asOf", TypeRef::named(BIG_INT)).description("The time of a snapshot or of changes."))
            .field(member("last", TypeRef::named(TypeRef::BOOLEAN)).description("True on a snapshot's last chunk."))
            .field(member("reason", TypeRef::named(TypeRef::STRING)).description("Why a reset happened."))
            .field(member("updates", TypeRef::named_nn_list_nn(&t.update))),
        Object::new(&t.update)
            .field(member("row", TypeRef::named_nn(&t.row)))
            .field(member("diff", TypeRef::named_nn(BIG_INT)).description("+n: the row came n times; -n: it went.")),
    ]
}

/// `Subscription.v`.
pub fn field(t: &ViewTypes, engine: &Arc<Engine>) -> SubscriptionField {
    let engine = Arc::clone(engine);
    let view = t.view.clone();
    let columns: Vec<String> = t.filters.iter().map(|(n, _)| n.clone()).collect();
    let mut field = SubscriptionField::new(&t.view, TypeRef::named_nn(&t.change), move |ctx| {
        let engine = Arc::clone(&engine);
        let view = view.clone();
        let columns = columns.clone();
        SubscriptionFieldFuture::new(async move {
            let filters = filters(&ctx, &columns)?;
            let from = match ctx.args.get(FROM_AS_OF) {
                Some(v) => tick_arg(FROM_AS_OF, v)?,
                None => None,
            };
            let sub = engine.subscribe(&view, &filters, from).map_err(graphql_error)?;
            Ok(feed::start(Arc::clone(&engine), sub, &view, GraphqlEvents).map(|e| e.map(FieldValue::value)))
        })
    })
    .description(format!(
        "View {}'s changes: a snapshot (in chunks), then the changes of each completed time.",
        t.view
    ));
    for arg in filter_arguments(t) {
        field = field.argument(arg);
    }
    field.argument(
        InputValue::new(FROM_AS_OF, TypeRef::named(BIG_INT))
            .description("Resume after this time (the asOf of the last event seen) while the view keeps it; else a reset and a fresh snapshot."),
    )
}

/// Events as `v_change` objects; the final error as a GraphQL error.
struct GraphqlEvents;

fn updates(rows: &[(Row, Diff)], schema: &Schema) -> Value {
    Value::List(
        rows.iter()
            .map(|(r, d)| {
                Value::Object(
                    [
                        (Name::new("row"), row_object(r, schema)),
                        (Name::new("diff"), Value::from(*d)),
                    ]
                    .into_iter()
                    .collect(),
                )
            })
            .collect(),
    )
}

fn change(kind: &str, as_of: Option<Tick>, last: Option<bool>, reason: Option<&str>, updates: Value) -> Value {
    Value::Object(
        [
            (Name::new("kind"), Value::Enum(Name::new(kind))),
            (Name::new("asOf"), as_of.map_or(Value::Null, Value::from)),
            (Name::new("last"), last.map_or(Value::Null, Value::Boolean)),
            (
                Name::new("reason"),
                reason.map_or(Value::Null, |r| Value::String(r.to_string())),
            ),
            (Name::new("updates"), updates),
        ]
        .into_iter()
        .collect(),
    )
}

/// Roughly the bytes a value holds, for the subscriber buffer's bound.
fn size(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len() + 2,
        Value::List(l) => l.iter().map(size).sum::<usize>() + 2,
        Value::Object(m) => m.iter().map(|(k, v)| k.len() + 3 + size(v)).sum::<usize>() + 2,
        _ => 8,
    }
}

impl Encode for GraphqlEvents {
    type Item = Result<Value, Error>;

    fn snapshot(&self, as_of: Tick, rows: &[(Row, Diff)], last: bool, schema: &Schema) -> (Self::Item, usize) {
        let v = change("SNAPSHOT", Some(as_of), Some(last), None, updates(rows, schema));
        let n = size(&v);
        (Ok(v), n)
    }

    fn event(&self, e: &Event, schema: &Schema) -> (Self::Item, usize) {
        let v = match e {
            Event::Snapshot { as_of, rows } => return self.snapshot(*as_of, rows, true, schema),
            Event::Changes { as_of, updates: u } => change("CHANGES", Some(*as_of), None, None, updates(u, schema)),
            Event::Reset { reason } => change("RESET", None, None, Some(reason), Value::List(Vec::new())),
            Event::End { code, message } => {
                let code = *code;
                let err = Error::new(message.clone()).extend_with(|_, ext| ext.set("code", code));
                return (Err(err), message.len() + 64);
            }
        };
        let n = size(&v);
        (Ok(v), n)
    }
}
