"""Supply chain: a tampered broker binary is refused before it is ever executed."""

from __future__ import annotations

import shutil
import stat

import pytest

from streams.broker import BrokerError, EmbeddedBroker, tansu_binary

pytestmark = pytest.mark.unit


def test_a_binary_with_one_flipped_byte_is_refused(tmp_path):
    copy = tmp_path / "tansu"
    shutil.copyfile(tansu_binary(), copy)
    assert tansu_binary(copy) == copy  # an exact copy passes
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    copy.chmod(copy.stat().st_mode | stat.S_IXUSR)
    with pytest.raises(BrokerError, match="refusing to run it"):
        tansu_binary(copy)
    broker = EmbeddedBroker(binary_path=copy)
    with pytest.raises(BrokerError, match="refusing"):
        broker.start()
    assert not broker.running
