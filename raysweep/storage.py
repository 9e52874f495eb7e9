"""Where a run directory lives: a local path, or a cloud URI (``s3://bucket/prefix``, ``gs://...``).

On a Ray cluster every node must reach the run directory, so ``storage`` may
name an object store. :func:`as_path` turns the ``storage`` string into the
object the rest of raysweep handles:

* a local path (or ``file://`` URI) stays a :class:`pathlib.Path`, and every
  local code path is the one raysweep always had;
* a URI becomes a :class:`RemotePath` on a ``pyarrow.fs`` filesystem
  (``pyarrow.fs.FileSystem.from_uri``), with the small subset of
  ``pathlib.Path``'s API that raysweep uses on a run directory (``/``,
  ``name``, ``parent``, ``exists``, ``is_dir``, ``iterdir``, ``glob``,
  ``read_bytes``, ``write_bytes``, ``unlink``, ``rmdir``, ...). Its ``str()``
  is the URI, which Ray Tune accepts as ``storage_path`` as it is.

Credentials and endpoints come from the usual places, the same for pyarrow
and (for the lock) boto3: ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``,
``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` for an
S3-compatible server (MinIO, Ceph, ...), instance roles; or query parameters
of the URI that pyarrow understands (``?endpoint_override=host:9000&scheme=http``).
Ray workers resolve them again from their own environment, so every node
needs them (Ray passes the driver's filesystem to workers with the endpoint,
but not with credentials taken from the environment).

Writes: locally, a file is written to a temporary name and renamed over the
target. Object stores have no rename; there a write is one upload of a buffer
that is complete in memory first, and the object appears whole when the
upload completes or not at all (S3 objects are written with one PUT: the
filesystem is opened with ``allow_delayed_open``, so files smaller than a
multipart part never start a multipart upload). Readers see either the old
object or the new one. What object stores do *not* give is an atomic
"create if absent" through pyarrow: see :class:`ConditionalObject` for the
lock's needs.

A write that fails (a full disk, a quota, a read-only mount, a refused upload)
raises :class:`WriteFailed`, which names the file and the reason; the file then
holds its old content or does not exist, never a part, so the run directory
stays resumable once the cause is fixed.
"""

from __future__ import annotations

import contextlib
import email.utils
import errno
import fnmatch
import functools
import hashlib
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Union

import pyarrow.fs as pafs

from raysweep.errors import UserError

__all__ = [
    "RemotePath",
    "StoragePath",
    "WriteFailed",
    "as_path",
    "arrow_location",
    "conditional_object",
    "is_remote",
    "is_uri",
    "rmtree",
    "run_dir",
    "unwritable_reason",
    "write_bytes_atomically",
    "write_failure_in",
]


class WriteFailed(OSError):
    """A file of the run directory could not be written.

    ``str()`` is one line for people, e.g. ``cannot write /runs/x/state.json: no
    space left on device``; ``path`` is the file, ``errno`` the cause's errno
    (or None). It stays an :class:`OSError`, so code that handles I/O errors
    handles it too.
    """

    def __init__(self, path: "StoragePath", cause: BaseException) -> None:
        code = getattr(cause, "errno", None)
        reason = os.strerror(code).lower() if isinstance(code, int) and code > 0 else _first_line(cause)
        super().__init__(code, reason)
        self.path = path
        self.reason = reason

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.reason}"


#: errno values that say the storage itself refuses writes (not a bug of the writer).
_STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG})


