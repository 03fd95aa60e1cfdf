"""The mempool: transactions waiting for a block, checked once on entry, ordered for the next proposal.

The inclusion rules are the VM's (`vm.execute.admission_error` through `MempoolState.check_tx` on entry;
`account_inclusion_error` through `MempoolState.inclusion_error` when a block changed the accounts):
chain id, gas cap, fee >= gas_limit x min_gas_price, nonce and balance, a payload that decodes. The mempool
asks with the sender's account as its pending transactions would leave it (nonce = this transaction's,
balance less the fees of its pending predecessors), so a sender may queue transactions ahead. What stays
here is the mempool's own business: the signature (once per node, `SigCache`), ordering, limits,
replacement, eviction and the disagreement back-off.

Order for a proposal: the highest fee per gas first, each sender's transactions in nonce order (a sender's
next transaction competes only once its predecessor is in). A transaction is *ready* when every nonce from
the account's up to its own is pending; otherwise it is *gapped* (it cannot go into a block yet). Limits:
count, bytes, per sender, gapped per sender (`max_gapped_per_sender`), how far ahead (`max_nonce_gap`) and
how long (`ttl_heights`; `gapped_ttl_heights` while gapped). When full, gapped transactions are evicted
first (a ready newcomer evicts any; a gapped one only cheaper gapped ones), then the cheapest ready tail (a
sender's last nonce, so no gap opens) that pays less than the newcomer. Transactions from this node's own
clients may fill only CLIENT_SHARE of it (past that, only in place of cheaper ones); the rest is kept for
peers' gossip. Refusals that a later block can
lift (full, a sender's limits, a nonce too far ahead) end with RETRY_LATER (`is_retryable`): a client sends
the same transaction again, which is what keeps a loaded chain at capacity (docs/performance-throughput.md, "Sustained load").

Cost: two indexes hold one key per sender, its eviction candidate (its tail) and its next ready
transaction (its head). They are kept lazily (node.lazyindex): an add or a commit marks the sender (a set
insertion), and the marked senders' keys are recomputed when the index is read (the eviction index when the
mempool is full, the proposal index by `reap`, once per proposal) or by the recheck after each block (off the
consensus path, in slices). So an add costs O(1) plus the sender's ready run extended, an eviction O(senders
marked since + victims x log senders) on a heap whose old keys are skipped when they reach its top (none, when
every tail is ready and pays at least the newcomer: `_victims` refuses from a count of prices), and `reap`
O(senders marked since + senders with a ready head) to re-sort the kept order with the changed keys, plus
O(txs reaped x log senders).

After each block `update` drops what was committed and `recheck` what became stale (nonce, balance) and what
aged out. Only a transaction's sender loses balance or nonce by it (the VM debits no one else), so `recheck`
re-reads only the senders of the blocks committed since the last one; every `FULL_RECHECK_HEIGHTS` heights, and
whenever a pending transaction may have reached its TTL, it re-reads every sender (what a block changes for
all: the chain's parameters). A sender's balance that grew meanwhile (a transfer to it) is read again when the
mempool's copy would refuse its transaction. Between full rechecks none can have expired and only the balance
can change a verdict (the fees add up along the nonces), so a sender whose pending transactions are one ready
run that its balance pays has only its first one put to the VM's rule (was: every one, ~8 per committed
transaction in the devnet's shape); else every one is, as in a full recheck.

Disagreement (docs/design.md §2.6): when this node's validation of a block fails on a transaction, the
transaction is backed off (skipped in our proposals for 2^k heights); after failures under three distinct
proposers it is evicted with `rejected: validators disagreed`, which the submitter sees.

Listeners (`on_added`, `on_removed`) see every transaction come and go; node.mempool_store keeps both on disk
so a restart takes the pending ones back (`add(..., added_height=...)` keeps their first height for the TTL).
"""

from __future__ import annotations

import enum
import heapq
import logging
import math
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import trio

from core.tx import Transaction
from core.types import Address, Amount, Hash32, Nonce
from node.config import MempoolSection
from node.lazyindex import LazyIndex
from node.sigcache import SigCache
from vm.state import Account
from vm.txs import infer_payload

logger = logging.getLogger(__name__)

DISAGREEMENT_PROPOSERS = 3
REJECTED_DISAGREED = "rejected: validators disagreed"
# Refusals that say "not now" rather than "never": the client should send the same transaction again after a
# block or two (a full mempool, a sender's queue at its limit, a nonce too far ahead of what is committed).
# An honest client resubmits it instead of moving on to later nonces, which would only wait behind the gap.
RETRY_LATER = "retry later"
MEMPOOL_FULL = f"mempool full, {RETRY_LATER}"


