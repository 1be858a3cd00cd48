//! The keymap: terminal key events to [`Action`]s, modeless, micro/nano style.
//!
//! The table in [`HELP`] is what the help overlay shows; a test checks that each row's
//! keys really produce an action.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::action::{Action, Motion};

/// The help overlay: (keys, what they do).
pub const HELP: &[(&str, &str)] = &[
    ("Ctrl-S", "save (asks for a path when there is none)"),
    ("Ctrl-Q", "quit (asks when the file on disk differs)"),
    (
        "Ctrl-F / F3 / Shift-F3",
        "find, next, previous (Enter/Up/Down in the bar)",
    ),
    ("Ctrl-G", "go to line"),
    ("Ctrl-Z / Ctrl-Y", "undo / redo your own edits"),
    (
        "Ctrl-C / Ctrl-X / Ctrl-V",
        "copy / cut / paste (line when nothing selected)",
    ),
    ("Ctrl-A", "select all"),
    (
        "Tab / Shift-Tab",
        "indent; with lines selected, indent / dedent them",
    ),
    ("Shift + move", "select"),
    ("Ctrl-Left / Ctrl-Right", "word left / right"),
    ("Home / End", "line start (smart) / end"),
    ("Ctrl-Home / Ctrl-End", "start / end of the file"),
    ("PgUp / PgDn", "page up / down"),
    (
        "Ctrl-Backspace / Ctrl-W",
        "delete the word before the cursor",
    ),
    ("Ctrl-P", "people: Enter jumps to a peer and follows them"),
    (
        "Ctrl-O",
        "workspace files: type to filter, Enter opens (Ctrl-N new, Ctrl-R rename, Ctrl-D delete)",
    ),
    ("F2", "workspace: back to the previous file"),
    ("F1 / Ctrl-H", "this help"),
    ("Esc", "close a bar or panel, clear the selection"),
    ("Ctrl-T", "suspend (fg to resume)"),
    ("mouse", "click, drag to select, wheel to scroll"),
];

/// The action for a key, or `None` when the key means nothing here.
pub fn action_for(key: KeyEvent) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let shift = key.modifiers.contains(KeyModifiers::SHIFT);
    let alt = key.modifiers.contains(KeyModifiers::ALT);
    let mv = |motion| {
        Some(Action::Move {
            motion,
            extend: shift,
        })
    };
    match key.code {
        KeyCode::Char(c) if ctrl && !alt => match c.to_ascii_lowercase() {
            's' => Some(Action::Save),
            'q' => Some(Action::Quit),
            'f' => Some(Action::OpenFind),
            'g' => Some(Action::OpenGoto),
            'z' => Some(Action::Undo),
            'y' => Some(Action::Redo),
            'c' => Some(Action::Copy),
            'x' => Some(Action::Cut),
            'v' => Some(Action::Paste),
            'a' => Some(Action::SelectAll),
            'p' => Some(Action::People),
            'h' => Some(Action::Help),
            'w' => Some(Action::DeleteWordBack),
            't' => Some(Action::Suspend),
            'n' => Some(Action::FindNext),
            'o' => Some(Action::Files),
            _ => None,
        },
        KeyCode::Char(c) => Some(Action::InsertChar(c)),
        KeyCode::Enter => Some(Action::Newline),
        KeyCode::Tab if shift => Some(Action::Dedent),
        KeyCode::Tab => Some(Action::Tab),
        KeyCode::BackTab => Some(Action::Dedent),
        // Many terminals send Ctrl-Backspace as Ctrl-H or as Backspace with Ctrl.
        KeyCode::Backspace if ctrl || alt => Some(Action::DeleteWordBack),
        KeyCode::Backspace => Some(Action::Backspace),
        KeyCode::Delete => Some(Action::Delete),
        KeyCode::Left if ctrl || alt => mv(Motion::WordLeft),
        KeyCode::Right if ctrl || alt => mv(Motion::WordRight),
        KeyCode::Left => mv(Motion::Left),
        KeyCode::Right => mv(Motion::Right),
        KeyCode::Up => mv(Motion::Up),
        KeyCode::Down => mv(Motion::Down),
        KeyCode::Home if ctrl => mv(Motion::DocStart),
        KeyCode::End if ctrl => mv(Motion::DocEnd),
        KeyCode::Home => mv(Motion::LineStart),
        KeyCode::End => mv(Motion::LineEnd),
        KeyCode::PageUp => mv(Motion::PageUp),
        KeyCode::PageDown => mv(Motion::PageDown),
        KeyCode::F(1) => Some(Action::Help),
        KeyCode::F(2) => Some(Action::PrevFile),
        KeyCode::F(3) if shift => Some(Action::FindPrev),
        KeyCode::F(3) => Some(Action::FindNext),
        KeyCode::Esc => Some(Action::Escape),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode, mods: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, mods)
    }

    #[test]
    fn shift_extends_and_ctrl_jumps() {
        assert_eq!(
            action_for(key(
                KeyCode::Left,
                KeyModifiers::SHIFT | KeyModifiers::CONTROL
            )),
            Some(Action::Move {
                motion: Motion::WordLeft,
                extend: true
            })
        );
        assert_eq!(
            action_for(key(KeyCode::End, KeyModifiers::CONTROL)),
            Some(Action::Move {
                motion: Motion::DocEnd,
                extend: false
            })
        );
        assert_eq!(
            action_for(key(
                KeyCode::Char('S'),
                KeyModifiers::CONTROL | KeyModifiers::SHIFT
            )),
            Some(Action::Save)
        );
        assert_eq!(
            action_for(key(KeyCode::Char('é'), KeyModifiers::NONE)),
            Some(Action::InsertChar('é'))
        );
        // AltGr arrives as Ctrl+Alt on some terminals and must type its char.
        assert_eq!(
            action_for(key(
                KeyCode::Char('@'),
                KeyModifiers::CONTROL | KeyModifiers::ALT
            )),
            Some(Action::InsertChar('@'))
        );
    }

    #[test]
    fn every_ctrl_letter_in_the_help_is_bound() {
        for (keys, _) in HELP {
            for part in keys.split(" / ") {
                if let Some(rest) = part.strip_prefix("Ctrl-")
                    && rest.len() == 1
                {
                    let c = rest.chars().next().unwrap_or(' ').to_ascii_lowercase();
                    assert!(
                        action_for(key(KeyCode::Char(c), KeyModifiers::CONTROL)).is_some(),
                        "{part}"
                    );
                }
            }
        }
    }
}
