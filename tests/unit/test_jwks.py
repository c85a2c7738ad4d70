"""The provider's signing keys read defensively, and the key an id_token names."""

from __future__ import annotations

import pytest
import requests

from ts_notebook.emulator.keys import shared_signing_key
from ts_notebook.errors import OAuthError
from ts_notebook.jwks import parse_jwks, pick_key


def reply(body: str) -> requests.Response:
    resp = requests.Response()
    resp._content, resp.status_code = body.encode(), 200
    return resp


@pytest.fixture(scope="module")
def jwk() -> dict:
    import json

    return json.loads(json.dumps(shared_signing_key().public_jwk()))


@pytest.mark.parametrize(
    "body", ["[]", "{}", '{"keys": "x"}', '{"keys": [1, "k", {"kty": "EC"}]}', '"text"', "not json"]
)
def test_a_reply_without_a_usable_rsa_key_is_invalid_id_token(body):
    with pytest.raises(OAuthError) as caught:
        parse_jwks(reply(body))
    assert caught.value.error == "invalid_id_token"


def test_unusable_entries_are_skipped_not_fatal(jwk):
    import json

    keys = parse_jwks(reply(json.dumps({"keys": [{"kty": "RSA", "n": "broken"}, {**jwk, "use": "enc"}, jwk]})))
    assert [k.key_id for k in keys] == [jwk["kid"]]


def test_a_kid_picks_its_key_and_no_kid_picks_only_a_single_key(jwk):
    import json

    one = parse_jwks(reply(json.dumps({"keys": [jwk]})))
    two = parse_jwks(reply(json.dumps({"keys": [jwk, {**jwk, "kid": "other"}]})))
    assert pick_key(one, jwk["kid"]) is one[0] and pick_key(one, "unknown") is None
    assert pick_key(one, None) is one[0]
    assert pick_key(two, None) is None  # never a guess among several
    assert pick_key(two, "other").key_id == "other"
