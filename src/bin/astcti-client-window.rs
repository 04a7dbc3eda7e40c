//! `astcti-client-window`: the agent's program as a window and nothing else — the same program as
//! `astcti-client` (docs/CLIENT.md), which it includes whole, opening the window when no command is
//! given. On Windows it is a GUI-subsystem program: started from the Start menu, at log-on or by a
//! `tel:` link (`astcti-client-window.exe dial …`) it opens no console window beside it.
#![cfg_attr(windows, windows_subsystem = "windows")]
#![forbid(unsafe_code)]

#[allow(dead_code)]
#[path = "astcti-client/main.rs"]
mod client;

fn main() {
    client::main_as(client::Start::Window);
}
