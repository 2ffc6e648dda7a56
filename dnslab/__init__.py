"""dnslab's application layer, on top of lab, chaos, loadtest and reports (docs/architecture.md):
`tasks` holds what each Fabric task does (fabfile.py only parses arguments and prints), `demo` the
whole job of `fab demo` / `make demo`. Nothing below imports this package."""
