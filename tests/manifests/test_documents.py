"""The YAML reader: YAML 1.2 core types, anchors, positions recovered on demand."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.errors import InputError
from reconciler.manifests.documents import SourceMap, parse_documents, read_documents


def _read(tmp_path: Path, text: str, name: str = "m.yaml") -> list[object]:
    path = tmp_path / name
    path.write_text(text)
    return [d.data for d in read_documents(path, name)]


def test_core_schema_types(tmp_path: Path) -> None:
    (data,) = _read(
        tmp_path,
        "a: 1\nb: 1.5\nc: true\nd: ~\ne: yes\nf: '1'\ng: 0x10\n"
        "h: 2024-01-01\ni: !!str 7\nj: .inf\n",
    )
    assert data == {
        "a": 1,
        "b": 1.5,
        "c": True,
        "d": None,
        "e": "yes",  # YAML 1.2: yes/no/on/off are text, not booleans
        "f": "1",
        "g": 16,
        "h": "2024-01-01",  # no timestamps: versions and dates stay text
        "i": "7",
        "j": float("inf"),
    }


def test_several_documents_and_empty_ones(tmp_path: Path) -> None:
    docs = read_documents(_write(tmp_path, "a: 1\n---\n---\n# only a comment\n---\nb: 2\n"), "m")
    assert [d.data for d in docs] == [{"a": 1}, {"b": 2}]
    assert [d.index for d in docs] == [0, 3]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return path


def test_anchors_aliases_and_merge_keys(tmp_path: Path) -> None:
    (data,) = _read(tmp_path, "base: &b {image: x, cmd: [sh]}\nuse:\n  <<: *b\n  image: y\n")
    assert data == {"base": {"image": "x", "cmd": ["sh"]}, "use": {"image": "y", "cmd": ["sh"]}}


def test_positions_are_recovered_for_keys_and_values(tmp_path: Path) -> None:
    path = _write(tmp_path, "a: 1\n---\nspec:\n  transform:\n    cmd: [sh, -c]\n")
    positions = SourceMap.of(path, "m.yaml")
    assert positions.find(1, ("spec", "transform", "cmd", 1)) == (5, 15)
    assert positions.find(1, ("spec", "transform"), key=True) == (4, 3)
    # A path that does not exist resolves to its nearest ancestor.
    assert positions.find(1, ("spec", "transform", "image")) == (5, 5)


def test_json_file_with_duplicate_key(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text('{\n  "a": 1,\n  "a": 2\n}\n')
    with pytest.raises(InputError) as caught:
        read_documents(path, "p.json")
    (problem,) = caught.value.problems
    assert (problem.line, problem.column) == (3, 3)
    assert "duplicate key 'a'" in problem.message


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="contains it"):
        _read(tmp_path, "a: &a [1, *a]\n")


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfa: 1\n")
    assert read_documents(path, "bom.yaml")[0].data == {"a": 1}


def test_nesting_past_the_bound_is_refused_where_it_passes_it_not_at_the_end(
    tmp_path: Path,
) -> None:
    # The parser is stopped at the 101st level: libyaml's scanner slows with the square
    # of the flow nesting, so reading on first (100,000 brackets: 30 s) was a way to hold
    # a validate job or a serve worker for hours. Unclosed brackets prove it stopped: had
    # it read on, the error would be the syntax error at the end.
    with pytest.raises(InputError) as raised:
        _read(tmp_path, "a: 1\nb: " + "[" * 150 + "\n")
    (problem,) = raised.value.problems
    assert "more than 100 levels deep" in problem.message
    assert problem.line == 2


def test_a_hundred_levels_are_read_and_a_hundred_and_one_are_not(tmp_path: Path) -> None:
    assert _read(tmp_path, "[" * 100 + "]" * 100 + "\n")
    with pytest.raises(InputError, match="more than 100 levels deep"):
        _read(tmp_path, "[" * 101 + "]" * 101 + "\n")


def test_bytes_from_an_archive_meet_a_manifest_files_bounds() -> None:
    assert parse_documents(b"name: equities\nversion: 1.0.0\n", "manifest.yaml") == [
        {"name": "equities", "version": "1.0.0"}
    ]
    bomb = "a0: &a0 [q,q,q,q,q,q,q,q,q,q]\n" + "".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9)
    )
    for raw, said in (
        (bomb.encode(), "more than 100,000 values"),
        (b"x: " + b"[" * 50_000 + b"]" * 50_000, "more than 100 levels deep"),
        (b"\xff", "not UTF-8"),
    ):
        with pytest.raises(InputError, match=said):
            parse_documents(raw, "m")
