//! Management: controlling the proxy listener (start, stop, restart).
pub mod control;
