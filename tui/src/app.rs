//! The console's state, and every key and update that changes it.
//!
//! Rendering only reads an [`App`] (`screens`); the driver feeds it keys
//! ([`App::handle_key`]), daemon updates ([`App::apply`]) and the clock
//! ([`App::tick`]), and sends the [`Request`]s they return. Input is
//! handled here, in one place, by mode: a prompt (filter, deny reason,
//! kill confirmation) or the help page takes keys before the screen does.

use std::time::Duration;

use gatehouse_actors::approval::ApprovalUpdate;
use gatehouse_actors::recording::RecordingId;

use crate::keys::Key;
use crate::protocol::{Request, Update};
use crate::screens::approvals::ApprovalsState;
use crate::screens::live::LiveState;
use crate::screens::recordings::RecordingsState;
use crate::screens::replay::ReplayState;
use crate::screens::sessions::SessionsState;
use crate::theme::Theme;

/// The three screens, switched with `1`, `2`, `3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Sessions,
    Approvals,
    Recordings,
}

/// A view opened from a screen with Enter; `q`/Esc returns.
pub enum Detail {
    Live(Box<LiveState>),
    Replay(Box<ReplayState>),
}

/// What takes the keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// Typing the current screen's filter.
    Filter,
    /// `K` pressed: kill this session on `y`.
    ConfirmKill {
        id: RecordingId,
        label: String,
    },
    /// `d` pressed: the reason, denied on Enter.
    DenyReason {
        id: String,
        reason: String,
    },
    Help,
}

/// A line at the top that wants attention until it is dealt with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Banner {
    pub approval: String,
    pub text: String,
}

/// Longest text typed into a prompt.
const MAX_INPUT: usize = 200;

pub struct App {
    /// Unix µs, as of the last tick.
    pub now: i64,
    pub operator: String,
    pub appliance: String,
    pub theme: Theme,
    pub screen: Screen,
    pub detail: Option<Detail>,
    pub mode: Mode,
    pub sessions: SessionsState,
    pub approvals: ApprovalsState,
    pub recordings: RecordingsState,
    pub banner: Option<Banner>,
    /// The outcome of the last action: text, and whether it failed.
    pub status: Option<(String, bool)>,
    /// Updates the daemon dropped because this console fell behind.
    pub dropped: u64,
    /// Ring the terminal's bell with the next frame.
    pub bell: bool,
    pub quit: bool,
    /// Columns and rows of the terminal.
    pub size: (u16, u16),
}

impl App {
    pub fn new(theme: Theme, now: i64) -> App {
        App {
            now,
            operator: String::new(),
            appliance: String::new(),
            theme,
            screen: Screen::Sessions,
            detail: None,
            mode: Mode::Normal,
            sessions: SessionsState::default(),
            approvals: ApprovalsState::default(),
            recordings: RecordingsState::default(),
            banner: None,
            status: None,
            dropped: 0,
            bell: false,
            quit: false,
            size: (80, 24),
        }
    }

    /// The filter text of what is on screen.
    pub fn filter(&self) -> &str {
        match self.screen {
            Screen::Sessions => &self.sessions.filter,
            Screen::Approvals => &self.approvals.filter,
            Screen::Recordings => &self.recordings.filter,
        }
    }

    fn filter_mut(&mut self) -> &mut String {
        match self.screen {
            Screen::Sessions => &mut self.sessions.filter,
            Screen::Approvals => &mut self.approvals.filter,
            Screen::Recordings => &mut self.recordings.filter,
        }
    }

    /// Whether the clock should tick fast (something is playing).
    pub fn animating(&self) -> bool {
        matches!(&self.detail, Some(Detail::Replay(r)) if r.playing())
    }

    /// Time passes: `now` is the wall clock, `elapsed` the real time since
    /// the last tick.
    pub fn tick(&mut self, now: i64, elapsed: Duration) {
        self.now = now;
        if let Some(Detail::Replay(r)) = &mut self.detail {
            r.tick(elapsed);
        }
    }

    fn show(&mut self, screen: Screen) -> Vec<Request> {
        self.detail_closed();
        self.screen = screen;
        self.mode = Mode::Normal;
        if screen == Screen::Approvals {
            self.banner = None;
        }
        if screen == Screen::Recordings && !self.recordings.loaded {
            return self.recordings.reload();
        }
        Vec::new()
    }

    fn detail_closed(&mut self) -> Vec<Request> {
        match self.detail.take() {
            Some(Detail::Live(_)) => vec![Request::Unwatch],
            _ => Vec::new(),
        }
    }

