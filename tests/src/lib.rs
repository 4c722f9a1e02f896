//! Integration tests of plugbus over real plugin .so files.
//!
//! Empty until its issue lands; nothing here pretends to work yet.
