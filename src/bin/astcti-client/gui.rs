//! `astcti-client --gui`, the agent's window (docs/CLIENT.md, "The window"): a thin layer over the
//! same session loop as the command line ([`super::run`]). The loop runs on its own thread and tells
//! the window what happens through [`Ui`]; the window only draws that state and hands back what the
//! agent asks for: a dial (the same `orig_line` and dial queue as `astcti-client dial`), Start/Stop
//! (a new loop, or the loop's stop flag), the last call's CRM page again (the same desktop thread),
//! and edited settings (written back to the file with `settings::write_back`, then a new loop).
//!
//! Built with `eframe`/`egui` (feature `gui`, docs/DEPENDENCIES.md). Windows: the main one, the
//! caller-ID popup (always on top, `CallerIdTimeout` seconds, kept while the pointer is over it,
//! closed by a click), a native window of its own (an egui viewport); the settings dialog is a page
//! of the main window (in its accessibility tree).
//!
//! Tray: on Linux and the BSDs a StatusNotifierItem (`ksni`, D-Bus) showing the connection state;
//! activating it shows or hides the window, its menu has Show and Quit. With a tray, closing the
//! window only hides it (the client stays logged in); without one (no StatusNotifierWatcher on the
//! session bus, or macOS and Windows, where there is none yet) closing the window quits.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use astcti_server::client::react::Action;
use astcti_server::client::settings::{
    self, Database, InboundContext, OutboundContext, PopupStyle, Settings,
};
use astcti_server::cti::notify::Kind;
use eframe::egui;

use astcti_server::client::react::orig_line;

use super::{desktop_job, lock, run, say, Desktop, Shared, Ui, UiEvent};

/// What the tray asks the window for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TrayCmd {
    Toggle,
    Show,
    Quit,
}

/// What the tray shows, and where it sends the agent's clicks (the same for every platform's tray).
struct TrayState {
    online: bool,
    status: String,
    tx: crossbeam_channel::Sender<TrayCmd>,
    ctx: egui::Context,
}

impl TrayState {
    fn send(&self, c: TrayCmd) {
        let _ = self.tx.try_send(c);
        self.ctx.request_repaint();
    }
}

/// The tray's icon, drawn here so no icon theme is needed: a 32×32 dot, RGBA, green while logged in.
fn dot_rgba(online: bool) -> Vec<u8> {
    let (r, g) = if online { (0u8, 160u8) } else { (200u8, 0u8) };
    let mut rgba = Vec::with_capacity(32 * 32 * 4);
    for y in 0..32 {
        for x in 0..32 {
            let (dx, dy) = (x as f32 - 15.5, y as f32 - 15.5);
            let inside = dx * dx + dy * dy <= 13.0 * 13.0;
            rgba.extend_from_slice(&[r, g, 0, if inside { 255 } else { 0 }]);
        }
    }
    rgba
}

/// Linux and the BSDs: a StatusNotifierItem over D-Bus (`ksni`).
#[cfg(all(unix, not(target_os = "macos")))]
mod tray {
    use super::{dot_rgba, TrayCmd, TrayState};

    impl ksni::Tray for TrayState {
        fn id(&self) -> String {
            "astcti-client".into()
        }
        fn title(&self) -> String {
            format!("AstCTI Client: {}", self.status)
        }
        fn category(&self) -> ksni::Category {
            ksni::Category::Communications
        }
        fn icon_pixmap(&self) -> Vec<ksni::Icon> {
            // The specification's ARGB32, from the shared RGBA.
            let data = dot_rgba(self.online)
                .chunks(4)
                .flat_map(|p| [p[3], p[0], p[1], p[2]])
                .collect();
            vec![ksni::Icon {
                width: 32,
                height: 32,
                data,
            }]
        }
        fn tool_tip(&self) -> ksni::ToolTip {
            ksni::ToolTip {
                title: "AstCTI Client".into(),
                description: self.status.clone(),
                icon_name: String::new(),
                icon_pixmap: Vec::new(),
            }
        }
        fn activate(&mut self, _x: i32, _y: i32) {
            self.send(TrayCmd::Toggle);
        }
        fn menu(&self) -> Vec<ksni::MenuItem<Self>> {
            vec![
                ksni::menu::StandardItem {
                    label: "Show the window".into(),
                    activate: Box::new(|t: &mut Self| t.send(TrayCmd::Show)),
                    ..Default::default()
                }
                .into(),
                ksni::menu::StandardItem {
                    label: "Quit".into(),
                    activate: Box::new(|t: &mut Self| t.send(TrayCmd::Quit)),
                    ..Default::default()
                }
                .into(),
            ]
        }
    }

    pub type Handle = ksni::blocking::Handle<TrayState>;

    /// The tray, if the session has a StatusNotifierWatcher; Err says why not.
    pub fn start(tray: TrayState) -> Result<Handle, String> {
        use ksni::blocking::TrayMethods;
        tray.spawn().map_err(|e| e.to_string())
    }

    pub fn show(h: &Handle, online: bool, status: String) {
        h.update(|t| {
            t.online = online;
            t.status = status;
        });
    }
}

