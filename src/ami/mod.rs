//! The Asterisk side: the AMI frame codec, dialect detection, and the `ami-link` thread.
pub mod dialect;
pub mod event;
pub mod frame;
pub mod link;
pub mod session;
