//! Pure rules of the ledger: ids, money, metadata and the objects themselves.
//! Nothing here does IO or knows about actix; everything here is unit-tested.

pub mod ids;
pub mod members;
pub mod metadata;

pub use ids::{Id, IdKind};
pub use metadata::Metadata;
