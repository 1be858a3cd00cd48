//! Peer colours: a stable colour per name, and a check on the colours peers announce.

/// Readable on both dark and light terminals, and distinct from each other.
const PALETTE: &[&str] = &[
    "#e06c75", // red
    "#98c379", // green
    "#e5c07b", // yellow
    "#61afef", // blue
    "#c678dd", // magenta
    "#56b6c2", // cyan
    "#d19a66", // orange
    "#ff79c6", // pink
    "#8be9fd", // light cyan
    "#50fa7b", // bright green
    "#bd93f9", // lavender
    "#f1fa8c", // pale yellow
];

/// A stable `#rrggbb` colour for `name`: the same name gets the same colour on every machine
/// and every run (FNV-1a, not `std`'s hasher, whose output may change between Rust releases).
pub fn color_for(name: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let index = usize::try_from(hash % PALETTE.len() as u64).unwrap_or(0);
    PALETTE[index].to_owned()
}

/// Whether `color` has the form `#rrggbb` that peers are expected to announce.
pub(crate) fn is_hex_color(color: &str) -> bool {
    color.len() == 7 && color.starts_with('#') && color[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_are_stable_and_well_formed() {
        for name in ["alice", "bob", "", "ünïcödé", "a very long name indeed"] {
            let c = color_for(name);
            assert!(is_hex_color(&c), "{c}");
            assert_eq!(c, color_for(name));
        }
        // Pinned, so a change of hash or palette is a deliberate decision.
        assert_eq!(color_for("alice"), "#f1fa8c");
        assert_eq!(color_for("bob"), "#e06c75");
    }

    #[test]
    fn names_spread_over_the_palette() {
        let used: std::collections::HashSet<String> =
            (0..100).map(|i| color_for(&format!("user{i}"))).collect();
        assert!(used.len() >= PALETTE.len() - 2, "{used:?}");
    }

    #[test]
    fn hex_colour_check() {
        assert!(is_hex_color("#a0B1c2"));
        for bad in [
            "",
            "#",
            "a0b1c2",
            "#a0b1c",
            "#a0b1c2d",
            "#g0b1c2",
            "#\u{e9}0b1c",
        ] {
            assert!(!is_hex_color(bad), "{bad:?}");
        }
    }
}