/// Windows and macOS: the platform's tray / menu-bar icon (`tray-icon`), on the main thread.
#[cfg(any(windows, target_os = "macos"))]
mod tray {
    use super::{dot_rgba, TrayCmd, TrayState};
    use tray_icon::menu::{Menu, MenuEvent, MenuItem};
    use tray_icon::{MouseButton, MouseButtonState, TrayIcon, TrayIconBuilder, TrayIconEvent};

    fn icon(online: bool) -> Option<tray_icon::Icon> {
        tray_icon::Icon::from_rgba(dot_rgba(online), 32, 32).ok()
    }

    pub struct Handle {
        icon: TrayIcon,
    }

    pub fn show(h: &Handle, online: bool, status: String) {
        let _ = h.icon.set_tooltip(Some(format!("AstCTI Client: {status}")));
        let _ = h.icon.set_icon(icon(online));
    }

    pub fn start(tray: TrayState) -> Result<Handle, String> {
        let menu = Menu::new();
        let show = MenuItem::new("Show the window", true, None);
        let quit = MenuItem::new("Quit", true, None);
        menu.append(&show).map_err(|e| e.to_string())?;
        menu.append(&quit).map_err(|e| e.to_string())?;
        let (show_id, quit_id) = (show.id().clone(), quit.id().clone());
        let tooltip = format!("AstCTI Client: {}", tray.status);
        let online = tray.online;
        let tray = std::sync::Arc::new(tray);
        let t = tray.clone();
        MenuEvent::set_event_handler(Some(move |e: MenuEvent| {
            if e.id == quit_id {
                t.send(TrayCmd::Quit);
            } else if e.id == show_id {
                t.send(TrayCmd::Show);
            }
        }));
        TrayIconEvent::set_event_handler(Some(move |e: TrayIconEvent| {
            if let TrayIconEvent::Click {
                button: MouseButton::Left,
                button_state: MouseButtonState::Up,
                ..
            } = e
            {
                tray.send(TrayCmd::Toggle);
            }
        }));
        let mut b = TrayIconBuilder::new()
            .with_menu(Box::new(menu))
            .with_menu_on_left_click(false)
            .with_tooltip(tooltip);
        if let Some(i) = icon(online) {
            b = b.with_icon(i);
        }
        let icon = b.build().map_err(|e| e.to_string())?;
        Ok(Handle { icon })
    }
}

/// The caller on screen.
struct Popup {
    number: String,
    name: String,
    until: Instant,
    seconds: u64,
}

/// The last call, for the window's "last call" line and its CRM button.
struct LastCall {
    number: String,
    name: String,
    calldata: String,
    time: String,
    open: Option<Desktop>,
}

/// What the session loop has said, drawn by the window.
struct View {
    online: bool,
    status: String,
    ext: String,
    line: String,
    dial_enabled: bool,
    /// After a dial from the window: Dial stays off until the call's `Hangup` (as the original)
    /// or, when no event at all follows (the phone never rang), until this moment.
    dial_lock: Option<Instant>,
    popup: Option<Popup>,
    last: Option<LastCall>,
    /// What went wrong with the last call's launch (no context, a program that does not start).
    problem: Option<String>,
}

/// How long Dial stays off after a dial that no event follows.
const DIAL_LOCK: Duration = Duration::from_secs(30);

struct WindowUi {
    view: Arc<Mutex<View>>,
    ctx: egui::Context,
    popup_window: bool,
}

fn now_hms() -> String {
    time::OffsetDateTime::now_local()
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
        .format(&time::macros::format_description!(
            "[hour]:[minute]:[second]"
        ))
        .unwrap_or_default()
}

impl Ui for WindowUi {
    fn update(&self, event: UiEvent) {
        {
            let mut v = lock(&self.view);
            match event {
                UiEvent::Online { ext } => {
                    v.online = true;
                    v.status = format!("Connected as {ext}");
                    v.ext = ext;
                    v.line = "On Hook".into();
                    v.dial_enabled = true;
                    v.dial_lock = None;
                }
                UiEvent::Registered(ext) => {
                    v.status = format!("Connected as {ext}");
                    v.ext = ext;
                }
                UiEvent::Offline(why) => {
                    v.online = false;
                    v.status = format!("Not connected: {why}");
                }
                UiEvent::Refused(why) => {
                    v.online = false;
                    v.status = format!("Refused: {why}");
                }
                UiEvent::Dialled(_) => {}
                UiEvent::Event {
                    kind,
                    record,
                    actions,
                } => {
                    // The call the dial made (or another) is under way: its Hangup gives Dial back.
                    v.dial_lock = None;
                    for a in actions {
                        match a {
                            Action::LineState(l) if !l.is_empty() => v.line = l,
                            Action::DialEnabled(on) => v.dial_enabled = on,
                            Action::Popup {
                                number,
                                name,
                                seconds,
                            } => {
                                if self.popup_window {
                                    v.popup = Some(Popup {
                                        number: number.clone(),
                                        name: name.clone(),
                                        until: Instant::now() + Duration::from_secs(seconds),
                                        seconds,
                                    });
                                }
                                v.last = Some(LastCall {
                                    number,
                                    name,
                                    calldata: String::new(),
                                    time: now_hms(),
                                    open: None,
                                });
                            }
                            Action::NoLaunch(why) => {
                                v.problem = Some(format!("Nothing opened: {why}"));
                            }
                            Action::Launch { program, args } => {
                                v.problem = None;
                                if let Some(l) = v.last.as_mut() {
                                    l.open = Some(Desktop::Launch { program, args });
                                }
                            }
                            Action::OpenUrl(url) => {
                                v.problem = None;
                                if let Some(l) = v.last.as_mut() {
                                    l.open = Some(Desktop::Open(url));
                                }
                            }
                            _ => {}
                        }
                    }
                    if kind == Kind::Link {
                        let last = v.last.get_or_insert_with(|| LastCall {
                            number: record.calleridnum.clone().unwrap_or_default(),
                            name: record.calleridname.clone().unwrap_or_default(),
                            calldata: String::new(),
                            time: now_hms(),
                            open: None,
                        });
                        last.calldata = record.appdata.clone().unwrap_or_default();
                    }
                }
            }
        }
        self.ctx.request_repaint();
    }
}

