//! The client's settings: the original `AstCTIClient.config` (`<LocalAppSettings>`, one element per
//! setting, collections `<CTIContextes>` and `<CTIOutboundContextes>`; docs/ORIGINAL.md §6), read
//! unchanged so an agent's existing file works. Pure core: text in, values out.
//!
//! Passwords need not be in the file: `ASTCTI_PASSWORD` (environment) or `--password-file FILE`
//! (readable by the user only) take precedence over `<Password>`; likewise `ASTCTI_MYSQL_PASSWORD`.

/// An inbound context: what to open on a `Link` whose context is `context`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboundContext {
    pub context: String,
    pub application: String,
    pub parameters: String,
    pub internal_browser: bool,
    pub catch_all: bool,
    pub enabled: bool,
    pub display_name: String,
}

/// How the window shows a caller (the command line always uses the desktop notification).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PopupStyle {
    /// Its own small always-on-top window, as the original.
    Window,
    /// The desktop's notification.
    Notification,
    Both,
}

impl PopupStyle {
    pub const ALL: [PopupStyle; 3] = [
        PopupStyle::Window,
        PopupStyle::Notification,
        PopupStyle::Both,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PopupStyle::Window => "Window",
            PopupStyle::Notification => "Notification",
            PopupStyle::Both => "Both",
        }
    }

    pub fn from_name(v: &str) -> Option<PopupStyle> {
        Self::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(v.trim()))
    }
}

/// A context agents may dial into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundContext {
    pub context: String,
    pub priority: u32,
}

/// The client's own MySQL connection (it writes its `EXT` before logging in, as the original did).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub database: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub host: String,
    pub port: u16,
    /// The `NOOP` interval (`SocketTimeout`, milliseconds).
    pub noop_ms: u64,
    pub username: String,
    pub password: String,
    pub phone_ext: String,
    pub contexts: Vec<InboundContext>,
    pub outbound: Vec<OutboundContext>,
    pub trigger_callerid: bool,
    /// Seconds the caller-ID popup stays.
    pub callerid_timeout: u64,
    pub minimize_on_start: bool,
    /// How the window shows the caller (`<PopupStyle>`, new: `Window`, `Notification` or `Both`).
    pub popup_style: PopupStyle,
    /// None when the file names no MySQL database: no `EXT` registration.
    pub database: Option<Database>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            host: "localhost".into(),
            port: 9000,
            noop_ms: 1500,
            username: String::new(),
            password: String::new(),
            phone_ext: String::new(),
            contexts: Vec::new(),
            outbound: Vec::new(),
            trigger_callerid: false,
            callerid_timeout: 3,
            minimize_on_start: false,
            popup_style: PopupStyle::Window,
            database: None,
        }
    }
}

fn child_text<'a>(node: roxmltree::Node<'a, 'a>, name: &str) -> Option<&'a str> {
    node.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
        .map(|c| c.text().unwrap_or("").trim())
}

fn boolean(v: Option<&str>) -> Option<bool> {
    v.map(|v| v.eq_ignore_ascii_case("true"))
}

