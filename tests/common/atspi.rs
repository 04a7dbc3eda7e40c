//! The accessibility tree of a running window, read as a screen reader reads it: AT-SPI over D-Bus
//! (at-spi2-core's bus launcher and registry, D-Bus-activated on the test's private session bus).
//! The client's window publishes its tree through AccessKit (eframe's `accesskit` feature); the
//! window tests find labels, buttons and fields here instead of reading pixels, and press buttons
//! with the Action a screen reader uses. Included by tests/client_e2e.rs only (`#[path]`).

use std::time::{Duration, Instant};

use zbus::blocking::{proxy::Builder, Connection, Proxy};
use zbus::proxy::CacheProperties;
use zbus::zvariant::OwnedObjectPath;

/// AT-SPI roles (at-spi2-core's `AtspiRole`) that the tests look for.
pub const LABEL: u32 = 29;
pub const PUSH_BUTTON: u32 = 43;
pub const ENTRY: u32 = 79;

/// `AtspiStateType` bit of an item that can be used now (egui: `add_enabled(false, …)` clears it).
const STATE_SENSITIVE: u32 = 24;

/// One accessible object: what it is, what it says, whether it can be used now. (Not where it is:
/// AccessKit gives window coordinates until the window manager has told the window where it is.)
#[derive(Clone, Debug)]
pub struct Item {
    pub role: u32,
    pub name: String,
    pub sensitive: bool,
    bus: String,
    path: OwnedObjectPath,
}

pub struct Atspi {
    a11y: Connection,
}

impl Atspi {
    /// Turns accessibility on for the session on `session_bus` (what a screen reader does when it
    /// starts: `org.a11y.Status.IsEnabled`) and connects to its accessibility bus.
    pub fn connect(session_bus: &str) -> Atspi {
        let session = zbus::blocking::connection::Builder::address(session_bus)
            .unwrap()
            .build()
            .unwrap();
        let status = Builder::<Proxy>::new(&session)
            .destination("org.a11y.Bus")
            .unwrap()
            .path("/org/a11y/bus")
            .unwrap()
            .interface("org.a11y.Status")
            .unwrap()
            .cache_properties(CacheProperties::No)
            .build()
            .unwrap();
        status
            .set_property("IsEnabled", true)
            .expect("org.a11y.Status.IsEnabled (is at-spi2-core installed?)");
        let launcher =
            Proxy::new(&session, "org.a11y.Bus", "/org/a11y/bus", "org.a11y.Bus").unwrap();
        let address: String = launcher.call("GetAddress", &()).unwrap();
        let a11y = zbus::blocking::connection::Builder::address(address.as_str())
            .unwrap()
            .build()
            .unwrap();
        Atspi { a11y }
    }

