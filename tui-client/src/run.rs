//! The event loop: one queue of typed events (terminal input, the clients' events tagged
//! with their tab, finished scans, a tick), all queued events drained, then at most one
//! frame drawn.

use std::future::poll_fn;
use std::io::{self, Write};
use std::task::Poll;
use std::time::{Duration, Instant};

use crossterm::event::{Event as TermEvent, EventStream};
use futures_util::{Stream, StreamExt};
use ratatui::Terminal;
use ratatui::backend::Backend;
use tokio::sync::mpsc;

use crate::app::{App, AppEvent};
use crate::term;

/// Runs the app in the real terminal until it exits.
pub async fn run(app: &mut App, client_events: mpsc::Receiver<AppEvent>) -> anyhow::Result<()> {
    term::install_panic_hook();
    let mut terminal = term::enter()?;
    let result = event_loop(
        &mut terminal,
        app,
        EventStream::new(),
        client_events,
        async |t: &mut term::Term, app: &mut App| -> anyhow::Result<()> {
            if app.suspend {
                app.suspend = false;
                term::suspend(t).await?;
            }
            let out = std::mem::take(&mut app.out);
            if !out.is_empty() {
                let mut stdout = io::stdout();
                for s in out {
                    stdout.write_all(s.as_bytes())?;
                }
                stdout.flush()?;
            }
            Ok(())
        },
    )
    .await;
    term::leave();
    result
}

/// The loop, generic over the backend and the input stream so tests can script it.
/// `after_frame` runs after each frame (suspend, escape sequences).
pub async fn event_loop<B, S, F>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    mut input: S,
    mut client_events: mpsc::Receiver<AppEvent>,
    mut after_frame: F,
) -> anyhow::Result<()>
where
    B: Backend,
    B::Error: Send + Sync + 'static,
    S: Stream<Item = io::Result<TermEvent>> + Unpin,
    F: for<'a> AsyncFnMut(&'a mut Terminal<B>, &'a mut App) -> anyhow::Result<()>,
{
    let size = terminal.size()?;
    app.resize(ratatui::layout::Rect::new(0, 0, size.width, size.height));
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut client_open = true;
    let wake = app.wake();
    loop {
        app.prepare();
        terminal.draw(|f| app.draw(f))?;
        after_frame(terminal, app).await?;
        if app.exit.is_some() {
            return Ok(());
        }
        tokio::select! {
            ev = input.next() => match ev {
                Some(ev) => app.handle_term(ev?),
                None => return Ok(()),
            },
            ev = client_events.recv(), if client_open => match ev {
                Some(ev) => app.handle_event(ev),
                None => client_open = false,
            },
            _ = tick.tick() => app.tick(Instant::now()),
            // New colours: just draw.
            _ = wake.notified() => {}
        }
        // Drain whatever else is queued before drawing again: a paste or a burst of
        // remote updates costs one frame, not one per event.
        // The drain polls with the task's own waker: `now_or_never` would poll with a
        // no-op waker, and crossterm's `EventStream` keeps the waker of the poll that found
        // nothing, so later keys would wake no one and wait for the next tick (250 ms).
        while let Some(ev) = poll_fn(|cx| match input.poll_next_unpin(cx) {
            Poll::Ready(Some(ev)) => Poll::Ready(Some(ev)),
            Poll::Ready(None) | Poll::Pending => Poll::Ready(None),
        })
        .await
        {
            app.handle_term(ev?);
        }
        while let Ok(ev) = client_events.try_recv() {
            app.handle_event(ev);
        }
    }
}