def write_failure_in(exc: BaseException) -> WriteFailed | None:
    """The failed write that caused ``exc``, if any.

    Ray Tune re-raises an exception of a callback as a ``TuneError`` that holds
    only the traceback's text; the original stays reachable through Python's
    exception chain (``__cause__`` / ``__context__``), which this follows. An
    ``OSError`` of Tune's own files (its experiment state) counts when its errno
    says the storage refused the write (no space, quota, read-only, I/O error).
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, WriteFailed):
            return current
        if isinstance(current, OSError) and current.errno in _STORAGE_ERRNOS:
            return WriteFailed(current.filename or "a file of the run directory", current)
        current = current.__cause__ or current.__context__
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
#: Filesystems without real directories: "making" one is a no-op.
_OBJECT_STORES = frozenset({"s3", "gcs"})


def is_uri(location: Any) -> bool:
    """Whether ``location`` is a URI naming a non-local filesystem."""
    if isinstance(location, RemotePath):
        return True
    if not isinstance(location, str):
        return False
    match = _SCHEME.match(location)
    return match is not None and match.group(1).lower() != "file"


def is_remote(location: Any) -> bool:
    return isinstance(location, RemotePath) or is_uri(location)


def as_path(location: "str | os.PathLike[str] | RemotePath") -> "StoragePath":
    """A local ``Path`` (unchanged, unresolved) or a ``RemotePath`` for a URI."""
    if isinstance(location, RemotePath):
        return location
    if isinstance(location, str):
        if is_uri(location):
            return RemotePath.from_uri(location)
        if location.lower().startswith("file://"):
            return Path(location[len("file://"):])
    return Path(location)


def run_dir(storage: str) -> "StoragePath":
    """The run directory an experiment's ``storage`` names; local paths are made absolute."""
    path = as_path(storage)
    return path.resolve() if isinstance(path, Path) else path


def unwritable_reason(storage: str) -> str | None:
    """Why a local run directory could not be created or written, or None when it can.

    Looks without writing anything: the directory itself if it exists, else
    its nearest existing ancestor, must be a directory this process may write
    in (``os.access``, which also sees a read-only mount). Object-store URIs
    are not probed here (their credentials are checked when the lock is taken).
    """
    path = as_path(storage)
    if isinstance(path, RemotePath):
        return None
    path = Path(os.path.abspath(path))
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is a file, not a directory" if probe == path else f"{probe} is a file, so no directory can be made under it"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable by this user" if os.access(probe, os.F_OK) else f"{probe} cannot be reached"
    return None


def rmtree(path: "StoragePath") -> None:
    """Delete a directory and everything under it."""
    if isinstance(path, RemotePath):
        path.rmtree()
    else:
        shutil.rmtree(path)


def write_bytes_atomically(path: "StoragePath", data: bytes) -> None:
    """``path`` holds all of ``data`` or its old content, never a part.

    Locally: a temporary file in the same directory, renamed over ``path``.
    Remote: one upload of the complete buffer (see the module's docstring).
    """
    if isinstance(path, RemotePath):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        except OSError as exc:
            raise WriteFailed(path, exc) from exc
        return
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        raise WriteFailed(path, exc) from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def arrow_location(path: "StoragePath") -> tuple[Any, pafs.FileSystem | None]:
    """``(where, filesystem)`` for pyarrow readers and writers (``filesystem=None`` locally)."""
    if isinstance(path, RemotePath):
        return path.fs_path, path.fs
    return path, None


