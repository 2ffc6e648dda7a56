"""The lab's model: the config (lab.toml), its errors, and the guest's layout. Pure: no I/O but
reading lab.toml."""
