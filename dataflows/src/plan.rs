//! The relational plan: what a SQL view compiles to before it is rendered
//! onto differential dataflow. Every node knows nothing of SQL syntax.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};
pub use weir_operators::aggregate::AggFunc;
use weir_operators::cep::{Pattern, Skip, VarId, Watermark};
use weir_operators::repr::{Datum, Row, Schema, SqlType};

use crate::expr::{order_cmp, EvalError, ScalarExpr};

/// A relational expression. Column references in expressions index the
/// node's input row; each node's output columns are documented per variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RelPlan {
    /// A table or view of the catalog, by name.
    Get {
        name: String,
    },
    /// A fixed set of rows (each with multiplicity one).
    Constant {
        rows: Vec<Row>,
    },
    /// Output: input columns followed by one column per expression.
    Map {
        input: Box<RelPlan>,
        exprs: Vec<ScalarExpr>,
    },
    /// Keeps rows for which every predicate is TRUE.
    Filter {
        input: Box<RelPlan>,
        predicates: Vec<ScalarExpr>,
    },
    /// Output: the listed input columns, in order.
    Project {
        input: Box<RelPlan>,
        outputs: Vec<usize>,
    },
    /// Output: the group key columns followed by one column per aggregate.
    /// With an empty key the result always has exactly one row (SQL's
    /// aggregate over empty input).
    Reduce {
        input: Box<RelPlan>,
        group_key: Vec<ScalarExpr>,
        aggregates: Vec<Aggregate>,
        /// The input is append-only: min and max can keep only the current
        /// extreme per group instead of the group's distinct values.
        monotonic: bool,
    },
    /// Equi-join. Output: left columns followed by right columns.
    /// `residual` refers to that concatenated row; for a left join it takes
    /// part in matching (a left row whose every candidate fails it is padded
    /// with NULLs).
    Join {
        left: Box<RelPlan>,
        right: Box<RelPlan>,
        left_key: Vec<ScalarExpr>,
        right_key: Vec<ScalarExpr>,
        residual: Vec<ScalarExpr>,
        kind: JoinKind,
        right_arity: usize,
    },
    Distinct {
        input: Box<RelPlan>,
    },
    /// Multiset union of inputs with equal arity.
    UnionAll {
        inputs: Vec<RelPlan>,
    },
    /// Numbers the rows of each group in order (ROW_NUMBER) and keeps the
    /// first `limit` of them, if given. Output: input columns, then the row
    /// number as a BIGINT column.
    TopK {
        input: Box<RelPlan>,
        partition_by: Vec<usize>,
        order_by: Vec<OrderKey>,
        limit: Option<usize>,
        /// Input is append-only: top-k state can stay bounded by `limit`.
        monotonic: bool,
        /// The number of input columns (the row number's position).
        input_arity: usize,
    },
    /// Row pattern recognition over an append-only input. Output: see
    /// [`MatchRecognize`].
    MatchRecognize(Box<MatchRecognize>),
}

/// A `MATCH_RECOGNIZE` clause, planned (docs/cep.md).
///
/// `DEFINE` conditions and `MEASURES` are expressions over an extended row:
/// the current row's input columns, then one column per entry of `navs`
/// (its value for the current match state).
///
/// Output (`ONE ROW PER MATCH`): the partition columns, then the measures.
/// `ALL ROWS PER MATCH`: the partition columns, the event-time column, the
/// measures, then the other input columns in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MatchRecognize {
    pub input: RelPlan,
    pub input_arity: usize,
    pub partition_by: Vec<usize>,
    /// The event-time column.
    pub order_by: usize,
    pub order_by_name: String,
    pub pattern: Pattern,
    /// Variable names as written in PATTERN, by [`VarId`].
    pub vars: Vec<String>,
    /// Per variable; `None` matches every row.
    pub defines: Vec<Option<ScalarExpr>>,
    pub measures: Vec<ScalarExpr>,
    pub navs: Vec<Nav>,
    pub all_rows: bool,
    pub skip: Skip,
    pub within_ms: Option<i64>,
    pub emit_timeouts: bool,
    pub watermark: Watermark,
    /// Rows one match attempt may span (`'pattern.max_rows'`). Left out of
    /// the serialised plan at the default, so plans and snapshot
    /// fingerprints without it stay as they were.
    #[serde(default = "default_max_rows", skip_serializing_if = "is_default_max_rows")]
    pub max_rows: u64,
}

