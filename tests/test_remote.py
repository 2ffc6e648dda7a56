"""lab.ssh.remote's errors: a host that does not answer is "cannot reach", a write the login user may not
make is "permission denied", a non-root login is refused up front. Each is one line.

The connection here is a stand-in that raises exactly what paramiko's SFTP client raises for each SFTP
status (IOError with the errno, which Python turns into PermissionError / FileNotFoundError).
"""

from __future__ import annotations

import errno
from types import SimpleNamespace

import pytest

from lab.model.errors import LabError
from lab.ssh import remote


class Sftp:
    def __init__(self, fail: dict[str, Exception]) -> None:
        self.fail, self.written = fail, {}

    def putfo(self, fh, path: str) -> None:
        if path in self.fail:
            raise self.fail[path]
        self.written[path] = fh.read()


class Conn:
    user, host, port = "vagrant", "127.0.0.1", 2222

    def __init__(self, sftp: Sftp | Exception, uid: str = "0") -> None:
        self._sftp, self.uid = sftp, uid

    def sftp(self) -> Sftp:
        if isinstance(self._sftp, Exception):
            raise self._sftp
        return self._sftp

    def run(self, command: str, **_: object) -> SimpleNamespace:
        assert command == "id -u"
        return SimpleNamespace(stdout=f"{self.uid}\n", exited=0, ok=True)


def one_line(err: pytest.ExceptionInfo) -> str:
    assert "\n" not in str(err.value)
    return str(err.value)


def test_upload_writes_each_blob():
    sftp = Sftp({})
    remote.upload(Conn(sftp), {"/etc/a": b"1", "/etc/b": b"2"})
    assert sftp.written == {"/etc/a": b"1", "/etc/b": b"2"}


def test_a_write_without_permission_says_so_not_cannot_reach():
    conn = Conn(Sftp({"/etc/dnslab/x": OSError(errno.EACCES, "Permission denied")}))
    with pytest.raises(LabError) as err:
        remote.upload(conn, {"/tmp/ok": b"", "/etc/dnslab/x": b"x"})
    assert one_line(err) == ("cannot write /etc/dnslab/x in the lab host as vagrant: permission denied; "
                             "dnslab works there as root")
    assert err.value.exit_code == 3


def test_a_missing_directory_says_so_not_cannot_reach():
    conn = Conn(Sftp({"/var/lib/dnslab/stage/x": OSError(errno.ENOENT, "No such file")}))
    with pytest.raises(LabError, match=r"^cannot write /var/lib/dnslab/stage/x in the lab host as vagrant: "
                                       r"its directory does not exist$"):
        remote.upload(conn, {"/var/lib/dnslab/stage/x": b"x"})


@pytest.mark.parametrize("failure", [ConnectionRefusedError(errno.ECONNREFUSED, "refused"),
                                     TimeoutError("timed out"), EOFError()])
def test_a_host_that_does_not_answer_is_cannot_reach(failure):
    with pytest.raises(LabError, match=r"^cannot reach the lab host vagrant@127\.0\.0\.1:2222 over SSH"):
        remote.upload(Conn(failure), {"/etc/a": b""})
    with pytest.raises(LabError, match=r"^cannot reach the lab host"):
        remote.upload(Conn(Sftp({"/etc/a": failure})), {"/etc/a": b""})


def test_a_login_that_is_not_root_is_refused_up_front():
    remote.require_root(Conn(Sftp({}), uid="0"))
    with pytest.raises(LabError) as err:
        remote.require_root(Conn(Sftp({}), uid="1000"))
    assert one_line(err).startswith("the lab host logs vagrant@127.0.0.1:2222 in as uid 1000, not root;")
