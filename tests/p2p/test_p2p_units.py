"""p2p parts without a network: scores, rate limits, wire messages, envelopes, identity, batcher."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from core.errors import DecodeError, InvalidEvidence, InvalidSignature, InvalidTransaction, KeyFileError
from core.evidence import DuplicateVote, EvidenceEnvelope, duplicate_vote
from core.hashing import sha256
from core.types import Height, Round
from core.votes import VoteType
from p2p.batcher import TxBatcher, encode_tx_batch
from p2p.config import P2PConfig, PenaltyPolicy
from p2p.envelope import decode_evidence, decode_tx_batch, decode_vote
from p2p.errors import WrongChain
from p2p.identity import load_node_key, load_or_create_node_key, node_key_from_seed, peer_id_of, save_node_key
from p2p.messages import BlocksRequest, TxBatch, VotesRequest, bitset
from p2p.ratelimit import PeerRateLimiter
from p2p.scoring import Action, Offense, ScoreBook
from p2p.testing.chain import make_tx, make_vote, validator_keys
from p2p.topics import TopicKind, topic_name

pytestmark = [pytest.mark.p2p]

CHAIN = "units"
KEYS = validator_keys(2)


def test_one_malformed_frame_disconnects_and_repeat_offenders_are_banned() -> None:
    book = ScoreBook(PenaltyPolicy(disconnect_below=-100, ban_below=-200, disconnect_ban_s=30, ban_s=600,
                                   half_life_s=60))
    assert book.penalize("p", Offense.RATE_LIMITED, now=0) is Action.NONE
    assert book.penalize("p", Offense.MALFORMED_FRAME, now=0) is Action.DISCONNECT
    assert book.is_banned("p", now=29) and not book.is_banned("p", now=31)
    assert book.penalize("p", Offense.BAD_SIGNATURE, now=1) is Action.BAN  # -205 decayed for 1 s: below -200
    assert book.is_banned("p", now=600) and not book.is_banned("p", now=602)
    assert not book.is_banned("other", now=0)


def test_a_height_claimed_and_not_served_disconnects_at_once() -> None:
    # Block sync and consensus catch-up penalize this (node/sync.py); at BAD_RESPONSE's 50 the liar stayed
    # connected until catch-up happened to ask it again, which a chain that never stalls does not do.
    book = ScoreBook(PenaltyPolicy(disconnect_below=-100, ban_below=-200))
    assert book.penalize("liar", Offense.FALSE_CLAIM, now=0) is Action.DISCONNECT
    assert book.penalize("slow", Offense.BAD_RESPONSE, now=0) is Action.NONE


def test_scores_decay_with_a_half_life_and_fade_out_of_the_book() -> None:
    book = ScoreBook(PenaltyPolicy(half_life_s=10))
    book.penalize("p", Offense.INVALID, now=0)
    assert book.score("p", now=0) == -25
    assert book.score("p", now=10) == pytest.approx(-12.5)
    book.forget_idle(now=100)
    assert book.score("p", now=100) == 0


def test_every_offense_has_its_own_penalty_entry() -> None:
    assert len({o.value for o in Offense}) == len(Offense)  # no enum aliases
    assert all(o.penalty > 0 for o in Offense)


def test_rate_limiter_refills_at_its_rate() -> None:
    limiter = PeerRateLimiter(msgs_per_s=10, msg_burst=2, bytes_per_s=1000)
    assert limiter.allow("p", 10, now=0) and limiter.allow("p", 10, now=0)
    assert not limiter.allow("p", 10, now=0)
    assert limiter.allow("p", 10, now=0.1)
    assert not limiter.allow("q", 5000, now=0)  # over the byte burst of 2 s worth
    assert limiter.allow("r", 10, now=0)  # peers are independent


def test_tx_batch_built_from_encoded_txs_is_the_canonical_encoding() -> None:
    for n in (1, 15, 16, 300, 70000 // 100):
        txs = tuple(make_tx(CHAIN, i, payload_bytes=10) for i in range(n))
        data = encode_tx_batch([tx.encode() for tx in txs])
        assert data == TxBatch(txs).encode()
        assert TxBatch.decode(data).txs == txs


def test_tx_batch_envelope_refuses_wrong_chain_bad_signature_duplicates_and_empty() -> None:
    good = make_tx(CHAIN, 1)
    assert decode_tx_batch(encode_tx_batch([good.encode()]), CHAIN).txs == (good,)
    with pytest.raises(WrongChain):
        decode_tx_batch(encode_tx_batch([make_tx("elsewhere", 1).encode()]), CHAIN)
    forged = good.replace(fee=good.fee + 1)
    with pytest.raises(InvalidSignature):
        decode_tx_batch(encode_tx_batch([forged.encode()]), CHAIN)
    with pytest.raises(InvalidTransaction):
        decode_tx_batch(encode_tx_batch([good.encode(), good.encode()]), CHAIN)
    with pytest.raises(DecodeError):
        decode_tx_batch(encode_tx_batch([]), CHAIN)
    with pytest.raises(DecodeError):
        decode_tx_batch(b"\x91\x91\xc0", CHAIN)
    seen: list[bytes] = []
    batch = encode_tx_batch([good.encode()])
    assert decode_tx_batch(batch, CHAIN, verify=lambda tx, h: seen.append(h) is None).txs == (good,)
    assert seen == [good.hash]
    with pytest.raises(InvalidSignature):
        decode_tx_batch(batch, CHAIN, verify=lambda tx, h: False)


def test_vote_envelope_binds_the_chain_id_through_the_signature() -> None:
    vote = make_vote(CHAIN, KEYS[0], 3)
    assert decode_vote(vote.encode(), CHAIN) == vote
    with pytest.raises(InvalidSignature):
        decode_vote(vote.encode(), "other-chain")
    with pytest.raises(DecodeError):
        decode_vote(vote.encode() + b"\x00", CHAIN)


def test_duplicate_vote_evidence_needs_two_signed_conflicting_votes_of_one_validator() -> None:
    a = make_vote(CHAIN, KEYS[0], 5, block_id=sha256(b"a"))
    b = make_vote(CHAIN, KEYS[0], 5, block_id=sha256(b"b"))
    assert decode_evidence(EvidenceEnvelope(duplicate_vote(a, b)).encode(), CHAIN)
    with pytest.raises(InvalidEvidence):
        decode_evidence(EvidenceEnvelope(DuplicateVote(a, a)).encode(), CHAIN)
    other = make_vote(CHAIN, KEYS[1], 5, block_id=sha256(b"b"))
    with pytest.raises(InvalidEvidence):
        decode_evidence(EvidenceEnvelope(duplicate_vote(a, other)).encode(), CHAIN)
    with pytest.raises(InvalidSignature):
        decode_evidence(EvidenceEnvelope(duplicate_vote(a, b.replace(round=Round(0), timestamp=b.timestamp + 1)))
                       .encode(), CHAIN)


def test_evidence_gossip_refuses_what_consensus_refuses() -> None:
    """The twins out of canonical order: consensus would refuse it, so gossip must not relay it."""
    ev = duplicate_vote(make_vote(CHAIN, KEYS[0], 5, block_id=sha256(b"a")),
                        make_vote(CHAIN, KEYS[0], 5, block_id=sha256(b"b")))
    with pytest.raises(InvalidEvidence, match="canonical order"):
        decode_evidence(EvidenceEnvelope(DuplicateVote(ev.vote_b, ev.vote_a)).encode(), CHAIN)


def test_request_messages_check_their_ranges() -> None:
    assert BlocksRequest.decode(BlocksRequest(Height(1), Height(10)).encode()).end == 10
    with pytest.raises(DecodeError):
        BlocksRequest.decode(BlocksRequest.__new__(BlocksRequest).__class__(Height(5), Height(4)).encode())
    have = bitset({0, 3, 9})
    request = VotesRequest(Height(1), Round(0), VoteType.PREVOTE, have)
    assert [request.holds(i) for i in range(12)] == [i in {0, 3, 9} for i in range(12)]
    assert bitset(set()) == b""


def test_topic_names_are_per_chain() -> None:
    assert topic_name("abc", TopicKind.VOTES) == "/inferchain/abc/votes/1"
    assert len({topic_name("abc", k) for k in TopicKind}) == 4
    with pytest.raises(ValueError):
        P2PConfig(chain_id="a/b")


def test_node_key_is_deterministic_from_a_seed_and_survives_a_file(tmp_path: pytest.TempPathFactory) -> None:
    key = node_key_from_seed(b"seed")
    assert peer_id_of(key) == peer_id_of(node_key_from_seed(b"seed"))
    assert peer_id_of(key) != peer_id_of(node_key_from_seed(b"seed2"))
    path = tmp_path / "node.key"  # type: ignore[operator]
    save_node_key(key, path)
    assert peer_id_of(load_node_key(path)) == peer_id_of(key)
    assert peer_id_of(load_or_create_node_key(path)) == peer_id_of(key)
    created = load_or_create_node_key(tmp_path / "new.key", seed=b"x")  # type: ignore[operator]
    assert peer_id_of(created) == peer_id_of(node_key_from_seed(b"x"))
    (tmp_path / "bad.key").write_bytes(b"not a key")  # type: ignore[operator]
    with pytest.raises(KeyFileError):
        load_node_key(tmp_path / "bad.key")  # type: ignore[operator]
    with pytest.raises(KeyFileError):
        load_node_key(tmp_path / "missing.key")  # type: ignore[operator]


@pytest.mark.trio
async def test_batcher_flushes_on_size_and_on_its_interval(mock_clock: trio.testing.MockClock) -> None:
    published: list[bytes] = []

    async def publish(data: bytes) -> None:
        published.append(data)
        await trio.lowlevel.checkpoint()

    batcher = TxBatcher(publish, target_bytes=4000, max_delay_s=0.5)
    txs = [make_tx(CHAIN, i, payload_bytes=700) for i in range(12)]  # ~870 B each: 4 fit in 4000 B
    async with trio.open_nursery() as nursery:
        await nursery.start(batcher.run)
        for tx in txs[:9]:
            await batcher.add(tx)
        await trio.testing.wait_all_tasks_blocked()
        assert [len(TxBatch.decode(b).txs) for b in published] == [4, 4]  # full batches go at once
        mock_clock.jump(0.4)
        await trio.testing.wait_all_tasks_blocked()
        assert len(published) == 2  # the ninth waits for the interval
        mock_clock.jump(0.2)
        await trio.testing.wait_all_tasks_blocked()
        assert [len(TxBatch.decode(b).txs) for b in published] == [4, 4, 1]
        nursery.cancel_scope.cancel()
    assert [tx for b in published for tx in TxBatch.decode(b).txs] == txs[:9]


@pytest.mark.trio
async def test_batcher_never_puts_one_transaction_twice_in_a_batch(mock_clock: trio.testing.MockClock) -> None:
    """Peers refuse a batch holding one transaction twice and penalize its sender (the envelope check), so a
    transaction handed to the batcher twice within one batch (seen once in a loaded devnet) goes out once."""
    published: list[bytes] = []

    async def publish(data: bytes) -> None:
        published.append(data)
        await trio.lowlevel.checkpoint()

    batcher = TxBatcher(publish, max_delay_s=0.5)
    txs = [make_tx(CHAIN, i) for i in range(3)]
    async with trio.open_nursery() as nursery:
        await nursery.start(batcher.run)
        for tx in (txs[0], txs[1], txs[0], txs[2], txs[1]):
            await batcher.add(tx)
        await trio.testing.wait_all_tasks_blocked()
        mock_clock.jump(0.6)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert len(published) == 1
    assert list(decode_tx_batch(published[0], CHAIN).txs) == txs


@pytest.mark.trio
async def test_batcher_under_load_publishes_at_most_once_per_interval(mock_clock: trio.testing.MockClock) -> None:
    """A lone transaction waits `max_delay_s`; one that follows a publish waits for `min_interval_s` after it,
    collecting everything that arrives meanwhile into one message."""
    published: list[tuple[float, int]] = []

    async def publish(data: bytes) -> None:
        published.append((trio.current_time(), len(TxBatch.decode(data).txs)))
        await trio.lowlevel.checkpoint()

    batcher = TxBatcher(publish, max_delay_s=0.05, min_interval_s=0.3)
    txs = [make_tx(CHAIN, i) for i in range(6)]
    async with trio.open_nursery() as nursery:
        await nursery.start(batcher.run)
        start = trio.current_time()
        await batcher.add(txs[0])
        await trio.testing.wait_all_tasks_blocked()  # the batcher took it (its delay counts from here)
        mock_clock.jump(0.05)
        await trio.testing.wait_all_tasks_blocked()
        assert [(round(t - start, 3), n) for t, n in published] == [(0.05, 1)]
        for tx in txs[1:]:
            mock_clock.jump(0.05)
            await batcher.add(tx)
            await trio.testing.wait_all_tasks_blocked()
        mock_clock.jump(0.049)
        await trio.testing.wait_all_tasks_blocked()
        assert len(published) == 1  # not yet 0.3 s after the first publish, though 0.25 s after the next tx
        mock_clock.jump(0.002)
        await trio.testing.wait_all_tasks_blocked()
        assert [(round(t - start, 2), n) for t, n in published] == [(0.05, 1), (0.35, 5)]
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_batcher_waits_the_busy_interval_only_after_a_large_batch(mock_clock: trio.testing.MockClock) -> None:
    """After a batch of `busy_txs` or more the next one waits `busy_interval_s` after it (fewer, larger messages
    under load); after a smaller batch, `min_interval_s` as before, so a light load waits no longer."""
    published: list[tuple[float, int]] = []

    async def publish(data: bytes) -> None:
        published.append((trio.current_time(), len(TxBatch.decode(data).txs)))
        await trio.lowlevel.checkpoint()

    batcher = TxBatcher(publish, max_delay_s=0.05, min_interval_s=0.1, busy_txs=3, busy_interval_s=0.4)
    txs = [make_tx(CHAIN, i) for i in range(6)]

    async def publish_after(tx_index: int, wait: float) -> None:
        await batcher.add(txs[tx_index])
        await trio.testing.wait_all_tasks_blocked()
        mock_clock.jump(wait)
        await trio.testing.wait_all_tasks_blocked()

    async with trio.open_nursery() as nursery:
        await nursery.start(batcher.run)
        start = trio.current_time()
        await batcher.add_many(txs[:3])
        await trio.testing.wait_all_tasks_blocked()
        mock_clock.jump(0.05)
        await trio.testing.wait_all_tasks_blocked()
        assert [(round(t - start, 3), n) for t, n in published] == [(0.05, 3)]  # a large batch
        await publish_after(3, 0.3)
        assert len(published) == 1  # 0.3 s after it: past min_interval_s, not yet busy_interval_s
        mock_clock.jump(0.099)
        await trio.testing.wait_all_tasks_blocked()
        assert len(published) == 1
        mock_clock.jump(0.002)
        await trio.testing.wait_all_tasks_blocked()
        assert [(round(t - start, 2), n) for t, n in published][1:] == [(0.45, 1)]
        await publish_after(4, 0.1)  # after a batch of one: min_interval_s again
        assert [(round(t - start, 2), n) for t, n in published][2:] == [(0.55, 1)]
        nursery.cancel_scope.cancel()


def test_repeat_disconnects_ban_a_peer_whose_offenses_each_cost_little() -> None:
    book = ScoreBook(PenaltyPolicy(disconnect_ban_s=30, ban_s=600, half_life_s=60, strikes_to_ban=2))
    for t in (0.0, 0.1, 0.2):
        book.penalize("p", Offense.WRONG_CHAIN, now=t)
    assert book.is_banned("p", now=1)
    # offenses still in flight when it was cut off are no new strike
    assert book.penalize("p", Offense.INVALID, now=1) is Action.NONE
    # it comes back after the refusal, score decayed to about -100: one more small offense is the second strike
    assert not book.is_banned("p", now=31)
    assert book.penalize("p", Offense.INVALID, now=31) is Action.BAN
    assert book.is_banned("p", now=600)
    assert book.penalize("p", Offense.MALFORMED_FRAME, now=40) is Action.NONE  # already banned: counted once
    # strikes expire with the ban period
    assert book.penalize("q", Offense.MALFORMED_FRAME, now=0) is Action.DISCONNECT
    assert book.penalize("q", Offense.MALFORMED_FRAME, now=1000) is Action.DISCONNECT


def test_score_book_and_rate_tables_are_bounded() -> None:
    book = ScoreBook(PenaltyPolicy(max_tracked_peers=100))
    limiter = PeerRateLimiter(msgs_per_s=10, msg_burst=10, bytes_per_s=1000, max_peers=100)
    for i in range(10_000):
        book.penalize(f"p{i}", Offense.MALFORMED_FRAME, now=0)
        limiter.allow(f"p{i}", 10, now=0)
    assert book.tracked() <= 300 and limiter.tracked() <= 200
    assert book.is_banned("p9999", now=1)  # the newest are kept
    limiter.forget("p9999")
    assert limiter.tracked() <= 198