fn default_max_rows() -> u64 {
    weir_operators::cep::DEFAULT_MAX_ROWS
}

fn is_default_max_rows(n: &u64) -> bool {
    *n == default_max_rows()
}

/// A value that depends on the match: a navigated row's expression, an
/// aggregate over a variable's rows, or a match function.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Nav {
    /// `expr` evaluated on the row found from `at`, then `prev` rows back
    /// in the partition (`PREV`).
    Row {
        at: RowAt,
        prev: u64,
        expr: ScalarExpr,
    },
    /// An aggregate over the rows bound to `var` (all rows when `None`);
    /// `expr` is `None` for `count(*)` / `count(v.*)`.
    Agg {
        func: AggFunc,
        var: Option<VarId>,
        expr: Option<ScalarExpr>,
        input_type: SqlType,
    },
    MatchNumber,
    Classifier,
    TimedOut,
}

/// Which row of the match a navigation starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RowAt {
    Current,
    /// The `k`-th row bound to `var` (any variable when `None`) counted
    /// back from the newest.
    Last {
        var: Option<VarId>,
        k: u64,
    },
    /// As `Last`, counted from the oldest.
    First {
        var: Option<VarId>,
        k: u64,
    },
}

impl Nav {
    /// Whether the value depends on which earlier rows a thread bound.
    pub fn reads_bindings(&self) -> bool {
        match self {
            Nav::Row { at, .. } => *at != RowAt::Current,
            Nav::Agg { .. } => true,
            Nav::MatchNumber | Nav::Classifier | Nav::TimedOut => false,
        }
    }
}

impl RelPlan {
    /// Every read of a catalog object in the plan, in render order, with
    /// the columns a `Project` right over it keeps (`None`: whole rows).
    pub fn reads(&self) -> Vec<(&str, Option<&[usize]>)> {
        let mut out = Vec::new();
        self.collect_reads(&mut out);
        out
    }

