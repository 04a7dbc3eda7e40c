//! The Asterisk side: the AMI frame codec, dialect detection, and the `ami-link` thread.
pub mod dialect;
pub mod event;
pub mod frame;
pub mod link;
pub mod session;

/// What an agent asked to dial (docs/ORIGINAL.md §3.3, §5.5): the AMI `Originate` the link sends for it.
/// (The client protocol's `ORIG` parser, `cti::proto::parse_orig`, makes these.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrigRequest {
    pub exten: String,
    pub context: String,
    pub priority: String,
}
