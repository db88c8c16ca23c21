//! engine room (being built).