def is_retryable(reason: str) -> bool:
    """Whether a refusal's one-line reason means "send it again later" (the rest never become valid)."""
    return reason.endswith(RETRY_LATER)
_MAX_BACKOFF_HEIGHTS = 64
_FAILURE_MEMORY = 10_000
# The price heap is rebuilt when it holds more than this many prices per pending one (plus a floor).
_STALE_PRICES = 2
# `reap` stops after this many candidates in a row that do not fit the block's budgets.
_REAP_MISSES = 256
# The event loop gets a turn every this many adds of a batch, and every few milliseconds of a recheck.
_ADD_SLICE = 64
_SLICE_S = 0.005
# A recheck brings this many senders' index keys up to date between turns of the event loop.
_FLUSH_SLICE = 1024
# A recheck of every sender at least this often (heights); in between, only the blocks' senders.
FULL_RECHECK_HEIGHTS = 16
# Transactions from this node's own clients (RPC) may fill this share of the mempool's count and bytes; the
# rest is kept for transactions gossiped by peers. Every node's client transactions reach every mempool, so
# the total stays near this share and a peer's transactions, which its proposals will name, are not refused
# for room here (a proposal whose transactions its validators refused is dropped: docs/performance-throughput.md, "Sustained load").
CLIENT_SHARE = 0.5
# The recheck brings the eviction index up to date only when the pool holds this share of CLIENT_SHARE (of its
# count or bytes): below it no add is near to evicting, and the marks wait for the read that needs them.
NEAR_FULL = 0.5


class RemovalReason(enum.Enum):
    COMMITTED = "committed"
    DISAGREED = REJECTED_DISAGREED
    REPLACED = "replaced by a transaction with a higher fee"
    EVICTED = "evicted: mempool full"
    EXPIRED = "expired: not included in time"
    STALE_NONCE = "dropped: nonce already used"
    INSUFFICIENT_BALANCE = "dropped: balance no longer covers the fee"
    MODEL_RETIRED = "dropped: its model was retired"


class AccountInfo(Protocol):
    @property
    def balance(self) -> int: ...

    @property
    def nonce(self) -> int: ...


class MempoolState(Protocol):
    """What the mempool reads from the committed state and the VM (the node adapts the VM to this)."""

    def account(self, address: Address) -> AccountInfo: ...

    def check_tx(self, tx: Transaction, account: Account) -> str | None:
        """The VM's entry verdict on `tx` after a sender's account in state `account` (None: take it)."""
        ...

    def inclusion_error(self, tx: Transaction, account: Account) -> str | None:
        """The VM's inclusion rule alone (no payload decoding): what a new committed state can change."""
        ...


class AddResult(NamedTuple):
    """What `add` answers (immutable; a named tuple: made once per add, ~4x cheaper than a frozen dataclass)."""

    tx_hash: Hash32
    accepted: bool
    reason: str = ""  # one line: why refused, or "already in the mempool"
    added: bool = False  # newly added (the caller gossips it)


class _Entry:
    """A pending transaction. `sender` is its sender's address as plain bytes (the senders' dict key)."""

    __slots__ = ("added_height", "price", "sender", "seq", "size", "tx", "tx_hash")

    def __init__(self, tx: Transaction, tx_hash: Hash32, sender: bytes, size: int, added_height: int,
                 seq: int) -> None:
        self.tx, self.tx_hash, self.sender, self.size, self.added_height, self.seq = \
            tx, tx_hash, sender, size, added_height, seq
        # Fee per gas, scaled by 2^128. Exact order: fees and gas limits are below 2^64, so distinct fee/gas
        # ratios differ by at least 2^-128 and their scaled floors differ. Integer keys compare ~20x faster
        # than Fractions.
        self.price = (tx.fee << 128) // tx.gas_limit


_EvictKey = tuple[int, int, int, bytes]  # (ready?, price, -seq, sender): the lowest goes first
_ReadyKey = tuple[int, int, bytes]  # (-price, seq, sender): the lowest is proposed first


def _projected(balance: int, nonce: int) -> Account:
    """A sender's account as its pending predecessors would leave it: `balance` (a committed balance less
    fees; floored at 0) and the transaction's own nonce. The balance is within Amount's range by construction
    (0 to a committed balance), so it is made without the range check, and a transaction's nonce is a Nonce
    already: the two checks cost more than the VM's rule they feed (once per add, and per pending transaction
    of a recheck)."""
    return Account(int.__new__(Amount, balance if balance > 0 else 0),
                   nonce if type(nonce) is Nonce else Nonce(nonce))


