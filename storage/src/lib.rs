//! settle-storage (placeholder, filled by its issue).
