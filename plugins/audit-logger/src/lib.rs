//! plugbus plugin: tamper-evident JSON Lines audit log.
//!
//! Empty until its issue lands; nothing here pretends to work yet.
