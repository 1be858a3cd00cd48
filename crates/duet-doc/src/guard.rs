//! Cheap plausibility checks on peer bytes before yrs decodes them.
//!
//! yrs 0.28.1 reserves memory for the leading counts of an update or state vector
//! before reading the entries: five bytes announcing 2^28 clients cost ~0.5 GB and most
//! of a second before failing (FIELD-NOTES, "Decode amplification"). Every entry takes
//! at least one byte, so a count larger than the bytes that follow is a lie we can
//! reject up front. Only the counts at fixed positions are checked (the client count,
//! the first client's block count); counts further in sit behind variable-length
//! blocks and would need a full parser: a size cap on frames belongs to the protocol
//! crate.

use crate::DocError;

/// Reads one lib0 varUint (unsigned LEB128) from the front of `bytes`.
fn read_var_uint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Checks that `count` entries can fit into what is left of the message.
fn check_count(what: &str, count: u64, rest: &[u8]) -> Result<(), DocError> {
    if count > rest.len() as u64 {
        return Err(DocError::Decode(format!(
            "{what}: count {count} exceeds the {} bytes that follow",
            rest.len()
        )));
    }
    Ok(())
}

/// Rejects a v1 update whose leading counts cannot be honest.
pub(crate) fn check_update_v1(bytes: &[u8]) -> Result<(), DocError> {
    let mut rest = bytes;
    let Some(clients) = read_var_uint(&mut rest) else {
        return Err(DocError::Decode(format!(
            "update: truncated client count ({} bytes)",
            bytes.len()
        )));
    };
    check_count("update", clients, rest)?;
    if clients > 0
        && let Some(blocks) = read_var_uint(&mut rest)
    {
        check_count("update", blocks, rest)?;
    }
    Ok(())
}

/// Rejects a v1 state vector whose leading count cannot be honest.
pub(crate) fn check_state_vector_v1(bytes: &[u8]) -> Result<(), DocError> {
    let mut rest = bytes;
    if let Some(entries) = read_var_uint(&mut rest) {
        check_count("state vector", entries, rest)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn var_uint_round_trips_lib0_examples() {
        assert_eq!(read_var_uint(&mut &[0x00][..]), Some(0));
        assert_eq!(read_var_uint(&mut &[0x7f][..]), Some(127));
        assert_eq!(read_var_uint(&mut &[0x80, 0x01][..]), Some(128));
        assert_eq!(
            read_var_uint(&mut &[0x80, 0x80, 0x80, 0x80, 0x01][..]),
            Some(1 << 28)
        );
        assert_eq!(read_var_uint(&mut &[0x80][..]), None);
        assert_eq!(read_var_uint(&mut &[0xff; 11][..]), None);
    }

    #[test]
    fn amplifying_counts_are_rejected() {
        let bomb = [0x80, 0x80, 0x80, 0x80, 0x01];
        let err = check_update_v1(&bomb).expect_err("bomb");
        assert!(err.to_string().contains("268435456"), "{err}");
        assert!(check_state_vector_v1(&bomb).is_err());
        // One client announcing 2^28 blocks.
        assert!(check_update_v1(&[0x01, 0x80, 0x80, 0x80, 0x80, 0x01, 0, 0]).is_err());
    }

    #[test]
    fn honest_messages_pass() {
        // FIELD-NOTES: an update inserting "hi" (after the sync framing bytes).
        let hi = [
            0x01, 0x01, 0x2a, 0x00, 0x04, 0x01, 0x01, 0x74, 0x02, 0x68, 0x69, 0x00,
        ];
        assert_eq!(check_update_v1(&hi), Ok(()));
        assert_eq!(check_update_v1(&[0x00, 0x00]), Ok(()));
        assert_eq!(check_state_vector_v1(&[0x00]), Ok(()));
        assert_eq!(check_state_vector_v1(&[0x01, 0x2a, 0x02]), Ok(()));
    }
}
