//! What every worker's DICOM associations share: the association counts the
//! listener limits are checked against, and the C-MOVEs whose
//! sub-operations come back through the proxy.

use crate::pipeline::DicomLimits;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
struct NetCount {
    total: usize,
    per_ae: HashMap<String, usize>,
}

/// A C-MOVE whose Move Destination the proxy rewrote to its own AE title.
#[derive(Debug, Clone)]
pub(crate) struct ActiveMove {
    pub net: String,
    /// The AE title the proxy put in the Move Destination (the endpoint's).
    pub via_ae: String,
    /// The AE title the backend calls with when it delivers (its `aet`).
    pub source_aet: String,
    /// The dicom backend the sub-operations go to.
    pub dest_backend: String,
    /// (worker, association key, message ID) of the C-MOVE.
    pub owner: (usize, usize, u16),
}

#[derive(Default)]
pub(crate) struct DicomShared {
    counts: Mutex<HashMap<String, NetCount>>,
    moves: Mutex<Vec<ActiveMove>>,
}

/// Why an association is over a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OverLimit {
    Total(usize),
    PerCallingAe(usize),
}

impl DicomShared {
    /// Count an association from `calling` on network `net`, unless that
    /// would exceed a limit.
    pub(crate) fn admit(&self, net: &str, calling: &str, limits: &DicomLimits) -> Result<(), OverLimit> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let c = counts.entry(net.to_string()).or_default();
        if c.total >= limits.max_associations {
            return Err(OverLimit::Total(limits.max_associations));
        }
        let per = c.per_ae.get(calling).copied().unwrap_or(0);
        if limits.max_associations_per_calling_ae > 0 && per >= limits.max_associations_per_calling_ae {
            return Err(OverLimit::PerCallingAe(limits.max_associations_per_calling_ae));
        }
        c.total += 1;
        *c.per_ae.entry(calling.to_string()).or_default() += 1;
        Ok(())
    }

    /// Undo one `admit`.
    pub(crate) fn release(&self, net: &str, calling: &str) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = counts.get_mut(net) {
            c.total = c.total.saturating_sub(1);
            if let Some(n) = c.per_ae.get_mut(calling) {
                *n -= 1;
                if *n == 0 {
                    c.per_ae.remove(calling);
                }
            }
        }
    }

    /// Associations open on `net` (admitted, not yet released).
    pub(crate) fn open(&self) -> usize {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).values().map(|c| c.total).sum()
    }

    pub(crate) fn add_move(&self, m: ActiveMove) {
        self.moves.lock().unwrap_or_else(|e| e.into_inner()).push(m);
    }

    /// The C-MOVE `owner` finished.
    pub(crate) fn end_move(&self, owner: (usize, usize, u16)) {
        self.moves.lock().unwrap_or_else(|e| e.into_inner()).retain(|m| m.owner != owner);
    }

    /// Every C-MOVE of association (worker, key) ends with it.
    pub(crate) fn end_moves_of(&self, worker: usize, key: usize) {
        self.moves.lock().unwrap_or_else(|e| e.into_inner()).retain(|m| (m.owner.0, m.owner.1) != (worker, key));
    }

    /// The destination backend for an association `calling` → `called` on
    /// `net` that delivers a rewritten C-MOVE (the oldest such move).
    pub(crate) fn move_destination(&self, net: &str, called: &str, calling: &str) -> Option<String> {
        let moves = self.moves.lock().unwrap_or_else(|e| e.into_inner());
        moves
            .iter()
            .find(|m| m.net == net && m.via_ae == called && m.source_aet == calling)
            .map(|m| m.dest_backend.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_total_and_per_calling_ae() {
        let s = DicomShared::default();
        let l = DicomLimits {
            max_pdu: 0,
            max_associations: 3,
            max_associations_per_calling_ae: 2,
            buffered_dataset_bytes: 0,
        };
        assert!(s.admit("n", "A", &l).is_ok());
        assert!(s.admit("n", "A", &l).is_ok());
        assert_eq!(s.admit("n", "A", &l), Err(OverLimit::PerCallingAe(2)));
        assert!(s.admit("n", "B", &l).is_ok());
        assert_eq!(s.admit("n", "C", &l), Err(OverLimit::Total(3)));
        assert!(s.admit("other", "C", &l).is_ok());
        s.release("n", "A");
        assert!(s.admit("n", "A", &l).is_ok());
        assert_eq!(s.open(), 4);
    }

    #[test]
    fn moves_are_found_and_ended() {
        let s = DicomShared::default();
        let m = ActiveMove {
            net: "n".into(),
            via_ae: "HARMONY".into(),
            source_aet: "QR".into(),
            dest_backend: "viewer".into(),
            owner: (0, 7, 3),
        };
        s.add_move(m);
        assert_eq!(s.move_destination("n", "HARMONY", "QR").as_deref(), Some("viewer"));
        assert_eq!(s.move_destination("n", "HARMONY", "OTHER"), None);
        s.end_move((0, 7, 3));
        assert_eq!(s.move_destination("n", "HARMONY", "QR"), None);
    }
}