/// The settings dialog's working copy.
struct Editor {
    s: Settings,
    /// The file's own passwords: kept unless the agent types new ones (one may come from
    /// `--password-file` or the environment and must not be written into the file).
    password_typed: bool,
    db_password_typed: bool,
    use_database: bool,
    port: String,
    noop: String,
    timeout: String,
    db_port: String,
    error: Option<String>,
}

struct App {
    shared: Shared,
    path: PathBuf,
    view: Arc<Mutex<View>>,
    ctx: egui::Context,
    loop_stop: Option<Arc<AtomicBool>>,
    loop_thread: Option<JoinHandle<()>>,
    /// The current loop has returned (refused login, or stopped).
    loop_done: Arc<AtomicBool>,
    /// A stopped loop still logging out; the next one waits for it.
    stopping: Option<JoinHandle<()>>,
    dial_tx: Option<crossbeam_channel::Sender<String>>,
    number: String,
    outbound: usize,
    message: String,
    focus_number: bool,
    editor: Option<Editor>,
    /// The window is at the settings page's size and title.
    sized_for_editor: bool,
    minimized: bool,
    tray: Option<tray::Handle>,
    tray_rx: crossbeam_channel::Receiver<TrayCmd>,
    /// What the tray shows now (pushed when the view changes).
    tray_shown: (bool, String),
    hidden: bool,
    quitting: bool,
}

impl App {
    fn settings(&self) -> Settings {
        lock(&self.shared.settings).clone()
    }

    /// A new session loop. It waits (on its own thread, so the window never freezes) for the one
    /// before to have logged out, or the server would refuse the agent's second login.
    fn start(&mut self) {
        let previous = self.halt().or_else(|| self.stopping.take());
        let s = self.settings();
        let mut core = self.shared.core();
        core.notify_desktop = s.popup_style != PopupStyle::Window;
        let ui = WindowUi {
            view: self.view.clone(),
            ctx: self.ctx.clone(),
            popup_window: s.popup_style != PopupStyle::Notification,
        };
        {
            let mut v = lock(&self.view);
            v.status = format!("Connecting to {}:{} …", s.host, s.port);
        }
        self.loop_stop = Some(core.stop.clone());
        self.dial_tx = Some(core.dial_tx.clone());
        let done = Arc::new(AtomicBool::new(false));
        self.loop_done = done.clone();
        self.loop_thread = Some(std::thread::spawn(move || {
            if let Some(p) = previous {
                let _ = p.join();
            }
            run(&s, &core, &ui);
            done.store(true, Ordering::SeqCst);
            ui.ctx.request_repaint();
        }));
    }

    /// Tells the running loop to log out and stop; its thread, to wait for if needed.
    fn halt(&mut self) -> Option<JoinHandle<()>> {
        if let Some(stop) = self.loop_stop.take() {
            stop.store(true, Ordering::SeqCst);
        }
        self.dial_tx = None;
        self.loop_thread.take()
    }

    /// Stops the loop and waits for it (on exit).
    fn stop(&mut self) {
        for t in [self.halt(), self.stopping.take()].into_iter().flatten() {
            let _ = t.join();
        }
    }

    fn dial(&mut self) {
        let s = self.settings();
        let context = s.outbound.get(self.outbound).map(|o| o.context.clone());
        match orig_line(&s, &self.number, context.as_deref()) {
            Ok(line) => match &self.dial_tx {
                Some(tx) if self.shared.online.load(Ordering::SeqCst) => {
                    if tx.try_send(line).is_ok() {
                        self.message = format!("Dialling {}", self.number.trim());
                        let mut v = lock(&self.view);
                        v.dial_enabled = false;
                        v.dial_lock = Some(Instant::now() + DIAL_LOCK);
                        say("WINDOW   Dial off until the call's Hangup");
                    } else {
                        self.message = "Busy; try again".into();
                    }
                }
                _ => self.message = "Not connected to the server".into(),
            },
            Err(e) => self.message = e,
        }
    }

    fn open_editor(&mut self) {
        let s = self.settings();
        self.editor = Some(Editor {
            port: s.port.to_string(),
            noop: s.noop_ms.to_string(),
            timeout: s.callerid_timeout.to_string(),
            db_port: s.database.as_ref().map_or(3306, |d| d.port).to_string(),
            use_database: s.database.is_some(),
            password_typed: false,
            db_password_typed: false,
            error: None,
            s,
        });
    }

