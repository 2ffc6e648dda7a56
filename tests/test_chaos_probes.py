"""Probes: the IPVS sampler (parsing and a real run at its rate), steady-state probes, sysctl probe."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from chaos import ipvs_sampler, probes

IP_VS = """\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port Forward Weight ActiveConn InActConn
UDP  C0A86464:0035 rr ops
  -> C0A8640B:0035      Masq    1      0          12
  -> C0A8640D:0035      Masq    0      3          0
TCP  C0A86464:0035 rr
  -> C0A8640B:0035      Masq    1      2          1
TCP  C0A86465:0035 rr
"""


def test_parse_proc_net_ip_vs():
    assert ipvs_sampler.parse(IP_VS) == [
        ("192.168.100.100:53", "udp", "192.168.100.11:53", 1, 0, 12),
        ("192.168.100.100:53", "udp", "192.168.100.13:53", 0, 3, 0),
        ("192.168.100.100:53", "tcp", "192.168.100.11:53", 1, 2, 1),
    ]


def test_sampler_writes_rows_at_its_rate_and_stops_on_sigterm(tmp_path: Path):
    source = tmp_path / "ip_vs"
    source.write_text(IP_VS)
    out = tmp_path / "ipvs.csv"
    proc = subprocess.Popen([sys.executable, ipvs_sampler.__file__, str(out), "--hz", "20",
                             "--source", str(source)])
    time.sleep(1.0)
    source.write_text(IP_VS.replace("  -> C0A8640D:0035      Masq    0      3          0\n", ""))
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=5) == 0
    rows = pd.read_csv(out)
    assert list(rows.columns) == ["t_ns", "vip", "proto", "real_server", "weight", "active_conns",
                                  "inactive_conns"]
    samples = rows.groupby("t_ns").size()
    span_s = (samples.index.max() - samples.index.min()) / 1e9
    assert len(samples) / span_s >= 10, "at least 10 samples per second"
    rs13 = rows[rows.real_server == "192.168.100.13:53"]
    assert 0 < len(rs13) < len(samples), "the removed real server disappears from later samples"
    assert rs13.t_ns.max() < rows.t_ns.max()


def test_steady_state_probes_on_records():
    records = pd.DataFrame({
        "t_send_ns": [1, 2, 3, 4, 5],
        "latency_ms": [1.0, 2.0, None, 4.0, 100.0],
        "outcome": ["ok", "ok", "timeout", "ok", "ok"],
    })
    assert probes.success_ratio(records) == 0.8
    assert probes.latency_ms(records, percentile=50) == 3.0
    assert probes.query_count(probes.window(records, 2, 4)) == 2
    assert probes.success_ratio(records.iloc[0:0]) == 1.0


def test_sysctl_probe_sees_per_namespace_values():
    """Run in a throwaway netns (its "init" case), over sysctls the host kernel has: no write leaks."""
    from chaos import sysctl_probe

    res = subprocess.run(["unshare", "--net", sys.executable, sysctl_probe.__file__, "/proc/sys/net/ipv4",
                          "ip_default_ttl", "tcp_ecn"], capture_output=True, text=True, timeout=60)
    if res.returncode != 0 and "Operation not permitted" in res.stderr:
        pytest.skip("cannot create namespaces here")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    ttl = data["sysctls"]["ip_default_ttl"]
    for case in sysctl_probe.CASES:
        assert ttl[case]["exists"] and ttl[case]["writable"] and ttl[case]["write_took"]
        assert ttl[case]["leaks_to"] == []
    assert data["sysctls"]["tcp_ecn"]["init"]["leak_tested"] is False  # 2 -> 3 is out of range
    assert data["summary"]["init"]["exist"] == 2


def test_other_value_differs():
    from chaos.sysctl_probe import other_value

    assert other_value("0") == "1" and other_value("1") == "0" and other_value("1024") == "1025"
    assert other_value("3 50") == "4 50"
