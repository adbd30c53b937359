"""``orchestrator-spawn bench``, run as a real process: structure, not speed."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import pytest

from tests.helpers.processes import run_cli

GROUP_FLAG = "process_group=0" if sys.version_info >= (3, 11) else "start_new_session"

# group -> (contender name -> the orchestrator_spawn contender it is compared with).
EXPECTED: dict[str, dict[str, str | None]] = {
    "spawn": {
        "orchestrator_spawn.spawn": None,
        "subprocess.Popen": "orchestrator_spawn.spawn",
        "orchestrator_spawn.spawn(limits=...)": None,
        f"Popen({GROUP_FLAG}, preexec_fn=setrlimit)": "orchestrator_spawn.spawn(limits=...)",
        "orchestrator_spawn.spawn + await wait()": None,
        "asyncio.create_subprocess_exec": "orchestrator_spawn.spawn + await wait()",
    },
    "redact": {
        "Redactor (C, PCRE2), built-in pack": None,
        "re.sub, same patterns": "Redactor (C, PCRE2), built-in pack",
    },
    "pump": {
        "spawn + native pump -> file": None,
        "Popen + Python re -> file": "spawn + native pump -> file",
        "generator | cat > file (no redaction)": "spawn + native pump -> file",
    },
}
ROW = re.compile(
    r"^(?P<group>spawn|redact|pump) +(?P<name>.+?) +(?P<value>\d+\.\d+) "
    r"(?P<unit>us/spawn|ms/spawn|MB/s) +(?P<ratio>\d+\.\d+)x  (?P<versus>.+)$"
)


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("bench", *args, timeout=240)


@pytest.mark.slow
def test_quick_prints_a_table_with_every_contender_and_finite_ratios() -> None:
    done = bench("--quick")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [m for m in map(ROW.match, done.stdout.splitlines()) if m is not None]
    found = {(m["group"], m["name"]): m for m in rows}
    expected = {(g, name) for g, names in EXPECTED.items() for name in names}
    assert set(found) == expected, done.stdout
    assert len(rows) == len(expected)  # each contender once
    for (group, name), match in found.items():
        reference = EXPECTED[group][name]
        ratio = float(match["ratio"])
        assert math.isfinite(ratio), name
        assert ratio > 0, name
        assert float(match["value"]) > 0, name
        assert (match["unit"] == "MB/s") is (group != "spawn"), name
        if reference is None:
            assert match["versus"] == "(reference)"
            assert ratio == 1.0
        else:
            assert match["versus"] == reference
    assert "note:" not in done.stdout  # the redaction outputs agreed
    # The progress went to stderr (plain lines: stderr is a pipe here).
    assert "bench: spawn" in done.stderr
    assert "bench: done" in done.stderr


def test_only_and_json_give_the_selected_groups_with_rounds() -> None:
    done = bench("--quick", "--only", "redact", "--rounds", "2", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["notes"] == []
    assert report["sizes"]["rounds"] == 2
    results = report["results"]
    assert [r["name"] for r in results] == list(EXPECTED["redact"])
    for result in results:
        assert result["group"] == "redact"
        assert result["rounds"] == 2
        assert result["unit"] == "byte"
        assert math.isfinite(result["ratio"])
        assert result["ratio"] > 0
        assert result["median_s"] > 0
        assert result["work"] >= 256 << 10


@pytest.mark.parametrize("bad", ["--only=nonsense", "--only=spawn,nope", "--rounds=0"])
def test_bad_options_exit_two(bad: str) -> None:
    done = bench(bad)
    assert done.returncode == 2
    assert "usage:" in done.stderr
