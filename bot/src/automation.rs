//! Automation endpoint (being written).
