"""${env:...} and ${file:...}: resolved, and never shown in clear anywhere."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from reconciler.manifests import LoadOptions, load
from reconciler.manifests.values import REDACTED, Resolver, Sensitive, VariableError
from reconciler.providers.pachyderm.kinds import SecretSpec

SECRET = "s3cr3t-value"


def test_sensitive_forms_are_redacted() -> None:
    value = Sensitive("${env:X}", SECRET)
    percent = "%s" % (value,)  # noqa: UP031 (the %-form is what is tested)
    for shown in (str(value), repr(value), f"{value}", f"{value:>20}", percent):
        assert SECRET not in shown
        assert REDACTED in shown
    with pytest.raises(TypeError):
        json.dumps(value)
    with pytest.raises(TypeError):
        pickle.dumps(value)
    assert value.reveal() == SECRET
    assert value.digest.startswith("sha256:") and SECRET not in value.digest


def test_model_dumps_redact_and_manifest_form_keeps_the_reference() -> None:
    spec = SecretSpec(data={"password": Sensitive("${env:DB_PASSWORD}", SECRET)})
    assert SECRET not in spec.model_dump_json()
    assert REDACTED in spec.model_dump_json()
    assert SECRET not in repr(spec)
    assert spec.to_data() == {"data": {"password": "${env:DB_PASSWORD}"}}


def test_env_and_file_resolution(tmp_path: Path) -> None:
    (tmp_path / "token.txt").write_text("from-file")
    resolver = Resolver(base=tmp_path, env={"USER_NAME": "ada"})
    value = resolver.text("postgres://${env:USER_NAME}:${file:token.txt}@db")
    assert isinstance(value, Sensitive)
    assert value.reveal() == "postgres://ada:from-file@db"


def test_escapes_and_shell_syntax_are_left_alone(tmp_path: Path) -> None:
    resolver = Resolver(base=tmp_path, env={})
    assert resolver.text("echo ${HOME} ${X:-y}") == "echo ${HOME} ${X:-y}"
    assert resolver.text("literal $${env:NOT_A_REFERENCE}") == "literal ${env:NOT_A_REFERENCE}"


def test_missing_variable(tmp_path: Path) -> None:
    with pytest.raises(VariableError, match="MISSING_ONE is not set"):
        Resolver(base=tmp_path, env={}).text("${env:MISSING_ONE}")


def test_check_only_does_not_read(tmp_path: Path) -> None:
    value = Resolver(base=tmp_path, env={}, check_only=True).text("${env:MISSING_ONE}")
    assert isinstance(value, Sensitive)
    with pytest.raises(VariableError):
        value.reveal()


def test_secret_manifest_end_to_end(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(
        "apiVersion: pachyderm/v1\nkind: Secret\nmetadata: {name: db}\n"
        "spec:\n  data:\n    password: ${env:DB_PASSWORD}\n"
    )
    manifests = load(tmp_path, LoadOptions(env={"DB_PASSWORD": SECRET}))
    (secret,) = manifests.resources
    assert isinstance(secret.spec, SecretSpec)
    password = secret.spec.data["password"]
    assert isinstance(password, Sensitive) and password.reveal() == SECRET
    assert SECRET not in json.dumps(secret.to_data())
    # Without the variable, --no-variables still validates the form.
    load(tmp_path, LoadOptions(env={}, resolve_variables=False))