    /// Validates the dialog, writes the file back in its own format and restarts the session.
    fn save(&mut self) -> Result<(), String> {
        let ed = self.editor.as_mut().ok_or("no dialog")?;
        let number = |what: &str, v: &str| -> Result<u64, String> {
            v.trim()
                .parse::<u64>()
                .map_err(|_| format!("{what}: {v:?} is not a whole number"))
        };
        let mut s = ed.s.clone();
        s.port = u16::try_from(number("CTI server port", &ed.port)?)
            .map_err(|_| "CTI server port: 1 to 65535".to_string())?;
        s.noop_ms = number("SocketTimeout", &ed.noop)?;
        s.callerid_timeout = number("Caller-ID timeout", &ed.timeout)?;
        if ed.use_database {
            let d = s.database.get_or_insert(Database {
                host: String::new(),
                port: 3306,
                user: String::new(),
                password: String::new(),
                database: String::new(),
            });
            d.port = u16::try_from(number("Database port", &ed.db_port)?)
                .map_err(|_| "Database port: 1 to 65535".to_string())?;
        } else {
            s.database = None;
        }
        settings::validate(&s)?;
        let original = std::fs::read_to_string(&self.path).unwrap_or_else(|_| {
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<LocalAppSettings className=\"AstCTIClient.LocalAppSettings\">\n</LocalAppSettings>\n".into()
        });
        // What the file holds now: its passwords stay unless new ones were typed.
        let in_file = settings::parse(&original, &self.path.display().to_string()).ok();
        let mut to_write = s.clone();
        if !ed.password_typed {
            to_write.password = in_file
                .as_ref()
                .map(|f| f.password.clone())
                .unwrap_or_default();
        }
        if let (false, Some(d)) = (ed.db_password_typed, to_write.database.as_mut()) {
            d.password = in_file
                .as_ref()
                .and_then(|f| f.database.as_ref())
                .map(|fd| fd.password.clone())
                .unwrap_or_default();
        }
        let text = settings::write_back(&original, &to_write)?;
        settings::save_file(&self.path, &text)?;
        say(&format!("SETTINGS saved to {}", self.path.display()));
        *lock(&self.shared.settings) = s;
        self.editor = None;
        self.start();
        Ok(())
    }

    fn main_window(&mut self, ui: &mut egui::Ui) {
        let ended = self.loop_done.load(Ordering::SeqCst);
        let (online, status, ext, line, dial_enabled) = {
            let v = lock(&self.view);
            (
                v.online,
                v.status.clone(),
                v.ext.clone(),
                v.line.clone(),
                v.dial_enabled,
            )
        };
        let s = self.settings();
        ui.vertical_centered(|ui| {
            ui.heading(egui::RichText::new("AstCTI Client").size(24.0));
        });
        ui.separator();
        ui.horizontal(|ui| {
            let (rect, _) = ui.allocate_exact_size(egui::vec2(12.0, 12.0), egui::Sense::hover());
            let colour = if online {
                egui::Color32::from_rgb(0, 150, 0)
            } else {
                egui::Color32::from_rgb(200, 0, 0)
            };
            ui.painter().circle_filled(rect.center(), 5.0, colour);
            ui.add(egui::Label::new(status).wrap());
        });
        ui.label(format!(
            "Extension: {}",
            if ext.is_empty() { &s.phone_ext } else { &ext }
        ));
        ui.add_space(6.0);
        ui.vertical_centered(|ui| {
            ui.label(
                egui::RichText::new(if online { line } else { String::new() })
                    .size(22.0)
                    .strong(),
            );
        });
        ui.add_space(6.0);
        ui.group(|ui| {
            let label = ui.label("Number to dial");
            let can_dial = online && dial_enabled;
            let resp = ui
                .add_enabled(
                    can_dial,
                    egui::TextEdit::singleline(&mut self.number)
                        .hint_text("number")
                        .desired_width(f32::INFINITY),
                )
                .labelled_by(label.id);
            if self.focus_number && can_dial {
                resp.request_focus();
                self.focus_number = false;
            }
            let enter = resp.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            ui.horizontal(|ui| {
                let names: Vec<String> = s.outbound.iter().map(|o| o.context.clone()).collect();
                if self.outbound >= names.len() {
                    self.outbound = 0;
                }
                ui.add_enabled_ui(can_dial, |ui| {
                    egui::ComboBox::from_id_salt("outbound")
                        .selected_text(names.get(self.outbound).cloned().unwrap_or_default())
                        .show_ui(ui, |ui| {
                            for (i, n) in names.iter().enumerate() {
                                ui.selectable_value(&mut self.outbound, i, n);
                            }
                        });
                });
                let clicked = ui
                    .add_enabled(can_dial, egui::Button::new("Dial"))
                    .clicked();
                if (clicked || enter) && can_dial {
                    self.dial();
                    self.focus_number = true;
                }
            });
            if !self.message.is_empty() {
                ui.add(egui::Label::new(self.message.clone()).wrap());
            }
        });
        ui.add_space(6.0);
        ui.group(|ui| {
            let v = lock(&self.view);
            let problem = v.problem.clone();
            match &v.last {
                Some(l) => {
                    ui.label(format!("Last call, {}", l.time));
                    ui.label(
                        egui::RichText::new(format!("{}  {}", l.number, l.name))
                            .size(18.0)
                            .strong(),
                    );
                    if !l.calldata.is_empty() {
                        ui.label(
                            egui::RichText::new(format!("Calldata: {}", l.calldata))
                                .size(16.0)
                                .strong(),
                        );
                    }
                    let open = l.open.clone();
                    drop(v);
                    if ui
                        .add_enabled(open.is_some(), egui::Button::new("Open CRM page again"))
                        .clicked()
                    {
                        if let Some(job) = open {
                            desktop_job(&self.shared.desktop, job);
                        }
                    }
                }
                None => {
                    drop(v);
                    ui.label("No call yet");
                }
            }
            // (The view's lock is given back above: never taken twice, never held while drawing
            // longer than needed.)
            if let Some(p) = problem {
                ui.add(
                    egui::Label::new(
                        egui::RichText::new(p).color(egui::Color32::from_rgb(190, 0, 0)),
                    )
                    .wrap(),
                );
            }
        });
        ui.add_space(8.0);
        ui.horizontal(|ui| {
            if ui.button("Quit").clicked() {
                self.quitting = true;
                ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
            }
            let running = self.loop_thread.is_some() && !ended;
            if ui.button(if running { "Stop" } else { "Start" }).clicked() {
                if running {
                    self.stopping = self.halt();
                } else {
                    self.start();
                }
            }
            if ui.button("Settings").clicked() && self.editor.is_none() {
                self.open_editor();
            }
        });
        if ui.input_mut(|i| i.consume_key(egui::Modifiers::COMMAND, egui::Key::Comma))
            && self.editor.is_none()
        {
            self.open_editor();
        }
    }

