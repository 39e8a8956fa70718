"""The history service: the SQLite record of every job and every state change."""
