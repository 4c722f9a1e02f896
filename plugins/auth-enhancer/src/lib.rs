//! plugbus plugin: session tracking and brute-force detection.
//!
//! Empty until its issue lands; nothing here pretends to work yet.
