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
