"""Lazy frame sources: structures read one at a time, each with its provenance.

A :class:`FrameSource` turns what a user points at (a file, many files, a
glob, an ASE database, or structures already in memory) into a stream of
:class:`Frame` objects, each carrying the file it came from and its index in
that file. Nothing is read until the stream is iterated, and only one frame
is held at a time, so the dataset pipeline can walk inputs of any size.
"""

from __future__ import annotations

import glob
import os
import pickle
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The ``file`` of frames that were given as objects rather than read from disk.
IN_MEMORY = "<memory>"


class FrameReadError(ValueError):
    """A frame could not be read; names the file and the frame index."""

    def __init__(self, file: str, index: int, reason: str) -> None:
        self.file = file
        self.index = index
        self.reason = reason
        super().__init__(f"{file}, frame {index}: {reason}")


@dataclass
class Frame:
    """One structure and where it came from.

    ``atoms`` is None when the frame could not be read; ``error`` then says why.
    """

    atoms: Any
    file_number: int
    index: int
    error: str | None = None


@dataclass(frozen=True)
class Position:
    """Where reading resumes: frame ``index`` of input file ``file_number``."""

    file_number: int = 0
    index: int = 0


class FrameSource:
    """Structures from files, globs or memory, read lazily frame by frame.

    :param source: a path (any format ASE reads: extxyz, ASE db, CIF,
        POSCAR, ...), a glob pattern, a list of those, an :class:`ase.Atoms`
        or a list of :class:`ase.Atoms`.
    :param format: the ASE format name, when it cannot be guessed from the file.
    :raises FileNotFoundError: for a path that does not exist or a glob that
        matches nothing.

    >>> from atomdesc import examples
    >>> source = FrameSource(examples.STRUCTURES)
    >>> frame = next(iter(source))
    >>> (source.files[frame.file_number] == str(examples.STRUCTURES), frame.index)
    (True, 0)
    """

    def __init__(self, source: Any, format: str | None = None) -> None:
        self.format = format
        self._atoms: list[Any] | None = None
        if _is_atoms(source):
            source = [source]
        if isinstance(source, (list, tuple)) and source and all(_is_atoms(a) for a in source):
            self._atoms = list(source)
            self.files = [IN_MEMORY]
            return
        if isinstance(source, (str, os.PathLike)):
            source = [source]
        if not isinstance(source, (list, tuple)) or not source:
            raise TypeError(
                "source must be a path, a glob, a list of paths, or ase.Atoms objects; "
                f"got {type(source).__name__}"
            )
        self.files = expand_paths(source)

    def __repr__(self) -> str:
        if self._atoms is not None:
            return f"FrameSource(<{len(self._atoms)} structures in memory>)"
        return f"FrameSource({self.files!r})"

    def __iter__(self) -> Iterator[Frame]:
        return self.frames()

    def frames(self, start: Position = Position(), *, in_process: bool = False
               ) -> Iterator[Frame]:
        """Frames in order from ``start`` on.

        A file that cannot be opened, or a frame that cannot be parsed, yields
        one frame with ``atoms=None`` and ``error`` set; reading then goes on
        with the next file (a parser cannot be trusted after a failure).

        :param in_process: parse the files in a child Python process, which
            sends each frame's arrays as a :class:`Structure` (numbers,
            positions, cell, pbc) instead of an :class:`ase.Atoms`. ASE's
            parsers are pure Python: in the child they run beside the
            computing and writing of the pipeline instead of taking turns with
            them for the GIL. The child takes ~0.75 s to start (importing ASE);
            meanwhile frames are read here, and the child goes on after them.
        """
        if self._atoms is not None:
            for index in range(start.index if start.file_number == 0 else len(self._atoms),
                               len(self._atoms)):
                yield Frame(self._atoms[index], 0, index)
            return
        if in_process and sys.executable:
            yield from _frames_from_child(self.files, self.format, start)
        else:
            yield from _read_files(self.files, self.format, start)

    @property
    def nbytes(self) -> int:
        """Bytes of the input files (0 for structures in memory)."""
        return 0 if self._atoms is not None else sum(os.path.getsize(f) for f in self.files)


