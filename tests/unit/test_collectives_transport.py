"""Credit batching of the collective transport: never a deadlock, one NCCL slot when it can."""

import pytest

from testbed.collectives.transport import BUFFER_STEPS, PIECE_MIN_BYTES, Transport, credit_batch_bytes

KIB = 1024


@pytest.mark.parametrize("buffsize", [1, 1000, 64 * KIB, 64 * KIB + 1, 74_898, 100_000, 512 * KIB,
                                      4 * KIB * KIB, 64 * KIB * KIB])
def test_batch_never_exceeds_what_a_blocked_sender_has_outstanding(buffsize):
    # A sender waits only with in_flight > buffsize - piece (and in_flight > 0).
    # Once all of that has arrived the receiver owes in_flight bytes, so it must
    # have returned credit by then: batch <= buffsize - largest piece + 1.
    largest_piece = max(length for _, length in Transport(buffsize_bytes=buffsize).pieces(1 << 30, 4))
    batch = credit_batch_bytes(buffsize)
    assert 1 <= batch
    if largest_piece <= buffsize:
        assert batch <= buffsize - largest_piece + 1, (buffsize, largest_piece, batch)
    else:  # a piece larger than the buffer goes alone: credit for every piece
        assert batch == 1


def test_large_buffers_return_credit_one_nccl_slot_at_a_time():
    # 4 MiB buffer (NCCL_BUFFSIZE default): 8 slots of 512 KiB
    assert credit_batch_bytes(4 * KIB * KIB) == 4 * KIB * KIB // BUFFER_STEPS == 524_288
    # 256 KiB: slot 32 KiB; pieces up to 64 KiB: 32 KiB <= 256 - 64 + 1 KiB
    assert credit_batch_bytes(256 * KIB) == 32 * KIB
    # 64 KiB: one piece fills the buffer: credit every piece
    assert credit_batch_bytes(PIECE_MIN_BYTES) == 1


@pytest.mark.parametrize("nsocks", [1, 2, 3])
@pytest.mark.parametrize("buffsize", [64 * KIB, 256 * KIB, 4 * KIB * KIB])
def test_the_fast_path_sends_whole_exactly_what_pieces_leaves_whole(nsocks, buffsize):
    transport = Transport(nsocks=nsocks, buffsize_bytes=buffsize)
    for nbytes in (4, 60 * KIB, 64 * KIB, 64 * KIB + 4, 200 * KIB, 512 * KIB, 600 * KIB):
        whole = len(transport.pieces(nbytes, 4)) == 1
        assert (nbytes <= transport._whole_max) == whole, (nsocks, buffsize, nbytes)
