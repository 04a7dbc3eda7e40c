//! astcti-server: a drop-in replacement for the original AstCTIServer (see `docs/`).
//!
//! Pure core: `config`, `cli`, `cti::proto`, `cti::session`, `cti::outq`, `registry`, `admission`, `throttle`, `dialrate`, `netlist`,
//! `ami::frame`, `ami::event`, `ami::session`, `calls`, `route`, `replay` (the capture logic).
//! Shell (threads, sockets, database): `app`, `server`, `listener`, `cti::worker`, `dispatcher`,
//! `ami::link`, `store`, `logging`, `fdlimit`, `stats`, `offline`, `vital`.
#![forbid(unsafe_code)]

pub mod admission;
pub mod ami;
pub mod app;
pub mod calls;
pub mod cli;
pub mod client;
pub mod config;
pub mod cti;
pub mod dialrate;
pub mod dispatcher;
pub mod fdlimit;
pub mod listener;
pub mod logging;
pub mod netlist;
pub mod offline;
pub mod oneshot;
pub mod registry;
pub mod replay;
pub mod route;
pub mod server;
pub mod signals;
pub mod stats;
pub mod store;
pub mod throttle;
pub mod vital;
