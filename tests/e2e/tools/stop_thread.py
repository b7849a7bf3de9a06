#!/usr/bin/env python3
"""stop_thread.py TID SECONDS: stops one thread of a process (ptrace
PTRACE_SEIZE + PTRACE_INTERRUPT stop only the thread named, unlike SIGSTOP,
which stops them all), prints "stopped", keeps it stopped for SECONDS, then
lets it go. The e2e tests use it to wedge a daemon's main loop while its
other threads run on."""
import ctypes
import os
import sys
import time

PTRACE_DETACH, PTRACE_SEIZE, PTRACE_INTERRUPT = 17, 0x4206, 0x4207
WALL = 0x40000000  # __WALL: wait for a thread that is not the group leader too

libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
tid, seconds = int(sys.argv[1]), float(sys.argv[2])


def ptrace(request):
    if libc.ptrace(request, tid, None, None) != 0:
        sys.exit("stop_thread: ptrace %#x on %d: %s" % (request, tid, os.strerror(ctypes.get_errno())))


ptrace(PTRACE_SEIZE)
ptrace(PTRACE_INTERRUPT)
os.waitpid(tid, WALL)
print("stopped", flush=True)
time.sleep(seconds)
ptrace(PTRACE_DETACH)
