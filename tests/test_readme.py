"""The README's two set-up commands: present, one line each, and the test one is what CI runs."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV = "python3 -m venv .venv && . .venv/bin/activate && "


def setup_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_exactly_two_single_line_setup_commands():
    commands = setup_commands()
    assert len(commands) == 2 and all("\n" not in c and c.startswith(VENV) for c in commands)


def test_demo_command_audits_the_shipped_example():
    demo = setup_commands()[0]
    match = re.search(r"--model (\S+):(\w+)", demo)
    assert match and (REPO / match.group(1)).is_file()
    assert f"def {match.group(2)}(" in (REPO / match.group(1)).read_text()
    assert 'pip install torch==2.13.0 && pip install ".[models]"' in demo   # torch is the models extra


def test_ci_runs_the_readme_test_command():
    test_command = setup_commands()[1].removeprefix(VENV)
    ci_lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    # the line may go on with `|| failed+=(...)`: CI runs every lane before it fails
    assert any(line == test_command or line.startswith(test_command + " || ") for line in ci_lines)
