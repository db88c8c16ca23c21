//! mcp room (being built).
