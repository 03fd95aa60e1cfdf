"""The read side of a running node: plain methods the RPC server (node.rpc) calls, plus submission.

`Queries` satisfies `node.rpc.api.NodeApi` and samples the metrics gauges. Reads go to the block store and to the authenticated state at a
committed version (= block height), never to consensus internals, so they are safe at any moment; the
values are core wire types, and every proof is checkable without trusting this node.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

from sortedcontainers import SortedList

from core.block import Block
from core.codec import Wire
from core.errors import DecodeError, InferchainError, StorageError
from core.merkle import merkle_proof
from core.state import AuthenticatedMap
from core.tx import Transaction
from core.types import Address, Hash32, Height
from core.votes import Commit
from node.chainindex import AccountTx
from node.events import TxOutcome, TxState
from node.metrics import StatusSample
from node.rpc.paging import MAX_MODELS_PAGE
from node.views import (
    TX_COMMITTED,
    TX_PENDING,
    TX_REJECTED,
    TX_UNKNOWN,
    AccountView,
    InferenceView,
    ModelView,
    ResidentView,
    StatusView,
    SubmitVerdict,
    TxStatusView,
    TxView,
    ValidatorsView,
    ValidatorView,
)
from vm.deferred import PENDING, DeferredModel, deferred_key
from vm.gov.reader import GovReader
from vm.poi import PoiOutcome
from vm.query import query_deferred, query_retired
from vm.resident import MAX_RESIDENT_MODELS, get_resident_set, resident_room_error
from vm.retire import retired_in_block
from vm.state import (
    EMPTY_ACCOUNT,
    Account,
    ModelRecord,
    StateView,
    ValidatorRecord,
    account_key,
    model_key,
    model_name_key,
    upload_key,
)
from vm.txs import ModelChunk, TxKind

if TYPE_CHECKING:
    from node.chain import Committed
    from node.service import Node

_MODEL_PREFIX = b"M"


def _is_pending_deferred(state: AuthenticatedMap, model_id: bytes, version: int) -> bool:
    """A deferred registration waiting for its activation (vm/deferred.py): no upload any more, no record yet."""
    raw = state.get(deferred_key(Hash32(model_id)), version)
    return raw is not None and DeferredModel.decode(raw).status == PENDING


class ModelIndex:
    """Registered model ids in id order, kept beside the state: the state's tree orders keys by their hash,
    so listing one key prefix from it means walking every entry (~4 s at 1M entries).

    Built by one walk of the state, in the calling (worker) thread, the first time it is read; then kept by
    the node's commits: every upload chunk in a committed block names its model, which is checked against
    the state at the next read (registered: indexed; upload gone, expired or refused: forgotten; still
    open, or a deferred registration still pending: checked again later). Reads and notes may come from different threads."""

    def __init__(self) -> None:
        self._ids: SortedList = SortedList()
        self._built = False
        self._pending: set[bytes] = set()  # model ids with upload chunks committed since the walk
        self._lock = threading.Lock()

    def note_block(self, txs: Sequence[Transaction]) -> None:
        """From the commit listener (event loop): cheap, only upload chunks are decoded."""
        ids = set()
        for tx in txs:
            if tx.kind == TxKind.MODEL_CHUNK:
                try:
                    ids.add(bytes(ModelChunk.decode(tx.payload).model_id))
                except DecodeError:
                    continue
        if ids:
            with self._lock:
                self._pending |= ids

    def note_retired(self, model_ids: Collection[bytes]) -> None:
        """Models a committed block retired (vm/retire.py): gone for good (a retired id never registers again)."""
        if model_ids:
            with self._lock:
                for model_id in model_ids:
                    self._ids.discard(model_id)
                    self._pending.discard(model_id)

    def page(self, state: AuthenticatedMap, version: int, after: bytes | None, limit: int) -> list[bytes]:
        """Up to `limit` model ids after `after`, in id order; O(limit + open uploads) x log(models) once built."""
        with self._lock:
            if not self._built:
                for key, _ in state.items(version):
                    if key.startswith(_MODEL_PREFIX) and len(key) == 1 + 32:
                        self._ids.add(key[1:])
                self._built = True
            for model_id in list(self._pending):
                if model_id in self._ids:
                    self._pending.discard(model_id)
                elif state.get(_MODEL_PREFIX + model_id, version) is not None:
                    self._ids.add(model_id)
                    self._pending.discard(model_id)
                elif (state.get(upload_key(Hash32(model_id)), version) is None
                      and not _is_pending_deferred(state, model_id, version)):
                    self._pending.discard(model_id)
            start = self._ids.irange(minimum=after, inclusive=(False, False)) if after is not None else iter(self._ids)
            out: list[bytes] = []
            for model_id in start:
                if len(out) >= limit:
                    break
                out.append(model_id)
            return out


class Queries:
    """What the RPC engineer calls; every method is cheap enough for the event loop unless noted."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self.model_index = ModelIndex()
        node.chain.on_commit(self._on_commit)

    def _on_commit(self, done: Committed) -> None:
        block = done.block
        self.model_index.note_block(block.txs)
        self.model_index.note_retired(retired_in_block(self._node.app.view(), int(block.height), block.txs,
                                                       block.results))

    # ---------------------------------------------------------------- helpers

    @property
    def _state(self) -> AuthenticatedMap:
        return self._node.state_map

    def _version(self, height: Height | int | None) -> int:
        """The committed state version for `height` (None: latest); version 0 is genesis."""
        latest = self._state.latest_version()
        if latest is None:
            raise StorageError("no committed state yet")
        if height is None or height > latest:
            return latest
        if not self._state.has_version(int(height)):
            raise StorageError(f"state at height {height} is not kept (pruned)")
        return int(height)

    def _view(self, version: int) -> StateView:
        return StateView(self._state, version)

    # ---------------------------------------------------------------- status

    def status(self) -> StatusView:
        node = self._node
        store = node.blockstore
        height = store.height
        head = store.block(height) if height else None
        info = node.app.info()
        key = node.validator_key
        is_validator = False
        if key is not None:
            try:
                is_validator = key.address in node.app.validator_set(Height(height + 1))
            except (ValueError, LookupError, StorageError):  # ValueError: the state is behind the block store
                is_validator = False
        return StatusView(
            chain_id=node.chain_id,
            node_id=str(node.peer_id),
            moniker=node.config.moniker,
            validator=key.address if key is not None else None,
            height=height,
            block_id=store.head_id,
            block_time=head.header.time if head is not None else info.last_block_time,
            state_root=head.header.state_root if head is not None else info.state_root,
            round=int(node.consensus_round),
            peers=len(node.p2p.connected_peers()) if node.p2p is not None else 0,
            mempool_size=len(node.mempool),
            mempool_bytes=node.mempool.size_bytes,
            catching_up=node.syncing,
            is_validator=is_validator,
            listen_addrs=tuple(node.listen_addrs()),
        )

    # ---------------------------------------------------------------- blocks and transactions

    def block(self, height: Height | None) -> tuple[Block, Commit | None] | None:
        store = self._node.blockstore
        h = store.height if height is None else int(height)
        block = store.block(h) if h >= 1 else None
        if block is None:
            return None
        return block, store.commit(h)

    def account_txs(self, address: Address, limit: int,
                    before: tuple[int, int] | None = None) -> Sequence[AccountTx]:
        return self._node.chain_index.account_txs(address, limit, before)

    def model_calls(self, model_id: Hash32) -> int:
        return self._node.chain_index.model_calls(model_id)

    def poi_outcomes(self, height: int) -> Sequence[tuple[Address, PoiOutcome]] | None:
        return self._node.chain_index.poi_outcomes(height)

    def block_height(self, block_id: Hash32) -> Height | None:
        return self._node.blockstore.height_of(block_id)

    def tx(self, tx_hash: Hash32) -> TxView | None:
        store = self._node.blockstore
        loc = store.tx_location(tx_hash)
        if loc is None:
            return None
        block = store.block(loc.height)
        if block is None:
            return None
        return TxView(block.txs[loc.index], block.results[loc.index], loc.height, loc.index, block.header.time)

    def inference(self, tx_hash: Hash32) -> InferenceView | None:
        """The result with its Merkle proofs against the header and the commit that finalizes the header."""
        store = self._node.blockstore
        loc = store.tx_location(tx_hash)
        if loc is None:
            return None
        block = store.block(loc.height)
        commit = store.commit(loc.height)
        if block is None or commit is None:
            return None
        tx_proof = merkle_proof([tx.hash for tx in block.txs], loc.index)
        result_proof = merkle_proof([r.encode() for r in block.results], loc.index)
        return InferenceView(block.txs[loc.index], block.results[loc.index], loc.height, loc.index,
                             block.header, tx_proof, result_proof, commit)

    def tx_outcome(self, tx_hash: Hash32) -> TxOutcome | None:
        """Committed (from the block store) or rejected after entry (evicted, validators disagreed...)."""
        view = self.tx(tx_hash)
        if view is not None:
            return TxOutcome(tx_hash, TxState.COMMITTED, view.height, view.index, view.result)
        return self._node.events.outcome(tx_hash)

    def tx_status(self, tx_hash: Hash32) -> TxStatusView:
        """Committed (the block store's index only: no block is read), pending in the mempool, rejected after
        entry (the event hub's memory of removals, with the reason), or unknown here."""
        node = self._node
        loc = node.blockstore.tx_location(tx_hash)
        if loc is not None:
            return TxStatusView(tx_hash, TX_COMMITTED, loc.height, loc.index)
        if bytes(tx_hash) in node.mempool:
            return TxStatusView(tx_hash, TX_PENDING, gapped=node.mempool.is_gapped(tx_hash))
        outcome = node.events.outcome(tx_hash)
        if outcome is not None and outcome.state is TxState.REJECTED:
            return TxStatusView(tx_hash, TX_REJECTED, reason=outcome.reason)
        return TxStatusView(tx_hash, TX_UNKNOWN)

    def status_sample(self) -> StatusSample | None:
        """What the metrics gauges show, read when Prometheus scrapes; None when the status cannot be read."""
        try:
            s = self.status()
        except InferchainError:
            return None
        correct = wrong = missed = 0
        if s.validator is not None:
            try:
                mine = self.validator(s.validator)
            except InferchainError:
                mine = None
            if mine is not None:
                correct, wrong, missed = mine.poi_correct, mine.poi_wrong, mine.poi_missed
        p2p = self._node.p2p
        counters = tuple(sorted(p2p.counters.snapshot().items())) if p2p is not None else ()
        finalized = tuple(sorted(self._node.app.finalize_counts.items()))
        return StatusSample(int(s.height), s.round, s.peers, s.mempool_size, s.mempool_bytes, s.is_validator,
                            correct, wrong, missed, s.catching_up, counters, finalized)

    # ---------------------------------------------------------------- state, with proofs

    def account(self, address: Address, height: Height | None) -> AccountView:
        version = self._version(height)
        key = account_key(address)
        raw = self._state.get(key, version)
        account = Account.decode(raw) if raw is not None else EMPTY_ACCOUNT
        return AccountView(address, Height(version), self._state.root(version), key, raw,
                           int(account.balance), int(account.nonce), self._state.prove(key, version))

    def validators(self, height: Height | None) -> ValidatorsView:
        """The set that signs `height` (None: the next block), with each member's latest record and PoI score.

        Raises LookupError for a height whose set is not known (beyond the last committed height + 2).
        """
        latest = self._version(None)
        target = latest + 1 if height is None else int(height)
        try:
            vset = self._node.app.validator_set(Height(target))
        except ValueError as exc:
            raise LookupError(str(exc)) from None
        view = self._view(latest)
        out = [_validator_view(view, e.address, e.public_key, int(e.power), view.validator(e.address), True)
               for e in vset]
        return ValidatorsView(Height(target), vset.total_power, tuple(out))

    def delegations(self, delegator: Address, height: Height | None) -> tuple[Height, list[tuple[Address, int, int, int]]]:
        """(height, [(validator, bonded, rewards due, commission bps)]) of `delegator` at `height` (None: latest);
        at most vm.state.MAX_DELEGATIONS_PER_ACCOUNT entries."""
        from vm.delegation import delegations_of, get_pool, pending_rewards

        version = self._version(height)
        view = self._view(version)
        out = []
        for validator, amount in delegations_of(view, delegator):
            record = view.validator(validator)
            assert record is not None
            out.append((validator, amount, pending_rewards(view, validator, delegator),
                        int(get_pool(view, validator, record).commission_bps)))
        return Height(version), out

    def validator(self, address: Address, height: Height | None = None) -> ValidatorView | None:
        version = self._version(height)
        view = self._view(version)
        record = view.validator(address)
        if record is None:
            return None
        vset = self._node.app.validator_set(Height(version + 1))
        entry = vset.get(address)
        return _validator_view(view, address, record.public_key, int(entry.power) if entry else 0, record,
                               entry is not None)

    def poi(self, address: Address | None = None) -> list[ValidatorView]:
        """PoI scores: of one validator, or of every validator in the next block's set."""
        if address is not None:
            one = self.validator(address)
            return [] if one is None else [one]
        return list(self.validators(None).validators)

    def params(self) -> Wire:
        """The chain parameters (`vm.params.Params`) at the latest committed height."""
        return self._node.app.view().params()

    def gov(self) -> GovReader:
        """Governance records (proposals, deposits, votes, the upgrade plan) at the latest height."""
        return GovReader(self._view(self._version(None)))

    def model(self, model_id: Hash32) -> ModelView | None:
        version = self._version(None)
        raw = self._state.get(model_key(model_id), version)
        if raw is None:
            return None
        return ModelView(model_id, raw, ModelRecord.decode(raw))

    def deferred_model(self, model_id: Hash32) -> ModelView | None:
        """A deferred registration's record (vm/deferred.py), pending or decided; None if it never was one."""
        proven = query_deferred(self._state, model_id, self._version(None))
        if proven.raw is None or proven.value is None:
            return None
        return ModelView(model_id, proven.raw, proven.value)

    def retired_model(self, model_id: Hash32) -> ModelView | None:
        """A retired model's tombstone (vm/retire.py); None if it was never retired."""
        proven = query_retired(self._state, model_id, self._version(None))
        if proven.raw is None or proven.value is None:
            return None
        return ModelView(model_id, proven.raw, proven.value)

    def model_name(self, name: str) -> Hash32 | None:
        """The model holding `name` at the latest height (the chain's first-come name record), or None."""
        raw = self._state.get(model_name_key(name), self._version(None))
        return None if raw is None else Hash32(raw)

    def resident_models(self, model_bytes: int | None = None) -> ResidentView:
        """The resident-model budget at the latest height; with `model_bytes`, the chain's own refusal of a
        resident model that size (`vm.resident.resident_room_error`, the rule its completing chunk applies)."""
        version = self._version(None)
        view = self._view(version)
        params = view.params()
        held = get_resident_set(view)
        refusal = None if model_bytes is None else resident_room_error(view, params, model_bytes)
        return ResidentView(Height(version), int(held.total_bytes), tuple(held.models),
                            int(params.vm.max_resident_bytes), MAX_RESIDENT_MODELS, refusal)

    def models(self, after: Hash32 | None = None, limit: int = MAX_MODELS_PAGE) -> Sequence[ModelView]:
        """Up to `limit` registered models with ids after `after`, in id order (a page; `ModelIndex`).
        Blocking: the first call walks the state once; call it from a worker thread."""
        version = self._version(None)
        out = []
        for model_id in self.model_index.page(self._state, version, after, min(limit, MAX_MODELS_PAGE)):
            raw = self._state.get(_MODEL_PREFIX + model_id, version)
            if raw is not None:
                out.append(ModelView(Hash32(model_id), raw, ModelRecord.decode(raw)))
        return out

    # ---------------------------------------------------------------- writes and streams

    async def submit_txs(self, txs: Sequence[Transaction]) -> list[SubmitVerdict]:
        return await self._node.submit_txs(txs)

    async def submit_tx(self, tx: Transaction) -> SubmitVerdict:
        return (await self._node.submit_txs([tx]))[0]

    async def wait_for_tx(self, tx_hash: Hash32) -> TxOutcome:
        """Until the transaction is committed or rejected; bound it with a trio timeout."""
        done = self.tx_outcome(tx_hash)
        if done is not None:
            return done
        return await self._node.events.wait_for_tx(tx_hash)

    def committed_blocks(self) -> AbstractAsyncContextManager[AsyncIterator[Block]]:
        return self._node.events.committed_blocks()


def _validator_view(view: StateView, address: Address, public_key: bytes, power: int,
                    record: ValidatorRecord | None, in_set: bool) -> ValidatorView:
    from vm.delegation import get_pool, self_stake, self_stake_floor

    if record is None:
        return ValidatorView(address, bytes(public_key), power, None, 0, False, 0, False, 0, 0, 0, 0, 0, in_set)
    pool = get_pool(view, address, record)
    return ValidatorView(address, bytes(record.public_key), power, record.owner, int(record.stake),
                         record.jailed, int(record.jailed_until), record.tombstoned, int(record.poi_correct),
                         int(record.poi_wrong), int(record.poi_missed), int(record.slashed),
                         int(record.rewards), in_set, int(record.miss_bits).bit_count(),
                         self_stake(view, address), int(pool.commission_bps), self_stake_floor(pool, view.params()))
