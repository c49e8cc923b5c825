//! Countersign's Slack Web API client (placeholder; being written).
