//! Drawing: `draw(frame, &View, rope, selection)` paints the whole screen and never
//! mutates anything. Only the visible lines are read from the rope, and of each line only
//! the part up to the right edge of the view.
//!
//! Layout, top to bottom: the text area (gutter with line numbers, then text), the status
//! bar, and the message row (prompt or notice). Panels float over the text.

use ratatui::Frame;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Row, Table, TableState};
use ropey::Rope;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use crate::buffer::CharSel;
use crate::keymap::HELP;
use crate::state::{ConnView, Level, Panel, PathPurpose, Person, Prompt, View};
use crate::text;

const SELECTION_BG: Color = Color::Rgb(0x3e, 0x44, 0x51);
const GUTTER_FG: Color = Color::Rgb(0x5c, 0x63, 0x70);
const BACKGROUND: (u8, u8, u8) = (0x1e, 0x1e, 0x1e);

/// The screen's regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Areas {
    pub gutter: Rect,
    pub text: Rect,
    pub status: Rect,
    pub message: Rect,
}

/// Splits `area` for a text of `lines` lines.
pub fn areas(area: Rect, lines: usize) -> Areas {
    let [main, status, message] = Layout::vertical([
        Constraint::Min(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    let digits = lines.max(1).ilog10() as u16 + 1;
    let gutter_w = (digits.max(3) + 1).min(main.width.saturating_sub(1));
    let [gutter, text] =
        Layout::horizontal([Constraint::Length(gutter_w), Constraint::Min(1)]).areas(main);
    Areas {
        gutter,
        text,
        status,
        message,
    }
}

/// Mixes a peer colour into the background, for selections that keep the text readable.
fn dim(c: Color, depth: crate::color::Depth) -> Color {
    let Color::Rgb(r, g, b) = c else { return c };
    let mix = |a: u8, bg: u8| ((u16::from(a) * 35 + u16::from(bg) * 65) / 100) as u8;
    depth.adapt(Color::Rgb(
        mix(r, BACKGROUND.0),
        mix(g, BACKGROUND.1),
        mix(b, BACKGROUND.2),
    ))
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame<'_>, view: &View, rope: &Rope, sel: CharSel) {
    let a = areas(frame.area(), rope.len_lines());
    let cursor = draw_text(frame.buffer_mut(), &a, view, rope, sel);
    draw_status(frame.buffer_mut(), a.status, view, rope, sel);
    let prompt_cursor = draw_message(frame.buffer_mut(), a.message, view);
    let mut panel_cursor = None;
    match view.panel {
        Some(Panel::Help) => draw_help(frame, view),
        Some(Panel::People { selected }) => draw_people(frame, view, selected),
        Some(Panel::Files) => panel_cursor = Some(draw_files(frame, view)),
        None => {}
    }
    if let Some(p) = panel_cursor {
        frame.set_cursor_position(p);
    } else if let Some(p) = prompt_cursor {
        frame.set_cursor_position(p);
    } else if view.panel.is_none()
        && let Some(p) = cursor
    {
        frame.set_cursor_position(p);
    }
}

/// Paints gutter and text; returns where the local cursor is, if visible.
fn draw_text(
    buf: &mut Buffer,
    a: &Areas,
    view: &View,
    rope: &Rope,
    sel: CharSel,
) -> Option<Position> {
    let ed = &view.editor;
    let depth = view.depth;
    let area = a.text;
    let (left, width) = (ed.left, area.width as usize);
    let head_line = rope.char_to_line(sel.head.min(rope.len_chars()));
    let sel_range = sel.range();
    let mut cursor = None;
    let peer_colors: Vec<(Color, Color)> = view
        .peers
        .iter()
        .map(|p| (depth.adapt(p.color), dim(p.color, depth)))
        .collect();
    for row in 0..area.height {
        let line = ed.top + row as usize;
        let y = area.y + row;
        if line >= rope.len_lines() {
            buf.set_string(
                a.gutter.x,
                y,
                "~",
                Style::default().fg(depth.adapt(GUTTER_FG)),
            );
            continue;
        }
        // Gutter.
        let num = format!(
            "{:>w$} ",
            line + 1,
            w = a.gutter.width.saturating_sub(1) as usize
        );
        let gstyle = if line == head_line {
            Style::default().fg(Color::Yellow)
        } else {
            Style::default().fg(depth.adapt(GUTTER_FG))
        };
        buf.set_stringn(a.gutter.x, y, &num, a.gutter.width as usize, gstyle);

        let line_start = rope.line_to_char(line);
        let line_len = text::line_len_chars(rope, line);
        // Enough chars to reach the right edge (graphemes are at least one cell; the
        // slack covers combining marks). Very long lines cost only what is shown.
        let take = (left + width).saturating_mul(2).saturating_add(64);
        let prefix = text::line_prefix(rope, line, take);
        let placed = text::place(&prefix);
        let spans = if view.highlights.is_empty() || line_len > crate::highlight::MAX_LINE {
            None
        } else {
            view.highlights
                .line(line, crate::highlight::line_hash(rope.line(line)))
        };
        let mut span_i = 0;
        let end_x = if prefix.chars().count() >= line_len {
            placed.last().map_or(0, |p| p.x + p.width)
        } else {
            usize::MAX
        };
        for p in &placed {
            if p.x + p.width <= left {
                continue;
            }
            if p.x >= left + width {
                break;
            }
            let at = line_start + p.char_col;
            let mut style = Style::default();
            if let Some(spans) = spans {
                while span_i < spans.len() && spans[span_i].0.end <= p.char_col {
                    span_i += 1;
                }
                if let Some((r, c)) = spans.get(span_i)
                    && r.contains(&p.char_col)
                {
                    style = style.fg(depth.adapt(*c));
                }
            }
            for (peer, (full, soft)) in view.peers.iter().zip(&peer_colors) {
                if let Some(ps) = peer.sel {
                    if ps.range().contains(&at) {
                        style = style.bg(*soft);
                    }
                    if ps.head == at {
                        style = style.bg(*full).fg(Color::Black);
                    }
                }
            }
            if sel_range.contains(&at) {
                style = style.bg(depth.adapt(SELECTION_BG));
            }
            let x = area.x + (p.x.saturating_sub(left)) as u16;
            let cells = (p.x + p.width).min(left + width) - p.x.max(left);
            let symbol = if p.text == "\t" || p.x < left {
                // A tab, or a wide char cut by the left edge: blanks.
                " ".repeat(cells)
            } else if p.text.chars().next().is_some_and(char::is_control) {
                "\u{fffd}".to_owned()
            } else if p.text.width() == 0 {
                "\u{25cc}".to_owned()
            } else if p.x + p.width > left + width {
                // A wide char cut by the right edge.
                " ".repeat(cells)
            } else {
                p.text.to_owned()
            };
            buf.set_stringn(x, y, &symbol, cells, style);
            // Both cells of a wide char carry the style (peer cursors, selections).
            buf.set_style(Rect::new(x, y, cells as u16, 1), style);
            if at == sel.head {
                cursor = Some(Position::new(x, y));
            }
        }
        // Cursors at the end of the line, and peers' labels after the text.
        let eol_x = end_x;
        let eol = line_start + line_len;
        if sel.head == eol && eol_x >= left && eol_x < left + width {
            cursor = Some(Position::new(area.x + (eol_x - left) as u16, y));
        }
        let mut label_x = if eol_x == usize::MAX {
            usize::MAX
        } else {
            eol_x + 1
        };
        for (peer, (full, soft)) in view.peers.iter().zip(&peer_colors) {
            let Some(ps) = peer.sel else { continue };
            if rope.char_to_line(ps.head.min(rope.len_chars())) != line {
                continue;
            }
            if ps.head == eol && eol_x >= left && eol_x < left + width {
                buf.set_style(
                    Rect::new(area.x + (eol_x - left) as u16, y, 1, 1),
                    Style::default().bg(*full),
                );
            }
            let _ = soft;
            let label = format!(" {} ", peer.name);
            let lw = label.width();
            // Past the right edge: pin the label to it.
            let lx = if label_x.saturating_add(lw) > left + width {
                (left + width).saturating_sub(lw).max(left)
            } else {
                label_x.max(left)
            };
            let style = Style::default()
                .bg(*full)
                .fg(Color::Black)
                .add_modifier(Modifier::BOLD);
            buf.set_stringn(
                area.x + (lx - left) as u16,
                y,
                &label,
                (left + width - lx).min(lw),
                style,
            );
            label_x = lx.saturating_add(lw + 1);
        }
    }
    // Peers outside the view: a marker at the top or bottom edge with their line.
    let mut above = Vec::new();
    let mut below = Vec::new();
    for (peer, (full, _)) in view.peers.iter().zip(&peer_colors) {
        if peer.sel.is_none() {
            continue;
        }
        if peer.line < ed.top {
            above.push((peer, *full));
        } else if peer.line >= ed.top + area.height as usize {
            below.push((peer, *full));
        }
    }
    for (list, row, arrow) in [
        (above, area.y, "\u{2191}"),
        (below, area.y + area.height.saturating_sub(1), "\u{2193}"),
    ] {
        let spans: Vec<Span<'_>> = list
            .iter()
            .map(|(p, c)| {
                Span::styled(
                    format!(" {arrow} {} {} ", p.name, p.line + 1),
                    Style::default().bg(*c).fg(Color::Black),
                )
            })
            .collect();
        let w: usize = spans.iter().map(Span::width).sum();
        if w > 0 && area.height > 0 {
            let x = area.x + area.width.saturating_sub(w as u16);
            buf.set_line(x, row, &Line::from(spans), area.width);
        }
    }
    cursor
}

fn draw_status(buf: &mut Buffer, area: Rect, view: &View, rope: &Rope, sel: CharSel) {
    let st = &view.status;
    let base = Style::default()
        .bg(Color::Rgb(0x2c, 0x31, 0x3a))
        .fg(Color::White);
    let base = Style {
        bg: base.bg.map(|c| view.depth.adapt(c)),
        ..base
    };
    buf.set_style(area, base);
    let role = if st.is_read_only() {
        Span::styled(
            " VIEW ",
            Style::default().bg(Color::Yellow).fg(Color::Black),
        )
    } else {
        Span::styled(" EDIT ", Style::default().bg(Color::Green).fg(Color::Black))
    };
    let file = match (&st.file, &st.workspace) {
        (Some(f), _) => f.as_str(),
        (None, Some(_)) => "[no file open: Ctrl-O]",
        (None, None) => "[no file]",
    };
    let mut spans = vec![
        role,
        Span::raw(" "),
        Span::styled(
            file.to_owned(),
            Style::default().add_modifier(Modifier::BOLD),
        ),
    ];
    if st.dirty {
        spans.push(Span::styled(" [+]", Style::default().fg(Color::Yellow)));
    }
    if st.changed_on_disk {
        spans.push(Span::styled(
            " [changed on disk]",
            Style::default().fg(Color::Red),
        ));
    }
    match &st.workspace {
        Some(w) => spans.push(Span::raw(format!("  workspace {w}  "))),
        None => spans.push(Span::raw(format!("  room {}  ", st.room))),
    }
    let (conn, color) = match st.conn {
        ConnView::Live if st.hosting => ("\u{25cf} live (hosting)".to_owned(), Color::Green),
        ConnView::Live => ("\u{25cf} live".to_owned(), Color::Green),
        ConnView::Connecting => ("\u{25cc} connecting".to_owned(), Color::Yellow),
        // Never reached: nobody can have joined us, and there is nothing to "re"connect.
        ConnView::Reconnecting { retry_in: 0 } if !st.ever_live => {
            ("\u{2715} no server, trying now".to_owned(), Color::Red)
        }
        ConnView::Reconnecting { retry_in } if !st.ever_live => (
            format!("\u{2715} no server, retry in {retry_in}s"),
            Color::Red,
        ),
        ConnView::Reconnecting { retry_in: 0 } => {
            ("\u{25cc} reconnecting now".to_owned(), Color::Yellow)
        }
        ConnView::Reconnecting { retry_in } => (
            format!("\u{25cc} reconnecting in {retry_in}s"),
            Color::Yellow,
        ),
        ConnView::Offline => ("\u{2715} offline".to_owned(), Color::Red),
    };
    spans.push(Span::styled(conn, Style::default().fg(color)));
    if st.waiting > 0 && st.conn != ConnView::Live {
        spans.push(Span::styled(
            format!(", {} edits waiting", st.waiting),
            Style::default().fg(color),
        ));
    }
    spans.push(Span::raw("  "));
    for p in &view.peers {
        spans.push(Span::styled(
            format!("\u{25cf}{} ", p.name),
            Style::default().fg(view.depth.adapt(p.color)),
        ));
    }
    let head = sel.head.min(rope.len_chars());
    let line = rope.char_to_line(head);
    let col = rope.slice(rope.line_to_char(line)..head).chars().count();
    let pos = format!(" {}:{} ", line + 1, col + 1);
    let pos_w = pos.width() as u16;
    buf.set_line(
        area.x,
        area.y,
        &Line::from(spans),
        area.width.saturating_sub(pos_w),
    );
    buf.set_string(area.x + area.width.saturating_sub(pos_w), area.y, pos, base);
}

/// The message row: the prompt, else the newest notice, else a hint. Returns the prompt's
/// cursor.
fn draw_message(buf: &mut Buffer, area: Rect, view: &View) -> Option<Position> {
    let (label, input, hint) = match &view.prompt {
        Some(Prompt::Find { input, found, .. }) => (
            "Find: ",
            input.as_str(),
            if *found || input.is_empty() {
                "   Enter/\u{2193} next \u{b7} \u{2191} previous \u{b7} Esc close"
            } else {
                "   not found"
            },
        ),
        Some(Prompt::Goto { input }) => (
            "Go to line: ",
            input.as_str(),
            "   Enter go \u{b7} Esc cancel",
        ),
        Some(Prompt::SaveAs { input }) => (
            "Save as: ",
            input.as_str(),
            "   Enter save \u{b7} Esc cancel",
        ),
        Some(Prompt::Path { purpose, input }) => (
            match purpose {
                PathPurpose::NewFile => "New file: ",
                PathPurpose::Rename(_) => "Rename to: ",
            },
            input.as_str(),
            "   Enter ok \u{b7} Esc cancel",
        ),
        Some(Prompt::Ask { text, .. }) => {
            let line = Line::from(vec![
                Span::styled(text.clone(), Style::default().add_modifier(Modifier::BOLD)),
                Span::raw(" (y/n)"),
            ]);
            buf.set_line(area.x, area.y, &line, area.width);
            return None;
        }
        None => {
            if let Some(n) = view.notices.back() {
                let style = match n.level {
                    Level::Info => Style::default().fg(Color::Cyan),
                    Level::Warn => Style::default().fg(Color::Yellow),
                    Level::Error => Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
                };
                let text = fit(&n.text, area.width as usize);
                buf.set_stringn(area.x, area.y, &text, area.width as usize, style);
            } else if let (Some(problem), false) =
                (&view.status.problem, view.status.conn == ConnView::Live)
            {
                // Until the room answers, the reason it does not is the one thing to read.
                let text = fit(
                    &format!("{}: {problem}", view.status.server),
                    area.width as usize,
                );
                let style = Style::default().fg(Color::Yellow);
                buf.set_stringn(area.x, area.y, &text, area.width as usize, style);
            } else {
                let mut hint =
                    "F1 help \u{b7} Ctrl-S save \u{b7} Ctrl-Q quit \u{b7} Ctrl-P people".to_owned();
                if view.status.workspace.is_some() {
                    hint.push_str(" \u{b7} Ctrl-O files \u{b7} F2 previous");
                }
                let join = format!("   join: {}", view.join_command);
                if !view.join_command.is_empty()
                    && hint.width() + join.width() <= area.width as usize
                {
                    hint.push_str(&join);
                }
                buf.set_stringn(
                    area.x,
                    area.y,
                    &hint,
                    area.width as usize,
                    Style::default().fg(view.depth.adapt(GUTTER_FG)),
                );
            }
            return None;
        }
    };
    let line = Line::from(vec![
        Span::styled(label, Style::default().add_modifier(Modifier::BOLD)),
        Span::raw(input.to_owned()),
        Span::styled(hint, Style::default().fg(view.depth.adapt(GUTTER_FG))),
    ]);
    buf.set_line(area.x, area.y, &line, area.width);
    let x = area.x + (label.width() + input.width()).min(area.width as usize) as u16;
    Some(Position::new(x.min(area.right().saturating_sub(1)), area.y))
}

/// `text` in at most `width` columns: whole if it fits, else its start and its end with
/// an ellipsis between, so a message keeps both what happened and where (a path's end).
pub fn fit(text: &str, width: usize) -> String {
    if text.width() <= width {
        return text.to_owned();
    }
    if width < 8 {
        return text.chars().take(width).collect();
    }
    let tail_w = (width - 1) / 4;
    let head_w = width - 1 - tail_w;
    let mut head = String::new();
    let mut w = 0;
    for c in text.chars() {
        let cw = c.width().unwrap_or(0);
        if w + cw > head_w {
            break;
        }
        w += cw;
        head.push(c);
    }
    let mut tail: Vec<char> = Vec::new();
    let mut w = 0;
    for c in text.chars().rev() {
        let cw = c.width().unwrap_or(0);
        if w + cw > tail_w {
            break;
        }
        w += cw;
        tail.push(c);
    }
    head.push('\u{2026}');
    head.extend(tail.into_iter().rev());
    head
}

fn popup(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

fn draw_help(frame: &mut Frame<'_>, view: &View) {
    let mut lines: Vec<Line<'_>> = HELP
        .iter()
        .map(|(k, d)| {
            Line::from(vec![
                Span::styled(format!("{k:<26}"), Style::default().fg(Color::Yellow)),
                Span::raw(*d),
            ])
        })
        .collect();
    if !view.join_command.is_empty() {
        lines.push(Line::raw(""));
        lines.push(Line::raw("A partner joins with:"));
        lines.push(Line::styled(
            format!("  {}", view.join_command),
            Style::default().add_modifier(Modifier::BOLD),
        ));
    }
    let h = lines.len() as u16 + 2;
    let area = popup(frame.area(), 78, h);
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" duet help \u{b7} Esc closes "),
        ),
        area,
    );
}

/// "3s", "2m", "1h": how long a peer has been idle.
pub fn idle_text(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m", s / 60)
    } else {
        format!("{}h", s / 3600)
    }
}

