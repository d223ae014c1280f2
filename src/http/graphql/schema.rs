//! The GraphQL schema of the catalog's views, derived anew whenever the
//! views change (see [`super::LiveSchema`]).
//!
//! For a view `v` with a GraphQL-valid name (views are taken in name
//! order; one whose type names another view already took is left out):
//! - type `v`: one field per column with a valid name, of the column's
//!   type ([`super::values::graphql_type`]), non-null where the column is;
//! - `Query.v(<column>: …, limit, asOf, after, timeoutMs): v_result!`,
//!   where `v_result` is `{asOf, lagMs, rows: [v!]!}`;
//! - with a read copy, `Subscription.v(<column>: …, fromAsOf): v_change!`,
//!   where `v_change` is `{kind, asOf, last, reason, updates: [v_update!]!}`
//!   and `v_update` is `{row: v!, diff}`.
//!
//! `Query._views` lists the views the schema has.

use std::collections::HashSet;
use std::sync::Arc;

use async_graphql::dynamic::{
    Enum, Field, FieldFuture, FieldValue, InputValue, Object, ResolverContext, Scalar, Schema, SchemaError,
    Subscription, TypeRef,
};
use async_graphql::Value;

use super::values::{graphql_type, is_big_int, is_name, BIG_INT, DECIMAL, TIMESTAMP};
use super::{changes, read};
use crate::engine::{Engine, ViewShape};

/// Arguments of a view's query field that are not column filters.
pub const READ_ARGUMENTS: [&str; 4] = ["limit", "asOf", "after", "timeoutMs"];
/// The argument of a view's subscription field that is not a filter.
pub const FROM_AS_OF: &str = "fromAsOf";
/// The enum of `v_change.kind`.
pub const CHANGE_KIND: &str = "ChangeKind";
const LIST_FIELD: &str = "_views";

/// Nesting deeper than any query of this schema needs is refused.
const MAX_DEPTH: usize = 16;
/// Fields per operation, at most (each view field is a read: thousands of
/// aliases of one would be that many reads).
pub const MAX_COMPLEXITY: usize = 10_000;

/// A built schema, and what it has.
pub struct Built {
    pub schema: Schema,
    /// The views it has a query field for.
    pub views: Vec<String>,
}

/// The names one view's part of the schema uses.
pub struct ViewTypes {
    pub view: String,
    pub row: String,
    pub result: String,
    pub change: String,
    pub update: String,
    /// Its columns that are fields of the row type.
    pub fields: Vec<(String, TypeRef)>,
    /// Its columns that are filter arguments, with their GraphQL types.
    pub filters: Vec<(String, &'static str)>,
}

impl ViewTypes {
    fn of(shape: &ViewShape) -> ViewTypes {
        let v = &shape.name;
        let columns = shape.schema.columns.iter().filter(|c| is_name(&c.name));
        ViewTypes {
            view: v.clone(),
            row: v.clone(),
            result: format!("{v}_result"),
            change: format!("{v}_change"),
            update: format!("{v}_update"),
            fields: columns
                .clone()
                .map(|c| {
                    let ty = graphql_type(c.ty);
                    let ty = if c.nullable {
                        TypeRef::named(ty)
                    } else {
                        TypeRef::named_nn(ty)
                    };
                    (c.name.clone(), ty)
                })
                .collect(),
            filters: columns
                .filter(|c| !READ_ARGUMENTS.contains(&c.name.as_str()) && c.name != FROM_AS_OF)
                .map(|c| (c.name.clone(), graphql_type(c.ty)))
                .collect(),
        }
    }

    fn names(&self) -> [&str; 4] {
        [&self.row, &self.result, &self.change, &self.update]
    }
}

/// A field that answers with the parent object's member of the same name.
pub fn member(name: &str, ty: TypeRef) -> Field {
    let key = name.to_string();
    Field::new(name, ty, move |ctx: ResolverContext<'_>| {
        let v = match ctx.parent_value.as_value() {
            Some(Value::Object(m)) => m.get(key.as_str()).cloned(),
            _ => None,
        };
        FieldFuture::Value(v.filter(|v| *v != Value::Null).map(FieldValue::value))
    })
}

/// The schema of `shapes` (see the module doc).
pub fn build(shapes: &[ViewShape], engine: &Arc<Engine>) -> Result<Built, SchemaError> {
    let mut taken: HashSet<String> = [
        "Query",
        "Subscription",
        "String",
        "Int",
        "Float",
        "Boolean",
        "ID",
        BIG_INT,
        DECIMAL,
        TIMESTAMP,
        CHANGE_KIND,
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let mut query = Object::new("Query");
    let mut subscription = Subscription::new("Subscription");
    let mut has_subscriptions = false;
    let mut types = Vec::new();
    let mut views = Vec::new();
    for shape in shapes {
        if !is_name(&shape.name) || shape.name == LIST_FIELD {
            continue;
        }
        let t = ViewTypes::of(shape);
        if t.names().iter().any(|n| taken.contains(*n)) {
            continue;
        }
        taken.extend(t.names().iter().map(|n| n.to_string()));
        let mut row = Object::new(&t.row).description(format!("A row of view {} (job {}).", t.view, shape.job));
        for (name, ty) in &t.fields {
            row = row.field(member(name, ty.clone()));
        }
        types.push(row);
        types.push(read::result_type(&t));
        query = query.field(read::field(&t, engine));
        if shape.read_copy {
            types.extend(changes::types(&t));
            subscription = subscription.field(changes::field(&t, engine));
            has_subscriptions = true;
        }
        views.push(t.view.clone());
    }
    let names: Vec<Value> = views.iter().map(|v| Value::String(v.clone())).collect();
    query = query.field(
        Field::new(LIST_FIELD, TypeRef::named_nn_list_nn(TypeRef::STRING), move |_| {
            FieldFuture::Value(Some(FieldValue::value(Value::List(names.clone()))))
        })
        .description("The views this schema has a field for."),
    );
    let mut builder = Schema::build("Query", None, has_subscriptions.then_some("Subscription"))
        .register(
            Scalar::new(BIG_INT)
                .description("A 64-bit integer: a number, or a string of one.")
                .validator(is_big_int),
        )
        .register(
            Scalar::new(DECIMAL)
                .description("An exact decimal, as a string with its scale's digits (\"12.50\").")
                .validator(|v| matches!(v, Value::String(_) | Value::Number(_))),
        )
        .register(
            Scalar::new(TIMESTAMP)
                .description("A timestamp without time zone, as an RFC 3339 string.")
                .validator(|v| matches!(v, Value::String(_))),
        )
        .register(
            Enum::new(CHANGE_KIND)
                .description("What a change event is.")
                .item("SNAPSHOT")
                .item("CHANGES")
                .item("RESET"),
        )
        .register(query)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY);
    if has_subscriptions {
        builder = builder.register(subscription);
    }
    for t in types {
        builder = builder.register(t);
    }
    Ok(Built {
        schema: builder.finish()?,
        views,
    })
}

/// An argument for each of the view's filter columns.
pub fn filter_arguments(t: &ViewTypes) -> Vec<InputValue> {
    t.filters
        .iter()
        .map(|(name, ty)| {
            InputValue::new(name, TypeRef::named(*ty)).description(format!("Only rows whose {name} equals this."))
        })
        .collect()
}
