"""The shared real-network test harness: devnets of real node processes on free ports (docs/testing.md).

`RealNet` starts and drives the processes; `realnet_fixture` shares one network across a test module;
`wait_until` is the bounded wait; `report` puts node logs into failed tests' reports.
"""

from tests.realnet import report
from tests.realnet.fixture import realnet_fixture
from tests.realnet.network import BIND_FAILURE, NetworkError, NodeExited, RealNet
from tests.realnet.waits import WaitTimeout, wait_until

__all__ = ["BIND_FAILURE", "NetworkError", "NodeExited", "RealNet", "WaitTimeout", "realnet_fixture", "report",
           "wait_until"]
