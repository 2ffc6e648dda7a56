"""The lab image: its recipe and cache keys, the build, and the accelerator that runs it."""
