"""The vagrant provider and its host plumbing: the box, the repo's machine, the host namespace."""
