//! One read time for a query operation's view fields ([`OperationTime`]):
//! found by looking at the operation before it runs, chosen by the first
//! field that needs it, shared by the rest.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, OperationType, Selection, SelectionSet};
use async_graphql::{Error, Name, Request, Value as ConstValue};
use tokio::sync::OnceCell;
use weir_operators::repr::Tick;
use weir_queries::common_time::common_as_of;
use weir_queries::Token;

use super::values::graphql_error;
use crate::engine::{Engine, EngineError};
use crate::http::views::DEFAULT_TIMEOUT_MS;

/// Fragments nested deeper than this are not followed (validation refuses
/// cycles later; this only keeps the look from recursing forever).
const MAX_FRAGMENT_DEPTH: usize = 32;

/// The time an operation's view fields without `asOf` are read at.
pub struct OperationTime {
    /// The views those fields read.
    views: BTreeSet<String>,
    /// Every write those fields name in `after`.
    after: Vec<Token>,
    /// The longest `timeoutMs` among them.
    timeout: Duration,
    at: OnceCell<Result<Tick, Error>>,
}

/// One top-level field of the operation: its name and arguments, with
/// variables replaced by their values.
struct TopField {
    name: String,
    args: Vec<(Name, ConstValue)>,
}

impl OperationTime {
    /// The shared time for `request`, when it is a query operation whose
    /// fields without `asOf` read two or more of `views`; `None` otherwise
    /// (also when it does not parse: running it reports that).
    pub fn plan(request: &Request, views: &HashSet<String>) -> Option<OperationTime> {
        let doc = async_graphql::parser::parse_query(&request.query).ok()?;
        let op = match &doc.operations {
            DocumentOperations::Single(op) => op,
            // A named operation is among `Multiple`, even when alone.
            DocumentOperations::Multiple(ops) => match request.operation_name.as_deref() {
                Some(name) => ops.get(name)?,
                None if ops.len() == 1 => ops.values().next()?,
                None => return None,
            },
        };
        if op.node.ty != OperationType::Query {
            return None;
        }
        let defaults: Vec<(Name, ConstValue)> = op
            .node
            .variable_definitions
            .iter()
            .filter_map(|d| Some((d.node.name.node.clone(), d.node.default_value.as_ref()?.node.clone())))
            .collect();
        let variable = |name: &Name| {
            request
                .variables
                .get(name)
                .cloned()
                .or_else(|| defaults.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()))
        };
        let mut fields = Vec::new();
        top_fields(&doc, &op.node.selection_set.node, &variable, 0, &mut fields);
        let mut time = OperationTime {
            views: BTreeSet::new(),
            after: Vec::new(),
            timeout: Duration::from_millis(DEFAULT_TIMEOUT_MS),
            at: OnceCell::new(),
        };
        let mut timeout = None;
        for f in fields.iter().filter(|f| views.contains(&f.name)) {
            let arg = |n: &str| f.args.iter().find(|(a, _)| a.as_str() == n).map(|(_, v)| v);
            if arg("asOf").is_some_and(|v| *v != ConstValue::Null) {
                continue;
            }
            time.views.insert(f.name.clone());
            match arg("after") {
                Some(ConstValue::List(ts)) => time.after.extend(ts.iter().filter_map(token)),
                Some(t) => time.after.extend(token(t)),
                None => {}
            }
            if let Some(ConstValue::Number(n)) = arg("timeoutMs") {
                let ms = n.as_u64().unwrap_or(0).min(600_000);
                timeout = Some(timeout.map_or(ms, |t: u64| t.max(ms)));
            }
        }
        if let Some(ms) = timeout {
            time.timeout = Duration::from_millis(ms);
        }
        (time.views.len() >= 2).then_some(time)
    }

    /// Whether a field without `asOf` reading `view` reads at this time.
    pub fn covers(&self, view: &str) -> bool {
        self.views.contains(view)
    }

    /// The time: the latest complete in every one of the views, after
    /// every write; chosen once, by the first field to ask.
    pub async fn at(&self, engine: &Engine) -> Result<Tick, Error> {
        self.at
            .get_or_init(|| async {
                let views: Vec<String> = self.views.iter().cloned().collect();
                common_as_of(engine, &views, &self.after, self.timeout)
                    .await
                    .map_err(|e| graphql_error(EngineError::from(e)))
            })
            .await
            .clone()
    }
}

/// A malformed token is left to the field's own read to report.
fn token(v: &ConstValue) -> Option<Token> {
    match v {
        ConstValue::String(s) => Token::parse(s).ok(),
        _ => None,
    }
}

/// The fields of a selection set, through its fragments.
fn top_fields(
    doc: &ExecutableDocument,
    set: &SelectionSet,
    variable: &impl Fn(&Name) -> Option<ConstValue>,
    depth: usize,
    out: &mut Vec<TopField>,
) {
    if depth > MAX_FRAGMENT_DEPTH {
        return;
    }
    for item in &set.items {
        match &item.node {
            Selection::Field(f) => out.push(TopField {
                name: f.node.name.node.to_string(),
                args: f
                    .node
                    .arguments
                    .iter()
                    .map(|(n, v)| {
                        let v = v
                            .node
                            .clone()
                            .into_const_with(|name| variable(&name).ok_or(()))
                            .unwrap_or(ConstValue::Null);
                        (n.node.clone(), v)
                    })
                    .collect(),
            }),
            Selection::FragmentSpread(s) => {
                if let Some(frag) = doc.fragments.get(&s.node.fragment_name.node) {
                    top_fields(doc, &frag.node.selection_set.node, variable, depth + 1, out);
                }
            }
            Selection::InlineFragment(i) => top_fields(doc, &i.node.selection_set.node, variable, depth + 1, out),
        }
    }
}
