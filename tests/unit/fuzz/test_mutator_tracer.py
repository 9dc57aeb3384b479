# Copyright: (c) 2026, usbip.usbip contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fuzzer's coverage feedback hands the tracer back: coverage of the later tests is not switched off.

:class:`tests.fuzz.mutator.LineCoverage` traces with ``sys.settrace`` while
it runs one input. Whatever tracer was installed before (coverage.py, a
debugger) must be installed again afterwards, also when the input raised;
otherwise every test that runs later in the process goes unmeasured.
"""

from __future__ import annotations

import os
import sys

import pytest

from tests.fuzz import mutator
from usbip import protocol
from usbip.protocol import ProtocolError, decode_request

PROTOCOL_DIR = os.path.dirname(protocol.__file__)


def called_after() -> None:
    """A function to call once the run is over."""


@pytest.fixture
def outer_tracer():
    """A tracer of our own in place of whatever runs the tests (restored at the end)."""
    before = sys.gettrace()
    calls = []

    def tracer(frame, event, arg):
        calls.append(event)

    sys.settrace(tracer)
    try:
        yield tracer, calls
    finally:
        sys.settrace(before)


def test_the_previous_tracer_is_back_after_a_run(outer_tracer):
    tracer, calls = outer_tracer
    coverage = mutator.LineCoverage(PROTOCOL_DIR)
    assert coverage.run(decode_request, bytes.fromhex("0111800500000000")) is True  # it did trace the codec
    assert sys.gettrace() is tracer
    calls.clear()
    called_after()  # a call after the run reaches the outer tracer again
    assert "call" in calls


def test_the_previous_tracer_is_back_after_an_input_that_raised(outer_tracer):
    tracer, _calls = outer_tracer
    coverage = mutator.LineCoverage(PROTOCOL_DIR)
    with pytest.raises(ProtocolError):
        coverage.run(decode_request, b"\xff" * 8)
    assert sys.gettrace() is tracer