    fn set_hidden(&mut self, ctx: &egui::Context, hidden: bool) {
        self.hidden = hidden;
        say(if hidden {
            "WINDOW   hidden (the tray icon shows it again)"
        } else {
            "WINDOW   shown"
        });
        ctx.send_viewport_cmd(egui::ViewportCommand::Visible(!hidden));
        if !hidden {
            ctx.send_viewport_cmd(egui::ViewportCommand::Focus);
        }
        ctx.request_repaint();
    }

    /// Drops the popup once its time is up (it is kept while the pointer is over it); true while
    /// one is still to be shown. Runs in `logic`, which eframe calls even while the window is
    /// hidden in the tray or minimised, so the popup closes on time wherever the window is.
    fn popup_due(&mut self, ctx: &egui::Context) -> bool {
        let mut v = lock(&self.view);
        let Some(p) = v.popup.as_ref() else {
            return false;
        };
        if p.until <= Instant::now() {
            v.popup = None;
            // One more pass, in which the popup's viewport is no longer shown: it closes.
            ctx.request_repaint();
            return false;
        }
        // Look again soon: the timeout is on this clock, not on any event.
        ctx.request_repaint_after(Duration::from_millis(200));
        true
    }

    /// The caller-ID popup: its own native window, a deferred viewport drawn by the backend on
    /// its own (never through the main window's pass, which does not run while that window is
    /// hidden, and whose immediate viewports panic egui when they cannot be drawn). A
    /// notification-type window that does not take the focus from the agent's CRM, with a border.
    fn popup_window(&mut self, ctx: &egui::Context) {
        let (number, name) = {
            let v = lock(&self.view);
            match &v.popup {
                Some(p) => (p.number.clone(), p.name.clone()),
                None => return,
            }
        };
        let x = ctx
            .input(|i| i.viewport().monitor_size)
            .map_or(930.0, |m| (m.x - 350.0).max(0.0));
        let builder = egui::ViewportBuilder::default()
            .with_title("AstCTI: call from")
            .with_inner_size([340.0, 130.0])
            .with_position([x, 40.0])
            .with_always_on_top()
            .with_decorations(false)
            .with_resizable(false)
            // Windows: shown without activation. X11: not managed by the window manager at all
            // (as notification daemons do), so it never takes the focus; Wayland: a notification.
            .with_active(false)
            .with_taskbar(false)
            .with_window_type(egui::X11WindowType::Notification)
            .with_override_redirect(true);
        let view = self.view.clone();
        ctx.show_viewport_deferred(
            egui::ViewportId::from_hash_of("astcti-popup"),
            builder,
            move |ui, _| {
                let border = egui::Frame::central_panel(ui.style())
                    .stroke(egui::Stroke::new(2.0, egui::Color32::from_rgb(40, 40, 40)));
                let mut close = false;
                egui::CentralPanel::default().frame(border).show(ui, |ui| {
                    ui.label(egui::RichText::new("New Call From:").size(18.0).strong());
                    ui.label(egui::RichText::new(&number).size(26.0).strong());
                    ui.label(egui::RichText::new(&name).size(18.0));
                    ui.add_space(4.0);
                    ui.label("Click to close");
                    let hovered = ui.ctx().input(|i| i.pointer.has_pointer());
                    let clicked = ui.ctx().input(|i| i.pointer.any_click());
                    if let Some(p) = lock(&view).popup.as_mut() {
                        if hovered {
                            p.until = p
                                .until
                                .max(Instant::now() + Duration::from_secs(p.seconds.min(2)));
                        }
                    }
                    if clicked || ui.ctx().input(|i| i.viewport().close_requested()) {
                        close = true;
                    }
                });
                if close {
                    lock(&view).popup = None;
                    // The main pass stops showing it (that pass is what closes a viewport).
                    ui.ctx().request_repaint_of(egui::ViewportId::ROOT);
                }
                ui.ctx().request_repaint_after(Duration::from_millis(200));
            },
        );
    }

