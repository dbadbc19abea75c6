//! Every screen drawn from fixed state into ratatui's `TestBackend`, at
//! 80×24 and after a resize, and compared line by line with the snapshot
//! files in `snapshots/` (`UPDATE_SNAPSHOTS=1` rewrites them; review the
//! diff).

use std::path::PathBuf;

use gatehouse_actors::approval::{ApprovalUpdate, PendingApproval};
use gatehouse_actors::recording::{
    Direction, Event, EventKind, Outcome, RecordingId, SessionHeader, SshBytes,
};
use gatehouse_actors::registry::{SessionState, SessionSummary, StatsSnapshot};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::Modifier;

use crate::app::{App, Detail, Mode};
use crate::keys::Key;
use crate::player::{Player, TermData, TermFrame};
use crate::protocol::{Request, Update};
use crate::screens::live::LiveState;
use crate::screens::replay::{ReplayKind, ReplayState};
use crate::theme::Theme;

/// 2026-11-26T14:05:00Z
const NOW: i64 = 1_795_701_900_000_000;
const MIN: i64 = 60_000_000;

fn id(n: u128) -> RecordingId {
    // Fixed ids: UUIDv7-shaped, ordered by n.
    RecordingId(uuid::Uuid::from_u128(
        0x019a_c000_0000_7000_8000_0000_0000_0000 + n,
    ))
}

fn summary(n: u128, who: &str, conn: &str, started: i64, state: SessionState) -> SessionSummary {
    SessionSummary {
        id: id(n),
        protocol: "postgres".into(),
        client_addr: format!("10.0.0.{n}:5{n:04}"),
        started_at: started,
        ended_at: (!state.is_live()).then_some(started + 3 * MIN),
        identity: Some(who.into()),
        connection: Some(conn.into()),
        stats: StatsSnapshot {
            from_client: 1200 * n as u64,
            to_client: 250_000 * n as u64,
            statements: 7 * n as u64,
            state,
        },
    }
}

fn pending(n: u128, who: &str, sql: &str, left: i64) -> PendingApproval {
    PendingApproval {
        id: format!("5f2c9a{n:02x}"),
        session: id(n),
        identity: who.into(),
        groups: vec!["ci-deploy".into()],
        connection: "orders-db".into(),
        statement: sql.into(),
        rule: "hold-deletes".into(),
        approvers: vec![],
        requested_at: NOW - MIN,
        deadline: NOW + left,
    }
}

fn header(n: u128, who: &str, outcome: Option<Outcome>, started: i64) -> SessionHeader {
    SessionHeader {
        id: id(n),
        protocol: "postgres".into(),
        started_at: started,
        ended_at: outcome.map(|_| started + 2 * MIN),
        client_addr: format!("10.0.0.{n}:5{n:04}"),
        client_user: Some(who.into()),
        connection: Some("orders-db".into()),
        identity: Some(who.into()),
        groups: vec![],
        outcome,
        reason: None,
        event_count: 40 + n as u64,
        ..SessionHeader::new(id(n), "postgres", 0, String::new())
    }
}

fn ev(seq: u64, at: i64, kind: EventKind) -> Event {
    Event {
        seq,
        at,
        dir: Direction::Client,
        kind,
    }
}

