//! Slack adapter (being written).