fn draw_people(frame: &mut Frame<'_>, view: &View, selected: usize) {
    let workspace = view.status.workspace.is_some();
    let rows: Vec<Row<'_>> = view
        .people
        .iter()
        .map(|p: &Person| {
            let following = view.follow == Some(p.client_id);
            let mut cells = vec![
                Span::styled("\u{25cf}", Style::default().fg(view.depth.adapt(p.color))),
                Span::raw(p.name.clone()),
            ];
            if workspace {
                cells.push(Span::raw(p.file.clone().unwrap_or_else(|| "-".to_owned())));
            }
            cells.extend([
                Span::raw(
                    p.line
                        .map_or_else(|| "-".to_owned(), |l| format!("{}", l + 1)),
                ),
                Span::raw(p.role.as_str()),
                Span::raw(idle_text(p.idle)),
                Span::raw(if following { "following" } else { "" }),
            ]);
            Row::new(cells)
        })
        .collect();
    let empty = rows.is_empty();
    let h = (rows.len() as u16).max(1) + 4;
    let area = popup(frame.area(), if workspace { 90 } else { 60 }, h);
    frame.render_widget(Clear, area);
    let place = view
        .status
        .workspace
        .as_ref()
        .map_or_else(|| view.status.room.clone(), |w| format!("workspace {w}"));
    let block = Block::default().borders(Borders::ALL).title(format!(
        " people in {place} \u{b7} you are {} \u{b7} Enter follow \u{b7} Esc ",
        view.status.name
    ));
    if empty {
        frame.render_widget(
            Paragraph::new(vec![Line::raw(""), Line::raw(" nobody else is here yet")]).block(block),
            area,
        );
        return;
    }
    let mut widths = vec![Constraint::Length(1), Constraint::Min(12)];
    let mut header = vec!["", "name"];
    if workspace {
        widths.push(Constraint::Min(24));
        header.push("file");
    }
    widths.extend([
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(5),
        Constraint::Length(10),
    ]);
    header.extend(["line", "role", "idle", ""]);
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(Style::default().add_modifier(Modifier::UNDERLINED)))
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
        .block(block);
    let mut state = TableState::default().with_selected(Some(selected));
    frame.render_stateful_widget(table, area, &mut state);
}

