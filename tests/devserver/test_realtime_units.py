"""The engine's realtime parts on their own: the broadcaster routes by channel and topic and cuts
off a subscriber that cannot keep up; tokens are HS256 JWTs of the server's shape, refused when
expired (by the engine's clock), tampered with, or from another issuer."""

from __future__ import annotations

import jwt
import pytest
from inngest_mw_dev.realtime import (
    ISSUER,
    QUEUE_SIZE,
    TOKEN_TTL_S,
    Broadcaster,
    TokenError,
    Tokens,
)

ZERO = "00000000-0000-0000-0000-000000000000"


async def test_messages_reach_exactly_the_subscribers_of_their_channel_and_topic() -> None:
    hub = Broadcaster()
    a = hub.subscribe({("c", "x")})
    b = hub.subscribe({("c", "x"), ("c", "y")})
    assert hub.publish("c", "x", {"n": 1}) == 2
    assert hub.publish("c", "y", {"n": 2}) == 1
    assert hub.publish("other", "x", {"n": 3}) == 0
    hub.remove(b, {("c", "x")})
    hub.add(a, {("c", "y")})
    hub.publish("c", "x", {"n": 4})
    hub.publish("c", "y", {"n": 5})
    drained = [[q.get_nowait() for _ in range(q.qsize())] for q in (a.queue, b.queue)]
    assert drained == [[{"n": 1}, {"n": 4}, {"n": 5}], [{"n": 1}, {"n": 2}, {"n": 5}]]
    hub.close(a)
    hub.close(b)
    assert hub.publish("c", "y", {"n": 6}) == 0


async def test_a_subscriber_that_falls_behind_is_cut_off_not_the_others() -> None:
    hub = Broadcaster()
    slow, fast = hub.subscribe({("c", "t")}), hub.subscribe({("c", "t")})
    for n in range(QUEUE_SIZE):
        hub.publish("c", "t", {"n": n})
        fast.queue.get_nowait()
    assert not slow.dropped
    hub.publish("c", "t", {"n": "one too many"})
    assert (slow.dropped, fast.dropped) == (True, False)
    assert fast.queue.get_nowait() == {"n": "one too many"}
    items = [slow.queue.get_nowait() for _ in range(slow.queue.qsize())]
    assert items[-1] is None  # its connection ends here
    assert hub.publish("c", "t", {}) == 1


def test_a_token_carries_the_servers_claims_and_lasts_a_minute_by_the_engine_clock() -> None:
    now = [1_800_000_000.0]
    tokens = Tokens(lambda: now[0])
    token = tokens.mint([{"kind": "run", "channel": "c", "name": "t"}])
    claims = jwt.decode(token, options={"verify_signature": False})
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert (claims["iss"], claims["exp"] - claims["iat"], claims["publish"]) == (
        ISSUER,
        TOKEN_TTL_S,
        False,
    )
    assert claims["topics"] == [{"kind": "run", "channel": "c", "name": "t", "env_id": ZERO}]
    assert tokens.verify(token).topics == {("c", "t")}
    now[0] += TOKEN_TTL_S
    with pytest.raises(TokenError, match="expired"):
        tokens.verify(token)


def test_a_tampered_foreign_or_unsigned_token_is_refused() -> None:
    tokens = Tokens(lambda: 1_800_000_000.0)
    token = tokens.mint([{"kind": "run", "channel": "c", "name": "t"}])
    head, body, sig = token.split(".")
    with pytest.raises(TokenError, match="not valid"):
        tokens.verify(f"{head}.{body}.{sig[::-1]}")
    with pytest.raises(TokenError, match="not valid"):
        Tokens(lambda: 1_800_000_000.0).verify(token)  # another engine's (or start's) secret
    claims = jwt.decode(token, options={"verify_signature": False})
    with pytest.raises(TokenError, match="not valid"):
        tokens.verify(jwt.encode({**claims, "iss": "elsewhere"}, "k" * 32, algorithm="HS256"))
    with pytest.raises(TokenError, match="not valid"):
        tokens.verify(jwt.encode(claims, "", algorithm="none"))
