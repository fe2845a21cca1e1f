//! Pure rules of the ledger: ids, money, metadata and the objects themselves.
//! Nothing here does IO or knows about actix; everything here is unit-tested.
//!
//! The structs are what the WAL stores (bincode, so no `skip_serializing_if`
//! on them); each has a `view()` that adds `object` and derived fields for JSON.

pub mod api_keys;
pub mod earning;
pub mod events;
pub mod ids;
pub mod lots;
pub mod members;
pub mod metadata;
pub mod money;
pub mod payments;
pub mod points;
pub mod program;
pub mod redemptions;
pub mod refunds;
pub mod rewards;
pub mod text;
pub mod webhooks;

pub use ids::{Id, IdKind};
pub use metadata::Metadata;
