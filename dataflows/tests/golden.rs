//! Golden tests for SQL errors: each `golden/<kind>/<case>.sql` is planned
//! and its error (code, line:column, message) must equal
//! `golden/<kind>/<case>.err` byte for byte. `job` cases are jobs planned
//! against the catalog of `golden/catalog.sql`; `query` cases are
//! `POST /v1/query` statements over its views; `drop` cases are DROP
//! statements. Run with `WEIR_BLESS=1` to write the `.err` files after a
//! deliberate change of wording, then review the diff.

use std::path::{Path, PathBuf};

use weir_dataflows::plan::JobPlan;
use weir_dataflows::sql::{plan_drops, plan_job, plan_peek, CatalogLookup, ObjectInfo, PlanError};

/// The objects of one planned job, as the engine's catalog would show them.
struct Planned(JobPlan);

impl CatalogLookup for Planned {
    fn lookup(&self, name: &str) -> Option<ObjectInfo> {
        let t = self.0.tables.iter().find(|t| t.name == name).map(|t| ObjectInfo {
            schema: t.schema.clone(),
            monotonic: t.primary_key.is_none(),
            key: t.primary_key.clone(),
            watermark: t.watermark,
        });
        t.or_else(|| {
            self.0.views.iter().find(|v| v.name == name).map(|v| ObjectInfo {
                schema: v.schema.clone(),
                monotonic: v.monotonic,
                key: v.key.clone(),
                watermark: v.watermark,
            })
        })
    }
}

/// Queries see views only, as in the engine.
struct ViewsOnly<'a>(&'a Planned);

impl CatalogLookup for ViewsOnly<'_> {
    fn lookup(&self, name: &str) -> Option<ObjectInfo> {
        self.0
             .0
            .views
            .iter()
            .any(|v| v.name == name)
            .then(|| self.0.lookup(name))?
    }
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn render(e: &PlanError) -> String {
    format!("{} {}:{} {}\n", e.code, e.line, e.column, e.message)
}

fn check(kind: &str, plan: &dyn Fn(&str) -> Result<(), PlanError>) -> usize {
    let bless = std::env::var_os("WEIR_BLESS").is_some();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(golden_dir().join(kind))
        .expect("golden directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    cases.sort();
    let mut failures = Vec::new();
    for case in &cases {
        let sql = std::fs::read_to_string(case).expect("case readable");
        let got = match plan(&sql) {
            Ok(()) => "no error\n".to_string(),
            Err(e) => render(&e),
        };
        let expected_path = case.with_extension("err");
        if bless {
            std::fs::write(&expected_path, &got).expect("write .err");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if got != expected {
            failures.push(format!("{}:\n  expected: {expected}  got:      {got}", case.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden case(s) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    cases.len()
}

fn catalog() -> Planned {
    let sql = std::fs::read_to_string(golden_dir().join("catalog.sql")).expect("catalog.sql");
    Planned(plan_job(&sql, &Planned(JobPlan::default())).expect("the golden catalog plans"))
}

#[test]
fn job_errors() {
    let cat = catalog();
    let n = check("job", &|sql| plan_job(sql, &cat).map(drop));
    assert!(n >= 20, "only {n} job cases");
}

#[test]
fn query_errors() {
    let cat = catalog();
    let n = check("query", &|sql| plan_peek(sql, &ViewsOnly(&cat)).map(drop));
    assert!(n >= 5, "only {n} query cases");
}

#[test]
fn drop_errors() {
    let n = check("drop", &|sql| plan_drops(sql).map(drop));
    assert!(n >= 3, "only {n} drop cases");
}

#[test]
fn script_without_cuts_statements_with_their_comments() {
    use std::collections::BTreeSet;
    use weir_dataflows::sql::script_without;
    let script = "-- sources\nCREATE TABLE t (a BIGINT, s TEXT) WITH (connector = 'log', topic = 't');\n\n-- counts; a ';' in a comment\nCREATE VIEW \"Counts\" AS SELECT a, count(*) AS n FROM t WHERE s <> ';' GROUP BY a;\n-- last\nCREATE VIEW v2 AS SELECT a FROM t\n";
    let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<BTreeSet<String>>();
    assert_eq!(
        script_without(script, &names(&["Counts"])).expect("splits").as_deref(),
        Some("-- sources\nCREATE TABLE t (a BIGINT, s TEXT) WITH (connector = 'log', topic = 't');\n-- last\nCREATE VIEW v2 AS SELECT a FROM t\n")
    );
    assert_eq!(
        script_without(script, &names(&["v2"])).expect("splits").as_deref(),
        Some("-- sources\nCREATE TABLE t (a BIGINT, s TEXT) WITH (connector = 'log', topic = 't');\n\n-- counts; a ';' in a comment\nCREATE VIEW \"Counts\" AS SELECT a, count(*) AS n FROM t WHERE s <> ';' GROUP BY a;")
    );
    // Unquoted names fold to lower case, as when they were created.
    assert_eq!(
        script_without("CREATE VIEW Big AS SELECT 1 AS one;", &names(&["big"])).expect("splits"),
        None
    );
}