    /// One key pressed.
    pub fn handle_key(&mut self, key: Key) -> Vec<Request> {
        if key == Key::Interrupt {
            self.quit = true;
            return self.detail_closed();
        }
        match self.mode.clone() {
            Mode::Help => {
                self.mode = Mode::Normal;
                Vec::new()
            }
            Mode::Filter => self.filter_key(key),
            Mode::ConfirmKill { id, label } => {
                self.mode = Mode::Normal;
                if matches!(key, Key::Char('y') | Key::Char('Y')) {
                    self.status = Some((format!("killing {label}"), false));
                    vec![Request::Kill { id }]
                } else {
                    self.status = Some(("kill cancelled".into(), false));
                    Vec::new()
                }
            }
            Mode::DenyReason { id, mut reason } => match key {
                Key::Enter => {
                    self.mode = Mode::Normal;
                    let reason = reason.trim().to_owned();
                    vec![Request::Decide {
                        id,
                        approve: false,
                        reason: (!reason.is_empty()).then_some(reason),
                    }]
                }
                Key::Esc => {
                    self.mode = Mode::Normal;
                    Vec::new()
                }
                Key::Backspace => {
                    reason.pop();
                    self.mode = Mode::DenyReason { id, reason };
                    Vec::new()
                }
                Key::Char(c) if reason.len() < MAX_INPUT => {
                    reason.push(c);
                    self.mode = Mode::DenyReason { id, reason };
                    Vec::new()
                }
                _ => Vec::new(),
            },
            Mode::Normal => self.normal_key(key),
        }
    }

    fn filter_key(&mut self, key: Key) -> Vec<Request> {
        match key {
            Key::Enter => {
                self.mode = Mode::Normal;
                if self.screen == Screen::Recordings {
                    return self.recordings.reload();
                }
            }
            Key::Esc => {
                self.mode = Mode::Normal;
                self.filter_mut().clear();
                if self.screen == Screen::Recordings {
                    return self.recordings.reload();
                }
            }
            Key::Backspace => {
                self.filter_mut().pop();
            }
            Key::Char(c) if self.filter().len() < MAX_INPUT => self.filter_mut().push(c),
            _ => {}
        }
        Vec::new()
    }

    fn normal_key(&mut self, key: Key) -> Vec<Request> {
        // Keys that work everywhere.
        match key {
            Key::Char('1') => return self.show(Screen::Sessions),
            Key::Char('2') => return self.show(Screen::Approvals),
            Key::Char('3') => return self.show(Screen::Recordings),
            Key::Char('?') => {
                self.mode = Mode::Help;
                return Vec::new();
            }
            _ => {}
        }
        if self.detail.is_some() {
            if matches!(key, Key::Esc | Key::Char('q')) {
                return self.detail_closed();
            }
            let mut confirm = None;
            let requests = match self.detail.as_mut() {
                Some(Detail::Live(live)) => {
                    if key == Key::Char('K') {
                        confirm = live.killable();
                    } else {
                        live.handle(key);
                    }
                    Vec::new()
                }
                Some(Detail::Replay(replay)) => match key {
                    Key::Char('v') => vec![Request::Verify {
                        id: replay.header.id,
                    }],
                    _ => {
                        replay.handle(key);
                        Vec::new()
                    }
                },
                None => Vec::new(),
            };
            if let Some((id, label)) = confirm {
                self.mode = Mode::ConfirmKill { id, label };
            }
            return requests;
        }
        match key {
            Key::Esc | Key::Char('q') => {
                self.quit = true;
                return Vec::new();
            }
            Key::Char('/') => {
                self.mode = Mode::Filter;
                return Vec::new();
            }
            _ => {}
        }
        let rows = self.body_rows();
        match self.screen {
            Screen::Sessions => match key {
                Key::Enter => {
                    if let Some(s) = self.sessions.selected_row(self.now) {
                        let id = s.id;
                        let live = LiveState::new(s.clone());
                        self.detail = Some(Detail::Live(Box::new(live)));
                        return vec![Request::Watch { id }];
                    }
                    Vec::new()
                }
                Key::Char('K') => {
                    match self.sessions.selected_row(self.now) {
                        Some(s) if s.stats.state.is_live() => {
                            self.mode = Mode::ConfirmKill {
                                id: s.id,
                                label: crate::screens::sessions::label(s),
                            };
                        }
                        Some(_) => self.status = Some(("that session has ended".into(), true)),
                        None => {}
                    }
                    Vec::new()
                }
                k => {
                    self.sessions.navigate(k, rows, self.now);
                    Vec::new()
                }
            },
            Screen::Approvals => match key {
                Key::Char('a') => match self.approvals.selected_request() {
                    Some(p) => vec![Request::Decide {
                        id: p.id.clone(),
                        approve: true,
                        reason: None,
                    }],
                    None => Vec::new(),
                },
                Key::Char('d') => {
                    if let Some(p) = self.approvals.selected_request() {
                        self.mode = Mode::DenyReason {
                            id: p.id.clone(),
                            reason: String::new(),
                        };
                    }
                    Vec::new()
                }
                k => {
                    self.approvals.navigate(k, rows, self.now);
                    Vec::new()
                }
            },
            Screen::Recordings => match key {
                Key::Enter => match self.recordings.selected_header() {
                    Some(h) => {
                        let id = h.id;
                        self.status = Some((format!("loading {id}"), false));
                        vec![Request::Replay { id }]
                    }
                    None => Vec::new(),
                },
                Key::Char('v') => match self.recordings.selected_header() {
                    Some(h) => vec![Request::Verify { id: h.id }],
                    None => Vec::new(),
                },
                k => self.recordings.navigate(k, rows),
            },
        }
    }

