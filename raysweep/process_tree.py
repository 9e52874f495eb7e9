"""A command trial's process tree, ended as a whole whatever happens to the trial's actor.

A ``command:`` trial starts a program, which may start helpers of its own, some in
process groups or sessions of their own (``setsid``, daemons). When the trial ends,
is stopped (time budget, ASHA) or its Ray actor is killed (SIGKILL of the worker
process, which Ray follows by SIGKILLing the worker's *direct* children only), every
one of those processes must end, and none may be left running with parent 1.

How (Linux; stdlib only, so the worker runs this file directly)::

    Ray worker --Popen--> guard G --double fork--> keeper K --setsid--> command C --> helpers ...
                 (the trial's stdout/stderr pipes)      (relays C's output to them)

- G is the worker's direct child. It asks the kernel to SIGKILL it when the thread
  that started it ends (``PR_SET_PDEATHSIG``): a killed worker, or a trial thread that
  ended, takes G with it. G holds the write end of a *keep-alive* pipe to K.
- K is detached (its parent is gone at once, so Ray's kill of the worker's children
  cannot reach it) and is a *child subreaper* (``PR_SET_CHILD_SUBREAPER``): any
  descendant orphaned below it, in whatever session, is re-parented to K instead of
  PID 1, so ``/proc`` always shows the whole tree as K's descendants.
- K ends the tree -- SIGTERM to every descendant and to C's process group, then
  SIGKILL after ``grace`` seconds to whatever is left, repeated until nothing is
  left -- when the keep-alive pipe closes (G ended: it got SIGTERM from
  :func:`raysweep.trainables.run_command`, or was killed with the worker), and also
  when C exits on its own (helpers it left behind do not outlive the trial).
- K relays C's stdout and stderr to the trial's (see :class:`_Relay`), so C's pipes
  stay whole while it exits gracefully, even when the worker is already gone.
- K reports C's exit status to G on a status pipe; G exits with it (``128 + n`` when
  C was killed by signal ``n``), so the worker sees an ordinary child process.

No cgroups are needed, and nothing depends on the processes' sessions or groups.
Off Linux the subreaper and parent-death signal are unavailable: the tree is then
ended through C's process group only.

Usage: ``python process_tree.py [--grace SECONDS] [--parent PID] -- ARGV...`` (``--parent``: the
pid G must have as parent, checked once the parent-death signal is armed).
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import signal
import subprocess
import sys
import time

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
#: Seconds a process has to exit after SIGTERM before it gets SIGKILL.
DEFAULT_GRACE_S = 5.0


def _prctl(option: int, value: int) -> bool:
    """``prctl(option, value)``; False where the call does not exist (not Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def descendants(root: int) -> list[int]:
    """Pids of every live (non-zombie) process below ``root``, read from ``/proc``."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue  # it just exited
        # the command name is in parentheses and may hold spaces: split after its last ')'
        fields = stat[stat.rfind(b")") + 2 :].split()
        if fields and fields[0] != b"Z":
            children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _signal_all(pids: list[int], group: int | None, signum: int) -> None:
    if group is not None:
        try:
            os.killpg(group, signum)
        except OSError:
            pass
    for pid in pids:
        try:
            os.kill(pid, signum)
        except OSError:
            pass


def _reap() -> dict[int, int]:
    """Collect every exited child of this process (K adopts orphans): pid -> wait status."""
    statuses: dict[int, int] = {}
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return statuses
        if pid == 0:
            return statuses
        statuses[pid] = status


class _Relay:
    """Copies the command's stdout and stderr to the trial's, through pipes K owns.

    The command's output never goes straight to the worker: when the worker is
    killed, the trial's pipes break, and a program writing a line in its SIGTERM
    handler (or a shell reporting a killed child) would die of SIGPIPE instead of
    exiting gracefully. K keeps reading the command's pipes until the tree has
    ended and drops what the trial can no longer take. Writes never block K: what a
    busy reader cannot take yet waits in a buffer, and a full buffer stops K reading
    that pipe (so the command blocks, as on a plain pipe) until K is ending the tree.
    """

    LIMIT = 1 << 20  # bytes held per stream before the command is made to wait

    def __init__(self, pairs: list[tuple[int, int]]) -> None:
        self.sources = {source: target for source, target in pairs}
        self.pending = {target: bytearray() for _, target in pairs}
        self.broken: set[int] = set()
        for target in self.pending:
            os.set_blocking(target, False)

    def step(self, timeout: float, extra: list[int] = (), ending: bool = False) -> list[int]:
        """Move what is ready; the fds of ``extra`` that are readable."""
        readable = [
            s for s, t in self.sources.items() if ending or len(self.pending[t]) < self.LIMIT
        ] + list(extra)
        writable = [t for t, data in self.pending.items() if data and t not in self.broken]
        try:
            ready_r, ready_w, _ = select.select(readable, writable, [], timeout)
        except InterruptedError:
            return []
        for target in ready_w:
            self._flush(target)
        for source in [s for s in ready_r if s in self.sources]:
            target = self.sources[source]
            chunk = os.read(source, 65536)
            if not chunk:
                del self.sources[source]
                os.close(source)
                continue
            if target in self.broken or len(self.pending[target]) >= self.LIMIT:
                continue  # nobody to take it, or ending with a stuck reader: dropped
            self.pending[target] += chunk
            self._flush(target)
        return [fd for fd in ready_r if fd in extra]

    def _flush(self, target: int) -> None:
        data = self.pending[target]
        try:
            written = os.write(target, data)
        except BlockingIOError:
            return
        except OSError:  # the trial's reader is gone
            self.broken.add(target)
            data.clear()
            return
        del data[:written]

    def finish(self, timeout: float = 2.0) -> None:
        """Copy what the ended tree left in its pipes, within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while (self.sources or any(d and t not in self.broken for t, d in self.pending.items())) and (
            time.monotonic() < deadline
        ):
            self.step(0.05, ending=True)


def end_tree(root: int, group: int | None, grace: float, reaped: dict[int, int], relay: _Relay | None = None) -> None:
    """SIGTERM every process below ``root`` (and ``group``), SIGKILL what is left after ``grace``."""

    def wait(seconds: float) -> None:
        if relay is not None:
            relay.step(seconds, ending=True)
        else:
            time.sleep(seconds)
        reaped.update(_reap())

    _signal_all(descendants(root), group, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while descendants(root) and time.monotonic() < deadline:
        wait(0.05)
    for _ in range(200):  # a process forking while it is killed: repeat until none is left
        left = descendants(root)
        if not left:
            break
        _signal_all(left, group, signal.SIGKILL)
        wait(0.02)
    reaped.update(_reap())


def _exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1


def _keeper(argv: list[str], grace: float, keepalive: int, report: int) -> None:
    """K: run the command, end its whole tree, report its exit code. Never returns."""
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    stop = {"asked": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(asked=True))
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        command = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w, start_new_session=True)
    except OSError as exc:
        print(f"raysweep: cannot start {argv[0]!r}: {exc}", file=sys.stderr, flush=True)
        os.write(report, b"127\n")
        os._exit(0)
    os.close(out_w)
    os.close(err_w)
    relay = _Relay([(out_r, 1), (err_r, 2)])
    reaped: dict[int, int] = {}
    while True:
        reaped.update(_reap())
        if command.pid in reaped or stop["asked"]:
            break
        if relay.step(0.1, extra=[keepalive]):  # G is gone or let go: the trial is over
            break
    end_tree(os.getpid(), command.pid, grace, reaped, relay)
    relay.finish()
    status = reaped.get(command.pid)
    code = _exit_code(status) if status is not None else 128 + signal.SIGKILL
    try:
        os.write(report, f"{code}\n".encode())
    except OSError:
        pass
    os._exit(0)


def guard(argv: list[str], grace: float, parent: int | None = None) -> int:
    """G: start the detached keeper K, wait for its report; the command's exit code."""
    if _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) and parent is not None and os.getppid() != parent:
        return 128 + signal.SIGKILL  # the trial ended before the death signal was armed
    keep_r, keep_w = os.pipe()
    report_r, report_w = os.pipe()
    middle = os.fork()
    if middle == 0:  # the intermediate child: fork K and leave, so K has no parent to be killed with
        os.setsid()
        if os.fork() == 0:
            os.close(keep_w)
            os.close(report_r)
            _keeper(argv, grace, keep_r, report_w)
        os._exit(0)
    os.waitpid(middle, 0)
    os.close(keep_r)
    os.close(report_w)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 1)  # G's copy of the trial's stdout would hold the reader's EOF back

    def let_go(*_):
        try:
            os.close(keep_w)  # K sees the pipe close and ends the tree; G waits for its report
        except OSError:
            pass  # a second SIGTERM

    signal.signal(signal.SIGTERM, let_go)
    text = b""
    while True:
        try:
            chunk = os.read(report_r, 64)
        except InterruptedError:
            continue
        except OSError as exc:
            if exc.errno == errno.EINTR:
                continue
            break
        if not chunk:
            break
        text += chunk
    try:
        return int(text.strip() or 1)
    except ValueError:
        return 1


def main(args: list[str]) -> int:
    grace, parent = DEFAULT_GRACE_S, None
    while args[:1] in (["--grace"], ["--parent"]):
        if args[0] == "--grace":
            grace = float(args[1])
        else:
            parent = int(args[1])
        args = args[2:]
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        print("usage: process_tree.py [--grace SECONDS] [--parent PID] -- ARGV...", file=sys.stderr)
        return 2
    return guard(args, grace, parent)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