class Structure:
    """The arrays of a structure that the descriptors read (what a child process sends)."""

    __slots__ = ("numbers", "positions", "cell", "pbc")

    def __init__(self, numbers: Any, positions: Any, cell: Any, pbc: Any) -> None:
        self.numbers, self.positions, self.cell, self.pbc = numbers, positions, cell, pbc

    def __len__(self) -> int:
        return len(self.numbers)

    def __repr__(self) -> str:
        return f"Structure({len(self)} atoms, pbc={list(self.pbc)})"


def _read_files(files: list[str], format: str | None, start: Position) -> Iterator[Frame]:
    for file_number in range(start.file_number, len(files)):
        path = files[file_number]
        first = start.index if file_number == start.file_number else 0
        index = first
        try:
            for atoms in _frames_from(path, first, format or format_from_name(path)):
                yield Frame(atoms, file_number, index)
                index += 1
        except Exception as exc:  # ASE raises anything from a bad file
            yield Frame(None, file_number, index, error=_describe(exc))


def _frames_from(path: str, first: int, format: str | None) -> Iterator[Any]:
    """ASE's frames of ``path`` from index ``first`` on.

    Some readers cannot start past their last frame (ASE's POSCAR reader
    fails an assertion for ``index=slice(1, None)``); for them the file is
    read from its start and its first frames skipped.
    """
    import ase.io

    frames = ase.io.iread(path, index=slice(first, None), format=format)
    if first > 0:
        try:
            head = next(frames)
        except StopIteration:
            return
        except Exception:
            for k, atoms in enumerate(ase.io.iread(path, index=slice(0, None), format=format)):
                if k >= first:
                    yield atoms
            return
        yield head
    yield from frames


#: Frames the child process sends at a time.
_FRAMES_PER_MESSAGE = 64
#: What the child runs: this file, loaded on its own (it needs only the
#: standard library and ASE, not the atomdesc package or its kernels).
_CHILD = ("import importlib.util, sys; spec = importlib.util.spec_from_file_location("
          "'atomdesc_frame_reader', sys.argv[1]); module = importlib.util.module_from_spec(spec); "
          "sys.modules[spec.name] = module; spec.loader.exec_module(module); module._serve()")


#: Read frames here while the child starts (POSIX: needs ``select`` on its pipe).
_READ_WHILE_CHILD_STARTS = os.name == "posix"
#: What the child says once it has imported ASE.
_READY = b"R"


