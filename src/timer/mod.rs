//! Time: the `Clock` every timestamp comes from (tests move a manual one by hand).

pub mod clock;

pub use clock::{Clock, ManualClock, SystemClock};