/// A short PostgreSQL session with a masked result, a block and an
/// approval.
fn session_events(start: i64) -> Vec<Event> {
    let k = |s: &str| s.to_owned();
    vec![
        ev(
            0,
            start,
            EventKind::Connected {
                target: k("orders-db"),
            },
        ),
        ev(
            1,
            start + 1_000_000,
            EventKind::Query {
                sql: k("select id, email from customers limit 2"),
            },
        ),
        ev(
            2,
            start + 1_001_200,
            EventKind::Columns {
                names: vec![k("id"), k("email")],
            },
        ),
        ev(
            3,
            start + 1_001_200,
            EventKind::Row {
                values: vec![Some(k("1")), Some(k("a***@example.com"))],
            },
        ),
        ev(
            4,
            start + 1_001_200,
            EventKind::Row {
                values: vec![Some(k("2")), None],
            },
        ),
        ev(
            5,
            start + 1_001_900,
            EventKind::Complete {
                tag: k("SELECT 2"),
                rows: 2,
                rows_recorded: 2,
            },
        ),
        ev(
            6,
            start + 1_001_900,
            EventKind::Masked {
                counts: vec![(k("pii"), k("email"), 1)],
            },
        ),
        ev(
            7,
            start + 2_000_000,
            EventKind::Query {
                sql: k("drop table customers"),
            },
        ),
        ev(
            8,
            start + 2_000_000,
            EventKind::Blocked {
                rule: k("no-ddl"),
                reason: k("schema changes go through migrations"),
            },
        ),
        ev(
            9,
            start + 2_000_500,
            EventKind::Error {
                severity: k("ERROR"),
                code: k("42501"),
                message: k("blocked by policy rule \"no-ddl\""),
            },
        ),
        ev(
            10,
            start + 3_000_000,
            EventKind::Query {
                sql: k("delete from customers where id = 2"),
            },
        ),
        ev(
            11,
            start + 3_000_000,
            EventKind::ApprovalRequested {
                id: k("5f2c9a01"),
                rule: k("hold-deletes"),
                deadline: start + 300_000_000,
            },
        ),
        ev(
            12,
            start + 9_000_000,
            EventKind::ApprovalDecided {
                id: k("5f2c9a01"),
                decision: k("approved"),
                by: k("alice (console)"),
                reason: None,
            },
        ),
        ev(
            13,
            start + 9_004_000,
            EventKind::Complete {
                tag: k("DELETE 1"),
                rows: 0,
                rows_recorded: 0,
            },
        ),
        ev(
            14,
            start + 12_000_000,
            EventKind::End {
                outcome: Outcome::Terminated,
                reason: Some(k("terminated: killed by alice (console)")),
            },
        ),
    ]
}

fn app() -> App {
    let mut app = App::new(Theme::MONO, NOW);
    app.apply(Update::Hello {
        operator: "alice".into(),
        appliance: "bastion-1".into(),
    });
    app.apply(Update::Sessions {
        live: vec![
            summary(
                1,
                "ci-runner-7",
                "orders-db",
                NOW - 65 * MIN,
                SessionState::Active,
            ),
            summary(
                2,
                "deploy-bot",
                "orders-db",
                NOW - 2 * MIN,
                SessionState::WaitingForApproval,
            ),
            summary(
                3,
                "assistant@corp.example",
                "billing",
                NOW - 30_000_000,
                SessionState::Active,
            ),
        ],
        recent: vec![
            summary(
                4,
                "ci-runner-2",
                "orders-db",
                NOW - 40 * MIN,
                SessionState::Ended(Outcome::Terminated),
            ),
            summary(
                5,
                "stranger",
                "orders-db",
                NOW - 20 * MIN,
                SessionState::Ended(Outcome::Refused),
            ),
        ],
    });
    app.apply(Update::Approvals {
        pending: vec![
            pending(
                2,
                "deploy-bot",
                "delete from customers where id = 2",
                4 * MIN,
            ),
            pending(
                6,
                "ci-runner-7",
                "update orders set status = 'void' where placed < now() - interval '1 year'",
                30_000_000,
            ),
        ],
    });
    app
}

fn with_recordings(app: &mut App) {
    app.handle_key(Key::Char('3'));
    app.apply(Update::Recordings {
        filter: String::new(),
        more: false,
        headers: vec![
            header(9, "ci-runner-7", None, NOW - 5 * MIN),
            header(8, "deploy-bot", Some(Outcome::Closed), NOW - 60 * MIN),
            header(
                7,
                "ci-runner-2",
                Some(Outcome::Terminated),
                NOW - 24 * 60 * MIN,
            ),
            header(6, "stranger", Some(Outcome::Refused), NOW - 25 * 60 * MIN),
        ],
        next: Some(id(5)),
    });
    app.apply(Update::Verdict {
        id: id(8),
        ok: true,
        verdict: "ok (3 chunks, 41 events, seal verified)".into(),
    });
}

fn lines(term: &Terminal<TestBackend>) -> Vec<String> {
    let buf = term.backend().buffer();
    (0..buf.area.height)
        .map(|y| {
            (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol().to_owned())
                .collect::<String>()
                .trim_end()
                .to_owned()
        })
        .collect()
}

fn snapshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/screens/snapshots")
        .join(format!("{name}.txt"))
}

/// Draw `app` at `w`×`h`, compare with the snapshot, and return the
/// terminal for further checks.
fn check(name: &str, app: &App, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    term.draw(|f| f.render_widget(app, f.area())).unwrap();
    compare(name, &term);
    term
}

