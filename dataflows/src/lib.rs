//! The write side: SQL jobs planned and rendered onto timely/differential
//! dataflow. Nothing here does I/O (DESIGN.md §1).
//!
//! # Layout
//! - [`sql`]: parsing, name resolution and type checking of jobs into plans.
//! - [`plan`]: the relational plan (`RelPlan`) and the job/table/view plans.
//! - [`expr`]: scalar expressions and their PostgreSQL-compatible evaluation.
//! - [`render`]: plans → differential collections, views arranged by key.
//! - `cep`: `MATCH_RECOGNIZE` conditions and measures for the pattern operator.

mod cep;
pub mod expr;
pub mod plan;
pub mod render;
pub mod sql;
