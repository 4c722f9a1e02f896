//! Limits of the audit log format, shared by its writer and its verifier.
//!
//! The audit-logger plugin writes the log and `plugbus audit verify` (in the host) reads it. They
//! are built separately and neither depends on the other, so the one number both must agree on
//! lives here: if the writer accepted a line the verifier refuses, a genuine log would be called
//! broken.

/// The longest record line of an audit log, in bytes, not counting its terminating `\n`:
/// 16 MiB.
///
/// The writer never writes a longer line (an event whose record would be longer is recorded by
/// a short marker record instead), and the verifier refuses longer lines without reading them
/// whole, which keeps its memory bounded whatever it is given.
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;
