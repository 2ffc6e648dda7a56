"""Benchmarks, outside the runtime packages: each prints its figures next to a reference measured in
the same run, and exits non-zero when a target is missed.

- `python -m bench.image`: boot-to-SSH of the lab image, direct-kernel against GRUB boot.
- `python -m bench.loadtest`: the Locust DNS user against dnsperf on a local Unbound.
- `python -m bench.reports`: the analysis of a synthetic run of millions of rows.
- `python -m bench.interrupt`: runs interrupted at random leave no fault behind (needs the lab).
- `python -m bench.load kill|soak`: records lost to a SIGKILL of the generator, and a soak (needs the lab).

`bench.synthetic` writes synthetic run directories with known truth (for bench.reports and the tests).
"""