    /// The terminal changed size.
    pub fn resize(&mut self, width: u16, height: u16) {
        self.size = (width, height);
    }

    /// Rows of a list at the current size (for page moves): all but the
    /// title, status, heading and key bar lines.
    fn body_rows(&self) -> usize {
        usize::from(self.size.1).saturating_sub(4).max(1)
    }

    /// One update from the daemon.
    pub fn apply(&mut self, update: Update) -> Vec<Request> {
        match update {
            Update::Hello {
                operator,
                appliance,
            } => {
                self.operator = operator;
                self.appliance = appliance;
            }
            Update::Sessions { live, recent } => self.sessions.replace(live, recent),
            Update::SessionStarted(s) => self.sessions.started(s),
            Update::SessionChanged {
                id,
                identity,
                connection,
            } => self.sessions.changed(id, identity, connection),
            Update::Stats { stats } => {
                for (id, s) in &stats {
                    if let Some(Detail::Live(live)) = &mut self.detail
                        && live.summary.id == *id
                    {
                        live.summary.stats = *s;
                    }
                }
                self.sessions.stats(stats);
            }
            Update::SessionEnded(s) => {
                if let Some(Detail::Live(live)) = &mut self.detail
                    && live.summary.id == s.id
                {
                    live.summary = s.clone();
                }
                self.sessions.ended(s);
            }
            Update::Approvals { pending } => {
                self.approvals.replace(pending);
                if let Some(b) = &self.banner
                    && !self.approvals.contains(&b.approval)
                {
                    self.banner = None;
                }
            }
            Update::Approval(ApprovalUpdate::Requested(p)) => {
                if self.screen != Screen::Approvals || self.detail.is_some() {
                    self.banner = Some(Banner {
                        approval: p.id.clone(),
                        text: crate::screens::approvals::banner_text(&p),
                    });
                }
                self.bell = true;
                self.approvals.requested(p);
            }
            Update::Approval(ApprovalUpdate::Gone { id, how }) => {
                if self.banner.as_ref().is_some_and(|b| b.approval == id) {
                    self.banner = None;
                }
                if self.approvals.gone(&id) {
                    self.status = Some((format!("approval {id} {how}"), false));
                }
            }
            Update::Watching {
                id,
                header,
                history,
            } => {
                if let Some(Detail::Live(live)) = &mut self.detail
                    && live.summary.id == id
                {
                    live.started(header, history);
                }
            }
            Update::Event { id, event } => {
                if let Some(Detail::Live(live)) = &mut self.detail
                    && live.summary.id == id
                {
                    live.event(&event);
                }
            }
            Update::Recordings {
                filter,
                more,
                headers,
                next,
            } => self.recordings.page(filter, more, headers, next),
            Update::Replay {
                header,
                events,
                truncated,
            } => {
                self.status = None;
                let replay = ReplayState::new(header, &events, truncated);
                self.detail = Some(Detail::Replay(Box::new(replay)));
            }
            Update::Verdict { id, ok, verdict } => {
                self.status = Some((format!("{id}: {verdict}"), !ok));
                if let Some(Detail::Replay(r)) = &mut self.detail
                    && r.header.id == id
                {
                    r.verdict = Some((ok, verdict.clone()));
                }
                self.recordings.verdicts.insert(id, (ok, verdict));
            }
            Update::Done { message } => self.status = Some((message, false)),
            Update::Failed { message } => self.status = Some((message, true)),
            Update::Dropped { count } => {
                let grew = count > self.dropped;
                self.dropped = count;
                if grew {
                    return vec![Request::Resync];
                }
            }
        }
        Vec::new()
    }
}
