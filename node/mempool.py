"""The mempool: transactions waiting for a block, checked once on entry, ordered for the next proposal.

Entry checks mirror the VM's inclusion rules (vm.execute.inclusion_error) so that what we propose is
includable: chain id, gas cap, fee >= gas_limit x min_gas_price, signature (once per node, `SigCache`),
nonce not below the account's, and the sender's balance covering the fees of all its pending transactions up
to this one. A transaction may wait up to `max_nonce_gap` nonces ahead of its account.

Order for a proposal: the highest fee per gas first, each sender's transactions in nonce order (a sender's
next transaction competes only once its predecessor is in). Limits: count, bytes, per sender; when full, a
better-paying transaction evicts the cheapest tail (a sender's last nonce, so no gap opens).

After each block `update` drops what was committed, what became stale (nonce, balance) and what aged out.

Disagreement (docs/design.md §2.6): when this node's validation of a block fails on a transaction, the
transaction is backed off (skipped in our proposals for 2^k heights); after failures under three distinct
proposers it is evicted with `rejected: validators disagreed`, which the submitter sees.
"""

from __future__ import annotations

import enum
import heapq
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Protocol

import trio

from core.errors import DecodeError
from core.tx import Transaction
from core.types import Address, Hash32
from node.config import MempoolSection
from node.sigcache import SigCache
from vm.txs import PAYLOAD_TYPES

logger = logging.getLogger(__name__)

DISAGREEMENT_PROPOSERS = 3
REJECTED_DISAGREED = "rejected: validators disagreed"
_MAX_BACKOFF_HEIGHTS = 64
_FAILURE_MEMORY = 10_000


class RemovalReason(enum.Enum):
    COMMITTED = "committed"
    DISAGREED = REJECTED_DISAGREED
    REPLACED = "replaced by a transaction with a higher fee"
    EVICTED = "evicted: mempool full"
    EXPIRED = "expired: not included in time"
    STALE_NONCE = "dropped: nonce already used"
    INSUFFICIENT_BALANCE = "dropped: balance no longer covers the fee"


class AccountInfo(Protocol):
    balance: int
    nonce: int


class MempoolState(Protocol):
    """What the mempool reads from the committed state (the node adapts the VM to this)."""

    def account(self, address: Address) -> AccountInfo: ...

    def min_gas_price(self) -> int: ...

    def max_tx_gas(self) -> int: ...


@dataclass(frozen=True, slots=True)
class AddResult:
    tx_hash: Hash32
    accepted: bool
    reason: str = ""  # one line: why refused, or "already in the mempool"
    added: bool = False  # newly added (the caller gossips it)


@dataclass(slots=True)
class _Entry:
    tx: Transaction
    tx_hash: Hash32
    sender: Address
    size: int
    added_height: int
    seq: int
    price: Fraction = field(init=False)

    def __post_init__(self) -> None:
        self.price = Fraction(self.tx.fee, self.tx.gas_limit)


@dataclass(slots=True)
class _Sender:
    nonce: int  # the account's next nonce at the last check
    balance: int
    txs: dict[int, _Entry] = field(default_factory=dict)  # by nonce


@dataclass(slots=True)
class _Failure:
    proposers: set[bytes] = field(default_factory=set)
    backoff_until: int = 0


RemovalListener = Callable[[Hash32, Transaction, RemovalReason], None]


