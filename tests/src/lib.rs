//! Multi-process tests (real processes, real files, real sockets) live in tests/tests/.
