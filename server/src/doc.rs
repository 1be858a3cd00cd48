//! How bytes from the wire become part of the server's yrs documents: checked by the guard,
//! with every panic inside yrs contained. (How a document is made, UTF-16 offsets and the root
//! text, is `duet_yjs::doc`, re-exported here.) The room, the stores and the admin commands all use
//! these; nothing here knows rooms, members or storage.

use crate::contain::contained;
use yrs::updates::decoder::Decode;
use yrs::{Doc, ReadTxn, StateVector, Transact, Update};

pub use duet_yjs::doc::{ROOT_TEXT, doc_with_client, new_doc, text_of};

/// Why an update was not applied.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApplyError {
    /// Malformed or refused before or during decoding; the document is untouched.
    #[error("{0}")]
    Invalid(String),
    /// It would leave data waiting for dependencies and the room's budget for that is spent;
    /// the document is untouched.
    #[error("the update depends on data the room never received")]
    Orphan,
    /// yrs panicked while applying: the document may be half-changed and must be reloaded.
    #[error("yrs panicked while applying the update")]
    Panicked,
}

/// What applying an update did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Applied {
    /// Nothing new.
    Unchanged,
    /// Fully integrated.
    Integrated,
    /// Applied, but some of it waits for dependencies that have not arrived.
    Orphaned,
}

/// Checks, decodes and applies an update, containing any panic inside yrs. With
/// `refuse_gaps`, an update whose first clock for some client lies beyond what the document
/// has (it could only wait) is refused before it touches the document.
pub(crate) fn apply_update(
    doc: &Doc,
    bytes: &[u8],
    refuse_gaps: bool,
) -> Result<Applied, ApplyError> {
    let update = decode_update(bytes).map_err(|e| ApplyError::Invalid(e.to_string()))?;
    if update.is_empty() {
        return Ok(Applied::Unchanged);
    }
    // Where each client's blocks in this update begin. (`Update::state_vector` is no help here:
    // it only counts clients whose blocks start at clock 0.)
    let lower = update.state_vector_lower();
    if refuse_gaps && has_gap(doc, &lower) {
        return Err(ApplyError::Orphan);
    }
    let applied = contained(|| {
        let mut txn = doc.transact_mut();
        let result = txn.apply_update(update).map_err(|e| e.to_string());
        // Debug builds only: a panic on demand, transaction open (see `contain::failpoint`).
        #[cfg(debug_assertions)]
        if result.is_ok() {
            crate::contain::failpoint::panic_after_apply(bytes);
        }
        result
    });
    match applied {
        Ok(Ok(())) => Ok(if waits(&lower, &doc.transact().state_vector()) {
            Applied::Orphaned
        } else {
            Applied::Integrated
        }),
        Ok(Err(e)) => Err(ApplyError::Invalid(e)),
        Err(_) => Err(ApplyError::Panicked),
    }
}

/// Why bytes from the wire are not an update or a state vector.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    /// Refused by the bounds checks before yrs saw the bytes.
    #[error(transparent)]
    Guard(#[from] crate::guard::GuardError),
    /// yrs could not read them.
    #[error("{0}")]
    Yrs(String),
    /// yrs panicked reading them (contained).
    #[error("yrs panicked while decoding the {0}")]
    Panicked(&'static str),
}

/// Checks and decodes an update, containing any panic inside yrs.
pub(crate) fn decode_update(bytes: &[u8]) -> Result<Update, DecodeError> {
    crate::guard::check_update_v1(bytes)?;
    contained(|| Update::decode_v1(bytes))
        .map_err(|_| DecodeError::Panicked("update"))?
        .map_err(|e| DecodeError::Yrs(e.to_string()))
}

/// Whether an update beginning at `lower`, once applied to a document now at `have`, left
/// something waiting for a dependency: integrated blocks move the document's clock past where
/// they begin; a client whose first block did not is waiting.
pub(crate) fn waits(lower: &StateVector, have: &StateVector) -> bool {
    lower
        .iter()
        .any(|(client, clock)| have.get(client) <= *clock)
}

/// Whether an update beginning at `lower` leaves a gap before some client's next clock (it
/// could only wait for dependencies).
pub(crate) fn has_gap(doc: &Doc, lower: &StateVector) -> bool {
    let have = doc.transact().state_vector();
    lower
        .iter()
        .any(|(client, clock)| *clock > have.get(client))
}

/// Checks and decodes a state vector, containing any panic inside yrs.
pub(crate) fn decode_state_vector(bytes: &[u8]) -> Result<StateVector, DecodeError> {
    crate::guard::check_state_vector_v1(bytes)?;
    contained(|| StateVector::decode_v1(bytes))
        .map_err(|_| DecodeError::Panicked("state vector"))?
        .map_err(|e| DecodeError::Yrs(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 25-byte update that makes yrs 0.28.1 panic while applying it, in debug and release
    /// builds alike: one string block of client 7 at clock 2^31 + 1 (yrs computes
    /// `local_clock as i32 - clock as i32`, gets a positive "offset" and integrates the block
    /// without the Skip that should fill clocks 0..2^31), then a delete of client 7's clocks
    /// 0..1. `ClientBlockList::find_index(0)` walks left of the first block: `mid - 1`
    /// underflows (debug: overflow panic; release: index out of bounds). The block is already
    /// integrated when it panics, so the document is left changed.
    ///
    /// the guard (`duet-guard`) refuses it (clock beyond 2^31 - 1), so the server never hands it to yrs; this
    /// test calls yrs directly to notice when a yrs upgrade fixes the bug (and the guard's clock
    /// limit could go). The end-to-end 1011 test uses the debug-only [`failpoint`] instead.
    #[test]
    fn a_real_update_makes_yrs_panic_mid_apply_and_leaves_the_document_changed() {
        use crate::contain::contained;
        use crate::guard::{GuardError, check_update_v1};
        use yrs::Update;
        use yrs::updates::decoder::Decode;
        let bad = include_bytes!("../../fuzz/regressions/yrs_apply-panic-find-index-1.bin");
        let client = yrs::block::ClientID::new(7);

        // yrs itself, unguarded: it decodes, then panics mid-apply.
        let doc = new_doc();
        let update = Update::decode_v1(bad).expect("yrs decodes it");
        let result = contained(|| doc.transact_mut().apply_update(update));
        assert!(
            result.is_err(),
            "yrs no longer panics on this input ({result:?}): the guard (duet-guard) may not need MAX_CLOCK \
             any more; update fuzz/README.md"
        );
        assert!(
            doc.transact().state_vector().get(&client) > 0,
            "the half-applied block stays in the document"
        );
        assert!(!duet_yjs::contain::is_contained());

        // The server refuses it before yrs sees it; the document is untouched.
        assert!(matches!(
            check_update_v1(bad),
            Err(GuardError::ClockTooLarge { client: 7, .. })
        ));
        let doc = new_doc();
        let result = apply_update(&doc, bad, false);
        assert!(
            matches!(&result, Err(ApplyError::Invalid(e)) if e.contains("beyond 2^31")),
            "{result:?}"
        );
        assert_eq!(doc.transact().state_vector().get(&client), 0);
    }
}
