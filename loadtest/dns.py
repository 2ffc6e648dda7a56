"""The dnslab locustfile: `locust -f loadtest/dns.py --host SERVER [--dns-* ...]` runs `DnsUser`.

`--help` lists the --dns-* knobs. The user is loadtest/user.py (import it in a locustfile of your
own the same way); `loadtest` must be importable: installed, on PYTHONPATH (/opt/dnslab in the
guest) or in the working directory.
"""

import sys
from importlib.machinery import PathFinder
from importlib.util import module_from_spec
from pathlib import Path

if __name__ == "dns":
    # Locust imports this file as the module "dns", with loadtest/ first on sys.path, so `import dns`
    # in loadtest would get this file instead of dnspython: load dnspython from the rest of sys.path
    # under its name first (Locust keeps its own reference to this module).
    _here = Path(__file__).resolve().parent
    _spec = PathFinder.find_spec("dns", [p for p in sys.path if Path(p or ".").resolve() != _here])
    sys.modules["dns"] = module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["dns"])

from loadtest.user import DnsUser  # noqa: E402

__all__ = ["DnsUser"]