fn compare(name: &str, term: &Terminal<TestBackend>) {
    let got = lines(term).join("\n") + "\n";
    let path = snapshot_path(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "no snapshot {}; run with UPDATE_SNAPSHOTS=1 and review it",
            path.display()
        )
    });
    for (i, (g, w)) in got.lines().zip(want.lines()).enumerate() {
        assert_eq!(g, w, "{name}: line {i} differs\n--- got ---\n{got}");
    }
    assert_eq!(
        got.lines().count(),
        want.lines().count(),
        "{name}: line count"
    );
}

/// Draw at 80×24, then at 120×32 after a resize, on one terminal.
fn check_with_resize(name: &str, app: &App) {
    let mut term = check(name, app, 80, 24);
    term.backend_mut().resize(120, 32);
    term.draw(|f| f.render_widget(app, f.area())).unwrap();
    compare(&format!("{name}-120x32"), &term);
}

fn row_of(term: &Terminal<TestBackend>, text: &str) -> u16 {
    lines(term)
        .iter()
        .position(|l| l.contains(text))
        .unwrap_or_else(|| panic!("{text:?} not on screen")) as u16
}

fn reversed(term: &Terminal<TestBackend>, y: u16) -> bool {
    term.backend().buffer()[(2, y)]
        .modifier
        .contains(Modifier::REVERSED)
}

#[test]
fn sessions_screen() {
    let mut app = app();
    check_with_resize("sessions", &app);
    app.handle_key(Key::Down);
    let term = check("sessions-selected", &app, 80, 24);
    // The selection is reverse video, readable without colour.
    assert!(reversed(&term, row_of(&term, "deploy-bot")));
    assert!(!reversed(&term, row_of(&term, "ci-runner-7")));
}

#[test]
fn sessions_filter_and_kill_confirmation() {
    let mut app = app();
    for k in [
        Key::Char('/'),
        Key::Char('b'),
        Key::Char('i'),
        Key::Char('l'),
    ] {
        app.handle_key(k);
    }
    check("sessions-filtering", &app, 80, 24);
    app.handle_key(Key::Enter);
    assert_eq!(app.handle_key(Key::Char('K')), vec![]);
    check("sessions-confirm-kill", &app, 80, 24);
    assert_eq!(
        app.handle_key(Key::Char('y')),
        vec![Request::Kill { id: id(3) }]
    );
    // An ended session cannot be killed.
    app.handle_key(Key::Char('/'));
    app.handle_key(Key::Esc);
    app.handle_key(Key::End);
    app.handle_key(Key::Char('K'));
    assert_eq!(app.mode, Mode::Normal);
    assert_eq!(app.handle_key(Key::Char('y')), vec![]);
}

#[test]
fn approvals_screen_and_banner() {
    let mut app = app();
    app.handle_key(Key::Char('2'));
    check_with_resize("approvals", &app);
    assert_eq!(
        app.handle_key(Key::Char('a')),
        vec![Request::Decide {
            id: "5f2c9a02".into(),
            approve: true,
            reason: None
        }]
    );
    app.handle_key(Key::Char('j'));
    app.handle_key(Key::Char('d'));
    for c in "not on a friday".chars() {
        app.handle_key(Key::Char(c));
    }
    check("approvals-deny-reason", &app, 80, 24);
    assert_eq!(
        app.handle_key(Key::Enter),
        vec![Request::Decide {
            id: "5f2c9a06".into(),
            approve: false,
            reason: Some("not on a friday".into())
        }]
    );

    // A new request on another screen: banner and bell.
    app.handle_key(Key::Char('1'));
    app.apply(Update::Approval(ApprovalUpdate::Requested(pending(
        7,
        "assistant@corp.example",
        "delete from invoices where paid",
        5 * MIN,
    ))));
    assert!(app.bell);
    check("sessions-with-banner", &app, 80, 24);
    app.apply(Update::Approval(ApprovalUpdate::Gone {
        id: "5f2c9a07".into(),
        how: "approved by bob (console)".into(),
    }));
    assert!(
        app.banner.is_none(),
        "a decided request takes its banner away"
    );
}

