"""The diff: the project's own Change values, sets, ignored paths, secrets never shown."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from reconciler.diff import Change, DiffRules, diff, dotted, equal, path_of
from reconciler.manifests.values import REDACTED, Sensitive


def test_changes_adds_and_removes_with_paths() -> None:
    desired = {"version": "1.1.0", "env": {"rt": {"LOG": "info"}}, "cmd": ["sh", "-c"]}
    observed = {"version": "1.0.0", "env": {"rt": {"OLD": "x"}}, "cmd": ["sh"]}
    assert diff(desired, observed, prefix=("spec",)) == [
        Change(("spec", "cmd", 1), "add", None, "-c"),
        Change(("spec", "env", "rt", "LOG"), "add", None, "info"),
        Change(("spec", "env", "rt", "OLD"), "remove", "x", None),
        Change(("spec", "version"), "change", "1.0.0", "1.1.0"),
    ]


def test_equal_specs_have_no_changes() -> None:
    spec = {"transform": {"image": "busybox", "cmd": ["sh"]}, "datumTries": 3}
    assert diff(spec, json.loads(json.dumps(spec))) == []
    assert equal(spec, dict(spec))


def test_unordered_lists_compare_as_sets() -> None:
    rules = DiffRules(unordered=[("transform", "secrets")])
    a = {"transform": {"secrets": [{"name": "a"}, {"name": "b"}], "cmd": ["x", "y"]}}
    b = {"transform": {"secrets": [{"name": "b"}, {"name": "a"}], "cmd": ["x", "y"]}}
    assert diff(a, b, rules) == []
    c = {"transform": {"secrets": [{"name": "a"}, {"name": "b"}], "cmd": ["y", "x"]}}
    assert diff(c, a, rules) != []  # cmd is ordered


def test_ignored_paths_and_globs() -> None:
    rules = DiffRules(ignored=[("metadata", "createdAt"), ("status", "*")])
    a = {"metadata": {"name": "x", "createdAt": "now"}, "status": {"state": "Running"}}
    b = {"metadata": {"name": "x", "createdAt": "then"}, "status": {"state": "Error"}}
    assert diff(a, b, rules) == []


def test_sensitive_values_compare_by_digest_and_never_show() -> None:
    old = {"data": {"password": Sensitive("${env:P}", "old-secret")}}
    new = {"data": {"password": Sensitive("${env:P}", "new-secret")}}
    same = {"data": {"password": Sensitive("${env:P}", "old-secret")}}
    assert diff(old, same) == []
    (change,) = diff(new, old)
    assert change == Change(("data", "password"), "change", REDACTED, REDACTED)
    text = json.dumps([c.to_json() for c in diff(new, {"data": {}})])
    assert "secret" not in text and REDACTED in text


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=10,
)


@given(json_values, json_values)
def test_no_changes_exactly_when_equal(a: object, b: object) -> None:
    assert (diff(a, b) == []) == (a == b)


def test_clear_text_shown_back_where_the_manifest_holds_a_reference_compares_by_digest() -> None:
    desired = {"env": {"TOKEN": Sensitive("${env:T}", "the-token"), "MODE": "fast"}}
    assert equal(desired, {"env": {"TOKEN": "the-token", "MODE": "fast"}})
    changes = diff(desired, {"env": {"TOKEN": "an-old-token", "MODE": "fast"}})
    assert changes == [Change(("env", "TOKEN"), "change", REDACTED, REDACTED)]
    assert "an-old-token" not in json.dumps([c.to_json() for c in changes])


# --- the quick comparison never hides a change ------------------------------------------

KEYS = st.sampled_from(["a", "b", "env", "secrets", "c1", "c2"])
tree_values = st.recursive(
    st.none()
    | st.integers(-2, 2)
    | st.sampled_from(["x", "y"])
    | st.builds(lambda v: Sensitive("${env:S}", v), st.sampled_from(["x", "y"])),
    lambda children: (
        st.lists(children, max_size=3)
        | st.lists(children, max_size=3).map(tuple)
        | st.dictionaries(KEYS, children, max_size=3)
    ),
    max_leaves=12,
)
RULES = DiffRules(
    unordered=(("secrets",), ("a", "*")),
    ignored=(("b",), ("env", "c?"), ("*", "*", "a")),
)


def _references(value: object, path: tuple[object, ...] = ()) -> set[tuple[object, ...]]:
    if isinstance(value, Sensitive):
        return {path}
    if isinstance(value, dict):
        return set().union(*(_references(v, (*path, k)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return set().union(*(_references(v, (*path, i)) for i, v in enumerate(value)))
    return set()


def _oracle(
    value: object,
    path: tuple[object, ...] = (),
    hashed: frozenset[tuple[object, ...]] = frozenset(),
) -> object:
    """The rules applied the plain way, with no shortcut: what equality must mean. Clear
    text where the other side holds a reference counts by its digest."""
    from fnmatch import fnmatchcase

    def matches(at: tuple[object, ...], patterns: tuple[tuple[str, ...], ...]) -> bool:
        return any(
            len(p) == len(at)
            and all(
                q == "*" or (isinstance(k, str) and fnmatchcase(k, q))
                for q, k in zip(p, at, strict=True)
            )
            for p in patterns
        )

    if isinstance(value, Sensitive):
        return ("sensitive", value.digest)
    if isinstance(value, str) and path in hashed:
        return ("sensitive", Sensitive("${env:S}", value).digest)
    if isinstance(value, dict):
        return {
            k: _oracle(v, (*path, k), hashed)
            for k, v in value.items()
            if not matches((*path, k), tuple(RULES.ignored))
        }
    if isinstance(value, list | tuple):
        items = [_oracle(v, (*path, i), hashed) for i, v in enumerate(value)]
        if matches(path, tuple(RULES.unordered)):
            items.sort(key=lambda item: json.dumps(item, sort_keys=True, default=str))
        return items
    return value


def _plain(value: object) -> object:
    """The observed side: what a platform shows back, clear text for references."""
    if isinstance(value, Sensitive):
        return value.reveal()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@given(tree_values, tree_values)
def test_equal_exactly_when_equal_under_the_rules(desired: object, other: object) -> None:
    observed = _plain(other)
    hashed = frozenset(_references(desired))
    expected = _oracle(desired) == _oracle(observed, hashed=hashed)
    assert equal(desired, observed, RULES) == expected
    assert (diff(desired, observed, RULES) == []) == expected


_FIELDS = st.text(alphabet="abcXYZ_-/0", min_size=1, max_size=6)


@given(st.lists(st.one_of(_FIELDS, st.integers(0, 20)), max_size=6))
def test_a_rule_field_written_as_text_is_read_as_its_path(path: list[str | int]) -> None:
    assert path_of(dotted(tuple(path))) == tuple(path)


@given(st.dictionaries(st.text(alphabet="ab.[]0 ", min_size=1, max_size=5), st.integers()))
def test_a_saved_plan_with_any_keys_reads_back_exactly(env: dict[str, int]) -> None:
    """Plan files hold paths as text; keys with dots or brackets (labels such as
    app.kubernetes.io/name) must read back to the same text, or a signed plan would
    look edited."""
    changes = [c.to_json() for c in diff({"env": env}, {"env": {}}, prefix=("spec",))]
    for written in changes:
        assert Change((written["path"],), written["op"]).to_json()["path"] == written["path"]


def test_paths_are_tuples_of_keys_and_indices() -> None:
    (change,) = diff({"cmd": ["a", "b"]}, {"cmd": ["a", "c"]}, prefix=("spec", "transform"))
    assert change.path == ("spec", "transform", "cmd", 1)
    assert change.text == "spec.transform.cmd[1]"
    assert change.under(("spec", "transform")) and not change.under(("spec", "input"))
    assert path_of("spec.transform.cmd[1]") == ("spec", "transform", "cmd", 1)


def test_a_sensitive_value_equals_its_digest_as_the_inventory_keeps_it() -> None:
    """Fields compared with the spec as last applied (`KindRules.remembered`) meet
    sensitive values stored as their digests: equal when the value is the same."""
    token = Sensitive("${env:T}", "the-token")
    assert equal({"env": {"T": token}}, {"env": {"T": token.digest}})
    (change,) = diff({"env": {"T": token}}, {"env": {"T": Sensitive("${env:T}", "old").digest}})
    assert (change.old, change.new) == (REDACTED, REDACTED)


def test_an_immutable_field_blocks_the_change_and_says_why() -> None:
    """A plugin may declare a field that cannot change on its platform: the plan fails
    at that resource, naming the field and the plugin's reason."""
    from reconciler.providers.base import FieldPolicy, KindRules, Policy, classify_by_fields

    rules = KindRules(fields=(FieldPolicy("spec.zone", Policy.IMMUTABLE, "zones are fixed"),))
    changes = diff({"zone": "b", "size": 2}, {"zone": "a", "size": 1}, prefix=("spec",))
    decision = classify_by_fields(rules, changes)
    assert decision.action == "noop"
    assert decision.blocked == "spec.zone cannot be changed on the platform: zones are fixed"
