"""An answer rendered once (`render_json`, for the response and the stored replay) goes
out byte for byte, headers included, as `json_response` would send it."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.responses import JSONResponse

from app.platform.web.responses import json_response, render_json, rendered_json_response

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(st.characters(codec=None, categories=None), max_size=8),
)
_BODIES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(body=_BODIES, status=st.sampled_from([200, 201, 422]))
def test_rendered_answer_is_json_response_byte_for_byte_when_body_is_any_json(
    body: Any, status: int
) -> None:
    headers = {"Location": "/v1/x"}
    try:
        expected = json_response(status, body, headers)
    except ValueError:  # NaN, infinities, lone surrogates: JSONResponse refuses them
        assert render_json(body) is None
        return
    rendered = render_json(body)
    assert rendered is not None
    sent = rendered_json_response(status, rendered, headers)
    assert sent.body == expected.body
    assert sent.raw_headers == expected.raw_headers
    assert sent.status_code == expected.status_code


def test_render_json_is_none_when_json_response_cannot_render_the_body() -> None:
    body = {"when": object()}
    with pytest.raises(TypeError):
        JSONResponse(body)
    assert render_json(body) is None