#[test]
fn recordings_screen() {
    let mut app = app();
    with_recordings(&mut app);
    check_with_resize("recordings", &app);
    // Near the end of a page the next one is asked for, once.
    let asked = app.handle_key(Key::Down);
    assert_eq!(
        asked,
        vec![Request::Recordings {
            filter: String::new(),
            before: Some(id(5))
        }]
    );
    assert_eq!(app.handle_key(Key::Down), vec![]);
    assert_eq!(
        app.handle_key(Key::Enter),
        vec![Request::Replay { id: id(7) }]
    );
    assert_eq!(
        app.handle_key(Key::Char('v')),
        vec![Request::Verify { id: id(7) }]
    );
    // Filters are applied by the daemon on Enter.
    app.handle_key(Key::Char('/'));
    for c in "outcome:terminated".chars() {
        app.handle_key(Key::Char(c));
    }
    assert_eq!(
        app.handle_key(Key::Enter),
        vec![Request::Recordings {
            filter: "outcome:terminated".into(),
            before: None
        }]
    );
}

#[test]
fn live_view_follows_a_query_session() {
    let mut app = app();
    app.handle_key(Key::Down);
    assert_eq!(
        app.handle_key(Key::Enter),
        vec![Request::Watch { id: id(2) }]
    );
    let events = session_events(NOW - 2 * MIN);
    app.apply(Update::Watching {
        id: id(2),
        header: None,
        history: events[..12].to_vec(),
    });
    check_with_resize("live", &app);
    app.apply(Update::Event {
        id: id(2),
        event: events[12].clone(),
    });
    app.apply(Update::Event {
        id: id(2),
        event: events[13].clone(),
    });
    // Scrolling back stops following and shows the statement in full.
    app.handle_key(Key::Up);
    app.handle_key(Key::Up);
    check("live-detail", &app, 80, 24);
    let Some(Detail::Live(live)) = &app.detail else {
        panic!("not live");
    };
    assert!(!live.follow);
    assert_eq!(app.handle_key(Key::Char('q')), vec![Request::Unwatch]);
    assert!(app.detail.is_none());
}

/// An SSH session with a terminal: a typed line blocked, one that ran,
/// an exec on a second channel without a terminal.
fn ssh_events(start: i64) -> Vec<Event> {
    let data = |channel, stream: &str, text: &str| EventKind::SshData {
        channel,
        stream: stream.into(),
        data: SshBytes::from_bytes(text.as_bytes()),
    };
    let kinds = vec![
        EventKind::SshChannelOpen {
            channel: 0,
            channel_type: "session".into(),
        },
        EventKind::SshPty {
            channel: 0,
            term: "xterm".into(),
            cols: 80,
            rows: 24,
        },
        EventKind::SshStart {
            channel: 0,
            request: "shell".into(),
            command: String::new(),
        },
        data(0, "stdout", "deploy@web-1:~$ "),
        data(0, "stdin", "rm -rf /srv\r"),
        EventKind::SshLine {
            channel: 0,
            line: "rm -rf /srv".into(),
        },
        EventKind::Blocked {
            rule: "no-rm".into(),
            reason: "not from an agent".into(),
        },
        data(
            0,
            "stdout",
            "rm -rf /srv\r\nblocked by policy rule \"no-rm\": not from an agent\r\ndeploy@web-1:~$ ",
        ),
        EventKind::SshLine {
            channel: 0,
            line: "uptime".into(),
        },
        data(
            0,
            "stdout",
            "uptime\r\n 14:03:00 up 12 days,  2 users\r\ndeploy@web-1:~$ ",
        ),
        EventKind::SshStart {
            channel: 1,
            request: "exec".into(),
            command: "cat /etc/hostname".into(),
        },
        data(1, "stdout", "web-1\n"),
        EventKind::SshExit {
            channel: 1,
            status: Some(0),
            signal: None,
        },
    ];
    kinds
        .into_iter()
        .enumerate()
        .map(|(i, k)| ev(i as u64, start + i as i64 * 1_000_000, k))
        .collect()
}

#[test]
fn live_view_of_a_terminal_session_shows_the_terminal_and_its_commands() {
    let mut app = app();
    let mut s = summary(
        5,
        "deploy-bot",
        "web-1",
        NOW - 2 * MIN,
        SessionState::Active,
    );
    s.protocol = "ssh".into();
    app.detail = Some(Detail::Live(Box::new(LiveState::new(s))));
    app.apply(Update::Watching {
        id: id(5),
        header: None,
        history: ssh_events(NOW - 2 * MIN),
    });
    check_with_resize("live-terminal", &app);
    let Some(Detail::Live(live)) = &app.detail else {
        panic!("not live");
    };
    let screen = live
        .terminal
        .as_ref()
        .expect("a terminal")
        .screen()
        .contents();
    // The exec on channel 1 has no terminal of its own and is not drawn
    // into the shell's; what the agent typed shows only as echoed.
    assert!(!screen.contains("web-1\n"), "{screen}");
    app.handle_key(Key::Char('t'));
    check("live-terminal-commands", &app, 80, 24);
    app.handle_key(Key::Char('t'));
    check("live-terminal", &app, 80, 24);
}