# ----------------------------------------------------------------------------
# remote paths
# ----------------------------------------------------------------------------
@functools.lru_cache(maxsize=32)
def _filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem of a URI and the URI's path on it (cached: S3 may look up the bucket's region)."""
    try:
        fs, fs_path = pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise UserError(f"storage {uri!r}: pyarrow cannot open this URI ({exc})") from None
    if fs.type_name == "s3":
        # One PUT for every object smaller than a multipart part, instead of
        # create/upload/complete: fewer requests, and nothing left half-started.
        reconstruct, (options,) = fs.__reduce__()
        fs = reconstruct({**options, "allow_delayed_open": True})
    return fs, fs_path


def clear_cache() -> None:
    """Forget cached filesystems (e.g. after the endpoint or credentials in the environment changed)."""
    _filesystem.cache_clear()


@dataclass(frozen=True)
class _Stat:
    st_mtime: float
    st_size: int


class RemotePath:
    """A file or directory on a remote filesystem, behaving like the ``pathlib.Path`` raysweep uses.

    ``str()`` gives the URI (query parameters included), ``fs_path`` the path
    on ``fs``. It is not ``os.PathLike``: handing it to ``open`` or ``os``
    functions fails loudly instead of writing a local file named ``s3:``.
    """

    __slots__ = ("fs", "fs_path", "_head", "_query", "_info")

    def __init__(self, fs: pafs.FileSystem, fs_path: str, head: str, query: str = "", info: pafs.FileInfo | None = None):
        self.fs = fs
        self.fs_path = fs_path.rstrip("/") or fs_path
        self._head = head  # the URI up to the filesystem path: "s3://", "hdfs://namenode:8020"
        self._query = query
        self._info = info  # from a directory listing; saves a request in stat()

    @classmethod
    def from_uri(cls, uri: str) -> "RemotePath":
        base, _, query = uri.partition("?")
        base = base.rstrip("/")
        fs, fs_path = _filesystem(uri)
        fs_path = fs_path.rstrip("/")
        if not base.endswith(fs_path):
            raise UserError(f"storage {uri!r}: cannot tell the path of this URI on its filesystem ({fs_path!r})")
        return cls(fs, fs_path, base[: len(base) - len(fs_path)], query)

    # -- naming ------------------------------------------------------------------
    def _with_path(self, fs_path: str, info: pafs.FileInfo | None = None) -> "RemotePath":
        return RemotePath(self.fs, fs_path, self._head, self._query, info)

    def __truediv__(self, other: str | os.PathLike[str]) -> "RemotePath":
        part = os.fspath(other).strip("/")
        return self._with_path(f"{self.fs_path}/{part}" if part else self.fs_path)

    @property
    def uri(self) -> str:
        return self._head + self.fs_path + (f"?{self._query}" if self._query else "")

    def __str__(self) -> str:
        return self.uri

    def __repr__(self) -> str:
        return f"RemotePath({self.uri!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemotePath) and other.uri == self.uri

    def __hash__(self) -> int:
        return hash(self.uri)

    def __lt__(self, other: "RemotePath") -> bool:
        return self.fs_path < other.fs_path

    @property
    def name(self) -> str:
        return self.fs_path.rsplit("/", 1)[-1]

    @property
    def parent(self) -> "RemotePath":
        head, sep, _ = self.fs_path.rpartition("/")
        return self._with_path(head if sep else self.fs_path)

    def with_name(self, name: str) -> "RemotePath":
        return self.parent / name

    # -- queries -------------------------------------------------------------------
    def _file_info(self) -> pafs.FileInfo:
        return self.fs.get_file_info(self.fs_path)

    def exists(self) -> bool:
        return self._file_info().type != pafs.FileType.NotFound

    def is_dir(self) -> bool:
        return self._file_info().type == pafs.FileType.Directory

    def is_file(self) -> bool:
        return self._file_info().type == pafs.FileType.File

    def stat(self) -> _Stat:
        info = self._info if self._info is not None else self._file_info()
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(self.uri)
        mtime = info.mtime.timestamp() if info.mtime is not None else 0.0
        return _Stat(st_mtime=mtime, st_size=info.size or 0)

    def _listing(self, recursive: bool) -> list[pafs.FileInfo]:
        return self.fs.get_file_info(pafs.FileSelector(self.fs_path, recursive=recursive, allow_not_found=False))

    def iterdir(self) -> Iterator["RemotePath"]:
        """The entries directly in this directory (FileNotFoundError if there is none)."""
        infos = sorted(self._listing(recursive=False), key=lambda i: i.path)
        return iter([self._with_path(info.path, info) for info in infos])

    def glob(self, pattern: str) -> Iterator["RemotePath"]:
        """Entries matching ``pattern`` segment by segment (``*``, ``?``, ``[..]``, ``**``), from one listing."""
        try:
            infos = self._listing(recursive=True)
        except FileNotFoundError:
            return iter([])
        wanted = [p for p in pattern.strip("/").split("/") if p]
        prefix = len(self.fs_path) + 1
        hits = []
        for info in sorted(infos, key=lambda i: i.path):
            if _match(info.path[prefix:].split("/"), wanted):
                hits.append(self._with_path(info.path, info))
        return iter(hits)

    # -- reading and writing ----------------------------------------------------------
    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.fs_path) as handle:
            return handle.read()

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes | Any) -> None:
        """One upload of ``data``; the object appears whole when it completes (see the module's docstring)."""
        with self.fs.open_output_stream(self.fs_path) as handle:
            handle.write(data)

    def write_text(self, text: str, encoding: str = "utf-8") -> None:
        self.write_bytes(text.encode(encoding))

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        if self.fs.type_name in _OBJECT_STORES:
            return  # object stores have no directories: a key's prefix is one as soon as a key has it
        self.fs.create_dir(self.fs_path, recursive=parents)

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self.fs.delete_file(self.fs_path)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def rmdir(self) -> None:
        self.fs.delete_dir(self.fs_path)

    def rmtree(self) -> None:
        try:
            self.fs.delete_dir(self.fs_path)
        except FileNotFoundError:
            pass


StoragePath = Union[Path, RemotePath]


def _match(parts: list[str], pattern: list[str]) -> bool:
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_match(parts[i:], rest) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], head) and _match(parts[1:], rest)


