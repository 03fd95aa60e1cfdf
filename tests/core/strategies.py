"""Hypothesis strategies for every wire type, derived from the field annotations the codec itself reads.

Constrained types (tensors, votes, proposals, commits, proposal blocks) get explicit strategies so that
generated values pass their cross-field rules; everything else is built generically.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from typing import Annotated, Any, get_args, get_origin

from hypothesis import strategies as st

from core.block import Block, ProposalBlock
from core.codec import IntRange, MaxLen, Wire
from core.tensor import DType, Tensor
from core.types import BoundedInt, FixedBytes, Height, PublicKeyBytes, Round
from core.votes import Commit, Proposal, Vote, VoteType

# Keep generated containers small: the codec's limits are tested separately with crafted inputs.
SMALL = 3


def for_type(tp: Any) -> st.SearchStrategy[Any]:
    meta: tuple[Any, ...] = ()
    if get_origin(tp) is Annotated:
        tp, *rest = get_args(tp)
        meta = tuple(rest)
    max_len = next((m.n for m in meta if isinstance(m, MaxLen)), None)
    rng = next((m for m in meta if isinstance(m, IntRange)), None)
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        inner = st.one_of(*[for_type(a) for a in args])
        return st.none() | inner if type(None) in get_args(tp) else inner
    if origin is tuple:
        assert max_len is not None
        return st.lists(for_type(get_args(tp)[0]), max_size=min(max_len, SMALL)).map(tuple)
    if tp is bool:
        return st.booleans()
    if isinstance(tp, type) and issubclass(tp, enum.IntEnum):
        return st.sampled_from(list(tp))
    if isinstance(tp, type) and issubclass(tp, BoundedInt):
        return st.integers(0, tp.MAX).map(tp)
    if tp is int:
        assert rng is not None
        return st.integers(rng.lo, rng.hi)
    if isinstance(tp, type) and issubclass(tp, FixedBytes):
        return st.binary(min_size=tp.SIZE, max_size=tp.SIZE).map(tp)
    if tp is bytes:
        return st.binary(max_size=min(max_len or 64, 64))
    if tp is str:
        return st.text(max_size=min(max_len or 16, 16)).filter(lambda s: len(s.encode()) <= (max_len or 16))
    if isinstance(tp, type) and issubclass(tp, Wire):
        return of(tp)
    raise TypeError(f"no strategy for {tp!r}")


@st.composite
def tensors(draw: st.DrawFn) -> Tensor:
    dtype = draw(st.sampled_from(list(DType)))
    shape = tuple(draw(st.lists(st.integers(0, 4), max_size=3)))
    n = math.prod(shape) * dtype.itemsize
    if dtype == DType.BOOL:
        data = bytes(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    else:
        data = draw(st.binary(min_size=n, max_size=n))
    return Tensor(dtype, shape, data)


def _generic(cls: type[Wire]) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls, include_extras=True)
    return st.builds(cls, *[for_type(hints[f.name]) for f in dataclasses.fields(cls)])


@st.composite
def votes(draw: st.DrawFn, height: int | None = None, round_: int | None = None,
          vote_type: VoteType | None = None) -> Vote:
    vote = draw(_generic(Vote))
    vtype = vote_type if vote_type is not None else vote.type
    changes: dict[str, Any] = {"type": vtype}
    if vtype == VoteType.PREVOTE:
        changes["poi"] = None
    if height is not None:
        changes["height"] = Height(height)
    if round_ is not None:
        changes["round"] = Round(round_)
    return vote.replace(**changes)


@st.composite
def proposals(draw: st.DrawFn) -> Proposal:
    p = draw(_generic(Proposal))
    return p.replace(pol_round=draw(st.integers(-1, int(p.round) - 1)) if p.round > 0 else -1)


@st.composite
def commits(draw: st.DrawFn) -> Commit:
    height = draw(st.integers(0, 2**64 - 1))
    rnd = draw(st.integers(0, 2**32 - 1))
    vs = draw(st.lists(votes(height, rnd, VoteType.PRECOMMIT), max_size=SMALL,
                       unique_by=lambda v: bytes(v.validator)))
    return Commit(Height(height), Round(rnd), draw(for_type(typing.get_type_hints(Commit)["block_id"])),
                  tuple(vs))


@st.composite
def proposal_blocks(draw: st.DrawFn) -> ProposalBlock:
    block = draw(of(Block))
    p = draw(proposals())
    # The block was built in the proposal's round, or (a re-proposal) no later than its POL round.
    built = int(p.round) if int(p.pol_round) < 0 else draw(st.integers(0, int(p.pol_round)))
    block = block.replace(header=block.header.replace(round=Round(built)))
    return ProposalBlock(p.replace(block_id=block.id, height=block.height), block)


_OVERRIDES: dict[type, Any] = {
    Tensor: tensors, Vote: votes, Proposal: proposals, Commit: commits, ProposalBlock: proposal_blocks,
}


def of(cls: type[Wire]) -> st.SearchStrategy[Any]:
    override = _OVERRIDES.get(cls)
    if override is not None:
        return typing.cast(st.SearchStrategy[Any], override())
    return st.deferred(lambda: _generic(cls))


def public_keys() -> st.SearchStrategy[PublicKeyBytes]:
    return st.binary(min_size=32, max_size=32).map(PublicKeyBytes)