/// The workspace's file list and finder; returns where the query's cursor is.
fn draw_files(frame: &mut Frame<'_>, view: &View) -> Position {
    let f = &view.files;
    let full = frame.area();
    let w = full.width.saturating_sub(4).clamp(20, 100);
    let h = full.height.saturating_sub(4).max(5);
    let area = popup(full, w, h);
    frame.render_widget(Clear, area);
    let count = if f.query.trim().is_empty() {
        format!("{} files", f.total)
    } else {
        format!("{} of {}", f.matched, f.total)
    };
    let block = Block::default().borders(Borders::ALL).title(format!(
        " files \u{b7} {count} \u{b7} Enter open \u{b7} Ctrl-N new \u{b7} Ctrl-R rename \u{b7} Ctrl-D delete \u{b7} Esc "
    ));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let buf = frame.buffer_mut();
    let prompt = Line::from(vec![
        Span::styled("> ", Style::default().add_modifier(Modifier::BOLD)),
        Span::raw(f.query.clone()),
    ]);
    buf.set_line(inner.x, inner.y, &prompt, inner.width);
    let cursor = Position::new(
        (inner.x + 2 + f.query.width() as u16).min(inner.right().saturating_sub(1)),
        inner.y,
    );
    let list = Rect::new(
        inner.x,
        inner.y + 1,
        inner.width,
        inner.height.saturating_sub(1),
    );
    if f.rows.is_empty() {
        let text = if f.query.trim().is_empty() {
            " no files yet: Ctrl-N creates one".to_owned()
        } else {
            format!(" no match: Enter creates {}", f.query.trim())
        };
        buf.set_stringn(
            list.x,
            list.y,
            text,
            list.width as usize,
            Style::default().fg(view.depth.adapt(GUTTER_FG)),
        );
        return cursor;
    }
    let visible = list.height as usize;
    let first = f.selected.saturating_sub(visible.saturating_sub(1));
    let hit = Style::default()
        .fg(Color::Yellow)
        .add_modifier(Modifier::BOLD);
    let dim = Style::default().fg(view.depth.adapt(GUTTER_FG));
    for (row_i, row) in f.rows.iter().enumerate().skip(first).take(visible) {
        let y = list.y + (row_i - first) as u16;
        let mut spans = vec![Span::styled(
            if row.open { " \u{25cf} " } else { "   " },
            dim,
        )];
        for (ci, c) in row.path.chars().enumerate() {
            let style = if row.matched.contains(&ci) {
                hit
            } else {
                Style::default()
            };
            spans.push(Span::styled(c.to_string(), style));
        }
        if let Some(note) = row.note {
            spans.push(Span::styled(format!("  ({note})"), dim));
        }
        if row.new {
            spans.push(Span::styled("  (new, not on disk)", dim));
        }
        for (name, color) in &row.here {
            spans.push(Span::raw("  "));
            spans.push(Span::styled(
                format!("\u{25cf} {name}"),
                Style::default().fg(view.depth.adapt(*color)),
            ));
        }
        buf.set_line(list.x, y, &Line::from(spans), list.width);
        if row_i == f.selected {
            buf.set_style(
                Rect::new(list.x, y, list.width, 1),
                Style::default().add_modifier(Modifier::REVERSED),
            );
        }
    }
    cursor
}

#[cfg(test)]
mod tests;
