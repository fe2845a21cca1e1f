//! Time: the `Clock` every timestamp and deadline comes from (tests move a
//! manual one by hand), the timer actor that acts on deadlines, and the one
//! that takes automatic snapshots.

pub mod clock;
pub mod expiry;
pub mod snapshots;

pub use clock::{Clock, SystemClock};
pub use expiry::ExpiryTimer;
pub use snapshots::SnapshotTimer;
