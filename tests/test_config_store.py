"""Writing the config file (atomic, mode and owner kept, through a symlink), the history of
applied versions (0600 backups, pruning, damaged index lines), and masked diffs. Real files in
tmp_path; failures come from a real kill, real permissions, or the `before_rename` seam."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from relaybox.config.diff import MASK, mask_secrets, masked_diff
from relaybox.config.document import ConfigDocument
from relaybox.config.store import (
    KEEP_VERSIONS,
    ConfigHistory,
    file_version,
    text_version,
    write_atomically,
)

NOBODY = 65534
OLD = "[limits]\nmax_recipients = 10\n"
NEW = "[limits]\nmax_recipients = 20\n"

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own files as others")


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder another user can reach (pytest's tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="relaybox-store-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def in_child(action: Callable[[], object], uid: int | None = None) -> str:
    """Run `action` in a forked child (as `uid` if given): what it returned or raised, or
    `killed` when it died of SIGKILL."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        os.close(read_end)
        try:
            if uid is not None:
                os.setgid(uid)
                os.setuid(uid)
            result = f"returned {action()!r}"
        except BaseException as exc:  # noqa: BLE001 (reported to the parent)
            result = f"raised {type(exc).__name__}: {exc}"
        os.write(write_end, result.encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        reported = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
        return "killed"
    return reported


# --- file_version and write_atomically ---------------------------------------------------------


def test_version_is_the_sha256_of_the_bytes(tmp_path: Path) -> None:
    path = tmp_path / "relaybox.toml"
    assert file_version(path) == ("", "")
    path.write_bytes(OLD.encode())
    assert file_version(path) == (OLD, hashlib.sha256(OLD.encode()).hexdigest())
    assert text_version(OLD) == file_version(path)[1]


def test_a_new_file_is_0640_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "relaybox.toml"
    saved = os.umask(0o077)
    try:
        version = write_atomically(path, NEW)
    finally:
        os.umask(saved)
    assert file_version(path) == (NEW, version)
    assert mode_of(path) == 0o640
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("mode", [0o600, 0o644, 0o660])
def test_the_old_files_mode_is_kept(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "relaybox.toml"
    path.write_text(OLD)
    path.chmod(mode)
    write_atomically(path, NEW)
    assert path.read_text() == NEW
    assert mode_of(path) == mode


@root_only
def test_the_old_files_owner_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "relaybox.toml"
    path.write_text(OLD)
    os.chown(path, NOBODY, NOBODY)
    path.chmod(0o604)
    write_atomically(path, NEW)
    assert (path.stat().st_uid, path.stat().st_gid) == (NOBODY, NOBODY)
    assert mode_of(path) == 0o604
    assert path.read_text() == NEW


@root_only
def test_another_users_file_is_not_taken_over(shared_dir: Path) -> None:
    """Replacing root's file as nobody would hand the config to nobody: refused, untouched."""
    folder = shared_dir / "etc"
    folder.mkdir()
    os.chown(folder, NOBODY, NOBODY)
    path = folder / "relaybox.toml"
    path.write_text(OLD)
    path.chmod(0o666)
    outcome = in_child(lambda: write_atomically(path, NEW), uid=NOBODY)
    assert outcome.startswith("raised PermissionError"), outcome
    assert "belongs to user id 0" in outcome
    assert path.read_text() == OLD
    assert path.stat().st_uid == 0
    assert leftovers(folder) == []


@root_only
def test_a_read_only_folder_leaves_the_old_file(shared_dir: Path) -> None:
    folder = shared_dir / "etc"
    folder.mkdir()
    path = folder / "relaybox.toml"
    path.write_text(OLD)
    os.chown(path, NOBODY, NOBODY)
    os.chown(folder, NOBODY, NOBODY)
    folder.chmod(0o555)
    outcome = in_child(lambda: write_atomically(path, NEW), uid=NOBODY)
    assert outcome.startswith("raised PermissionError"), outcome
    assert path.read_text() == OLD


def test_a_failure_between_write_and_rename_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "relaybox.toml"
    path.write_text(OLD)
    seen: list[str] = []

    def fail(temporary: Path) -> None:
        seen.append(temporary.read_text())
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_atomically(path, NEW, before_rename=fail)
    assert seen == [NEW]  # the new text was complete and fsynced before the rename
    assert path.read_text() == OLD
    assert leftovers(tmp_path) == []


def test_a_kill_before_the_rename_leaves_the_old_file_and_the_next_write_works(
    tmp_path: Path,
) -> None:
    path = tmp_path / "relaybox.toml"
    path.write_text(OLD)

    def kill(_temporary: Path) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    assert in_child(lambda: write_atomically(path, NEW, before_rename=kill)) == "killed"
    assert path.read_text() == OLD
    assert len(leftovers(tmp_path)) == 1  # the dead writer's temporary file, never read
    assert write_atomically(path, NEW) == file_version(path)[1]
    assert path.read_text() == NEW


def test_a_symlink_is_followed_and_kept(tmp_path: Path) -> None:
    """Like vim: the file the link points to is replaced, the link still points to it."""
    managed = tmp_path / "managed"
    managed.mkdir()
    target = managed / "relaybox.toml"
    target.write_text(OLD)
    target.chmod(0o600)
    link = tmp_path / "relaybox.toml"
    link.symlink_to(target)
    version = write_atomically(link, NEW)
    assert link.is_symlink()
    assert target.read_text() == NEW
    assert mode_of(target) == 0o600
    assert file_version(link) == (NEW, version)
    assert leftovers(tmp_path) == [] and leftovers(managed) == []


# --- ConfigHistory -----------------------------------------------------------------------------


def version_text(generation: int) -> str:
    return f"# generation {generation}\n[limits]\nmax_recipients = {generation}\n"


def test_history_keeps_the_last_versions_newest_first_in_private_files(tmp_path: Path) -> None:
    folder = tmp_path / "history"
    history = ConfigHistory(folder)
    for generation in range(1, KEEP_VERSIONS + 3):
        history.record(generation, "ui", f"change {generation}", version_text(generation), 1e9)
    entries = history.entries()
    assert [e.generation for e in entries] == list(range(KEEP_VERSIONS + 2, 2, -1))
    assert entries[0].as_dict() == {
        "generation": KEEP_VERSIONS + 2,
        "at": 1e9,
        "trigger": "ui",
        "summary": f"change {KEEP_VERSIONS + 2}",
        "version": text_version(version_text(KEEP_VERSIONS + 2)),
    }
    assert history.text_of(3) == version_text(3)
    assert history.text_of(2) is None  # pruned
    assert mode_of(folder) == 0o700
    files = sorted(folder.iterdir())
    assert len(files) == KEEP_VERSIONS + 1  # the texts and the index
    assert {mode_of(f) for f in files} == {0o600}


def test_a_damaged_index_line_is_skipped(tmp_path: Path) -> None:
    history = ConfigHistory(tmp_path / "history")
    history.record(1, "signal", "first", version_text(1), 1.0)
    history.record(2, "file", "second", version_text(2), 2.0)
    index = tmp_path / "history" / ConfigHistory.INDEX
    lines = index.read_text().splitlines(keepends=True)
    damaged = json.loads(lines[0])
    damaged["generation"] = "one"
    index.write_text(json.dumps(damaged) + "\n" + lines[1] + '{"sequence": 3, "gener')
    assert [e.generation for e in history.entries()] == [2]
    history.record(3, "command", "third", version_text(3), 3.0)
    assert [e.generation for e in history.entries()] == [3, 2]
    assert history.text_of(3) == version_text(3)


def test_a_text_the_index_never_listed_is_removed_at_the_next_record(tmp_path: Path) -> None:
    """A crash between writing a version's text and the index leaves an orphan file."""
    folder = tmp_path / "history"
    history = ConfigHistory(folder)
    history.record(1, "ui", "first", version_text(1), 1.0)
    (folder / "000002.toml").write_text("orphan: its number is taken again")
    (folder / "000007.toml").write_text("orphan")
    history.record(2, "ui", "second", version_text(2), 2.0)
    assert history.text_of(2) == version_text(2)
    assert sorted(p.name for p in folder.iterdir()) == ["000001.toml", "000002.toml", "index.jsonl"]


def test_generations_counted_again_after_a_restart_stay_apart(tmp_path: Path) -> None:
    history = ConfigHistory(tmp_path / "history")
    history.record(1, "ui", "before the restart", version_text(1), 1.0)
    history.record(1, "file", "after the restart", NEW, 2.0)
    assert [e.summary for e in history.entries()] == ["after the restart", "before the restart"]
    assert history.text_of(1) == NEW


def test_the_summary_is_one_line_with_secrets_masked(tmp_path: Path) -> None:
    history = ConfigHistory(tmp_path / "history")
    history.record(1, "ui", 'users[0]: password_hash = "$scrypt$ln=15,r=8"\nrouted', OLD, 1.0)
    (entry,) = history.entries()
    assert "$scrypt$" not in entry.summary
    assert "\n" not in entry.summary and "routed" in entry.summary


def test_a_small_keep_prunes_to_it(tmp_path: Path) -> None:
    history = ConfigHistory(tmp_path / "history", keep=2)
    for generation in range(1, 6):
        history.record(generation, "ui", "", version_text(generation), float(generation))
    assert [e.generation for e in history.entries()] == [5, 4]
    assert len(list((tmp_path / "history").glob("*.toml"))) == 2


# --- masking -----------------------------------------------------------------------------------


SECRETS = """\
[[users]]
name = "alice"
password_hash = "$scrypt$ln=15,r=8,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2g"  # alice
[[routes]]
domains = ["*"]
transport = "smarthost"
hosts = ["smtp.example.net:587"]
password = 'hunter2'
password_file = "/etc/relaybox/smarthost.password"
password_env = "SMARTHOST_PASSWORD"
extra = { api_token = "tok-123", port = 1 }
client_secret = \"\"\"first line
second line\"\"\"
# password = "commented-out-pw"
api_token = \"\"\"tok-on-one-line\"\"\"  # rotated monthly
old_login = "$scrypt$ln=15,r=8,p=1$b2xkc2FsdG9sZHNhbHQ$b2xkaGFzaG9sZGhhc2hvbGRoYXNo"
"""


def test_secrets_are_masked_and_the_shape_kept() -> None:
    masked = mask_secrets(SECRETS)
    for secret in (
        "$scrypt$",
        "c2FsdHNhbHRz",
        "hunter2",
        "tok-123",
        "first line",
        "second line",
        "commented-out-pw",
        "tok-on-one-line",
    ):
        assert secret not in masked, secret
    assert masked.count("\n") == SECRETS.count("\n")
    assert f'password_hash = "{MASK}"  # alice\n' in masked
    assert f"password = '{MASK}'\n" in masked
    assert f'extra = {{ api_token = "{MASK}", port = 1 }}\n' in masked
    assert f'old_login = "{MASK}"\n' in masked  # a hash is a hash under any name
    # Where the password is kept is not the password: shown so the admin sees which one.
    assert 'password_file = "/etc/relaybox/smarthost.password"\n' in masked
    assert 'password_env = "SMARTHOST_PASSWORD"\n' in masked


def test_a_line_separator_inside_a_secret_does_not_let_its_end_through() -> None:
    masked = mask_secrets('password = "abc\u2028def\x0cghi"\nname = "x"\n')
    assert masked == f'password = "{MASK}"\nname = "x"\n'


def test_a_masked_diff_shows_a_changed_hash_without_the_hash() -> None:
    doc = ConfigDocument.from_text(OLD)
    doc.add_user("alice", "first password")
    old = doc.text()
    doc.delete_user("alice")
    doc.add_user("alice", "second password")
    new = doc.text()
    diff = masked_diff(old, new, "relaybox.toml")
    hashes = [line.split('"')[1] for line in (old + new).splitlines() if "password_hash" in line]
    assert len(hashes) == 2
    for encoded in hashes:
        for part in encoded.split("$"):
            if len(part) > 8:
                assert part not in diff
    assert f'-password_hash = "{MASK}"\n' in diff
    assert f'+password_hash = "{MASK}"\n' in diff
    assert diff.startswith("--- relaybox.toml (in force)\n+++ relaybox.toml (new)\n")
    assert masked_diff(old, old, "relaybox.toml") == ""


def test_a_masked_diff_of_an_edit_shows_the_edit() -> None:
    doc = ConfigDocument.from_text(SECRETS)
    doc.update_route(0, {"hosts": ["smtp2.example.net:587"]})
    diff = masked_diff(SECRETS, doc.text(), "relaybox.toml")
    assert '-hosts = ["smtp.example.net:587"]\n+hosts = ["smtp2.example.net:587"]\n' in diff
    assert "hunter2" not in diff and "$scrypt$" not in diff


def test_a_kept_version_comes_back_with_its_line_endings(tmp_path: Path) -> None:
    """A CRLF file rolled back stays CRLF (text mode would turn its endings into LF)."""
    history = ConfigHistory(tmp_path / "history")
    text = '[server]\r\nhostname = "relay.example.test"\r\n'
    history.record(1, "start", "started", text, 1.0)
    assert history.text_of(1) == text