def _frames_from_child(files: list[str], format: str | None, start: Position
                       ) -> Iterator[Frame]:
    """Frames parsed by a child process, in order; the child is stopped when this stops.

    The child takes ~0.75 s to import ASE; until it says it is ready, frames
    are read here, and it is then asked for the frames after the last one
    read here. The pipe holds a few messages at most, so the child never
    runs far ahead.
    """
    child = subprocess.Popen([sys.executable, "-c", _CHILD, __file__],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdin is not None and child.stdout is not None
        if _READ_WHILE_CHILD_STARTS:
            import select

            for frame in _read_files(files, format, start):
                yield frame
                # after a bad frame this file is given up, as _read_files does
                start = (Position(frame.file_number + 1, 0) if frame.atoms is None
                         else Position(frame.file_number, frame.index + 1))
                if select.select([child.stdout], [], [], 0)[0]:
                    break
            else:
                return  # all read here before the child was ready
        if child.stdout.read(1) != _READY:
            # the child could not start (e.g. ASE importable only here): read here
            yield from _read_files(files, format, start)
            return
        pickle.dump({"files": files, "format": format,
                     "start": (start.file_number, start.index)}, child.stdin)
        child.stdin.close()
        while True:
            try:
                message = pickle.load(child.stdout)
            except EOFError:
                raise RuntimeError(f"the process reading {files[0]}{' ...' if len(files) > 1 else ''}"
                                   f" stopped (exit code {child.wait()})") from None
            if message is None:
                break
            for file_number, index, error, *arrays in message:
                yield Frame(Structure(*arrays) if error is None else None,
                            file_number, index, error)
        child.wait()  # every frame is here: the child is exiting
    finally:
        if child.poll() is None:  # stopped early: nothing more is wanted
            child.kill()
        child.wait()
        for pipe in (child.stdin, child.stdout):
            if pipe is not None:
                pipe.close()


def _serve() -> None:
    """The child's side: import ASE, say so, then send the frames asked for on stdin."""
    import signal

    # Ctrl-C reaches the whole process group: the parent stops this child itself
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import ase.io  # noqa: F401  (the slow part of starting)

    try:
        sys.stdout.buffer.write(_READY)
        sys.stdout.buffer.flush()
        _send_frames(pickle.load(sys.stdin.buffer), sys.stdout.buffer)
    except (BrokenPipeError, EOFError):  # the parent is gone, or read everything itself
        os._exit(1)


def _send_frames(request: dict[str, Any], out: Any) -> None:
    import numpy as np

    message: list[tuple[Any, ...]] = []
    for frame in _read_files(request["files"], request["format"], Position(*request["start"])):
        record: tuple[Any, ...] = (frame.file_number, frame.index, frame.error)
        if frame.atoms is not None:
            try:
                a = frame.atoms
                record += (np.asarray(a.numbers), np.asarray(a.positions),
                           np.asarray(a.cell[:]), np.asarray(a.pbc))
            except Exception as exc:  # not an Atoms-like structure
                record = (frame.file_number, frame.index, _describe(exc))
        message.append(record)
        if len(message) >= _FRAMES_PER_MESSAGE:
            pickle.dump(message, out, protocol=pickle.HIGHEST_PROTOCOL)
            out.flush()
            message = []
    pickle.dump(message, out, protocol=pickle.HIGHEST_PROTOCOL)
    pickle.dump(None, out)
    out.flush()


def expand_paths(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Paths as given, with glob patterns expanded (sorted), as strings.

    :raises FileNotFoundError: for a missing path or a glob matching nothing.
    """
    files: list[str] = []
    for p in paths:
        p = os.fspath(p)
        if os.path.exists(p):
            files.append(p)
        elif glob.has_magic(p):
            matches = sorted(glob.glob(p, recursive=True))
            if not matches:
                raise FileNotFoundError(f"no file matches {p!r}")
            files.extend(matches)
        else:
            raise FileNotFoundError(f"no such file: {p!r}")
    return files


#: Extensions that settle the format: ASE reads them as extxyz, and that format
#: has no signature of its own in the contents.
_EXTXYZ_EXTENSIONS = ("xyz", "extxyz")


def format_from_name(path: str) -> str | None:
    """The ASE format of ``path`` when its name settles it, else None (ASE guesses).

    Given no format, ASE matches the first 50 kB of a file against the
    signatures of two dozen formats (several are ``*TEXT`` patterns searched
    through all of it) before it looks at the extension: 14 ms for the bundled
    68 kB example, a third of reading its 202 frames. An ``.xyz`` or ``.extxyz``
    file (compressed or not) is read as extxyz by ASE unless such a signature
    happens to occur in it; its name decides here. An empty file is left to
    ASE, which reports it (extxyz would read it as no frames).
    """
    from ase.io.formats import get_compression

    root, _ = get_compression(os.path.basename(path))
    extension = os.path.splitext(root)[1].lstrip(".").lower()
    if extension not in _EXTXYZ_EXTENSIONS or os.path.getsize(path) == 0:
        return None
    return "extxyz"


def file_signature(path: str) -> dict[str, Any]:
    """Size and modification time, to tell if an input changed between runs."""
    if path == IN_MEMORY:
        return {"path": path}
    st = Path(path).stat()
    return {"path": str(Path(path).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _is_atoms(obj: Any) -> bool:
    return all(hasattr(obj, a) for a in ("positions", "numbers", "cell", "pbc")) and not isinstance(
        obj, (str, os.PathLike)
    )


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return f"cannot read: {type(exc).__name__}: {text}" if str(exc).strip() else f"cannot read: {text}"
