//! plugbus
