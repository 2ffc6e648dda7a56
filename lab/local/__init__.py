"""This machine's side of the lab: the state and cache directories, atomic file writes, the lab lock."""
