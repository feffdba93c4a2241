"""The public error class: `torua.ToruaError`, with the old misspelt name kept
as a deprecated alias so code written against 0.3.0 keeps working."""

from __future__ import annotations

import pytest

import torua
from torua.protocol import errors


def test_torua_error_is_exported_under_its_right_name():
    assert "ToruaError" in torua.__all__
    assert torua.ToruaError is errors.ToruaError
    with pytest.raises(torua.ToruaError) as caught:
        raise errors.ToruaError("not_found", "no such key")
    assert caught.value.http_status == 404


@pytest.mark.parametrize("module", [torua, errors])
def test_the_old_name_still_works_and_warns(module):
    with pytest.warns(DeprecationWarning, match="ToruaError"):
        alias = module.TouraError
    assert alias is errors.ToruaError


def test_unknown_names_still_raise_attribute_error():
    with pytest.raises(AttributeError):
        torua.NoSuchThing  # noqa: B018
