"""``orchestrator-spawn run`` with the runner options, as a real process."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.helpers.processes import CLI

ROOT = Path(__file__).resolve().parent.parent
GITHUB_TOKEN = "gh" + "p_" + "Z9y8X7w6V5" * 3 + "u4T3s2"  # ghp_ + 36 alnum, assembled


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [*CLI, "run", *args],
        capture_output=True,
        cwd=cwd or ROOT,
        env=env,
        timeout=60,
        check=False,
    )


def test_default_run_redacts_a_github_token_on_both_streams() -> None:
    done = cli("--", "sh", "-c", f"echo token={GITHUB_TOKEN}; echo {GITHUB_TOKEN} >&2; exit 4")
    assert done.returncode == 4
    assert done.stdout == b"token=[REDACTED]\n"
    assert done.stderr == b"[REDACTED]\n"


def test_no_redact_passes_output_through() -> None:
    done = cli("--no-redact", "--", "sh", "-c", f"echo {GITHUB_TOKEN}")
    assert (done.returncode, done.stdout) == (0, f"{GITHUB_TOKEN}\n".encode())


def test_redact_and_secret_add_to_the_pack() -> None:
    done = cli(
        "--redact",
        r"ticket-[0-9]+",
        "--secret",
        "hunter2.(x)",
        "--",
        "sh",
        "-c",
        f"echo 'ticket-42 hunter2.(x) {GITHUB_TOKEN} fine'",
    )
    assert (done.returncode, done.stdout) == (0, b"[REDACTED] [REDACTED] [REDACTED] fine\n")


def test_stdout_and_stderr_files(tmp_path: Path) -> None:
    out, err = tmp_path / "o.log", tmp_path / "e.log"
    done = cli(
        "--stdout",
        str(out),
        "--stderr",
        str(err),
        "--",
        "sh",
        "-c",
        f"echo password=hunter2; echo {GITHUB_TOKEN} >&2",
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    assert out.read_bytes() == b"password=[REDACTED]\n"
    assert err.read_bytes() == b"[REDACTED]\n"


def test_no_redact_to_files(tmp_path: Path) -> None:
    out = tmp_path / "o.log"
    done = cli(
        "--no-redact",
        "--stdout",
        str(out),
        "--stderr",
        str(out),
        "--",
        "sh",
        "-c",
        "echo a; echo b >&2",
    )
    assert done.returncode == 0
    assert out.read_bytes() == b"a\nb\n"


CONFIG = """
runner:
  policy: allowlist
  env_allowlist: [PATH]
  redaction_patterns: ['internal-[a-z]+']
execution_profiles:
  limited:
    max_open_files: 40
