//! Peer bytes pass the same bounds checks as on the server (`duet-guard`) before yrs decodes
//! them: counts that cannot fit the message (yrs reserves memory from them up front), nesting
//! too deep, clocks past 2^31 (yrs panics on them) and subdocuments (yrs leaks them). A server
//! that forwards such bytes anyway cannot make the editor allocate, crash or leak.

use crate::DocError;

pub(crate) fn check_update_v1(bytes: &[u8]) -> Result<(), DocError> {
    duet_guard::check_update_v1(bytes).map_err(|e| DocError::Decode(format!("update: {e}")))
}

pub(crate) fn check_state_vector_v1(bytes: &[u8]) -> Result<(), DocError> {
    duet_guard::check_state_vector_v1(bytes)
        .map_err(|e| DocError::Decode(format!("state vector: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn the_yrs_panic_input_is_rejected() {
        let bytes = include_bytes!("../../../fuzz/regressions/yrs_apply-panic-find-index-1.bin");
        let err = check_update_v1(bytes).expect_err("clock past 2^31");
        assert!(err.to_string().contains("2^31"), "{err}");
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
