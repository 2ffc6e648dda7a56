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


class Dropping:
    """A connection whose every command and transfer fails as a dropped SSH session does."""

    user, host, port = "root", "10.0.0.9", 22

    def __init__(self, failure: BaseException) -> None:
        self.failure = failure

    def run(self, command: str, **_: object):
        raise self.failure

    def get(self, remote_path: str, local: str):
        raise self.failure

    def put(self, local: str, remote_path: str):
        raise self.failure


def _paramiko_errors() -> list[BaseException]:
    import paramiko

    return [paramiko.SSHException("SSH session not active"), paramiko.ssh_exception.NoValidConnectionsError(
        {("10.0.0.9", 22): ConnectionRefusedError(errno.ECONNREFUSED, "refused")})]


@pytest.mark.parametrize("failure", [EOFError(), ConnectionResetError(errno.ECONNRESET, "reset by peer"),
                                     BrokenPipeError(errno.EPIPE, "broken pipe"), TimeoutError("timed out"),
                                     *_paramiko_errors()], ids=lambda e: type(e).__name__)
def test_a_dropped_connection_is_one_line_cannot_reach(failure, tmp_path):
    script = tmp_path / "x.sh"
    script.write_text("echo hi\n")
    calls = [lambda c: remote.run(c, "true"), lambda c: remote.run_script(c, script, "a"),
             lambda c: remote.get(c, "/var/tmp/a", tmp_path / "a"),
             lambda c: remote.put(c, tmp_path / "a", "/var/tmp/a")]
    for call in calls:
        with pytest.raises(LabError) as err:
            call(Dropping(failure))
        assert one_line(err).startswith("cannot reach the lab host root@10.0.0.9:22 over SSH (")
        assert err.value.exit_code == 3 and err.value.__cause__ is None


def test_a_local_file_error_in_a_transfer_is_not_called_unreachable(tmp_path):
    local_file = tmp_path / "missing" / "a"
    failure = FileNotFoundError(errno.ENOENT, "No such file or directory", str(local_file))
    with pytest.raises(LabError, match=rf"^cannot use {local_file}: No such file or directory$"):
        remote.get(Dropping(failure), "/var/tmp/a", local_file)


def test_errors_that_are_not_the_connection_pass_through():
    from chaos.link import ConnectionLost

    with pytest.raises(ValueError):
        remote.run(Dropping(ValueError("a bug of ours")), "true")
    lost = ConnectionLost("lost the SSH connection to the lab (EOFError)")  # chaos.link's own
    with pytest.raises(LabError) as err:
        remote.run(Dropping(lost), "true")
    assert err.value is lost


def test_check_turns_a_failed_command_into_one_line():
    class Failing(Conn):
        def run(self, command: str, **_: object) -> SimpleNamespace:
            return SimpleNamespace(stdout="", stderr="mkdir: cannot create\ndirectory: No space\n", exited=1)

    conn = Failing(Sftp({}))
    assert remote.run(conn, "mkdir -p /x").exited == 1  # without check: returned
    with pytest.raises(LabError) as err:
        remote.run(conn, "mkdir -p /x", check=True, what="making the run's directory")
    assert one_line(err) == ("making the run's directory failed in the lab host (exit 1): "
                             "mkdir: cannot create directory: No space")


def test_a_script_gets_its_arguments_as_words_however_they_are_spelled(tmp_path):
    """run_script passes values as positional parameters, quoted: nothing in them reaches the shell."""
    from invoke import Config, Context

    script = tmp_path / "args.sh"
    script.write_text('for a in "$@"; do printf "<%s>\\n" "$a"; done\n')
    marker = tmp_path / "pwned"
    values = ["plain", "two words", f"$(touch {marker})", "; touch x", "'quoted'", "", "*"]
    local = Context(Config(overrides={"run": {"in_stream": False}}))
    out = remote.run_script(local, script, *values).stdout
    assert out.splitlines() == [f"<{v}>" for v in values]
    assert not marker.exists()
