//! The client side of the server: the original AstCTIClient line protocol (docs/ORIGINAL.md §3).
pub mod notify;
pub mod outq;
pub mod proto;
pub mod session;
pub mod worker;
