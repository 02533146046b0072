//! settle-codec (placeholder, filled by its issue).
