"""Admission-path pieces bench: each per-transaction piece the admit round cut, old way against new way,
alternating in this one process (CPU per transaction, `time.process_time`; the lowest of `--rounds`).

    python -m bench.admission [--txs 2000] [--rounds 5]

- sign-bytes: `core.signing.sign_bytes` (the field list packed again) against `Transaction.sign_bytes` (cut
  from the kept encoding); once per signature check, every transaction on every node.
- payload decode: the kind's `decode` of the payload against `vm.txs.decoded_payload` once it is kept on the
  transaction (admission decodes; execution, the builder's result bound and the model pre-filter reuse it).
  Transfers and tiny inferences (digits_int8, 64-byte input).
- committed account read: a fresh state view per read (a LevelDB get of the latest version, then the
  account) against the mempool's view per height (`node.service._MempoolState.account`, followed); genesis
  accounts on a real LevelDB node, each read once per round.
- mempool add: the trio Event renewed on every add against only when the mempool was empty (its one
  waiter, `wait_for_txs`); a sender's head key in the ready index removed and inserted again on each of its
  later nonces (a sorted list of one key per sender) against a tuple comparison that finds it unchanged.
- mempool projected account: the sender's account as its pending predecessors leave it, once per add and per
  pending transaction of a recheck: `Account(Amount(...), Nonce(...))` (both range checks) against
  `node.mempool._projected` (a balance in range by construction, the transaction's Nonce as it is).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import trio
from sortedcontainers import SortedList

from core.keys import PrivateKey
from core.signing import DOMAIN_TX, sign_bytes
from core.tensor import DType, Tensor
from core.tx import Transaction
from core.types import Amount, Hash32, Nonce
from node.config import NodeConfig, RPCSection
from node.home import init_home
from node.mempool import _projected
from node.service import Node, _MempoolState
from tools.genesis import DEFAULT_SEED_PHRASE, make_genesis
from vm.genesis import parse_genesis
from vm.sandbox.executor import LocalExecutor
from vm.state import Account
from vm.txs import PAYLOAD_TYPES, Infer, Transfer, build_tx, decoded_payload

SENDERS = 256
FIRST_ACCOUNT = 4


def per_item(fn: Callable[[Any], Any], items: Sequence[Any]) -> float:
    t0 = time.process_time()
    for item in items:
        fn(item)
    return 1e6 * (time.process_time() - t0) / len(items)


def fresh(txs: Sequence[Transaction]) -> list[Transaction]:
    """The transactions as a peer's batch brings them: decoded, their encodings kept, nothing derived yet."""
    out = [Transaction.decode(tx.encode()) for tx in txs]
    for tx in out:
        tx.hash  # noqa: B018 - computed before any piece is timed, as the gossip hook does
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--txs", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    n = args.txs
    genesis = make_genesis(4, accounts=FIRST_ACCOUNT + SENDERS)
    chain_id = parse_genesis(genesis).chain_id
    keys = [PrivateKey.derive(DEFAULT_SEED_PHRASE, "account", FIRST_ACCOUNT + i) for i in range(SENDERS)]
    model = Hash32(bytes(next(m.model_id for m in parse_genesis(genesis).models if m.meta.name == "digits_int8")))
    transfers = [build_tx(keys[i % SENDERS], Transfer(keys[0].address, Amount(1)), chain_id=chain_id,
                          nonce=i // SENDERS, gas_limit=1000, fee=1000) for i in range(n)]
    infers = [build_tx(keys[i % SENDERS], Infer(model, (Tensor(DType.UINT8, (1, 64), bytes((i + j) % 17 for j in
                       range(64))),), Amount(0)), chain_id=chain_id, nonce=i // SENDERS, gas_limit=50_000,
                       fee=50_000) for i in range(n)]
    lines: dict[str, tuple[list[float], list[float]]] = {}

    def pair(name: str, before: float, after: float) -> None:
        lines.setdefault(name, ([], []))
        lines[name][0].append(before)
        lines[name][1].append(after)

    with tempfile.TemporaryDirectory(prefix="bench-admission-") as tmp:
        home = init_home(Path(tmp) / "node", genesis, config=NodeConfig(rpc=RPCSection(enabled=False)),
                         node_key_seed=b"bench", generate_validator_key=False)
        node = Node(home, executor=LocalExecutor())
        try:
            addresses = [key.address for key in keys]
            events = [trio.Event()]

            def renew(_: object) -> None:
                events[0].set()
                events[0] = trio.Event()

            pending = {b"x": None}
            ready = SortedList((-i, i, bytes(a)) for i, a in enumerate(addresses))
            ready_keys = [(-i, i, bytes(a)) for i, a in enumerate(addresses)]

            def move(key: tuple[int, int, bytes]) -> None:
                ready.remove(key)
                ready.add(key)

            same = [(k, (k[0], k[1], k[2])) for k in ready_keys]
            for _ in range(args.rounds):
                txs = fresh(transfers)
                pair("sign-bytes", per_item(lambda tx: sign_bytes(DOMAIN_TX, tx), txs),
                     per_item(lambda tx: tx.sign_bytes(), txs))
                for kind, source in (("transfer", transfers), ("infer", infers)):
                    txs = fresh(source)
                    before = per_item(lambda tx: PAYLOAD_TYPES[tx.kind].decode(tx.payload), txs)
                    per_item(decoded_payload, txs)  # admission: the first decode, kept
                    pair(f"payload decode again ({kind})", before, per_item(decoded_payload, txs))
                followed = _MempoolState(node.app)
                followed.follow(lambda: 0)
                pair("committed account read", per_item(lambda a: node.app.view().account(a), addresses),
                     per_item(followed.account, addresses))
                pair("mempool add: waiters' event", per_item(renew, addresses),
                     per_item(lambda _: len(pending) == 1, addresses))
                pair("mempool add: head's ready key", per_item(move, ready_keys), per_item(lambda kk: kk[0] != kk[1], same))
                pair("mempool projected account",
                     per_item(lambda tx: Account(Amount(max(0, 10**12 - tx.fee)), Nonce(tx.nonce)), transfers),
                     per_item(lambda tx: _projected(10**12 - tx.fee, tx.nonce), transfers))
        finally:
            node.close()
    print(f"admission pieces: {n:,} transactions, {SENDERS} senders; CPU per use, lowest of {args.rounds} rounds")
    print(f"  {'piece':<34} {'before':>9} {'after':>9}   ratio")
    for name, (olds, news) in lines.items():
        b, a = min(olds), min(news)
        print(f"  {name:<34} {b:7.2f} us {a:7.2f} us   {a / b:5.2f}")


if __name__ == "__main__":
    main()