class Mempool:
    def __init__(self, chain_id: str, state: MempoolState, config: MempoolSection | None = None,
                 sig_cache: SigCache | None = None) -> None:
        self.chain_id = chain_id
        self.config = config or MempoolSection()
        self.sig_cache = sig_cache if sig_cache is not None else SigCache(self.config.sig_cache_size)
        self._state = state
        self._by_hash: dict[bytes, _Entry] = {}
        self._senders: dict[bytes, _Sender] = {}
        self._bytes = 0
        self._seq = 0
        self._height = 0
        self._failures: dict[bytes, _Failure] = {}
        self._listeners: list[RemovalListener] = []
        self._changed = trio.Event()

    # ---------------------------------------------------------------- inspection

    def __len__(self) -> int:
        return len(self._by_hash)

    def __contains__(self, tx_hash: object) -> bool:
        return tx_hash in self._by_hash

    @property
    def size_bytes(self) -> int:
        return self._bytes

    @property
    def height(self) -> int:
        """The committed height the mempool was last checked against."""
        return self._height

    def get(self, tx_hash: bytes) -> Transaction | None:
        entry = self._by_hash.get(bytes(tx_hash))
        return None if entry is None else entry.tx

    def txs(self) -> Iterator[Transaction]:
        return (e.tx for e in self._by_hash.values())

    def on_removed(self, listener: RemovalListener) -> None:
        """Called for every transaction that leaves the mempool, with the reason."""
        self._listeners.append(listener)

    def is_backed_off(self, tx_hash: bytes) -> bool:
        failure = self._failures.get(bytes(tx_hash))
        return failure is not None and failure.backoff_until > self._height

    # ---------------------------------------------------------------- entry

    def add(self, tx: Transaction, *, size: int | None = None, signature_checked: bool = False) -> AddResult:
        """Check `tx` and keep it if it may be included; never raises for anything the transaction holds.

        `signature_checked`: the caller verified the signature already (a gossiped batch's envelope check);
        it goes into the cache instead of being verified twice.
        """
        tx_hash = tx.hash
        key = bytes(tx_hash)
        if key in self._by_hash:
            return AddResult(tx_hash, True, "already in the mempool")
        failure = self._failures.get(key)
        if failure is not None and len(failure.proposers) >= DISAGREEMENT_PROPOSERS:
            return AddResult(tx_hash, False, REJECTED_DISAGREED)
        reason = self._get_stateless_reason(tx)
        if reason is not None:
            return AddResult(tx_hash, False, reason)
        if signature_checked:
            self.sig_cache.mark_verified(tx_hash)
        elif not self.sig_cache.verify(tx, tx_hash):
            return AddResult(tx_hash, False, "invalid signature")
        sender_addr = tx.sender_address
        sender = self._sender(sender_addr)
        if tx.nonce < sender.nonce:
            return AddResult(tx_hash, False, f"nonce {tx.nonce} already used (account nonce is {sender.nonce})")
        if tx.nonce > sender.nonce + self.config.max_nonce_gap:
            return AddResult(tx_hash, False,
                             f"nonce {tx.nonce} is too far ahead of the account nonce {sender.nonce}")
        entry = _Entry(tx, tx_hash, sender_addr, size if size is not None else len(tx.encode()), self._height,
                       self._next_seq())
        replaced = sender.txs.get(tx.nonce)
        if replaced is not None:
            bump = replaced.price * (100 + self.config.replace_bump_percent) / 100
            if entry.price < bump:
                return AddResult(tx_hash, False,
                                 f"nonce {tx.nonce} already pending; a replacement must raise the fee per gas "
                                 f"by {self.config.replace_bump_percent}%")
        fees = sum(e.tx.fee for n, e in sender.txs.items() if n < tx.nonce) + tx.fee
        if fees > sender.balance:
            return AddResult(tx_hash, False,
                             f"balance {sender.balance} cannot pay the fees of this and earlier pending transactions ({fees})")
        if replaced is None and len(sender.txs) >= self.config.max_txs_per_sender:
            return AddResult(tx_hash, False, f"sender has {len(sender.txs)} pending transactions (the limit)")
        if entry.size > self.config.max_bytes:
            return AddResult(tx_hash, False, "transaction larger than the mempool")
        if replaced is not None:
            self._remove(replaced, RemovalReason.REPLACED)
        if not self._make_room(entry):
            if not sender.txs:
                self._senders.pop(bytes(sender_addr), None)
            return AddResult(tx_hash, False, "mempool is full")
        sender = self._sender(sender_addr)
        sender.txs[tx.nonce] = entry
        self._by_hash[key] = entry
        self._bytes += entry.size
        self._notify()
        return AddResult(tx_hash, True, added=True)

    def _get_stateless_reason(self, tx: Transaction) -> str | None:
        if tx.chain_id != self.chain_id:
            return f"wrong chain id {tx.chain_id!r}"
        if tx.gas_limit <= 0:
            return "gas limit must be positive"
        max_gas = self._state.max_tx_gas()
        if tx.gas_limit > max_gas:
            return f"gas limit {tx.gas_limit} exceeds the per-transaction maximum {max_gas}"
        min_fee = tx.gas_limit * self._state.min_gas_price()
        if tx.fee < min_fee:
            return f"fee {tx.fee} is below gas_limit x min_gas_price = {min_fee}"
        payload_type = PAYLOAD_TYPES.get(tx.kind)  # type: ignore[call-overload]
        if payload_type is None:
            return f"unknown transaction kind {tx.kind}"
        try:
            payload_type.decode(tx.payload)
        except DecodeError as exc:
            return f"malformed payload: {exc}"
        return None

    def _sender(self, address: Address) -> _Sender:
        sender = self._senders.get(bytes(address))
        if sender is None:
            account = self._state.account(address)
            sender = _Sender(int(account.nonce), int(account.balance))
            self._senders[bytes(address)] = sender
        return sender

    def _make_room(self, entry: _Entry) -> bool:
        """Evict cheaper tails until `entry` fits; False (nothing evicted) if it cannot."""
        cfg = self.config
        need_count = len(self._by_hash) + 1 - cfg.max_txs
        need_bytes = self._bytes + entry.size - cfg.max_bytes
        if need_count <= 0 and need_bytes <= 0:
            return True
        tails = sorted(
            (s.txs[max(s.txs)] for s in self._senders.values() if s.txs),
            key=lambda e: (e.price, -e.seq),
        )
        victims: list[_Entry] = []
        freed_count = freed_bytes = 0
        for tail in tails:
            if tail.price >= entry.price or tail.sender == entry.sender:
                continue
            victims.append(tail)
            freed_count += 1
            freed_bytes += tail.size
            if freed_count >= need_count and freed_bytes >= need_bytes:
                break
        if freed_count < need_count or freed_bytes < need_bytes:
            return False
        for victim in victims:
            self._remove(victim, RemovalReason.EVICTED)
        return True

    # ---------------------------------------------------------------- proposal

    def reap(self, *, max_txs: int, max_bytes: int, max_gas: int) -> list[Transaction]:
        """Transactions for our next proposal: executable ones (contiguous nonces from the account's), best
        fee per gas first, senders' nonces in order, within the block's count, byte and gas budgets."""
        heap: list[tuple[Fraction, int, bytes, int]] = []
        for key, sender in self._senders.items():
            first = sender.txs.get(sender.nonce)
            if first is not None and not self.is_backed_off(first.tx_hash):
                heap.append((-first.price, first.seq, key, sender.nonce))
        heapq.heapify(heap)
        out: list[Transaction] = []
        size = gas = 0
        while heap and len(out) < max_txs:
            _, _, key, nonce = heapq.heappop(heap)
            entry = self._senders[key].txs[nonce]
            if size + entry.size > max_bytes or gas + entry.tx.gas_limit > max_gas:
                continue  # this sender's later nonces cannot go without it
            out.append(entry.tx)
            size += entry.size
            gas += entry.tx.gas_limit
            following = self._senders[key].txs.get(nonce + 1)
            if following is not None and not self.is_backed_off(following.tx_hash):
                heapq.heappush(heap, (-following.price, following.seq, key, nonce + 1))
        return out

    # ---------------------------------------------------------------- after a block

    def update(self, height: int, committed: Iterable[Transaction]) -> None:
        """Drop the block's transactions at once (cheap; before the next proposal is built)."""
        self._height = max(self._height, int(height))
        for tx in committed:
            entry = self._by_hash.get(bytes(tx.hash))
            if entry is not None:
                self._remove(entry, RemovalReason.COMMITTED)
            sender = self._senders.get(bytes(tx.sender_address))
            if sender is not None and tx.nonce + 1 > sender.nonce:
                sender.nonce = tx.nonce + 1
                sender.balance = max(0, sender.balance - tx.fee)

    async def recheck(self, *, chunk: int = 256) -> None:
        """Re-read every sender's account and drop what can no longer be included; off the consensus path
        (it yields every `chunk` senders)."""
        height = self._height
        for i, key in enumerate(list(self._senders)):
            if i and i % chunk == 0:
                await trio.lowlevel.checkpoint()
            sender = self._senders.get(key)
            if sender is None:
                continue
            account = self._state.account(Address(key))
            sender.nonce, sender.balance = int(account.nonce), int(account.balance)
            fees = 0
            for nonce in sorted(sender.txs):
                entry = sender.txs[nonce]
                if nonce < sender.nonce:
                    self._remove(entry, RemovalReason.STALE_NONCE)
                    continue
                fees += entry.tx.fee
                if fees > sender.balance:
                    self._remove(entry, RemovalReason.INSUFFICIENT_BALANCE)
                elif height - entry.added_height > self.config.ttl_heights:
                    self._remove(entry, RemovalReason.EXPIRED)
            if not sender.txs:
                self._senders.pop(key, None)

    # ---------------------------------------------------------------- disagreement (docs/design.md §2.6)

    def report_disagreement(self, tx_hash: bytes, proposer: bytes, height: int) -> bool:
        """This node's validation of `proposer`'s block at `height` failed on `tx_hash`.

        Backs the transaction off; after failures under three distinct proposers, evicts it. Returns True
        when it was evicted now.
        """
        key = bytes(tx_hash)
        failure = self._failures.get(key)
        if failure is None:
            failure = self._failures[key] = _Failure()
            while len(self._failures) > _FAILURE_MEMORY:
                del self._failures[next(iter(self._failures))]
        failure.proposers.add(bytes(proposer))
        failure.backoff_until = max(failure.backoff_until,
                                    int(height) + min(2 ** len(failure.proposers), _MAX_BACKOFF_HEIGHTS))
        if len(failure.proposers) >= DISAGREEMENT_PROPOSERS:
            entry = self._by_hash.get(key)
            if entry is not None:
                logger.warning("transaction %s: validators disagreed under %d proposers; evicted",
                               key.hex()[:16], len(failure.proposers))
                self._remove(entry, RemovalReason.DISAGREED)
                return True
        return False

    def disagreement_count(self, tx_hash: bytes) -> int:
        failure = self._failures.get(bytes(tx_hash))
        return 0 if failure is None else len(failure.proposers)

    # ---------------------------------------------------------------- internals

    def _remove(self, entry: _Entry, reason: RemovalReason) -> None:
        key = bytes(entry.tx_hash)
        if self._by_hash.pop(key, None) is None:
            return
        self._bytes -= entry.size
        sender = self._senders.get(bytes(entry.sender))
        if sender is not None:
            sender.txs.pop(entry.tx.nonce, None)
            if not sender.txs and reason is not RemovalReason.REPLACED:
                del self._senders[bytes(entry.sender)]
        for listener in self._listeners:
            try:
                listener(entry.tx_hash, entry.tx, reason)
            except Exception:  # a listener's bug must not corrupt the mempool
                logger.exception("mempool removal listener failed")

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for_txs(self) -> None:
        """Return once the mempool holds a transaction (for proposers that wait for work)."""
        while not self._by_hash:
            await self._changed.wait()

