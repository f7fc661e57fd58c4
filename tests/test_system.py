"""system.code_version: the commit a result records, here and on a machine the tree was copied to."""
import subprocess

from lora_mini.lab.system import code_version


def _git(root, *args):
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout.strip()


def test_code_version_here_and_on_a_copied_tree(tmp_path):
    stamp = tmp_path / "runs" / "code_version.txt"
    assert code_version(tmp_path) is None                                   # no git, no stamp
    stamp.parent.mkdir()
    stamp.write_text("abc1234\n")
    assert code_version(tmp_path) == "abc1234"                              # no git: the stamp
    _git(tmp_path, "init", "-q")
    (tmp_path / "f").write_text("x")
    _git(tmp_path, "add", "f")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    head = _git(tmp_path, "rev-parse", "--short", "HEAD")
    assert code_version(tmp_path) == "abc1234"                              # a git that does not know it: stale
    stamp.write_text(head)
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "two")
    assert code_version(tmp_path) == _git(tmp_path, "rev-parse", "--short", "HEAD") != head   # known: HEAD wins
    stamp.unlink()
    assert code_version(tmp_path) == _git(tmp_path, "rev-parse", "--short", "HEAD")
