"""lab.model.errors: each kind of error ends the command line with its class's exit status, in one line."""

from __future__ import annotations

import pytest

from chaos.link import ConnectionLost
from lab.model.errors import (
    ActionFailed,
    ConfigError,
    ExperimentError,
    GuestUnreachable,
    LabBusy,
    LabError,
    cli_guard,
)
from lab.ssh.hostkeys import HostKeyError


@pytest.mark.parametrize(("cls", "status"), [
    (ConfigError, 2), (ExperimentError, 2), (GuestUnreachable, 3), (HostKeyError, 3), (ConnectionLost, 3),
    (ActionFailed, 1), (LabBusy, 75),
])
def test_cli_guard_prints_one_line_and_exits_with_the_class_status(capsys, cls, status):
    @cli_guard
    def command() -> None:
        raise cls("lab.toml: [network] vip: 10.0.0.1 is not\n  inside the subnet")

    with pytest.raises(SystemExit) as ended:
        command()
    assert ended.value.code == status
    assert issubclass(cls, LabError)
    err = capsys.readouterr().err
    assert err == "dnslab: error: lab.toml: [network] vip: 10.0.0.1 is not inside the subnet\n"


def test_the_status_belongs_to_the_class_not_the_call():
    with pytest.raises(TypeError):
        ActionFailed("failed", exit_code=2)  # type: ignore[call-arg]
