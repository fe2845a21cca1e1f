//! Time: the `Clock` every timestamp and deadline comes from (tests move a
//! manual one by hand), and the timer actor that acts on deadlines.

pub mod clock;
pub mod expiry;

pub use clock::{Clock, SystemClock};
pub use expiry::ExpiryTimer;
