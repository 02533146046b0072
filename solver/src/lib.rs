//! settle-solver (placeholder, filled by its issue).
