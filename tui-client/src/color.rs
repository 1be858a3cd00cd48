//! Colours for truecolor, 256-colour and 16-colour terminals.
//!
//! Peers announce `#rrggbb`; syntect themes are RGB. [`Palette::adapt`] maps an RGB colour
//! to what the terminal can show, chosen once at start from `COLORTERM` and `TERM`.

use ratatui::style::Color;

/// What the terminal can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    TrueColor,
    Ansi256,
    Ansi16,
}

impl Depth {
    /// Guesses from the environment, as most terminal programs do.
    pub fn detect() -> Self {
        let colorterm = std::env::var("COLORTERM").unwrap_or_default();
        let term = std::env::var("TERM").unwrap_or_default();
        if colorterm.contains("truecolor") || colorterm.contains("24bit") {
            Depth::TrueColor
        } else if term.contains("256") {
            Depth::Ansi256
        } else if term.is_empty() || term == "dumb" || term == "linux" || term == "vt100" {
            Depth::Ansi16
        } else {
            Depth::Ansi256
        }
    }

    /// `c` as this terminal can show it.
    pub fn adapt(self, c: Color) -> Color {
        let Color::Rgb(r, g, b) = c else {
            return c;
        };
        match self {
            Depth::TrueColor => c,
            Depth::Ansi256 => Color::Indexed(rgb_to_256(r, g, b)),
            Depth::Ansi16 => rgb_to_16(r, g, b),
        }
    }
}

/// Parses `#rrggbb`; anything else gives a neutral colour.
pub fn parse_hex(s: &str) -> Color {
    let hex = s.strip_prefix('#').unwrap_or(s);
    let channel = |i: usize| {
        hex.get(i..i + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
    };
    match (hex.len(), channel(0), channel(2), channel(4)) {
        (6, Some(r), Some(g), Some(b)) => Color::Rgb(r, g, b),
        _ => Color::Rgb(0xab, 0xb2, 0xbf),
    }
}

fn rgb_to_256(r: u8, g: u8, b: u8) -> u8 {
    // The 6x6x6 cube; grays go to the 24-step ramp.
    let q = |v: u8| -> u8 {
        if v < 48 {
            0
        } else if v < 115 {
            1
        } else {
            (v - 35) / 40
        }
    };
    if r.abs_diff(g) < 10 && g.abs_diff(b) < 10 {
        let avg = (u16::from(r) + u16::from(g) + u16::from(b)) / 3;
        if avg < 8 {
            return 16;
        }
        if avg > 238 {
            return 231;
        }
        return 232 + u8::try_from((avg - 8) / 10).unwrap_or(23).min(23);
    }
    16 + 36 * q(r) + 6 * q(g) + q(b)
}

fn rgb_to_16(r: u8, g: u8, b: u8) -> Color {
    let bright = u16::from(r) + u16::from(g) + u16::from(b) > 3 * 150;
    let on = |v: u8| v > 128;
    match (on(r), on(g), on(b), bright) {
        (false, false, false, _) => Color::DarkGray,
        (true, false, false, false) => Color::Red,
        (true, false, false, true) => Color::LightRed,
        (false, true, false, false) => Color::Green,
        (false, true, false, true) => Color::LightGreen,
        (true, true, false, false) => Color::Yellow,
        (true, true, false, true) => Color::LightYellow,
        (false, false, true, false) => Color::Blue,
        (false, false, true, true) => Color::LightBlue,
        (true, false, true, false) => Color::Magenta,
        (true, false, true, true) => Color::LightMagenta,
        (false, true, true, false) => Color::Cyan,
        (false, true, true, true) => Color::LightCyan,
        (true, true, true, false) => Color::Gray,
        (true, true, true, true) => Color::White,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_degrade() {
        let red = parse_hex("#e06c75");
        assert_eq!(red, Color::Rgb(0xe0, 0x6c, 0x75));
        assert_eq!(Depth::TrueColor.adapt(red), red);
        assert!(matches!(Depth::Ansi256.adapt(red), Color::Indexed(i) if i >= 16));
        assert_eq!(Depth::Ansi16.adapt(red), Color::Red);
        assert_eq!(Depth::Ansi16.adapt(Color::Reset), Color::Reset);
        assert_eq!(parse_hex("nope"), Color::Rgb(0xab, 0xb2, 0xbf));
    }
}