#[test]
fn replay_of_a_query_session_steps_through_results() {
    let mut app = app();
    with_recordings(&mut app);
    let start = NOW - 24 * 60 * MIN;
    app.apply(Update::Replay {
        header: header(7, "ci-runner-2", Some(Outcome::Terminated), start),
        events: session_events(start),
        truncated: false,
    });
    app.handle_key(Key::Right);
    check_with_resize("replay", &app);
    app.handle_key(Key::Right);
    app.apply(Update::Verdict {
        id: id(7),
        ok: false,
        verdict: "ALTERED at chunk 0: does not follow the previous chunk".into(),
    });
    check("replay-blocked-verdict", &app, 80, 24);
}

#[test]
fn replay_of_a_terminal_session() {
    let mut app = app();
    let start = NOW - 60 * MIN;
    let frames = vec![
        TermFrame {
            at: start,
            data: TermData::Output(b"\x1b[1mdeploy@web-1\x1b[0m:~$ ".to_vec()),
        },
        TermFrame {
            at: start + 2_000_000,
            data: TermData::Output(b"systemctl restart app\r\nrestarted.\r\n$ ".to_vec()),
        },
    ];
    let mut h = header(9, "deploy-bot", Some(Outcome::Closed), start);
    h.protocol = "ssh".into();
    let mut replay = ReplayState {
        header: h,
        kind: ReplayKind::Terminal(Box::new(Player::new(frames, start, 80, 24))),
        commands: None,
        truncated: false,
        verdict: None,
    };
    replay.tick(std::time::Duration::from_secs(1));
    app.detail = Some(Detail::Replay(Box::new(replay)));
    check_with_resize("replay-terminal", &app);
    app.handle_key(Key::Char('+'));
    app.handle_key(Key::Char(' '));
    app.tick(NOW, std::time::Duration::from_secs(1));
    app.handle_key(Key::Char(' '));
    app.tick(NOW, std::time::Duration::from_secs(1));
    check("replay-terminal-later", &app, 80, 24);
}

#[test]
fn replay_of_a_terminal_session_lists_its_commands_and_plays_from_one() {
    let mut app = app();
    let start = NOW - 60 * MIN;
    let mut h = header(9, "deploy-bot", Some(Outcome::Closed), start);
    h.protocol = "ssh".into();
    app.detail = Some(Detail::Replay(Box::new(ReplayState::new(
        h,
        &ssh_events(start),
        false,
    ))));
    app.handle_key(Key::Char('t'));
    check("replay-terminal-commands", &app, 80, 24);
    // The shell line `uptime`, fifth in the list, recorded 8 s in.
    for _ in 0..4 {
        app.handle_key(Key::Down);
    }
    app.handle_key(Key::Enter);
    let Some(Detail::Replay(replay)) = &app.detail else {
        panic!("not a replay");
    };
    let ReplayKind::Terminal(player) = &replay.kind else {
        panic!("not a terminal replay");
    };
    assert_eq!(player.position(), 8_000_000);
    assert!(!replay.commands.as_ref().is_some_and(|c| c.shown));
    assert!(
        player
            .screen()
            .contents()
            .contains("blocked by policy rule"),
        "{}",
        player.screen().contents()
    );
}

#[test]
fn help_and_empty_screens() {
    let mut app = App::new(Theme::MONO, NOW);
    app.apply(Update::Hello {
        operator: "root (local console)".into(),
        appliance: "bastion-1".into(),
    });
    check("sessions-empty", &app, 80, 24);
    app.handle_key(Key::Char('?'));
    check("help", &app, 80, 24);
    app.handle_key(Key::Char('x'));
    assert_eq!(app.mode, Mode::Normal);
    app.apply(Update::Dropped { count: 12 });
    app.apply(Update::Failed {
        message: "\"bob\" is not an operator marked approver".into(),
    });
    check("status-and-drops", &app, 80, 24);
}
