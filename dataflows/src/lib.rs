//! The write side: SQL jobs planned and rendered onto timely/differential
//! dataflow. Nothing here does I/O (DESIGN.md §1).
//!
//! # Layout
//! - [`sql`]: parsing, name resolution and type checking of jobs into plans.
//! - [`catalog`]: the installed jobs and their objects, and the dependency
//!   rules between jobs (what a dataflow imports, what a replace or drop
//!   would break); plans against itself through [`sql::CatalogLookup`].
//! - [`plan`]: the relational plan (`RelPlan`) and the job/table/view plans.
//! - [`expr`]: scalar expressions and their PostgreSQL-compatible evaluation.
//! - [`render`]: plans → differential collections, views arranged by key:
//!   `render/collection` (rows and errors), `render/reduce` (aggregates),
//!   `render/pattern` (`MATCH_RECOGNIZE` conditions and measures for the
//!   pattern operator), `render/relation` (the plan walk) and `render_job`.

pub mod catalog;
pub mod expr;
pub mod plan;
pub mod render;
pub mod sql;
