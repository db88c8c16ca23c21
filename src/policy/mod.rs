//! policy room (being built).
