//! What planning may know about existing objects: [`CatalogLookup`], the
//! planner's only window on the catalog, and the [`ObjectInfo`] it returns.

use weir_operators::cep::Watermark;
use weir_operators::repr::Schema;

/// What the planner needs to know about an existing catalog object.
#[derive(Clone, Debug)]
pub struct ObjectInfo {
    pub schema: Schema,
    /// The object only ever grows (an append-only table, or a view over one).
    pub monotonic: bool,
    /// Columns that identify a row: an upsert table's primary key, a view's key.
    pub key: Option<Vec<usize>>,
    /// Event-time settings for patterns over the object.
    pub watermark: Watermark,
}

/// Name resolution against the catalog; names are case-insensitive.
pub trait CatalogLookup {
    fn lookup(&self, name: &str) -> Option<ObjectInfo>;
}

/// An empty catalog, for planning tests that define everything they read.
#[cfg(test)]
pub(crate) struct EmptyCatalog;

#[cfg(test)]
impl CatalogLookup for EmptyCatalog {
    fn lookup(&self, _: &str) -> Option<ObjectInfo> {
        None
    }
}
