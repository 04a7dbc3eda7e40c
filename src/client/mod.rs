//! The agent's program, `astcti-client` (docs/CLIENT.md): its pure core lives here — the settings
//! (the original `AstCTIClient.config`), the reactions to the four notifications (line state, the
//! caller-ID popup, which context, which program with which arguments or which URL), and the
//! number to dial. The wire format is `cti::proto` and `cti::notify`, the same code the server
//! writes with. The shell (sockets, processes, reconnects) is `src/bin/astcti-client.rs`.

pub mod lines;
pub mod react;
pub mod settings;
