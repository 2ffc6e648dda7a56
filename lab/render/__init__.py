"""Rendering: pure functions from the lab model to every file and script deploy installs in the guest."""
