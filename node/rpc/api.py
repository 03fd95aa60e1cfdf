"""What the RPC server needs from a node: a read side, a way to submit, and a stream of committed blocks.

The server depends on this Protocol only, so it runs the same in front of a full node (`node.queries`
satisfies it) and in tests. The values are those of `node.views`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from core.block import Block
from core.codec import Wire
from core.tx import Transaction
from core.types import Address, Hash32, Height
from core.votes import Commit
from node.chainindex import AccountTx
from node.events import TxOutcome
from node.views import (
    AccountView,
    InferenceView,
    ModelView,
    ResidentView,
    StatusView,
    SubmitVerdict,
    TxStatusView,
    TxView,
    ValidatorsView,
)
from vm.gov.reader import GovReader
from vm.poi import PoiOutcome


class NodeApi(Protocol):
    def status(self) -> StatusView: ...

    def block(self, height: Height | None) -> tuple[Block, Commit | None] | None:
        """The block at `height` (None: the latest) and the commit that finalizes it, if known."""
        ...

    def block_height(self, block_id: Hash32) -> Height | None:
        """The height of a committed block by its id (the block store's index), or None."""
        ...

    def tx(self, tx_hash: Hash32) -> TxView | None: ...

    def tx_status(self, tx_hash: Hash32) -> TxStatusView:
        """Committed, pending in this node's mempool, rejected after entry (with why), or unknown here."""
        ...

    def account(self, address: Address, height: Height | None) -> AccountView: ...

    def validators(self, height: Height | None) -> ValidatorsView: ...

    def delegations(self, delegator: Address, height: Height | None) -> tuple[Height, list[tuple[Address, int, int, int]]]:
        """(height, [(validator, bonded, rewards due, commission bps)]) of `delegator` (None: latest height)."""
        ...

    def model(self, model_id: Hash32) -> ModelView | None: ...

    def deferred_model(self, model_id: Hash32) -> ModelView | None:
        """A deferred registration's record (vm.deferred.DeferredModel), pending or decided, or None."""
        ...

    def retired_model(self, model_id: Hash32) -> ModelView | None:
        """A retired model's tombstone (vm.retire.RetiredModel), or None."""
        ...

    def model_name(self, name: str) -> Hash32 | None:
        """The model holding `name` (registered, a pending deferred registration or an upload in progress), or
        None when the name is free."""
        ...

    def models(self, after: Hash32 | None = None, limit: int = 100) -> Sequence[ModelView]:
        """Up to `limit` registered models with ids after `after`, in id order (blocking: run in a thread)."""
        ...

    def resident_models(self, model_bytes: int | None = None) -> ResidentView:
        """The resident-model budget (bytes and count held, pending activations included, and the bounds);
        with `model_bytes`, why the chain would refuse a resident model of that size (None: it fits)."""
        ...

    def inference(self, tx_hash: Hash32) -> InferenceView | None: ...

    async def submit_txs(self, txs: Sequence[Transaction]) -> list[SubmitVerdict]: ...

    def committed_blocks(self) -> AbstractAsyncContextManager[AsyncIterator[Block]]:
        """A stream of every block committed from now on, in height order (the node's `EventHub`); raises
        OverflowError when too many are open."""
        ...

    async def wait_for_tx(self, tx_hash: Hash32) -> TxOutcome:
        """Until the transaction is committed or rejected after mempool entry (commit mode reports "rejected:
        validators disagreed"); the caller bounds the wait. Checks the block store before it waits."""
        ...

    def account_txs(self, address: Address, limit: int,
                    before: tuple[int, int] | None = None) -> Sequence[AccountTx]:
        """The account's transactions (sent, or transfers received), newest first, from the explorer's index;
        `before` (height, index) continues a page."""
        ...

    def model_calls(self, model_id: Hash32) -> int:
        """Inferences on the model that ran (the explorer's index)."""
        ...

    def poi_outcomes(self, height: int) -> Sequence[tuple[Address, PoiOutcome]] | None:
        """How each validator's answer to PoI challenge `height` scored (the explorer's index); None until
        indexed."""
    def gov(self) -> GovReader:
        """Governance records at the latest height (proposals, deposits, votes, the upgrade plan)."""
        ...

    def params(self) -> Wire | None:
        """The chain parameters at the latest height (`vm.params.Params`); None: this node does not say."""
        ...