    /// The settings: a page of the main window (as modal as the original's dialog), so that it is
    /// in the window's accessibility tree (eframe gives AccessKit to the main window only).
    fn settings_page(&mut self, ui: &mut egui::Ui) {
        let mut save = false;
        let mut cancel = false;
        let status = lock(&self.view).status.clone();
        let Some(ed) = self.editor.as_mut() else {
            return;
        };
        // What the client is doing meanwhile (or why it has no login: no settings yet).
        egui::Panel::top("settings-status").show(ui, |ui| {
            ui.add_space(4.0);
            ui.add(egui::Label::new(status).wrap());
            ui.add_space(4.0);
        });
        // Save and Cancel (and what is wrong) in a panel of their own at the bottom: always on
        // screen, however small the window and however long the form.
        egui::Panel::bottom("settings-buttons").show(ui, |ui| {
            ui.add_space(4.0);
            if let Some(e) = &ed.error {
                ui.add(
                    egui::Label::new(
                        egui::RichText::new(e).color(egui::Color32::from_rgb(190, 0, 0)),
                    )
                    .wrap(),
                );
            }
            ui.horizontal(|ui| {
                save = ui.button("Save").clicked();
                cancel = ui.button("Cancel").clicked();
            });
            ui.add_space(4.0);
        });
        egui::CentralPanel::default().show(ui, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| edit_settings(ui, ed));
        });
        if save {
            if let Err(e) = self.save() {
                say(&format!("ERROR    settings not saved: {e}"));
                if let Some(ed) = self.editor.as_mut() {
                    ed.error = Some(e);
                }
            }
        } else if cancel {
            self.editor = None;
        }
    }
}

fn field(ui: &mut egui::Ui, label: &str, value: &mut String) -> egui::Response {
    // The label names the field for screen readers (AccessKit), as a form's label does.
    let l = ui.label(label);
    let r = ui
        .add(egui::TextEdit::singleline(value).desired_width(300.0))
        .labelled_by(l.id);
    ui.end_row();
    r
}

fn secret(ui: &mut egui::Ui, label: &str, value: &mut String, typed: &mut bool) {
    let l = ui.label(label);
    if ui
        .add(
            egui::TextEdit::singleline(value)
                .password(true)
                .desired_width(300.0),
        )
        .labelled_by(l.id)
        .changed()
    {
        *typed = true;
    }
    ui.end_row();
}

/// The five categories of the original's dialog.
fn edit_settings(ui: &mut egui::Ui, ed: &mut Editor) {
    ui.heading("CTI APPLICATION");
    let mut remove = None;
    for (i, c) in ed.s.contexts.iter_mut().enumerate() {
        ui.group(|ui| {
            egui::Grid::new(("inbound", i))
                .num_columns(2)
                .show(ui, |ui| {
                    field(ui, "Context", &mut c.context);
                    field(ui, "Application", &mut c.application);
                    field(ui, "Parameters", &mut c.parameters);
                    field(ui, "Display name", &mut c.display_name);
                });
            ui.horizontal(|ui| {
                ui.checkbox(&mut c.enabled, "Enabled");
                ui.checkbox(&mut c.catch_all, "Catch-all");
                ui.checkbox(&mut c.internal_browser, "Open as URL");
                if ui.button("Remove").clicked() {
                    remove = Some(i);
                }
            });
        });
    }
    if let Some(i) = remove {
        ed.s.contexts.remove(i);
    }
    if ui.button("Add inbound context").clicked() {
        ed.s.contexts.push(InboundContext {
            enabled: true,
            display_name: "New context".into(),
            ..Default::default()
        });
    }
    ui.label("Placeholders: {CALLERID} {CALLERNAME} {CONTEXT} {CALLDATA} {CHANNEL} {UNIQUEID}; URL-encoded: {CALLERNAME:url} and so on");

    ui.separator();
    ui.heading("CTI SERVER");
    egui::Grid::new("server").num_columns(2).show(ui, |ui| {
        field(ui, "Host", &mut ed.s.host);
        field(ui, "Port", &mut ed.port);
        field(ui, "Username", &mut ed.s.username);
        secret(ui, "Password", &mut ed.s.password, &mut ed.password_typed);
        field(ui, "Phone extension", &mut ed.s.phone_ext);
        field(ui, "NOOP every (ms)", &mut ed.noop);
    });

    ui.separator();
    ui.heading("DATABASE");
    ui.checkbox(
        &mut ed.use_database,
        "Write my extension into the cti table before logging in",
    );
    if ed.use_database {
        let d = ed.s.database.get_or_insert(Database {
            host: String::new(),
            port: 3306,
            user: String::new(),
            password: String::new(),
            database: String::new(),
        });
        egui::Grid::new("database").num_columns(2).show(ui, |ui| {
            field(ui, "MySQL host", &mut d.host);
            field(ui, "MySQL port", &mut ed.db_port);
            field(ui, "MySQL user", &mut d.user);
            secret(
                ui,
                "MySQL password",
                &mut d.password,
                &mut ed.db_password_typed,
            );
            field(ui, "MySQL database", &mut d.database);
        });
    }

    ui.separator();
    ui.heading("INTERFACE");
    ui.checkbox(&mut ed.s.trigger_callerid, "Show the caller on Newcallerid");
    egui::Grid::new("interface").num_columns(2).show(ui, |ui| {
        field(ui, "Caller-ID timeout (s)", &mut ed.timeout);
        ui.label("Show the caller in");
        egui::ComboBox::from_id_salt("popup-style")
            .selected_text(ed.s.popup_style.name())
            .show_ui(ui, |ui| {
                for p in PopupStyle::ALL {
                    ui.selectable_value(&mut ed.s.popup_style, p, p.name());
                }
            });
        ui.end_row();
    });
    ui.checkbox(&mut ed.s.minimize_on_start, "Minimize on start");

    ui.separator();
    ui.heading("MISC");
    ui.label("Outbound contexts (the first is the default)");
    let mut remove = None;
    for (i, c) in ed.s.outbound.iter_mut().enumerate() {
        ui.horizontal(|ui| {
            let l = ui.label("Context");
            ui.add(egui::TextEdit::singleline(&mut c.context).desired_width(170.0))
                .labelled_by(l.id);
            let l = ui.label("priority");
            let mut p = c.priority.to_string();
            if ui
                .add(egui::TextEdit::singleline(&mut p).desired_width(50.0))
                .labelled_by(l.id)
                .changed()
            {
                c.priority = p.trim().parse().unwrap_or(c.priority);
            }
            if ui.button("Remove").clicked() {
                remove = Some(i);
            }
        });
    }
    if let Some(i) = remove {
        ed.s.outbound.remove(i);
    }
    if ui.button("Add outbound context").clicked() {
        ed.s.outbound.push(OutboundContext {
            context: String::new(),
            priority: 1,
        });
    }
}

