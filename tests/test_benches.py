"""The pure parts of the interruption and load benchmarks (the benchmarks themselves need the VM):
how a run directory is judged, and the VIP's packet count read from ipvsadm's output."""

from __future__ import annotations

import json

import pytest

from bench.interrupt import ENDED, Outcome, check_run_dir, summary
from bench.load import _udp_in_packets
from bench.synthetic import write_planted_run
from lab.model.errors import LabError

STATS = """IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  192.168.100.100:53                  12       80       60     5000     6000
  -> 192.168.100.11:53                    4       27       20     1700     2000
UDP  192.168.100.100:53              123456   123457   123400  4000000  9000000
  -> 192.168.100.11:53                41152    41152    41130  1333333  3000000
"""


def test_the_vip_udp_packets_are_read_from_ipvsadm_stats():
    assert _udp_in_packets(STATS, "192.168.100.100:53") == 123457
    with pytest.raises(LabError, match=r"no UDP virtual service 192.168.100.101:53 .*`fab deploy`"):
        _udp_in_packets(STATS, "192.168.100.101:53")


def test_a_run_dir_is_readable_incomplete_or_bad(tmp_path):
    run = write_planted_run(tmp_path / "good")
    assert check_run_dir(run) == ("readable", "")

    meta = json.loads((run / "meta.json").read_text())
    (run / "meta.json").write_text(json.dumps({**meta, "incomplete": "its records were lost with the VM"}))
    status, detail = check_run_dir(run)
    assert status == "incomplete" and detail.endswith("incomplete run: its records were lost with the VM")

    (run / "running.json").write_text("{}")
    assert check_run_dir(run)[0] == "BAD"

    cut = write_planted_run(tmp_path / "cut")  # refused, but not as an incomplete run: data was lost
    (cut / "queries.csv").write_text("t_send_ns\n1,")
    status, detail = check_run_dir(cut)
    assert status == "BAD" and "queries.csv" in detail


def test_the_summary_counts_the_runs_interrupted_before_they_ended():
    outcomes = [Outcome(1, "SIGINT", "kill-one", 9.0, phase="rolling back", dirs={"a": "readable"}),
                Outcome(2, "SIGKILL", "netem-one", 40.0, phase=ENDED, left=["rs2 does not answer"]),
                Outcome(3, "ssh-drop", "stop-one", 3.0, phase="starting")]
    result = summary(outcomes)
    counts = (result["runs"], result["live"], result["leftovers"], result["runs_with_leftovers"])
    assert counts == (3, 2, 1, 1)
    assert result["run_dirs"] == {"readable": 1, "incomplete": 0, "BAD": 0}
