//! Deliveries not delivered (pending, or failed), by position: what
//! `GET /v1/webhook_deliveries?status=pending` and `?status=failed` walk
//! instead of every delivery.
//!
//! Unlike the fields `index.rs` groups by, a delivery's status changes (a
//! retry makes a failed one pending again), so this is a map from position
//! to status that each new version of a delivery sets in place, about 10
//! bytes an entry. Delivered ones, nearly every delivery of a working
//! endpoint, are not kept: `status=delivered` reads the deliveries (or the
//! endpoint's) and passes over the few others. Retention forgets finished
//! deliveries oldest first, so it trims the oldest positions, as it does the
//! endpoint index.

use std::collections::BTreeMap;

use parking_lot::RwLock;

use crate::domain::webhooks::DeliveryStatus;

#[derive(Default)]
pub struct Unfinished(RwLock<BTreeMap<u32, DeliveryStatus>>);

impl Unfinished {
    /// The delivery at `position` now has `status`.
    pub(super) fn set(&self, position: u32, status: DeliveryStatus) {
        let mut map = self.0.write();
        match status {
            DeliveryStatus::Delivered => {
                map.remove(&position);
            }
            unfinished => {
                map.insert(position, unfinished);
            }
        }
    }

    /// The positions of the deliveries with `status` (pending or failed),
    /// ascending. Nothing for `Delivered`, which is not kept.
    pub fn positions(&self, status: DeliveryStatus) -> Vec<u32> {
        self.0.read().iter().filter(|(_, s)| **s == status).map(|(p, _)| *p).collect()
    }

    /// Drops the positions before `first_live` (forgotten past retention).
    pub(super) fn trim_before(&self, first_live: u32) {
        let mut map = self.0.write();
        if map.first_key_value().is_some_and(|(p, _)| *p < first_live) {
            *map = map.split_off(&first_live);
        }
    }

    /// How many deliveries are pending or failed.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.0.read().len()
    }
}