# ----------------------------------------------------------------------------
# conditional writes, for the run directory's lock
# ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Version:
    """One version of a conditional object as read: its bytes, a tag naming it, and its age."""

    data: bytes
    tag: str
    age_s: float  # seconds since this version was written


class ConditionalObject:
    """An object written only if it is absent, or only if it is still the version read.

    This is what a lock on an object store needs and what pyarrow does not
    offer. :func:`conditional_object` picks the implementation:

    * ``S3ConditionalObject`` (``s3://``): S3's own preconditions through
      boto3, ``If-None-Match: *`` to create and ``If-Match: <ETag>`` to replace
      or delete. The store decides, so two writers can never both win. Ages
      are measured on the store's clock (``Date`` minus ``Last-Modified``),
      so the clocks of the machines do not matter.
    * ``CheckThenWriteObject`` (other schemes, e.g. ``gs://``): check, write,
      wait ``settle_s``, read back. Two writers that both check before either
      writes both write; only the later one reads back its own bytes, so
      exactly one wins *unless* a write takes longer than ``settle_s`` to become
      visible. Ages compare this machine's clock with the store's
      modification time, so clock skew shortens or lengthens them.
    """

    def create(self, data: bytes) -> str | None:
        """Write ``data`` if there is no object; its tag, or None if one exists."""
        raise NotImplementedError

    def replace(self, data: bytes, tag: str) -> str | None:
        """Write ``data`` if the object is still version ``tag``; the new tag, or None."""
        raise NotImplementedError

    def read(self) -> Version | None:
        raise NotImplementedError

    def delete(self, tag: str) -> bool:
        """Delete the object if it is still version ``tag``."""
        raise NotImplementedError


def conditional_object(path: RemotePath, *, settle_s: float = 2.0) -> ConditionalObject:
    if path.fs.type_name == "s3":
        return S3ConditionalObject(path)
    return CheckThenWriteObject(path, settle_s=settle_s)