    fn proxy(
        &self,
        bus: &str,
        path: &OwnedObjectPath,
        interface: &'static str,
    ) -> zbus::Result<Proxy<'_>> {
        Builder::<Proxy>::new(&self.a11y)
            .destination(bus.to_string())?
            .path(path.clone())?
            .interface(interface)?
            .cache_properties(CacheProperties::No)
            .build()
    }

    fn item(
        &self,
        bus: &str,
        path: OwnedObjectPath,
    ) -> zbus::Result<(Item, Vec<(String, OwnedObjectPath)>)> {
        let acc = self.proxy(bus, &path, "org.a11y.atspi.Accessible")?;
        let name: String = acc.get_property("Name")?;
        let role: u32 = acc.call("GetRole", &())?;
        let state: Vec<u32> = acc.call("GetState", &())?;
        let children: Vec<(String, OwnedObjectPath)> = acc.call("GetChildren", &())?;
        let sensitive = state
            .first()
            .is_some_and(|s| s & (1 << STATE_SENSITIVE) != 0);
        let item = Item {
            role,
            name,
            sensitive,
            bus: bus.to_string(),
            path,
        };
        Ok((item, children))
    }

    /// The names of the applications on the accessibility bus.
    pub fn apps(&self) -> Vec<String> {
        let root: OwnedObjectPath = "/org/a11y/atspi/accessible/root".try_into().unwrap();
        let Ok((_, apps)) = self.item("org.a11y.atspi.Registry", root) else {
            return Vec::new();
        };
        apps.into_iter()
            .filter_map(|(bus, path)| Some(self.item(&bus, path).ok()?.0.name))
            .collect()
    }

    /// Everything under the application named `app`, depth first; `None` while the application is
    /// not (yet) registered or its tree changed under the walk.
    pub fn tree(&self, app: &str) -> Option<Vec<Item>> {
        let root: OwnedObjectPath = "/org/a11y/atspi/accessible/root".try_into().unwrap();
        let (_, apps) = self.item("org.a11y.atspi.Registry", root).ok()?;
        for (bus, path) in apps {
            let Ok((top, children)) = self.item(&bus, path) else {
                continue;
            };
            if top.name != app {
                continue;
            }
            let mut out = Vec::new();
            let mut stack: Vec<(String, OwnedObjectPath)> = children.into_iter().rev().collect();
            while let Some((bus, path)) = stack.pop() {
                let (item, children) = self.item(&bus, path).ok()?;
                out.push(item);
                stack.extend(children.into_iter().rev());
            }
            return Some(out);
        }
        None
    }

    /// Waits until the tree of `app` satisfies `cond`; returns that tree. Fails with the last tree
    /// read (roles and names) after `timeout`.
    pub fn until(
        &self,
        app: &str,
        timeout: Duration,
        what: &str,
        cond: impl Fn(&[Item]) -> bool,
    ) -> Vec<Item> {
        let deadline = Instant::now() + timeout;
        let mut last = Vec::new();
        loop {
            if let Some(tree) = self.tree(app) {
                if cond(&tree) {
                    return tree;
                }
                last = tree;
            }
            if Instant::now() > deadline {
                let seen: Vec<String> = last
                    .iter()
                    .map(|i| format!("{}:{:?}", i.role, i.name))
                    .collect();
                panic!(
                    "{what}: not in the accessibility tree within {timeout:?}; {app:?} holds \
                     {seen:?} (applications: {:?})",
                    self.apps()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for an item of `role` named exactly `name`.
    pub fn wait(&self, app: &str, role: u32, name: &str, timeout: Duration) -> Item {
        let tree = self.until(app, timeout, &format!("{role}:{name:?}"), |t| {
            find(t, role, name).is_some()
        });
        find(&tree, role, name).cloned().expect("checked")
    }

    /// Presses a button as a screen reader does (its first Action, "click").
    pub fn press(&self, item: &Item) {
        let action = self
            .proxy(&item.bus, &item.path, "org.a11y.atspi.Action")
            .unwrap();
        let done: bool = action.call("DoAction", &(0i32,)).unwrap();
        assert!(done, "{item:?} did not take its action");
    }

    /// Gives an item the keyboard focus (`Component.GrabFocus`).
    pub fn focus(&self, item: &Item) {
        let component = self
            .proxy(&item.bus, &item.path, "org.a11y.atspi.Component")
            .unwrap();
        let done: bool = component.call("GrabFocus", &()).unwrap();
        assert!(done, "{item:?} did not take the focus");
    }

    /// Replaces what an entry holds, as a screen reader's user edits it (`EditableText`).
    pub fn set_text(&self, item: &Item, text: &str) {
        let editable = self
            .proxy(&item.bus, &item.path, "org.a11y.atspi.EditableText")
            .unwrap();
        let done: bool = editable.call("SetTextContents", &(text,)).unwrap();
        assert!(done, "{item:?} did not take the text");
    }

    /// The text an entry holds.
    pub fn text(&self, item: &Item) -> String {
        let text = self
            .proxy(&item.bus, &item.path, "org.a11y.atspi.Text")
            .unwrap();
        text.call("GetText", &(0i32, -1i32)).unwrap()
    }
}

/// The first item of `role` named exactly `name`.
pub fn find<'a>(tree: &'a [Item], role: u32, name: &str) -> Option<&'a Item> {
    tree.iter().find(|i| i.role == role && i.name == name)
}

/// Whether any label's text contains `part`.
pub fn has_label(tree: &[Item], part: &str) -> bool {
    tree.iter()
        .any(|i| i.role == LABEL && i.name.contains(part))
}