"""


def test_config_and_profile_run_through_the_runner_shell(tmp_path: Path) -> None:
    config = tmp_path / "orchestrator.yaml"
    config.write_text(CONFIG)
    done = cli(
        "--config",
        str(config),
        "--profile",
        "limited",
        "--",
        "ulimit -n; echo internal-name; printf '%s\\n' \"${HOME:-nohome}\" | tr -d /; pwd",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode().splitlines()
    assert lines == ["40", "[REDACTED]", "nohome", str(tmp_path.resolve())]


def test_several_arguments_are_quoted_into_one_command(tmp_path: Path) -> None:
    done = cli("--profile", "host", "--", "printf", "%s|", "a b", "$HOME", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, b"a b|$HOME|")


def test_policy_refusal_is_126(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("runner:\n  shell: /bin/dash\n")
    done = cli("--config", str(config), "--", "true")
    assert done.returncode == 126
    assert b"allowed_shells" in done.stderr


def test_bad_config_is_2_and_names_the_field(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("execution_profiles:\n  p:\n    max_open_files: -1\n")
    done = cli("--config", str(config), "--profile", "p", "--", "true")
    assert done.returncode == 2
    assert b"max_open_files" in done.stderr


def test_unknown_profile_is_2() -> None:
    done = cli("--profile", "nope", "--", "true")
    assert done.returncode == 2
    assert b"unknown execution profile 'nope'" in done.stderr


def test_profile_and_limit_conflict() -> None:
    done = cli("--profile", "host", "--limit", "open_files=5", "--", "true")
    assert done.returncode == 2
    assert b"--limit" in done.stderr


def test_bad_redact_regex_is_2_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    done = cli("--redact", "(unclosed", "--", "touch", str(marker))
    assert done.returncode == 2
    assert b"unclosed" in done.stderr
    assert not marker.exists()


def test_output_write_failure_is_reported() -> None:
    done = cli("--stdout", "/dev/full", "--", "sh", "-c", "echo hello")
    assert done.returncode == 1
    assert b"writing the output failed" in done.stderr


def cli_env(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*CLI, "run", *args],
        capture_output=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        timeout=60,
        check=False,
    )


SHOW_ENV = 'echo "value: $DB_PASSWORD_I13"; echo "said: correct-horse-i13"'


def test_secret_env_is_redacted_and_not_passed_on() -> None:
    done = cli_env(
        "--secret-env", "DB_PASSWORD_I13", "--", "sh", "-c", SHOW_ENV,
        env={"DB_PASSWORD_I13": "correct-horse-i13"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"value: \nsaid: [REDACTED]\n"
    assert done.stderr == b""  # no warning: nothing secret is on the command line


def test_keep_secret_env_passes_it_on_still_redacted() -> None:
    done = cli_env(
        "--secret-env", "DB_PASSWORD_I13", "--keep-secret-env", "--", "sh", "-c", SHOW_ENV,
        env={"DB_PASSWORD_I13": "correct-horse-i13"},
    )  # fmt: skip
    assert done.stdout == b"value: [REDACTED]\nsaid: [REDACTED]\n"


def test_secret_env_not_set_is_2_before_anything_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    done = cli_env("--secret-env", "NO_SUCH_VAR_I13", "--", "touch", str(marker), env={})
    assert done.returncode == 2
    assert done.stderr == (
        b"orchestrator-spawn: --secret-env NO_SUCH_VAR_I13: the environment variable is not set\n"
    )
    assert not marker.exists()


def test_secret_file_one_secret_per_line(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.write_bytes(b"first secret\r\n\nsecond-one\nthird\n")
    done = cli(
        "--secret-file", str(secrets), "--",
        "sh", "-c", "echo 'a first secret b second-one c third d'",
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (0, b"a [REDACTED] b [REDACTED] c [REDACTED] d\n")
    assert done.stderr == b""


def test_secret_file_unreadable_is_2(tmp_path: Path) -> None:
    done = cli("--secret-file", str(tmp_path / "missing"), "--", "true")
    assert done.returncode == 2
    assert done.stderr.startswith(b"orchestrator-spawn: cannot read --secret-file ")


def test_secret_on_the_command_line_warns() -> None:
    done = cli("--secret", "hunter2-i13", "--", "echo", "hunter2-i13")
    assert done.stdout == b"[REDACTED]\n"
    assert b"warning: --secret puts the value on the command line" in done.stderr
    assert b"--secret-env NAME or --secret-file PATH" in done.stderr


def test_no_redact_refuses_secret_options(tmp_path: Path) -> None:
    for option, value in (("--secret-env", "HOME"), ("--secret-file", str(tmp_path))):
        done = cli("--no-redact", option, value, "--", "true")
        assert done.returncode == 2
        assert b"--no-redact cannot be combined" in done.stderr


def test_same_file_under_two_names_keeps_every_line(tmp_path: Path) -> None:
    script = "for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done"
    done = cli(
        "--stdout", "same.log", "--stderr", "./same.log", "--", "sh", "-c", script, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    lines = sorted((tmp_path / "same.log").read_bytes().splitlines())
    assert lines == sorted([f"out{i}".encode() for i in range(1, 6)] +
                           [f"err{i}".encode() for i in range(1, 6)])  # fmt: skip
