"""The CPU kernels' large buffers are advised for transparent huge pages (csrc/cpu/buffers.cpp):
without it, a long sequence's pass faults hundreds of MB of fresh memory in 4 KiB at a time on
every call. Checked through the kernel's own record of the advice, the VmFlags of the memory
mapping in /proc/self/smaps ("hg": MADV_HUGEPAGE)."""
import os
import sys

import pytest
import torch

import lstm1997

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux")
    or not os.path.exists("/sys/kernel/mm/transparent_hugepage/enabled"),
    reason="needs Linux with transparent huge pages")


def vm_flags(address):
    """The VmFlags of the mapping of this process that holds `address`."""
    inside = False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if "-" in fields[0] and not fields[0].endswith(":"):
                start, end = (int(part, 16) for part in fields[0].split("-"))
                inside = start <= address < end
            elif inside and fields[0] == "VmFlags:":
                return set(fields[1:])
    raise AssertionError(f"no mapping holds {address:#x}")


def test_a_long_sequence_output_is_advised_for_huge_pages():
    module = lstm1997.LSTM(8, 128)
    with torch.no_grad():
        output = module(torch.randn(2000, 16, 8))[0]  # 16 MB
    assert "hg" in vm_flags(output.data_ptr() + output.nbytes // 2)


def test_the_buffers_saved_for_backward_are_advised_too():
    x = torch.randn(2000, 16, 8)
    output, h_n, s_n, squashed_state, gates = torch.ops.lstm1997.lstm_forward(
        x, torch.randn(384, 8), torch.randn(384, 128), None, None, None, None, "tanh", None, 1)
    for buffer in (output, squashed_state, gates):
        assert "hg" in vm_flags(buffer.data_ptr() + buffer.nbytes // 2)

