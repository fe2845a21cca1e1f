//! Time: the `Clock` every timestamp and deadline comes from (tests move a
//! manual one by hand), the timer actors that act on deadlines (redemptions'
//! expiry; lots becoming available, warned about and expiring), and the one
//! that takes automatic snapshots.

pub mod clock;
pub mod expiry;
pub mod lots;
pub mod snapshots;

pub use clock::{Clock, SystemClock};
pub use expiry::ExpiryTimer;
pub use lots::LotTimer;
pub use snapshots::SnapshotTimer;