impl eframe::App for App {
    /// Runs even while the window is hidden: the tray's requests, and the tray's state.
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        while let Ok(cmd) = self.tray_rx.try_recv() {
            match cmd {
                TrayCmd::Quit => {
                    self.quitting = true;
                    ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                }
                TrayCmd::Toggle if !self.hidden => self.set_hidden(ctx, true),
                TrayCmd::Toggle | TrayCmd::Show => self.set_hidden(ctx, false),
            }
        }
        if let Some(t) = &self.tray {
            let now = {
                let v = lock(&self.view);
                (v.online, v.status.clone())
            };
            if now != self.tray_shown {
                self.tray_shown = now.clone();
                tray::show(t, now.0, now.1);
            }
        }
        let lock_over = {
            let mut v = lock(&self.view);
            match v.dial_lock {
                Some(t) if t <= Instant::now() => {
                    v.dial_lock = None;
                    v.dial_enabled = true;
                    true
                }
                Some(_) => {
                    ctx.request_repaint_after(Duration::from_secs(1));
                    false
                }
                None => false,
            }
        };
        if lock_over {
            say("WINDOW   Dial back: no call came of the last dial");
            self.message = format!(
                "No call came of the last dial within {} s: Dial is back",
                DIAL_LOCK.as_secs()
            );
        }
        // A popup to show while the window is hidden or minimised: eframe then runs only this
        // function, so ask for the full pass that shows the popup's viewport.
        if self.popup_due(ctx) && !ctx.input(|i| i.viewport().visible().unwrap_or(true)) {
            ctx.send_viewport_cmd(egui::ViewportCommand::RequestPaintWhileHidden);
            ctx.request_repaint();
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        if ctx.input(|i| i.viewport().close_requested()) && !self.quitting && self.tray.is_some() {
            // With a tray, closing the window hides it; the client stays logged in.
            ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
            self.set_hidden(&ctx, true);
        }
        if !self.minimized && lock(&self.shared.settings).minimize_on_start {
            // MinimizeOnStart: into the tray where there is one, as the original; else minimised.
            if self.tray.is_some() {
                self.minimized = true;
                self.set_hidden(&ctx, true);
            } else if ctx.input(|i| i.viewport().minimized) == Some(true) {
                self.minimized = true;
                say("WINDOW   minimised (MinimizeOnStart)");
            } else {
                // A window manager ignores a minimise asked before it has mapped the window:
                // asked again every half second until the window says it is minimised.
                ctx.send_viewport_cmd(egui::ViewportCommand::Minimized(true));
                ctx.request_repaint_after(Duration::from_millis(500));
            }
        }
        // The settings page takes the window (kept, with what was typed, while the window is in
        // the tray); the window grows to fit it and says so in its title.
        let editing = self.editor.is_some();
        if editing != self.sized_for_editor {
            self.sized_for_editor = editing;
            let (size, title) = if editing {
                (SETTINGS_SIZE, "AstCTI Client settings")
            } else {
                (MAIN_SIZE, "AstCTI Client")
            };
            ctx.send_viewport_cmd(egui::ViewportCommand::InnerSize(size.into()));
            ctx.send_viewport_cmd(egui::ViewportCommand::Title(title.into()));
        }
        if editing {
            self.settings_page(ui);
        } else {
            egui::CentralPanel::default().show(ui, |ui| self.main_window(ui));
        }
        self.popup_window(&ctx);
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        self.stop();
    }
}

