"""Functions the sandbox tests run in the child (importable by name)."""
import ctypes
import os
import time
from pathlib import Path


def double(x):
    return x * 2


def write(path):
    Path(path).write_text("x")
    return "wrote"


def crash():
    ctypes.string_at(0)


def hang():
    time.sleep(60)


def allocate():
    return len(bytearray(64 << 30))


def open_fds():
    return sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