    fn collect_reads<'p>(&'p self, out: &mut Vec<(&'p str, Option<&'p [usize]>)>) {
        match self {
            RelPlan::Get { name } => out.push((name, None)),
            RelPlan::Project { input, outputs } => match &**input {
                RelPlan::Get { name } => out.push((name, Some(outputs))),
                other => other.collect_reads(out),
            },
            RelPlan::Constant { .. } => {}
            RelPlan::Map { input, .. }
            | RelPlan::Filter { input, .. }
            | RelPlan::Reduce { input, .. }
            | RelPlan::Distinct { input }
            | RelPlan::TopK { input, .. } => input.collect_reads(out),
            RelPlan::Join { left, right, .. } => {
                left.collect_reads(out);
                right.collect_reads(out);
            }
            RelPlan::UnionAll { inputs } => inputs.iter().for_each(|i| i.collect_reads(out)),
            RelPlan::MatchRecognize(m) => m.input.collect_reads(out),
        }
    }

    /// The object read, when the plan only filters, maps and projects it.
    pub fn linear_source(&self) -> Option<&str> {
        match self {
            RelPlan::Get { name } => Some(name),
            RelPlan::Map { input, .. } | RelPlan::Filter { input, .. } | RelPlan::Project { input, .. } => {
                input.linear_source()
            }
            _ => None,
        }
    }

    /// Evaluates a plan for which [`RelPlan::linear_source`] is `Some` on
    /// one row of its source: `None` when a filter drops it.
    ///
    /// # Contract
    /// Only for linear plans; any other node is an error.
    pub fn eval_linear(&self, row: Row) -> Result<Option<Row>, EvalError> {
        Ok(match self {
            RelPlan::Get { .. } => Some(row),
            RelPlan::Map { input, exprs } => match input.eval_linear(row)? {
                Some(mut row) => {
                    for e in exprs {
                        let d = e.eval(&row)?;
                        row.push(d);
                    }
                    Some(row)
                }
                None => None,
            },
            RelPlan::Filter { input, predicates } => match input.eval_linear(row)? {
                Some(row) => {
                    for p in predicates {
                        if !p.holds(&row)? {
                            return Ok(None);
                        }
                    }
                    Some(row)
                }
                None => None,
            },
            RelPlan::Project { input, outputs } => input
                .eval_linear(row)?
                .map(|row| outputs.iter().map(|&i| row[i].clone()).collect()),
            _ => return Err(EvalError::Invalid("not a filter/map/project plan".into())),
        })
    }

    /// Output columns whose values identify at most one output row, when
    /// that follows from the plan; `key_of` gives the keys of catalog
    /// objects. An empty key means at most one row.
    ///
    /// # Contract
    /// A returned key is unique in every consistent state of the output, so
    /// a view may be arranged by it and a lookup by it reads one entry.
    pub fn unique_key(&self, key_of: &dyn Fn(&str) -> Option<Vec<usize>>) -> Option<Vec<usize>> {
        match self {
            RelPlan::Get { name } => key_of(name),
            RelPlan::Constant { .. } | RelPlan::UnionAll { .. } | RelPlan::Distinct { .. } => None,
            // Map appends columns and Filter drops rows: neither breaks a key.
            RelPlan::Map { input, .. } | RelPlan::Filter { input, .. } => input.unique_key(key_of),
            RelPlan::Project { input, outputs } => input
                .unique_key(key_of)?
                .iter()
                .map(|k| outputs.iter().position(|o| o == k))
                .collect(),
            RelPlan::Reduce { group_key, .. } => Some((0..group_key.len()).collect()),
            // Matches may repeat a row exactly (two identical time-outs).
            RelPlan::MatchRecognize(_) => None,
            // The row number is unique within a group; with one row per
            // group the group alone is.
            RelPlan::TopK {
                partition_by,
                limit,
                input_arity,
                ..
            } => {
                let mut key = partition_by.clone();
                if *limit != Some(1) {
                    key.push(*input_arity);
                }
                Some(key)
            }
            // Each left row meets at most one right row when the right side
            // is unique on columns it is joined by: the left key survives
            // (a left join's unmatched rows are still one per left row).
            RelPlan::Join {
                left, right, right_key, ..
            } => {
                let right_unique = right.unique_key(key_of)?;
                let joined_on = |c: usize| right_key.contains(&ScalarExpr::Column(c));
                if right_unique.iter().all(|&c| joined_on(c)) {
                    left.unique_key(key_of)
                } else {
                    None
                }
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JoinKind {
    Inner,
    Left,
}

/// One ORDER BY column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderKey {
    pub column: usize,
    pub desc: bool,
    /// NULLS FIRST; SQL's default is NULLS LAST for ASC, FIRST for DESC.
    pub nulls_first: bool,
}

impl OrderKey {
    /// Compares rows by ORDER BY `keys`, then by all their columns in SQL
    /// order, then by `Datum`'s total order: a total order, so top-k and
    /// sorted answers are deterministic.
    pub fn compare_rows(keys: &[OrderKey], a: &[Datum], b: &[Datum]) -> Ordering {
        for k in keys {
            let (x, y) = (&a[k.column], &b[k.column]);
            let nulls_first = if k.nulls_first {
                Ordering::Less
            } else {
                Ordering::Greater
            };
            let o = match (x.is_null(), y.is_null()) {
                (true, true) => Ordering::Equal,
                (true, false) => nulls_first,
                (false, true) => nulls_first.reverse(),
                _ if k.desc => order_cmp(x, y).reverse(),
                _ => order_cmp(x, y),
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        a.iter()
            .zip(b)
            .map(|(x, y)| order_cmp(x, y))
            .find(|o| *o != Ordering::Equal)
            .unwrap_or_else(|| a.cmp(b))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    pub func: AggFunc,
    /// Evaluated on the input row; ignored for `CountRows`.
    pub expr: ScalarExpr,
    pub distinct: bool,
    /// The argument's type (the result type follows from it).
    pub input_type: SqlType,
}

impl Aggregate {
    /// A plain `min` or `max`: over append-only input its running extreme
    /// is kept in the difference type beside the accumulable aggregates.
    pub fn is_extreme(&self) -> bool {
        !self.distinct && matches!(self.func, AggFunc::Min | AggFunc::Max)
    }

    /// Accumulable aggregates are kept in the difference type of a
    /// collection (one entry per group, DESIGN.md §4); the rest need the
    /// group's values.
    pub fn is_accumulable(&self) -> bool {
        !self.distinct
            && match self.func {
                AggFunc::CountRows | AggFunc::Count => true,
                AggFunc::Sum | AggFunc::Avg => !self.input_type.is_float(),
                AggFunc::Min | AggFunc::Max => false,
            }
    }
}

/// A planned view: its plan, its columns and the columns it is indexed by.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ViewPlan {
    pub name: String,
    pub plan: RelPlan,
    pub schema: Schema,
    /// The columns that identify a row (GROUP BY columns); `None` when the
    /// whole row is the key.
    pub key: Option<Vec<usize>>,
    /// Catalog objects the plan reads.
    pub depends_on: Vec<String>,
    /// True when the view only ever grows (no retractions).
    pub monotonic: bool,
    /// Watermark settings of the sources it reads, combined (a pattern over
    /// this view orders its rows with them).
    #[serde(default)]
    pub watermark: Watermark,
    /// `WITH (read_copy = 'off')`: no read-optimised copy; reads go through
    /// the workers. Left out of the serialised plan when on (the default),
    /// so plans and snapshot fingerprints without it stay as they were.
    #[serde(default = "on", skip_serializing_if = "is_on")]
    pub read_copy: bool,
}

fn on() -> bool {
    true
}

fn is_on(b: &bool) -> bool {
    *b
}

/// Where a table's records come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Connector {
    /// weir's embedded event log.
    Log { topic: String },
    /// A Kafka topic, ingested exactly once into the embedded log topic
    /// `mirror`, which the dataflows read as they read any log topic.
    Kafka(KafkaSource),
    /// A tick per interval, appended by the engine to the embedded log
    /// topic `topic` (`connector = 'schedule'`).
    Schedule(ScheduleSource),
}

/// A schedule table's settings: a tick event at the start of each
/// `interval_ms` (counted from the Unix epoch), exactly once per interval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleSource {
    pub interval_ms: u64,
    /// The reserved log topic the ticks are appended to; named after the
    /// table and the interval, so a changed interval starts a new one.
    pub topic: String,
}

/// A Kafka source table's settings (`connector = 'kafka'`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaSource {
    pub brokers: String,
    pub topic: String,
    pub startup: KafkaStartup,
    /// The consumer group offsets are committed to, for lag monitoring only.
    pub group_id: String,
    /// Further librdkafka settings (`'properties.<name>'` options).
    pub properties: Vec<(String, String)>,
    /// The embedded log topic the records are ingested into: derived from
    /// the table's name and the settings above, so that a changed source
    /// starts a new copy.
    pub mirror: String,
}

/// Where a Kafka source starts reading a partition the first time
/// (`'scan.startup.mode'`); afterwards it resumes where it left off.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KafkaStartup {
    Earliest,
    Latest,
    /// The first record with a timestamp at or after this (ms since the epoch).
    Timestamp(i64),
    /// (partition, offset); partitions not listed start at the earliest.
    Offsets(Vec<(i32, i64)>),
}