/// The main window's size, and the size it grows to for the settings page (fits a 1366×768 laptop
/// screen; the form scrolls, Save and Cancel stay in sight).
const MAIN_SIZE: [f32; 2] = [400.0, 470.0];
const SETTINGS_SIZE: [f32; 2] = [480.0, 640.0];

/// Font files that cover Chinese, Japanese and Korean, in order of preference, where desktops put
/// them (egui's own fonts have none of those glyphs: names would show as boxes).
const CJK_FONTS: &[&str] = &[
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/droid/DroidSansFallbackFull.ttf",
    "/usr/local/share/fonts/NotoSansCJK-Regular.ttc",
    "C:\\Windows\\Fonts\\msyh.ttc",
    "C:\\Windows\\Fonts\\YuGothM.ttc",
    "C:\\Windows\\Fonts\\meiryo.ttc",
    "C:\\Windows\\Fonts\\malgun.ttf",
    "C:\\Windows\\Fonts\\simsun.ttc",
    "/System/Library/Fonts/PingFang.ttc",
    "/System/Library/Fonts/Hiragino Sans GB.ttc",
    "/Library/Fonts/Arial Unicode.ttf",
];

/// Adds the first CJK font the system has as the last fallback of both families; says which.
fn add_cjk_fallback(ctx: &egui::Context) {
    for path in CJK_FONTS {
        let Ok(bytes) = std::fs::read(path) else {
            continue;
        };
        ctx.add_font(egui::epaint::text::FontInsert::new(
            "cjk-fallback",
            egui::FontData::from_owned(bytes),
            [egui::FontFamily::Proportional, egui::FontFamily::Monospace]
                .into_iter()
                .map(|family| egui::epaint::text::InsertFontFamily {
                    family,
                    priority: egui::epaint::text::FontPriority::Lowest,
                })
                .collect(),
        ));
        say(&format!("FONTS    CJK names drawn with {path}"));
        return;
    }
    say("FONTS    no CJK font found: Chinese, Japanese and Korean names show as boxes (docs/CLIENT.md)");
}

/// Runs the window until it is closed; the session loop stops with it.
pub fn main(shared: Shared, path: PathBuf, problem: Option<String>) -> i32 {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("AstCTI Client")
            .with_app_id("astcti-client")
            .with_inner_size(MAIN_SIZE)
            .with_position([20.0, 20.0]),
        ..Default::default()
    };
    let view = Arc::new(Mutex::new(View {
        online: false,
        status: "Starting".into(),
        ext: String::new(),
        line: String::new(),
        dial_enabled: false,
        dial_lock: None,
        popup: None,
        last: None,
        problem: None,
    }));
    let result = eframe::run_native(
        "astcti-client",
        options,
        Box::new(move |cc| {
            cc.egui_ctx.set_theme(egui::Theme::Light);
            add_cjk_fallback(&cc.egui_ctx);
            let (shown, ctx) = (view.clone(), cc.egui_ctx.clone());
            let _ = super::DESKTOP_FAILED.set(Box::new(move |what: &str| {
                lock(&shown).problem = Some(format!("Could not open the CRM page: {what}"));
                ctx.request_repaint();
            }));
            let (tray_tx, tray_rx) = crossbeam_channel::bounded(16);
            let tray = match tray::start(TrayState {
                online: false,
                status: "Starting".into(),
                tx: tray_tx,
                ctx: cc.egui_ctx.clone(),
            }) {
                Ok(t) => {
                    say("TRAY     the tray icon is up; closing the window hides it");
                    Some(t)
                }
                Err(e) => {
                    say(&format!("TRAY     none ({e}); closing the window quits"));
                    None
                }
            };
            let mut app = App {
                shared,
                path,
                view,
                ctx: cc.egui_ctx.clone(),
                loop_stop: None,
                loop_thread: None,
                loop_done: Arc::new(AtomicBool::new(false)),
                stopping: None,
                dial_tx: None,
                number: String::new(),
                outbound: 0,
                message: String::new(),
                focus_number: true,
                editor: None,
                sized_for_editor: false,
                minimized: false,
                tray,
                tray_rx,
                tray_shown: (false, String::new()),
                hidden: false,
                quitting: false,
            };
            match problem {
                None => app.start(),
                Some(why) => {
                    // No login with settings that could not be read: the window says why, and
                    // without a file, the dialog writes one (Save then logs in).
                    let missing = !app.path.exists();
                    lock(&app.view).status = if missing {
                        format!(
                            "No settings yet: fill them in and Save ({})",
                            app.path.display()
                        )
                    } else {
                        format!("Settings not usable: {why}")
                    };
                    say(&format!("WINDOW   no login: {why}"));
                    if missing {
                        app.open_editor();
                    }
                }
            }
            Ok(Box::new(app))
        }),
    );
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("astcti-client: the window cannot be shown: {e} (is there a display? without one, run astcti-client without --gui)");
            2
        }
    }
}
