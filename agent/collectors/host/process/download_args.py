"""Where a ``curl``/``wget`` command line writes its download (pure: argv + cwd in, path out).

The download-then-execute correlation relates the download and the later execution by file
path, not by user; this reads the output path from the arguments the kernel reported: curl
``-o FILE``/``--output FILE``/``-oFILE``/``--output=FILE`` and ``-O``/``--remote-name`` (the
URL's last segment in the working directory); wget ``-O FILE``/``--output-document=FILE`` and
``-P DIR``/``--directory-prefix=DIR``, otherwise the URL's last segment (``index.html`` for
none). ``-`` (stdout) is no file. :func:`build_output` does the same for a compiler's or
linker's ``-o``: a developer's freshly built program is told apart from a downloaded one. The
result is a normalised absolute path, or ``None`` when it cannot be known (no URL, stdout, no
cwd for a relative name). Hand-written: no library parses
these two tools' option syntax, and only a handful of options matter.
"""

from __future__ import annotations

import posixpath
from urllib.parse import urlsplit

MAX_ARGS = 256


def download_path(args: list[str], cwd: str | None) -> str | None:
    if not args:
        return None
    tool = posixpath.basename(args[0])
    if tool == "curl":
        return _curl(args[1:MAX_ARGS], cwd)
    if tool == "wget":
        return _wget(args[1:MAX_ARGS], cwd)
    return None


def _absolute(path: str, cwd: str | None) -> str | None:
    if not path or path == "-":
        return None
    if not path.startswith("/"):
        if not cwd:
            return None
        path = posixpath.join(cwd, path)
    return posixpath.normpath(path)


def _remote_name(url: str) -> str:
    name = posixpath.basename(urlsplit(url).path if "://" in url else url.split("?", 1)[0])
    return name


def _curl(args: list[str], cwd: str | None) -> str | None:
    output: str | None = None
    remote = False
    urls: list[str] = []
    it = iter(range(len(args)))
    for i in it:
        a = args[i]
        if a in ("-o", "--output") and i + 1 < len(args):
            output = args[i + 1]
            next(it, None)
        elif a.startswith("--output="):
            output = a.split("=", 1)[1]
        elif a in ("-O", "--remote-name"):
            remote = True
        elif a.startswith("-") and not a.startswith("--") and "o" in a[1:]:
            rest = a[a.index("o", 1) + 1:]  # -o FILE, -oFILE, -so FILE, -sLo FILE
            if rest:
                output = rest
            elif i + 1 < len(args):
                output = args[i + 1]
                next(it, None)
        elif a.startswith("-") and not a.startswith("--") and "O" in a[1:]:
            remote = True  # -sO, -LO …
        elif not a.startswith("-"):
            urls.append(a)
    if output is not None:
        return _absolute(output, cwd)
    if remote and urls:
        name = _remote_name(urls[-1])
        return _absolute(name, cwd) if name else None
    return None


def _wget(args: list[str], cwd: str | None) -> str | None:
    output: str | None = None
    prefix: str | None = None
    urls: list[str] = []
    it = iter(range(len(args)))
    for i in it:
        a = args[i]
        if a in ("-O", "--output-document") and i + 1 < len(args):
            output = args[i + 1]
            next(it, None)
        elif a.startswith("--output-document="):
            output = a.split("=", 1)[1]
        elif a.startswith("-") and not a.startswith("--") and "O" in a[1:]:
            rest = a[a.index("O", 1) + 1:]  # -OFILE, -qO FILE, -qO-
            if rest:
                output = rest
            elif i + 1 < len(args):
                output = args[i + 1]
                next(it, None)
        elif a in ("-P", "--directory-prefix") and i + 1 < len(args):
            prefix = args[i + 1]
            next(it, None)
        elif a.startswith("--directory-prefix="):
            prefix = a.split("=", 1)[1]
        elif a in ("-o", "-a", "--output-file", "--append-output", "-U", "--user-agent",
                   "--header", "-e", "--execute", "-i", "--input-file") and i + 1 < len(args):
            next(it, None)  # options with a value that is not the download
        elif not a.startswith("-"):
            urls.append(a)
    if output is not None:
        return _absolute(output, cwd)
    if not urls:
        return None
    name = _remote_name(urls[-1]) or "index.html"
    base = _absolute(prefix, cwd) if prefix else cwd
    return _absolute(name, base)


COMPILERS = frozenset({"gcc", "cc", "g++", "c++", "clang", "clang++", "ld", "ld.bfd",
                       "ld.gold", "ld.lld", "collect2", "rustc", "go", "tcc"})


def build_output(args: list[str], cwd: str | None) -> str | None:
    """The file a compiler or linker writes (``-o FILE`` / ``-oFILE``), absolute."""
    if not args:
        return None
    name = posixpath.basename(args[0])
    if name not in COMPILERS and not name.startswith(("gcc-", "clang-", "x86_64-linux-gnu-")):
        return None
    for i, a in enumerate(args[1:MAX_ARGS], start=1):
        if a == "-o" and i + 1 < len(args):
            return _absolute(args[i + 1], cwd)
        if a.startswith("-o") and len(a) > 2:
            return _absolute(a[2:], cwd)
    return None