/// A planned source table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TablePlan {
    pub name: String,
    pub schema: Schema,
    /// Upsert key: one row per key, the latest record wins.
    pub primary_key: Option<Vec<usize>>,
    pub connector: Connector,
    /// Event-time settings for patterns over this table.
    #[serde(default)]
    pub watermark: Watermark,
    /// `WITH ('retention' = …, 'retention.bytes' = …, 'cleanup.policy' =
    /// 'compact')`: how much of the table's log topic (a Kafka table's
    /// copy) is kept. Left out of the
    /// plan's serialised form when unset, so that plans (and snapshot
    /// fingerprints) without it stay as they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<TableRetention>,
}

/// A table's retention option (see [`TablePlan::retention`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableRetention {
    pub max_age_ms: Option<u64>,
    pub max_bytes: Option<u64>,
    /// Key compaction (an upsert table only): the latest record per key.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub compact: bool,
}

impl TablePlan {
    /// The embedded log topic the table is read from.
    pub fn topic(&self) -> &str {
        match &self.connector {
            Connector::Log { topic } => topic,
            Connector::Kafka(k) => &k.mirror,
            Connector::Schedule(s) => &s.topic,
        }
    }

    /// The Kafka source, for a Kafka table.
    pub fn kafka(&self) -> Option<&KafkaSource> {
        match &self.connector {
            Connector::Kafka(k) => Some(k),
            Connector::Log { .. } | Connector::Schedule(_) => None,
        }
    }