/// Replaces `path` with `text` whole (a new file beside it, then renamed over it). The settings hold
/// the agent's password: the file keeps the permissions it had, and a new one is readable by its
/// owner only (Unix `0600`).
pub fn save_file(path: &std::path::Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    let show = |p: &std::path::Path, e: std::io::Error| format!("{}: {e}", p.display());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| show(dir, e))?;
    }
    let old = std::fs::metadata(path).ok().map(|m| m.permissions());
    let tmp = path.with_extension("config.new");
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(&tmp).map_err(|e| show(&tmp, e))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| show(&tmp, e))?;
    drop(f);
    if let Some(p) = old {
        std::fs::set_permissions(&tmp, p).map_err(|e| show(&tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| show(path, e))
}

/// Reads `AstCTIClient.config`. Err is one line naming `file`, the line and the element.
pub fn parse(text: &str, file: &str) -> Result<Settings, String> {
    let doc =
        roxmltree::Document::parse(text).map_err(|e| format!("{file}: malformed XML: {e}"))?;
    let root = doc.root_element();
    if root.tag_name().name() != "LocalAppSettings" {
        return Err(format!(
            "{file}: the root element is <{}>, expected <LocalAppSettings> (an AstCTIClient.config)",
            root.tag_name().name()
        ));
    }
    let line = |n: roxmltree::Node<'_, '_>| doc.text_pos_at(n.range().start).row;
    let mut s = Settings::default();
    let number = |name: &str, v: &str, n: roxmltree::Node<'_, '_>| -> Result<u64, String> {
        v.parse()
            .map_err(|_| format!("{file}:{}: <{name}> {v:?} is not a whole number", line(n)))
    };
    let port = |name: &str, v: &str, n: roxmltree::Node<'_, '_>| -> Result<u16, String> {
        match number(name, v, n)? {
            p @ 1..=65535 => Ok(p as u16),
            _ => Err(format!(
                "{file}:{}: <{name}> {v} is not a TCP port (1 to 65535)",
                line(n)
            )),
        }
    };
    let (mut db_host, mut db_user, mut db_pass, mut db_name, mut db_port) =
        (None, None, None, None, 3306u16);
    for el in root.children().filter(|n| n.is_element()) {
        let v = el.text().unwrap_or("").trim();
        match el.tag_name().name() {
            "Host" => s.host = v.to_string(),
            "Port" => s.port = port("Port", v, el)?,
            "SocketTimeout" => s.noop_ms = number("SocketTimeout", v, el)?.max(100),
            "Username" => s.username = v.to_string(),
            "Password" => s.password = v.to_string(),
            "PhoneExt" => s.phone_ext = v.to_string(),
            "TriggerCallerId" => s.trigger_callerid = v.eq_ignore_ascii_case("true"),
            "CallerIdTimeout" => s.callerid_timeout = number("CallerIdTimeout", v, el)?,
            "MinimizeOnStart" => s.minimize_on_start = v.eq_ignore_ascii_case("true"),
            "PopupStyle" => {
                s.popup_style = PopupStyle::from_name(v).ok_or_else(|| {
                    format!(
                        "{file}:{}: <PopupStyle> {v:?}: Window, Notification or Both",
                        line(el)
                    )
                })?
            }
            "MySQLHost" => db_host = Some(v.to_string()),
            "MySQLUserName" => db_user = Some(v.to_string()),
            "MySQLPassword" => db_pass = Some(v.to_string()),
            "MySQLDatabase" => db_name = Some(v.to_string()),
            "MySQLPort" => db_port = port("MySQLPort", v, el)?,
            "CTIContextes" => {
                for c in el.children().filter(|n| n.is_element()) {
                    let context = child_text(c, "Context").unwrap_or("").to_string();
                    s.contexts.push(InboundContext {
                        display_name: child_text(c, "DisplayName")
                            .map(str::to_string)
                            .unwrap_or_else(|| format!("Context {context}")),
                        context,
                        application: child_text(c, "Application").unwrap_or("").to_string(),
                        parameters: child_text(c, "Parameters").unwrap_or("").to_string(),
                        internal_browser: boolean(child_text(c, "InternalBrowser"))
                            .unwrap_or(false),
                        catch_all: boolean(child_text(c, "CatchAll")).unwrap_or(false),
                        enabled: boolean(child_text(c, "Enabled")).unwrap_or(false),
                    });
                }
            }
            "CTIOutboundContextes" => {
                for c in el.children().filter(|n| n.is_element()) {
                    let priority = match child_text(c, "Priority") {
                        Some(p) if !p.is_empty() => number("Priority", p, c)? as u32,
                        _ => 1,
                    };
                    s.outbound.push(OutboundContext {
                        context: child_text(c, "Context").unwrap_or("").to_string(),
                        priority,
                    });
                }
            }
            // The original's other settings (fonts, language, internal browser) mean nothing here.
            _ => {}
        }
    }
    if let (Some(host), Some(database)) = (db_host, db_name) {
        if !host.is_empty() && !database.is_empty() {
            s.database = Some(Database {
                host,
                port: db_port,
                user: db_user.unwrap_or_else(|| "root".into()),
                password: db_pass.unwrap_or_default(),
                database,
            });
        }
    }
    Ok(s)
}

impl Settings {
    /// Applies the password sources that beat the file: `password_file` (first line), then
    /// `ASTCTI_PASSWORD`; `ASTCTI_MYSQL_PASSWORD` for the database.
    pub fn with_secrets(
        mut self,
        password_file: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Self {
        if let Some(p) = password_file {
            self.password = p.lines().next().unwrap_or("").to_string();
        } else if let Some(p) = env("ASTCTI_PASSWORD") {
            self.password = p;
        }
        if let (Some(db), Some(p)) = (self.database.as_mut(), env("ASTCTI_MYSQL_PASSWORD")) {
            db.password = p;
        }
        self
    }

    /// Why these settings cannot log in, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        for (name, v) in [
            ("Host", &self.host),
            ("Username", &self.username),
            ("PhoneExt", &self.phone_ext),
        ] {
            if v.trim().is_empty() {
                return Err(format!("<{name}> is empty"));
            }
        }
        Ok(())
    }
}

fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn flag(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

/// The `<CTIContextes>` element as the original writes it.
fn inbound_xml(contexts: &[InboundContext]) -> String {
    let mut x = String::from("<CTIContextes className=\"AstCTIClient.CTIContextCollection\">\n");
    for c in contexts {
        x.push_str("    <CTIContext className=\"AstCTIClient.CTIContext\">\n");
        for (k, v) in [
            ("Context", escape(&c.context)),
            ("Application", escape(&c.application)),
            ("Parameters", escape(&c.parameters)),
            ("InternalBrowser", flag(c.internal_browser).into()),
            ("CatchAll", flag(c.catch_all).into()),
            ("Enabled", flag(c.enabled).into()),
            ("DisplayName", escape(&c.display_name)),
        ] {
            x.push_str(&format!("      <{k}>{v}</{k}>\n"));
        }
        x.push_str("    </CTIContext>\n");
    }
    x.push_str("  </CTIContextes>");
    x
}

/// The `<CTIOutboundContextes>` element as the original writes it.
fn outbound_xml(contexts: &[OutboundContext]) -> String {
    let mut x = String::from(
        "<CTIOutboundContextes className=\"AstCTIClient.CTIOutboundContextCollection\">\n",
    );
    for c in contexts {
        x.push_str("    <CTIOutboundContext className=\"AstCTIClient.CTIOutboundContext\">\n");
        x.push_str(&format!(
            "      <Context>{}</Context>\n",
            escape(&c.context)
        ));
        x.push_str(&format!("      <Priority>{}</Priority>\n", c.priority));
        x.push_str(&format!(
            "      <DisplayName>Outbound Context {}</DisplayName>\n",
            escape(&c.context)
        ));
        x.push_str("    </CTIOutboundContext>\n");
    }
    x.push_str("  </CTIOutboundContextes>");
    x
}

/// `original` (an `AstCTIClient.config`) with the values of `new` written into it, in the original's
/// format: each known element replaced where it is (or added before `</LocalAppSettings>`), the two
/// context collections rewritten, everything else — the original's other settings, comments,
/// layout — kept byte for byte. What the window's settings dialog saves.
pub fn write_back(original: &str, new: &Settings) -> Result<String, String> {
    let doc = roxmltree::Document::parse(original).map_err(|e| format!("malformed XML: {e}"))?;
    let root = doc.root_element();
    if root.tag_name().name() != "LocalAppSettings" {
        return Err("the root element is not <LocalAppSettings>".into());
    }
    let db = new.database.clone();
    let mut values: Vec<(&str, String)> = vec![
        ("Host", escape(&new.host)),
        ("Port", new.port.to_string()),
        ("SocketTimeout", new.noop_ms.to_string()),
        ("Username", escape(&new.username)),
        ("Password", escape(&new.password)),
        ("PhoneExt", escape(&new.phone_ext)),
        ("TriggerCallerId", flag(new.trigger_callerid).into()),
        ("CallerIdTimeout", new.callerid_timeout.to_string()),
        ("MinimizeOnStart", flag(new.minimize_on_start).into()),
        ("PopupStyle", new.popup_style.name().into()),
    ];
    let d = db.unwrap_or(Database {
        host: String::new(),
        port: 3306,
        user: String::new(),
        password: String::new(),
        database: String::new(),
    });
    values.extend([
        ("MySQLHost", escape(&d.host)),
        ("MySQLPort", d.port.to_string()),
        ("MySQLUserName", escape(&d.user)),
        ("MySQLPassword", escape(&d.password)),
        ("MySQLDatabase", escape(&d.database)),
    ]);
    // (byte range in `original`, replacement), applied from the end.
    let mut edits: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    let mut missing = String::new();
    let element = |name: &str| {
        root.children()
            .find(|c| c.is_element() && c.tag_name().name() == name)
    };
    for (name, v) in &values {
        let text = format!("<{name}>{v}</{name}>");
        match element(name) {
            Some(el) => edits.push((el.range(), text)),
            None => missing.push_str(&format!("  {text}\n")),
        }
    }
    for (name, text) in [
        ("CTIContextes", inbound_xml(&new.contexts)),
        ("CTIOutboundContextes", outbound_xml(&new.outbound)),
    ] {
        match element(name) {
            Some(el) => edits.push((el.range(), text)),
            None => missing.push_str(&format!("  {text}\n")),
        }
    }
    let end = root.range().end;
    let close = original[..end]
        .rfind("</")
        .filter(|&i| i > root.range().start)
        .ok_or("<LocalAppSettings/> has no closing tag to add settings before")?;
    edits.push((close..close, missing));
    edits.sort_by_key(|(r, _)| std::cmp::Reverse(r.start));
    let mut out = original.to_string();
    for (range, text) in edits {
        out.replace_range(range, &text);
    }
    Ok(out)
}

/// Checks what the settings dialog is about to save; Err names the field and what is wrong.
pub fn validate(s: &Settings) -> Result<(), String> {
    s.check()?;
    if s.port == 0 {
        return Err("CTI server port: 1 to 65535".into());
    }
    if s.noop_ms < 100 {
        return Err("SocketTimeout: at least 100 ms".into());
    }
    if s.callerid_timeout == 0 || s.callerid_timeout > 3600 {
        return Err("caller-ID timeout: 1 to 3600 seconds".into());
    }
    for (i, c) in s.contexts.iter().enumerate() {
        if c.context.trim().is_empty() && !c.catch_all {
            return Err(format!(
                "inbound context {}: a context name, or CatchAll",
                i + 1
            ));
        }
    }
    for (i, c) in s.outbound.iter().enumerate() {
        if c.context.trim().is_empty() {
            return Err(format!("outbound context {}: a context name", i + 1));
        }
        if c.context.contains(['|', '\r', '\n']) {
            return Err(format!(
                "outbound context {:?}: no | or line breaks",
                c.context
            ));
        }
    }
    if let Some(d) = &s.database {
        if d.host.trim().is_empty() || d.database.trim().is_empty() {
            return Err("database: host and database name, or neither".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape the original writes (a 2007 sample, ORIGINAL.md §6).
    pub const ORIGINAL: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<LocalAppSettings className="AstCTIClient.LocalAppSettings">
  <CTIContextes className="AstCTIClient.CTIContextCollection">
    <CTIContext className="AstCTIClient.CTIContext">
      <Context>astctidemo</Context>
      <Application>c:\program files\Internet Explorer\iexplore.exe</Application>
      <Parameters>http://example/demo_page.php?callerid={CALLERID}&amp;calldata={CALLDATA}</Parameters>
      <InternalBrowser>False</InternalBrowser>
      <CatchAll>False</CatchAll>
      <Enabled>True</Enabled>
      <DisplayName>Context astctidemo</DisplayName>
    </CTIContext>
  </CTIContextes>
  <CTIOutboundContextes className="AstCTIClient.CTIOutboundContextCollection">
    <CTIOutboundContext className="AstCTIClient.CTIOutboundContext">
      <Context>astctidemo</Context>
      <Priority>1</Priority>
      <DisplayName>Outbound Context astctidemo</DisplayName>
    </CTIOutboundContext>
  </CTIOutboundContextes>
  <TriggerCallerId>True</TriggerCallerId>
  <CallerIdTimeout>3</CallerIdTimeout>
  <CalleridFadeSpeed>10</CalleridFadeSpeed>
  <Host>127.0.0.1</Host>
  <Port>9000</Port>
  <SocketTimeout>1500</SocketTimeout>
  <Username>test</Username>
  <Password>test</Password>
  <PhoneExt>SIP/201</PhoneExt>
  <MySQLHost>localhost</MySQLHost>
  <MySQLUserName>root</MySQLUserName>
  <MySQLPassword></MySQLPassword>
  <MySQLDatabase>test</MySQLDatabase>
  <MySQLPort>3306</MySQLPort>
  <Language>en-US</Language>
  <MinimizeOnStart>False</MinimizeOnStart>
  <SaveOnClose>True</SaveOnClose>
</LocalAppSettings>
"#;

    #[test]
    fn write_back_keeps_the_rest_and_reads_back_as_written() {
        let old = parse(ORIGINAL, "t").unwrap();
        let mut new = old.clone();
        new.host = "pbx & co".into();
        new.port = 9100;
        new.phone_ext = "PJSIP/207".into();
        new.trigger_callerid = false;
        new.popup_style = PopupStyle::Both;
        new.contexts[0].parameters = "http://x/?a={CALLERID}&b=<1>".into();
        new.contexts.push(InboundContext {
            context: String::new(),
            catch_all: true,
            enabled: true,
            display_name: "Everything else".into(),
            ..Default::default()
        });
        new.outbound.push(OutboundContext {
            context: "from-internal".into(),
            priority: 2,
        });
        let text = write_back(ORIGINAL, &new).unwrap();
        assert_eq!(parse(&text, "t").unwrap(), new);
        // The original's other settings and layout stay.
        assert!(text.contains("  <CalleridFadeSpeed>10</CalleridFadeSpeed>\n"));
        assert!(text.contains("<Host>pbx &amp; co</Host>"));
        assert!(text.starts_with("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<LocalAppSettings"));
        // Unchanged settings write the file back as it was, but for the new PopupStyle.
        let same = write_back(ORIGINAL, &old).unwrap();
        assert_eq!(
            same.replace("  <PopupStyle>Window</PopupStyle>\n", ""),
            ORIGINAL
        );
        assert!(validate(&new).is_ok());
        new.outbound[1].context = "a|b".into();
        assert!(validate(&new).unwrap_err().contains("outbound context"));
    }

    #[test]
    fn the_originals_file_reads_unchanged() {
        let s = parse(ORIGINAL, "AstCTIClient.config").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.noop_ms),
            ("127.0.0.1", 9000, 1500)
        );
        assert_eq!((s.username.as_str(), s.password.as_str()), ("test", "test"));
        assert_eq!(s.phone_ext, "SIP/201");
        assert!(s.trigger_callerid);
        assert_eq!(s.contexts.len(), 1);
        let c = &s.contexts[0];
        assert!(c.enabled && !c.catch_all && !c.internal_browser);
        assert_eq!(
            c.parameters,
            "http://example/demo_page.php?callerid={CALLERID}&calldata={CALLDATA}"
        );
        assert_eq!(
            s.outbound,
            vec![OutboundContext {
                context: "astctidemo".into(),
                priority: 1
            }]
        );
        assert_eq!(
            s.database.as_ref().map(|d| d.database.as_str()),
            Some("test")
        );
        assert!(s.check().is_ok());
    }

    #[test]
    fn secrets_from_a_file_or_the_environment_beat_the_file() {
        let s = parse(ORIGINAL, "f").unwrap();
        let env = |k: &str| (k == "ASTCTI_PASSWORD").then(|| "from-env".to_string());
        assert_eq!(s.clone().with_secrets(None, &env).password, "from-env");
        assert_eq!(
            s.with_secrets(Some("from-file\n"), &env).password,
            "from-file"
        );
    }

    #[test]
    fn errors_name_the_file_line_and_element() {
        let e = parse(&ORIGINAL.replace("<Port>9000", "<Port>nine"), "a.config").unwrap_err();
        assert!(e.starts_with("a.config:") && e.contains("<Port>"), "{e}");
        assert!(parse("<Other/>", "a.config")
            .unwrap_err()
            .contains("LocalAppSettings"));
        // A port out of range is an error naming it, not silently 65535.
        for bad in ["90000", "0"] {
            let e = parse(
                &ORIGINAL.replace("<Port>9000", &format!("<Port>{bad}")),
                "a.config",
            )
            .unwrap_err();
            assert!(
                e.contains("<Port>") && e.contains("1 to 65535") && e.contains(bad),
                "{e}"
            );
            let e = parse(
                &ORIGINAL.replace("<MySQLPort>3306", &format!("<MySQLPort>{bad}")),
                "a.config",
            )
            .unwrap_err();
            assert!(e.contains("<MySQLPort>"), "{e}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn saving_keeps_the_files_permissions_and_a_new_file_is_the_owners_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("astcti-settings-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("sub").join("AstCTIClient.config");
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        save_file(&path, "one").unwrap();
        assert_eq!(mode(&path), 0o600, "a new file");
        for kept in [0o600, 0o640, 0o644] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(kept)).unwrap();
            save_file(&path, ORIGINAL).unwrap();
            assert_eq!(mode(&path), kept);
            assert_eq!(std::fs::read_to_string(&path).unwrap(), ORIGINAL);
        }
        // A stale temporary file of an interrupted save is replaced, not an error.
        std::fs::write(path.with_extension("config.new"), "stale").unwrap();
        save_file(&path, "two").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        assert!(!path.with_extension("config.new").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
