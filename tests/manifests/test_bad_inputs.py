"""Every bad input in tests/data exits 3 with file:line and a message that says what to do."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reconciler.errors import InputError
from reconciler.graph import build
from reconciler.manifests import LoadOptions, load
from tests.conftest import DATA, run_cli

SINGLE = sorted((DATA / "bad").glob("*.yaml"))
FOLDERS = sorted(p for p in (DATA / "bad-folders").iterdir() if p.is_dir())


def _expectation(text: str) -> tuple[str, int, str]:
    match = re.match(r"(?:(\S+?):)?(\d+) (.+)", text.strip())
    assert match, f"bad expectation {text!r}"
    return match.group(1) or "", int(match.group(2)), match.group(3)


def _problems(path: Path, profile: str | None = None) -> list[str]:
    try:
        manifests = load(path, LoadOptions(profile=profile, env={}))
        build(manifests.resources)
    except InputError as exc:
        return [f"{p.format()}" for p in exc.problems]
    raise AssertionError(f"{path} loaded without problems")


def test_corpus_is_large_enough() -> None:
    assert len(SINGLE) + len(FOLDERS) >= 40


@pytest.mark.parametrize("case", SINGLE, ids=lambda p: p.stem)
def test_single_file_case(case: Path) -> None:
    header = case.read_bytes().split(b"\n", 1)[0].decode()
    _, line, fragment = _expectation(header.removeprefix("# expect:"))
    problems = _problems(case)
    wanted = f"{case.name}:{line}:"
    assert any(wanted in p and fragment in p for p in problems), problems


@pytest.mark.parametrize("case", FOLDERS, ids=lambda p: p.name)
def test_folder_case(case: Path) -> None:
    file, line, fragment = _expectation((case / "EXPECT").read_text())
    profile_file = case / "PROFILE"
    profile = profile_file.read_text().strip() if profile_file.exists() else None
    problems = _problems(case, profile)
    wanted = f"{case.name}/{file}" + (f":{line}:" if line else ":")
    assert any(wanted in p and fragment in p for p in problems), problems


def test_every_problem_in_one_run_sorted(capsys: pytest.CaptureFixture[str]) -> None:
    code = run_cli("validate", str(DATA / "bad-folders" / "errors-in-two-files"))
    err = capsys.readouterr().err
    assert code == 3
    assert err.index("a.yaml:5:") < err.index("b.yaml:4:")
    assert "2 problems found; nothing was contacted." in err
    assert "Traceback" not in err


@pytest.mark.parametrize("case", SINGLE[:10] + FOLDERS[:3], ids=lambda p: p.name)
def test_cli_exit_code_three_without_traceback(
    case: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile_file = case / "PROFILE"
    args = ["validate", str(case)]
    if profile_file.exists():
        args += ["--profile", profile_file.read_text().strip()]
    assert run_cli(*args) == 3
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    assert re.search(r":\d+(:\d+)?: ", captured.err)


def test_json_problems(capsys: pytest.CaptureFixture[str]) -> None:
    code = run_cli("validate", str(DATA / "bad" / "16-unknown-spec-field.yaml"), "--format", "json")
    import json

    report = json.loads(capsys.readouterr().out)
    assert code == 3
    assert report["valid"] is False
    (problem,) = report["problems"]
    assert (problem["line"], problem["column"]) == (8, 5)
    assert "did you mean 'image'" in problem["message"]


def test_oversized_file(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * (10 * 1024 * 1024 + 1) + "\n")
    problems = _problems(big)
    assert any("limited to 10 MiB" in p for p in problems)


def test_bad_flag_is_invalid_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("validate", "--no-such-flag") == 3
    assert "No such option" in capsys.readouterr().err


def test_missing_path(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert run_cli("validate", str(tmp_path / "nowhere")) == 3
    assert "no such file or folder" in capsys.readouterr().err
