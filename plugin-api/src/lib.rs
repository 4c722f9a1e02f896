//! The stable plugin ABI of plugbus and the facade plugin authors use.
//!
//! Empty until its issue lands; nothing here pretends to work yet.
