//! The plugbus host: plugin loader, manager, config and the plugbus binary.
//!
//! Empty until its issue lands; nothing here pretends to work yet.
