"""Per-OS exit notification (pidfd on Linux, kqueue on macOS)."""
