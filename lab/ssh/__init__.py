"""Talking to the lab host over SSH: endpoints, pinned host keys, and the remote API (run, upload)."""