    /// The schedule, for a schedule table.
    pub fn schedule(&self) -> Option<&ScheduleSource> {
        match &self.connector {
            Connector::Schedule(s) => Some(s),
            Connector::Log { .. } | Connector::Kafka(_) => None,
        }
    }
}

/// A sink: every change of a view, written to a Kafka topic or acted on
/// by calling an HTTP service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SinkPlan {
    pub name: String,
    /// The view whose changes are written.
    pub from: String,
    pub schema: Schema,
    /// The view's key columns: the records' key.
    pub key: Option<Vec<usize>>,
    pub target: SinkTarget,
}

impl SinkPlan {
    /// Where the sink writes: a Kafka topic, or the URL template of an
    /// action sink. With the name, it identifies the sink's progress.
    pub fn destination(&self) -> &str {
        match &self.target {
            SinkTarget::Kafka(k) => &k.topic,
            SinkTarget::Http(h) => &h.url,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SinkTarget {
    Kafka(KafkaSinkPlan),
    Http(HttpSinkPlan),
}

/// A changelog sink's Kafka topic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KafkaSinkPlan {
    pub brokers: String,
    pub topic: String,
    pub envelope: Envelope,
    /// Kafka transactions, one per engine time written.
    pub exactly_once: bool,
    /// Partitions of the topic when weir creates it.
    pub partitions: i32,
    /// Further librdkafka settings (`'properties.<name>'`).
    pub properties: Vec<(String, String)>,
}

/// An action sink (`connector = 'http'`): one request per change of the
/// view, with its resilience settings. Durations are in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HttpSinkPlan {
    /// `http://host/path/{column}`: `{column}` is replaced by the row's
    /// value, percent-encoded.
    pub url: String,
    pub method: String,
    /// Extra request headers (`'header.<Name>'`).
    pub headers: Vec<(String, String)>,
    /// Which changes become requests.
    pub on_insert: bool,
    pub on_update: bool,
    pub on_delete: bool,
    pub max_in_flight: u32,
    pub timeout_ms: u64,
    /// Attempts per request in all (1: no retry).
    pub retry_attempts: u32,
    pub retry_initial_ms: u64,
    pub retry_max_delay_ms: u64,
    /// Consecutive failed attempts that open the circuit.
    pub breaker_failures: u32,
    pub breaker_cooldown_ms: u64,
    /// How long a change may wait (for retries or an open circuit) before
    /// it goes to the fallback.
    pub max_wait_ms: u64,
    pub fallback_topic: Option<String>,
    pub fallback_url: Option<String>,
    pub response_topic: Option<String>,
}

/// How a sink's records describe a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Envelope {
    /// Keyed by the view's key: the key's new row, or a tombstone when the
    /// key is gone (a compacted topic then holds exactly the view).
    Upsert,
    /// `{"before", "after", "op"}`: each change with the row it replaced.
    Debezium,
}

/// The objects one job creates, in definition order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobPlan {
    pub tables: Vec<TablePlan>,
    pub views: Vec<ViewPlan>,
    #[serde(default)]
    pub sinks: Vec<SinkPlan>,
    /// Where the job's sources start (`SET 'auto.offset.reset' = …`).
    #[serde(default)]
    pub start: StartFrom,
}

/// Where a job starts reading its sources.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum StartFrom {
    /// The whole history: views reflect every event ever appended.
    #[default]
    Earliest,
    /// Only events appended after the job was created (or replaced): a rule
    /// set swapped in this way judges new events only.
    Latest,
}