@dataclass(slots=True)
class _Sender:
    nonce: int  # the account's next nonce at the last check
    balance: int
    txs: dict[int, _Entry] = field(default_factory=dict)  # by nonce
    ready_end: int = 0  # the first nonce >= `nonce` that is not pending: [nonce, ready_end) are ready
    # The ready run's fees, [nonce, ready_end), valid while `run_base == nonce` and `run_valid` (`_touch`
    # extends it from `ready_end` instead of walking the run again; a removal inside the run voids it).
    ready_fees: int = 0
    run_base: int = -1
    run_valid: bool = False

    def is_ready(self, nonce: int) -> bool:
        return self.nonce <= nonce < self.ready_end

    @property
    def gapped(self) -> int:
        return len(self.txs) - (self.ready_end - self.nonce)


@dataclass(slots=True)
class _Failure:
    proposers: set[bytes] = field(default_factory=set)
    backoff_until: int = 0


RemovalListener = Callable[[Hash32, Transaction, RemovalReason], None]
# (hash, transaction, from this node's own client, the height it entered at): called for every transaction taken.
AddListener = Callable[[Hash32, Transaction, bool, int], None]


class Mempool:
    def __init__(self, chain_id: str, state: MempoolState, config: MempoolSection | None = None,
                 sig_cache: SigCache | None = None) -> None:
        self.chain_id = chain_id
        self.config = config or MempoolSection()
        self.sig_cache = sig_cache if sig_cache is not None else SigCache(self.config.sig_cache_size)
        self._state = state
        self._by_hash: dict[bytes, _Entry] = {}
        self._senders: dict[bytes, _Sender] = {}
        # One _EvictKey per sender with transactions (its tail), read only when full; one _ReadyKey per sender
        # whose next nonce is pending (its head), read by `reap`. Both recomputed when read (node.lazyindex).
        self._evict: LazyIndex[_EvictKey] = LazyIndex(self._evict_key_of)
        self._ready: LazyIndex[_ReadyKey] = LazyIndex(self._ready_key_of, heap=False)
        self._bytes = 0
        self._seq = 0
        # For a refusal without reading the eviction index (`_victims`): the pending entries' prices with their
        # counts and a heap of them (a price no longer counted is dropped when it reaches the top), and the
        # senders whose pending nonces are not exactly their ready run (a gapped or stale one: a tail that may
        # be gapped). While that set is empty every tail is ready and pays at least the lowest price.
        self._prices: dict[int, int] = {}
        self._price_heap: list[int] = []
        self._irregular: set[bytes] = set()
        self._height = 0
        self._failures: dict[bytes, _Failure] = {}
        self._listeners: list[RemovalListener] = []
        self._add_listeners: list[AddListener] = []
        self._changed = trio.Event()
        self._touched: set[bytes] = set()  # pending senders of the blocks committed since the last recheck
        self._full_at = 0  # the height of the last recheck of every sender
        self._expiry_due = math.inf  # no pending transaction can expire before this height (a lower bound)
        self._expiry_after = self._ttl() + 1  # an entry may expire this many heights after it entered
        self.rechecked = 0  # senders re-read by rechecks (for tests and benches)

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

    def known_account(self, address: Address) -> AccountInfo | None:
        """The committed account of a sender with pending transactions as the mempool holds it (read when its
        first transaction came, kept current by `update` after each block and by `recheck`); None for a sender
        it does not hold. Saves the gossip hook a state read per transaction of a busy sender."""
        return self._senders.get(bytes(address))

    def get(self, tx_hash: bytes) -> Transaction | None:
        entry = self._by_hash.get(bytes(tx_hash))
        return None if entry is None else entry.tx

    def is_gapped(self, tx_hash: bytes) -> bool:
        """Whether a pending transaction waits behind a nonce gap (cannot go into a block yet); False for one
        not held."""
        entry = self._by_hash.get(bytes(tx_hash))
        if entry is None:
            return False
        sender = self._senders.get(bytes(entry.sender))
        return sender is not None and not sender.is_ready(entry.tx.nonce)

    def txs(self) -> Iterator[Transaction]:
        return (e.tx for e in self._by_hash.values())

    def gapped_count(self) -> int:
        """Transactions that cannot go into a block yet (a nonce before them is missing)."""
        return sum(s.gapped for s in self._senders.values())

    def on_removed(self, listener: RemovalListener) -> None:
        """Called for every transaction that leaves the mempool, with the reason."""
        self._listeners.append(listener)

    def on_added(self, listener: AddListener) -> None:
        """Called for every transaction the mempool takes (node.mempool_store keeps them across restarts)."""
        self._add_listeners.append(listener)

    def is_backed_off(self, tx_hash: bytes) -> bool:
        failure = self._failures.get(bytes(tx_hash))
        return failure is not None and failure.backoff_until > self._height

    # ---------------------------------------------------------------- entry

    def add(self, tx: Transaction, *, size: int | None = None, signature_checked: bool = False,
            account: AccountInfo | None = None, from_client: bool = False,
            added_height: int | None = None) -> AddResult:
        """Check `tx` and keep it if it may be included; never raises for anything the transaction holds.

        `from_client`: it came from this node's RPC, not from a peer: it may fill only CLIENT_SHARE of the
        mempool; past that it only takes the place of cheaper transactions (evicted as usual) or is refused
        with MEMPOOL_FULL.

        `signature_checked`: the caller verified the signature already (a gossiped batch's envelope check);
        it goes into the cache instead of being verified twice. `account`: the sender's committed account,
        read by the caller since the last `update` (the gossip hook reads it anyway), used instead of a second
        read when the mempool holds nothing of this sender yet. `added_height`: the height it first entered at,
        for one taken again after a restart (node.mempool_store), so its TTL counts from then.
        """
        tx_hash = tx.hash
        key = bytes(tx_hash)
        if key in self._by_hash:
            return AddResult(tx_hash, True, "already in the mempool")
        failure = self._failures.get(key)
        if failure is not None and len(failure.proposers) >= DISAGREEMENT_PROPOSERS:
            return AddResult(tx_hash, False, REJECTED_DISAGREED)
        if tx.gas_limit <= 0:  # the mempool orders by fee per gas
            return AddResult(tx_hash, False, "gas limit must be positive")
        sender_addr = tx.sender_address
        sender_key = bytes(sender_addr)
        known = self._senders.get(sender_key)
        sender = known if known is not None else self._new_sender(sender_addr, account)
        entered = self._height if added_height is None else min(int(added_height), self._height)
        result = self._add(tx, tx_hash, key, sender_key, known, sender, size, signature_checked,
                           from_client, entered)
        if result.accepted or known is None or not result.reason.startswith("balance"):
            return result
        # The copy of a sender's balance is refreshed only by its own blocks' transactions between full
        # rechecks: one that received funds meanwhile is read again before its transaction is refused.
        fresh = self._state.account(sender_addr)
        if int(fresh.balance) <= sender.balance or int(fresh.nonce) != sender.nonce:
            return result
        sender.balance = int(fresh.balance)
        self._touch(sender_key, sender)
        return self._add(tx, tx_hash, key, sender_key, known, sender, size, signature_checked,
                         from_client, entered)

    def _add(self, tx: Transaction, tx_hash: Hash32, key: bytes, sender_key: bytes, known: _Sender | None,
             sender: _Sender, size: int | None, signature_checked: bool, from_client: bool,
             entered: int) -> AddResult:
        nonce, first, config = tx.nonce, sender.nonce, self.config
        if nonce < first:
            return AddResult(tx_hash, False, f"nonce {nonce} already used (account nonce is {first})")
        if nonce > first + config.max_nonce_gap:
            return AddResult(tx_hash, False,
                             f"nonce {nonce} is too far ahead of the account nonce {first}, {RETRY_LATER}")
        # The VM's rules, as if the sender's pending predecessors were included first.
        if nonce == sender.ready_end and sender.run_valid and sender.run_base == first:
            fees_before = sender.ready_fees  # the common case: the next nonce of a ready run
        else:
            fees_before = sum(e.tx.fee for n, e in sender.txs.items() if first <= n < nonce)
        projected = _projected(sender.balance - fees_before, nonce)
        reason = self._state.check_tx(tx, projected)
        if reason is not None:
            if fees_before and reason.startswith("balance"):
                reason = (f"balance {sender.balance} cannot pay the fees of this and earlier pending "
                          f"transactions ({fees_before + tx.fee})")
            return AddResult(tx_hash, False, reason)
        if signature_checked:
            self.sig_cache.mark_verified(tx_hash)
        elif not self.sig_cache.verify(tx, tx_hash):
            return AddResult(tx_hash, False, "invalid signature")
        entry = _Entry(tx, tx_hash, sender_key, size if size is not None else len(tx.encode()), entered,
                       self._next_seq())
        txs = sender.txs
        replaced = txs.get(nonce)
        if replaced is not None:
            old = replaced.tx
            if tx.fee * old.gas_limit * 100 < old.fee * tx.gas_limit * (100 + config.replace_bump_percent):
                return AddResult(tx_hash, False,
                                 f"nonce {nonce} already pending; a replacement must raise the fee per gas "
                                 f"by {config.replace_bump_percent}%")
        else:
            if len(txs) >= config.max_txs_per_sender:
                return AddResult(tx_hash, False,
                                 f"sender has {len(txs)} pending transactions (the limit), {RETRY_LATER}")
            if nonce > sender.ready_end and sender.gapped >= config.max_gapped_per_sender:
                return AddResult(tx_hash, False, f"sender has {sender.gapped} transactions waiting behind a nonce "
                                                 f"gap (the limit), {RETRY_LATER}")
        max_txs, max_bytes = config.max_txs, config.max_bytes
        if entry.size > max_bytes:
            return AddResult(tx_hash, False, "transaction larger than the mempool")
        ready = first <= nonce <= sender.ready_end
        freed = replaced.size if replaced is not None else 0
        count, size = (0 if replaced is not None else 1), entry.size - freed
        held, held_bytes = len(self._by_hash), self._bytes
        if from_client and (held + count > max_txs * CLIENT_SHARE or held_bytes + size > max_bytes * CLIENT_SHARE):
            # Past its share a client's transaction only takes the place of cheaper ones: no net growth.
            max_txs, max_bytes = min(max_txs, held), min(max_bytes, held_bytes)
        victims: list[_Entry] = []
        if held + count > max_txs or held_bytes + size > max_bytes:  # else none needed
            found = self._victims(entry, ready, count=count, size=size, max_txs=max_txs, max_bytes=max_bytes)
            if found is None:
                return AddResult(tx_hash, False, MEMPOOL_FULL)
            victims = found
        if known is None:
            self._senders[sender_key] = sender
        if replaced is not None:
            self._remove(replaced, RemovalReason.REPLACED)
        for victim in victims:
            self._remove(victim, RemovalReason.EVICTED)
        txs[nonce] = entry
        self._by_hash[key] = entry
        self._bytes += entry.size
        price = entry.price
        if (priced := self._prices.get(price, 0)) == 0:
            heapq.heappush(self._price_heap, price)
        self._prices[price] = priced + 1
        if (due := entered + self._expiry_after) < self._expiry_due:
            self._expiry_due = due
        self._touch(sender_key, sender)
        if len(self._by_hash) == 1:
            self._notify()  # only `wait_for_txs` waits, and only on an empty mempool
        for listener in self._add_listeners:
            listener(tx_hash, tx, from_client, entered)
        return AddResult(tx_hash, True, added=True)

    async def add_many(self, txs: Sequence[Transaction], *, signature_checked: bool = False) -> list[AddResult]:
        """`add` each of `txs` in order, giving the event loop a turn every `_ADD_SLICE` of them (a gossiped
        batch holds thousands)."""
        results = []
        for i, tx in enumerate(txs):
            if i and i % _ADD_SLICE == 0:
                await trio.lowlevel.checkpoint()
            results.append(self.add(tx, signature_checked=signature_checked))
        return results

    def _new_sender(self, address: Address, account: AccountInfo | None = None) -> _Sender:
        if account is None:
            account = self._state.account(address)
        nonce = int(account.nonce)
        return _Sender(nonce, int(account.balance), ready_end=nonce)

    def _victims(self, entry: _Entry, ready: bool, *, count: int, size: int, max_txs: int,
                 max_bytes: int) -> list[_Entry] | None:
        """What to evict so that `entry` fits under `max_txs` and `max_bytes` (None: it cannot), cheapest
        first and without touching its own sender: gapped tails first, then (for a ready newcomer) ready
        tails paying less per gas."""
        need_count = len(self._by_hash) + count - max_txs
        need_bytes = self._bytes + size - max_bytes
        if need_count <= 0 and need_bytes <= 0:
            return []
        bound = (1 if ready else 0, entry.price)  # keys below it may be evicted for `entry`
        if not self._irregular and (not ready or self._lowest_price() >= entry.price):
            return None  # every tail is ready and pays at least `entry`'s price: no key below `bound`
        index = self._evict
        index.flush()
        try:
            return self._pick_victims(index, bound, bytes(entry.sender), need_count, need_bytes)
        finally:
            index.put_back()

    def _pick_victims(self, index: LazyIndex[_EvictKey], bound: tuple[int, int], own: bytes, need_count: int,
                      need_bytes: int) -> list[_Entry] | None:
        following: list[tuple[_EvictKey, _Entry, list[int]]] = []  # victims' senders' next tails
        victims: list[_Entry] = []
        freed_count = freed_bytes = 0
        next_key = index.take(bound)
        while freed_count < need_count or freed_bytes < need_bytes:
            if following and (next_key is None or following[0][0] < next_key):
                _, victim, rest = heapq.heappop(following)
                sender = self._senders[bytes(victim.sender)]
            elif next_key is not None:
                sender_key = next_key[3]
                next_key = index.take(bound)
                if sender_key == own:
                    continue
                sender = self._senders[sender_key]
                rest = sorted(sender.txs)
                victim = sender.txs[rest.pop()]
            else:
                return None
            victims.append(victim)
            freed_count += 1
            freed_bytes += victim.size
            if rest:
                after = sender.txs[rest.pop()]
                after_key = self._evict_key(sender, after)
                if after_key < bound:
                    heapq.heappush(following, (after_key, after, rest))
        return victims

    # ---------------------------------------------------------------- indexes

    @staticmethod
    def _evict_key(sender: _Sender, tail: _Entry) -> _EvictKey:
        return (1 if sender.is_ready(tail.tx.nonce) else 0, tail.price, -tail.seq, bytes(tail.sender))

    def _evict_key_of(self, key: bytes) -> _EvictKey | None:
        """A sender's key in the eviction index now: its tail's (every pending nonce in the ready run: the
        run's last)."""
        sender = self._senders.get(key)
        if sender is None or not (txs := sender.txs):
            return None
        end, nonce = sender.ready_end, sender.nonce
        if len(txs) == end - nonce:
            tail = txs[end - 1]
            return (1, tail.price, -tail.seq, key)
        tail = txs[max(txs)]
        return (1 if nonce <= tail.tx.nonce < end else 0, tail.price, -tail.seq, key)

    def _ready_key_of(self, key: bytes) -> _ReadyKey | None:
        """A sender's key in the proposal index now: its head's, when its next nonce is pending."""
        sender = self._senders.get(key)
        head = None if sender is None else sender.txs.get(sender.nonce)
        return None if head is None else (-head.price, head.seq, key)

    def _touch(self, key: bytes, sender: _Sender) -> None:
        """Recompute `sender`'s ready run after any change to it, and mark its keys in both indexes for
        recomputing when they are next read (node.lazyindex)."""
        self._rerun(key, sender)
        self._evict.mark(key)
        self._ready.mark(key)

    def _rerun(self, key: bytes, sender: _Sender) -> None:
        """Recompute `sender`'s ready run (extended from its end when only additions came since), and whether
        its pending nonces are exactly that run."""
        txs = sender.txs
        if sender.run_valid and sender.run_base == sender.nonce:
            end, fees = sender.ready_end, sender.ready_fees  # only additions since: extend the run
        else:
            end, fees = sender.nonce, 0
        while (entry := txs.get(end)) is not None:
            fees += entry.tx.fee
            end += 1
        sender.ready_end, sender.ready_fees = end, fees
        sender.run_base, sender.run_valid = sender.nonce, True
        if len(txs) == end - sender.nonce:
            self._irregular.discard(key)
        else:
            self._irregular.add(key)

    def _forget(self, key: bytes) -> None:
        sender = self._senders.pop(key, None)
        if sender is not None:
            sender.txs.clear()
            sender.run_valid = False
            self._evict.forget(key)
            self._ready.forget(key)
        self._irregular.discard(key)

    # ---------------------------------------------------------------- proposal

    def reap(self, *, max_txs: int, max_bytes: int, max_gas: int,
             may_propose: Callable[[bytes], bool] | None = None) -> list[Transaction]:
        """Transactions for our next proposal: ready ones (contiguous nonces from the account's), best fee
        per gas first, senders' nonces in order, within the block's count, byte and gas budgets. A
        transaction `may_propose` refuses (proposer policy, node.proposal_hold) is skipped with its sender's
        later nonces, as a backed-off one is."""
        heads = iter(self._ready.ordered())
        next_head: _ReadyKey | None = next(heads, None)
        following: list[tuple[int, int, bytes, int]] = []
        out: list[Transaction] = []
        size = gas = misses = 0
        senders, failures, height = self._senders, self._failures, self._height
        heappop, heappush = heapq.heappop, heapq.heappush
        while len(out) < max_txs and misses < _REAP_MISSES:
            # (seq is unique to an entry, so the two keys' order is that of their (-price, seq) prefixes)
            if following and (next_head is None or following[0] < next_head):
                _, _, key, nonce = heappop(following)
                sender = senders[key]
            elif next_head is not None:
                key, next_head = next_head[2], next(heads, None)
                sender = senders[key]
                nonce = sender.nonce
            else:
                break
            entry = sender.txs[nonce]
            tx_hash = entry.tx_hash
            if failures and (failure := failures.get(bytes(tx_hash))) is not None and failure.backoff_until > height:
                continue  # backed off: this sender's later nonces cannot go without it
            if may_propose is not None and not may_propose(tx_hash):
                continue  # held by the proposer's policy: likewise
            tx = entry.tx
            entry_size, entry_gas = entry.size, tx.gas_limit
            if size + entry_size > max_bytes or gas + entry_gas > max_gas:
                misses += 1
                continue
            misses = 0
            out.append(tx)
            size += entry_size
            gas += entry_gas
            after = sender.txs.get(nonce + 1)
            if after is not None:
                heappush(following, (-after.price, after.seq, key, nonce + 1))
        return out

    # ---------------------------------------------------------------- after a block

    def update(self, height: int, committed: Iterable[Transaction]) -> None:
        """Drop the block's transactions at once (cheap; before the next proposal is built).

        A block commits a prefix of each sender's ready run, head first: each such head leaves the run
        with its fee (the kept run stays valid, one nonce on), and each sender's index keys are recomputed
        once, after the whole block (was: twice per transaction, each walking the sender's run again)."""
        self._height = max(self._height, int(height))
        by_hash, senders, touched = self._by_hash, self._senders, self._touched
        changed: dict[bytes, _Sender] = {}
        for tx in committed:
            entry = by_hash.pop(tx.hash, None)
            key = entry.sender if entry is not None else bytes(tx.sender_address)
            sender = senders.get(key)
            if sender is None:
                if entry is not None:  # not expected: every pending transaction's sender is known
                    self._bytes -= entry.size
                    self._unprice(entry.price)
                    self._notify_removed(entry, RemovalReason.COMMITTED)
                continue
            touched.add(key)
            changed[key] = sender
            nonce = tx.nonce
            head_left = False
            if entry is not None:
                self._bytes -= entry.size
                self._unprice(entry.price)
                sender.txs.pop(nonce, None)
                if nonce == sender.nonce and sender.run_valid and sender.run_base == nonce < sender.ready_end:
                    sender.ready_fees -= tx.fee  # the run's head leaves it: [nonce + 1, ready_end)
                    head_left = True
                elif nonce < sender.ready_end:
                    sender.run_valid = False  # a hole in the run
                self._notify_removed(entry, RemovalReason.COMMITTED)
            if nonce >= sender.nonce:
                sender.nonce = nonce + 1
                sender.balance = max(0, sender.balance - tx.fee)
                if head_left:
                    sender.run_base = sender.nonce
        kept = []
        for key, sender in changed.items():
            if senders.get(key) is not sender:
                continue
            if sender.txs:
                self._rerun(key, sender)
                kept.append(key)
            else:
                self._forget(key)
        self._evict.mark_many(kept)
        self._ready.mark_many(kept)

    def drop_inferences(self, model_ids: Collection[bytes]) -> int:
        """Drop the pending inferences on `model_ids` (retired by the block just committed, vm/retire.py: they
        could only fail, fee paid); how many. Walks the pending transactions: a block that retires a model is
        rare. A sender's later transactions wait behind the hole, as after any drop."""
        if not model_ids:
            return 0
        doomed = []
        for entry in self._by_hash.values():
            payload = infer_payload(entry.tx)
            if payload is not None and bytes(payload.model_id) in model_ids:
                doomed.append(entry)
        for entry in doomed:
            self._remove(entry, RemovalReason.MODEL_RETIRED)
        return len(doomed)

    def _ttl(self) -> int:
        return min(self.config.ttl_heights, self.config.gapped_ttl_heights)

    async def recheck(self) -> None:
        """Re-read the accounts of the senders the blocks since the last recheck touched (of every sender
        when due: see the module docstring) and drop what can no longer be included; off the consensus path
        (it gives the event loop a turn every few milliseconds)."""
        height = self._height
        full = height - self._full_at >= FULL_RECHECK_HEIGHTS or height >= self._expiry_due
        keys = list(self._senders) if full else [k for k in self._touched if k in self._senders]
        self._touched = set()
        if full:
            self._full_at = height
            self._expiry_due = math.inf
        inclusion_error, ttl, gapped_ttl = self._state.inclusion_error, self.config.ttl_heights, \
            self.config.gapped_ttl_heights
        due = self._ttl() + 1
        deadline = time.perf_counter() + _SLICE_S
        for key in keys:
            if time.perf_counter() >= deadline:
                await trio.lowlevel.checkpoint()
                deadline = time.perf_counter() + _SLICE_S
            sender = self._senders.get(key)
            if sender is None:
                continue
            account = self._state.account(Address(key))
            self.rechecked += 1
            first, balance = int(account.nonce), int(account.balance)
            txs = sender.txs
            if first != sender.nonce or not (sender.run_valid and sender.run_base == first):
                sender.nonce = first
                self._touch(key, sender)  # else `update` left its run and marks as they are
            sender.balance = balance
            if not full and len(txs) == sender.ready_end - first and (head := txs.get(first)) is not None \
                    and balance >= sender.ready_fees \
                    and inclusion_error(head.tx, _projected(balance, first)) is None:
                # Every pending nonce is in the ready run (none stale, none gapped), the balance pays the run's
                # fees, and the head passes the VM's rule: every later one passes its balance check too (the
                # fees only add up), none can have expired (`_expiry_due`), and its other rules (the chain's
                # parameters) are what the full recheck re-reads.
                continue
            fees = 0
            for nonce, entry in sorted(sender.txs.items()):  # nonces are distinct: entries never compared
                tx = entry.tx
                if nonce < first:
                    self._remove(entry, RemovalReason.STALE_NONCE)
                    continue
                projected = _projected(balance - fees, tx.nonce)
                fees += tx.fee
                age = height - entry.added_height
                if inclusion_error(tx, projected) is not None:
                    self._remove(entry, RemovalReason.INSUFFICIENT_BALANCE)
                elif age > ttl or (age > gapped_ttl and nonce > sender.ready_end):
                    self._remove(entry, RemovalReason.EXPIRED)
                elif full:
                    self._expiry_due = min(self._expiry_due, entry.added_height + due)
        # Both indexes brought up to date here, off the consensus path, so that the next `reap` (or evicting
        # add) computes only the senders changed since (in slices, as the loop above); the eviction index only
        # when an add may soon read it (a pool far from its caps never does).
        for index in (self._ready, self._evict) if self._near_full() else (self._ready,):
            while index.marked:
                index.flush(_FLUSH_SLICE)
                if index.marked:
                    await trio.lowlevel.checkpoint()

    def _unprice(self, price: int) -> None:
        """A pending entry paying `price` left."""
        left = self._prices[price] - 1
        if left:
            self._prices[price] = left
        else:
            del self._prices[price]

    def _lowest_price(self) -> float:
        """The lowest price a pending entry pays (inf: none pending)."""
        heap, prices = self._price_heap, self._prices
        if len(heap) > _STALE_PRICES * len(prices) + 64:
            heap[:] = prices
            heapq.heapify(heap)
        while heap and heap[0] not in prices:
            heapq.heappop(heap)
        return heap[0] if heap else math.inf

    def _near_full(self) -> bool:
        """Whether the pool holds at least NEAR_FULL of the client share of its count or bytes (a client's add
        past that share already looks for victims)."""
        share = CLIENT_SHARE * NEAR_FULL
        return len(self._by_hash) >= self.config.max_txs * share or self._bytes >= self.config.max_bytes * share

    # ---------------------------------------------------------------- disagreement

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
        self._unprice(entry.price)
        sender_key = bytes(entry.sender)
        sender = self._senders.get(sender_key)
        if sender is not None:
            sender.txs.pop(entry.tx.nonce, None)
            if entry.tx.nonce < sender.ready_end:
                sender.run_valid = False  # a hole in the run, or a fee that changes
            if not sender.txs and reason is not RemovalReason.REPLACED:
                self._forget(sender_key)
            else:
                self._touch(sender_key, sender)
        self._notify_removed(entry, reason)

    def _notify_removed(self, entry: _Entry, reason: RemovalReason) -> None:
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

