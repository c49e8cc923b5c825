//! Countersign's Discord REST client (placeholder; being written).
