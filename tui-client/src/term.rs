//! The terminal: entering and leaving raw mode and the alternate screen, restoring it on
//! panic, and suspending (restore, stop the process, re-enter when continued).

use std::io::{self, Write};

use crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture,
};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

/// The real terminal.
pub type Term = Terminal<CrosstermBackend<io::Stdout>>;

/// Raw mode, alternate screen, mouse and bracketed paste on.
pub fn enter() -> io::Result<Term> {
    enable_raw_mode()?;
    execute!(
        io::stdout(),
        EnterAlternateScreen,
        EnableMouseCapture,
        EnableBracketedPaste
    )?;
    Terminal::new(CrosstermBackend::new(io::stdout()))
}

/// Everything [`enter`] turned on, off again. Safe to call twice.
pub fn leave() {
    let _ = execute!(
        io::stdout(),
        DisableBracketedPaste,
        DisableMouseCapture,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
    let _ = disable_raw_mode();
    let _ = io::stdout().flush();
}

/// Restores the terminal before the panic message is printed.
pub fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        leave();
        previous(info);
    }));
}

/// Ctrl-T: gives the terminal back to the shell and stops the process like Ctrl-Z would;
/// returns when the shell continues it (`fg`). In raw mode the terminal does not send
/// SIGTSTP itself, so the process stops itself with SIGSTOP.
pub async fn suspend(term: &mut Term) -> io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut cont = signal(SignalKind::from_raw(18))?; // SIGCONT
    leave();
    std::process::Command::new("kill")
        .args(["-STOP", &std::process::id().to_string()])
        .status()?;
    cont.recv().await;
    enable_raw_mode()?;
    execute!(
        io::stdout(),
        EnterAlternateScreen,
        EnableMouseCapture,
        EnableBracketedPaste
    )?;
    term.clear()
}
