//! What each key means in `top`.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Quit,
    /// Move the selection by this many rows.
    Move(isize),
    /// Move the selection by a screenful, up (`-1`) or down (`1`).
    Page(isize),
    First,
    Last,
    TogglePause,
    Reset,
    Activity,
    /// Open the selected agent's details, or close them.
    Details,
    /// Close the details if they are open, else quit.
    Back,
}

/// The action of a key press; `None` for keys `top` does not use (and for key releases, which
/// some terminals report too).
pub fn action(key: KeyEvent) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        return matches!(key.code, KeyCode::Char('c' | 'd')).then_some(Action::Quit);
    }
    Some(match key.code {
        KeyCode::Char('q') => Action::Quit,
        KeyCode::Esc => Action::Back,
        KeyCode::Up | KeyCode::Char('k') => Action::Move(-1),
        KeyCode::Down | KeyCode::Char('j') => Action::Move(1),
        KeyCode::PageUp => Action::Page(-1),
        KeyCode::PageDown => Action::Page(1),
        KeyCode::Home | KeyCode::Char('g') => Action::First,
        KeyCode::End | KeyCode::Char('G') => Action::Last,
        KeyCode::Char('p') => Action::TogglePause,
        KeyCode::Char('r') => Action::Reset,
        KeyCode::Char('a') => Action::Activity,
        KeyCode::Enter => Action::Details,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(code: KeyCode, modifiers: KeyModifiers) -> Option<Action> {
        action(KeyEvent::new(code, modifiers))
    }

    #[test]
    fn keys_map_to_their_actions() {
        let none = KeyModifiers::NONE;
        assert_eq!(press(KeyCode::Char('j'), none), Some(Action::Move(1)));
        assert_eq!(press(KeyCode::Up, none), Some(Action::Move(-1)));
        assert_eq!(press(KeyCode::Char('p'), none), Some(Action::TogglePause));
        assert_eq!(press(KeyCode::Esc, none), Some(Action::Back));
        assert_eq!(
            press(KeyCode::Char('c'), KeyModifiers::CONTROL),
            Some(Action::Quit)
        );
        // Ctrl-P is not `p`: a control key never writes.
        assert_eq!(press(KeyCode::Char('p'), KeyModifiers::CONTROL), None);
        assert_eq!(press(KeyCode::Char('x'), none), None);
        let mut release = KeyEvent::new(KeyCode::Char('q'), none);
        release.kind = KeyEventKind::Release;
        assert_eq!(action(release), None);
    }
}