class S3ConditionalObject(ConditionalObject):
    def __init__(self, path: RemotePath) -> None:
        try:
            import boto3
            from botocore.exceptions import BotoCoreError, ClientError
        except ImportError:
            raise UserError(
                f"{path.parent} is on S3: its run-directory lock needs boto3 for S3's conditional writes, "
                "which pyarrow does not offer; install it with: pip install 'raysweep[s3]'"
            ) from None
        self._client_error = ClientError
        self._boto_error = BotoCoreError
        self.bucket, _, self.key = path.fs_path.partition("/")
        options = path.fs.__reduce__()[1][0]  # the filesystem's resolved settings: endpoint, region, keys
        kwargs: dict[str, Any] = {}
        endpoint = options.get("endpoint_override") or ""
        if endpoint:
            kwargs["endpoint_url"] = endpoint if "://" in endpoint else f"{options.get('scheme') or 'https'}://{endpoint}"
        if options.get("region"):
            kwargs["region_name"] = options["region"]
        for option, name in (("access_key", "aws_access_key_id"), ("secret_key", "aws_secret_access_key"), ("session_token", "aws_session_token")):
            if options.get(option):
                kwargs[name] = options[option]
        self._s3 = boto3.session.Session().client("s3", **kwargs)

    def _refused(self, exc: Exception) -> bool:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        status = getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
        # 412: the precondition failed; 409: a concurrent conditional write to the same key won.
        return code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412)

    def _call(self, method: str, **kwargs: Any) -> Any:
        """One S3 request: None when S3 refused its precondition or found no object; OSError for other failures."""
        try:
            return getattr(self._s3, method)(Bucket=self.bucket, Key=self.key, **kwargs)
        except self._client_error as exc:
            if self._refused(exc) or _not_found(exc):
                return None
            raise OSError(f"s3://{self.bucket}/{self.key}: {exc}") from exc
        except self._boto_error as exc:  # no credentials, endpoint unreachable, ...
            raise OSError(f"s3://{self.bucket}/{self.key}: {exc}") from exc

    def create(self, data: bytes) -> str | None:
        response = self._call("put_object", Body=data, IfNoneMatch="*")
        return None if response is None else response["ETag"]

    def replace(self, data: bytes, tag: str) -> str | None:
        response = self._call("put_object", Body=data, IfMatch=tag)
        return None if response is None else response["ETag"]

    def read(self) -> Version | None:
        response = self._call("get_object")
        if response is None:
            return None
        data = response["Body"].read()
        written = response["LastModified"].timestamp()
        served = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        now = email.utils.parsedate_to_datetime(served).timestamp() if served else time.time()
        return Version(data=data, tag=response["ETag"], age_s=max(0.0, now - written))

    def delete(self, tag: str) -> bool:
        return self._call("delete_object", IfMatch=tag) is not None


def _not_found(exc: Exception) -> bool:
    response = getattr(exc, "response", {})
    return response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound") or response.get(
        "ResponseMetadata", {}
    ).get("HTTPStatusCode") == 404


class CheckThenWriteObject(ConditionalObject):
    def __init__(self, path: RemotePath, *, settle_s: float = 2.0) -> None:
        self.path = path
        self.settle_s = settle_s

    @staticmethod
    def _tag(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    def _write_and_verify(self, data: bytes) -> str | None:
        self.path.write_bytes(data)
        time.sleep(self.settle_s)  # a competing write that had already passed its check lands by now
        current = self.read()
        return current.tag if current is not None and current.data == data else None

    def create(self, data: bytes) -> str | None:
        if self.path.exists():
            return None
        return self._write_and_verify(data)

    def replace(self, data: bytes, tag: str) -> str | None:
        current = self.read()
        if current is None or current.tag != tag:
            return None
        return self._write_and_verify(data)

    def read(self) -> Version | None:
        try:
            data = self.path.read_bytes()
            info = self.path.fs.get_file_info(self.path.fs_path)
        except FileNotFoundError:
            return None
        written = info.mtime.timestamp() if info.mtime is not None else time.time()
        return Version(data=data, tag=self._tag(data), age_s=max(0.0, time.time() - written))

    def delete(self, tag: str) -> bool:
        current = self.read()
        if current is None or current.tag != tag:
            return False
        self.path.unlink(missing_ok=True)
        return True
