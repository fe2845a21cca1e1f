//! The loyalty program: settings that apply to every account.

use serde::{Deserialize, Serialize};

/// Default `redemption_ttl_seconds` (30 minutes, as the product page says).
pub const REDEMPTION_TTL_SECONDS_DEFAULT: i64 = 1800;
/// Bounds of `redemption_ttl_seconds`: one minute to thirty days.
pub const REDEMPTION_TTL_SECONDS_MIN: i64 = 60;
pub const REDEMPTION_TTL_SECONDS_MAX: i64 = 30 * 24 * 3600;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program {
    /// Whether a clawback may take a balance below zero.
    pub clawback_allow_negative: bool,
    pub redemption_ttl_seconds: i64,
}

impl Default for Program {
    fn default() -> Self {
        Program { clawback_allow_negative: true, redemption_ttl_seconds: REDEMPTION_TTL_SECONDS_DEFAULT }
    }
}

#[derive(Serialize)]
pub struct ClawbackView {
    pub allow_negative: bool,
}

#[derive(Serialize)]
pub struct ProgramView {
    pub object: &'static str,
    pub clawback: ClawbackView,
    pub redemption_ttl_seconds: i64,
}

impl Program {
    pub fn view(&self) -> ProgramView {
        ProgramView {
            object: "loyalty_program",
            clawback: ClawbackView { allow_negative: self.clawback_allow_negative },
            redemption_ttl_seconds: self.redemption_ttl_seconds,
        }
    }
}
