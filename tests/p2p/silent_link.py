"""Three real hosts with one link that the test can make silent: the setting of the silent-link tests
(docs/p2p.md, pitfall 17) in p2p and in the node's catch-up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from p2p.service import P2PService
from tests.adversary.blackhole import BlackholeProxy
from tests.p2p.helpers import running_nodes
from tests.p2p.test_p2p_reqresp import serve

# Requests time out (2 s) long before the gossip stall detector drops a silent link (60 s), so what ends a
# wait on the silent link is the request's own bound, not the detector.
SILENT_LINK_CONFIG: dict[str, Any] = {"request_timeout_s": 2.0, "peer_write_timeout_s": 60.0}


@asynccontextmanager
async def far_peer_behind_proxy(seed: str, **config_changes: Any,
                                ) -> AsyncIterator[tuple[P2PService, P2PService, P2PService, BlackholeProxy]]:
    """(client, near, far, proxy): three serving hosts; `client` and `near` dial each other, `far` dials `near`,
    and `client` reaches `far` only through `proxy`, which the test cuts (silent: no reset) and heals. The
    proxy serves until the block ends. Configured with SILENT_LINK_CONFIG, then `config_changes`."""
    config_changes = {**SILENT_LINK_CONFIG, **config_changes}
    async with running_nodes(2, seed=seed, configure=lambda i, s: serve(s), **config_changes) as (client, near), \
            running_nodes(1, seed=f"{seed}-far", dial=(near.addr,), configure=lambda i, s: serve(s),
                          **config_changes) as (far,), \
            trio.open_nursery() as nursery:
        proxy = BlackholeProxy(int(far.addr.split("/tcp/")[1].split("/")[0]))
        await nursery.start(proxy.serve)
        client.add_peer(f"/ip4/127.0.0.1/tcp/{proxy.port}/p2p/{far.peer_id}")
        try:
            yield client, near, far, proxy
        finally:
            nursery.cancel_scope.cancel()
