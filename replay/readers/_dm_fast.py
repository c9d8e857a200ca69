"""Numba kernels behind :class:`~darktrigger.replay.readers.darkmachines.DarkMachinesReader`'s fast path.

Imported lazily (numba takes a while to load), and optional: without numba the reader
parses with Python alone. :func:`scan_lines` finds the lines of a chunk of bytes the way
Python's text mode does (``\\n``, ``\\r\\n`` and ``\\r`` end a line); :func:`parse_lines`
reads them into flat arrays. A line the kernel cannot vouch for is *flagged* and left to
the Python line parser, so that the reader gives the same values and error messages with
the kernel as without it: anything outside plain printable ASCII, leading/trailing
spaces, a wrong number of fields, an unknown object code, a number outside the simple
decimal grammar or outside the range where it can be converted exactly, ``nan``/``inf``
spellings, a negative pT.

    >>> import numpy as np
    >>> buf = np.frombuffer(b"7;ttbar;1;2.5e3;0.5;j,3,2,-1,0.1;\\r\\n", np.uint8)
    >>> starts, ends = np.empty(4, np.int64), np.empty(4, np.int64)
    >>> scan_lines(buf, 0, 4, True, starts, ends)
    (1, 35)
    >>> out = parse_lines(buf, starts, ends, 1)
    >>> int(out[0][0]), int(out[1][0]), out[4][0].tolist(), out[7].tolist()
    (0, 7, [1.0, 2500.0, 0.5], [[2.0, -1.0, 0.1]])

Numbers are exact: a decimal with at most 2**53 as its digit string and a power of ten
within 1e±22 is one correctly rounded IEEE multiplication or division of two exactly
representable doubles (Clinger's fast path), which is what ``float()`` returns; any other
number flags its line.
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: line status codes returned by :func:`parse_lines`
OK, BLANK, FLAGGED = 0, 1, 2
#: distinct process names tracked per chunk; lines with more get index -1
MAX_PROCESSES = 256
#: bytes of the shortest object field plus its ';' ("j,0,0,0,0;"): bounds objects per chunk
MIN_OBJECT_BYTES = 10

_POW10 = np.array([float(10**k) for k in range(23)])  # all exactly representable
_MANTISSA_LIMIT = 2**53
_U64_TENTH, _U64_LAST = np.uint64((2**64 - 1) // 10), np.uint64((2**64 - 1) % 10)
_SEMI, _COMMA, _SPACE = 59, 44, 32


@njit(cache=True, nogil=True)
def scan_lines(buf, pos, max_lines, eof, starts, ends):  # pragma: no cover - compiled
    """Find up to ``max_lines`` complete lines from ``buf[pos:]``.

    Writes each line's ``[start, end)`` (without its terminator) into ``starts``/``ends``
    and returns ``(n_lines, next_pos)``. A last line without a terminator, or a ``\\r``
    that may be followed by ``\\n``, counts only when ``eof``.
    """
    size = buf.size
    n = 0
    i = pos
    while n < max_lines and i < size:
        j = i
        while j < size:
            c = buf[j]
            if c == 10 or c == 13:
                break
            j += 1
        if j == size:
            if not eof:
                break
            nxt = size
        elif buf[j] == 13:
            if j + 1 < size:
                nxt = j + 2 if buf[j + 1] == 10 else j + 1
            elif eof:
                nxt = j + 1
            else:
                break
        else:
            nxt = j + 1
        starts[n] = i
        ends[n] = j
        n += 1
        i = nxt
    return n, i


@njit(cache=True, nogil=True, inline="always")
def _find(buf, i, end, byte):  # pragma: no cover - compiled
    while i < end and buf[i] != byte:
        i += 1
    return i


@njit(cache=True, nogil=True, inline="always")
def _number(buf, i, end):  # pragma: no cover - compiled
    """(ok, value, stop) for the decimal starting at ``buf[i]`` and stopping at ``stop``
    (at most ``end``), in the grammar ``[+-](digits[.digits]|.digits)[(e|E)[+-]digits]``.
    The caller checks that a delimiter follows."""
    neg = False
    if i < end and (buf[i] == 45 or buf[i] == 43):
        neg = buf[i] == 45
        i += 1
    mant = np.int64(0)
    scale = 0
    digits = 0  # all of them
    sig = 0  # from the first non-zero one
    while i < end:
        d = np.int64(buf[i]) - 48
        if d < 0 or d > 9:
            break
        if mant or d:
            sig += 1
            if sig <= 18:  # no int64 overflow
                mant = mant * 10 + d
        digits += 1
        i += 1
    if i < end and buf[i] == 46:
        i += 1
        while i < end:
            d = np.int64(buf[i]) - 48
            if d < 0 or d > 9:
                break
            if mant or d:
                sig += 1
                if sig <= 18:
                    mant = mant * 10 + d
            scale -= 1
            digits += 1
            i += 1
    if digits == 0 or sig > 18 or mant >= _MANTISSA_LIMIT:
        return False, 0.0, i
    exp = np.int64(0)
    if i < end and (buf[i] == 101 or buf[i] == 69):
        i += 1
        exp_neg = False
        if i < end and (buf[i] == 45 or buf[i] == 43):
            exp_neg = buf[i] == 45
            i += 1
        exp_digits = 0
        while i < end:
            d = np.int64(buf[i]) - 48
            if d < 0 or d > 9:
                break
            if exp < 100000:  # far beyond any exact case; stop growing
                exp = exp * 10 + d
            exp_digits += 1
            i += 1
        if exp_digits == 0:
            return False, 0.0, i
        if exp_neg:
            exp = -exp
    value = 0.0
    if mant != 0:
        e10 = scale + exp
        if 0 <= e10 <= 22:
            value = mant * _POW10[e10]
        elif -22 <= e10 < 0:
            value = mant / _POW10[-e10]
        else:
            return False, 0.0, i
    return True, -value if neg else value, i


@njit(cache=True, nogil=True, inline="always")
def _code(buf, i, end):  # pragma: no cover - compiled
    """Index into (e/γ, μ, jet) of the object code ``buf[i:end]``, or -1."""
    if end - i == 1:
        c = buf[i]
        if c == 106 or c == 98:  # j, b
            return 2
        if c == 103:  # g
            return 0
    elif end - i == 2 and (buf[i + 1] == 45 or buf[i + 1] == 43):  # -, +
        if buf[i] == 101:  # e
            return 0
        if buf[i] == 109:  # m
            return 1
    return -1


@njit(cache=True, nogil=True, inline="always")
def _same(buf, a, b, length):  # pragma: no cover - compiled
    for t in range(length):
        if buf[a + t] != buf[b + t]:
            return False
    return True


@njit(cache=True, nogil=True)
def parse_lines(buf, starts, ends, n):  # pragma: no cover - compiled
    """Parse the lines ``buf[starts[k]:ends[k]]``, ``k < n``.

    Returns, per line, ``status`` (uint8: OK, BLANK or FLAGGED), ``event`` (uint64, the
    event ID), ``id_ok`` (bool: the ID is a decimal integer below 2**64), ``process``
    (int32 index into the process table, -1 when it is full), ``head`` (float64
    ``[n, 3]``: weight, MET in MeV, METphi); per object of the OK lines, ``line`` (int64
    index of its line), ``kind`` (int8: 0 e/γ, 1 μ, 2 jet), ``values`` (float64 ``[m, 3]``:
    pT in MeV, η, φ); and the process table as byte spans ``proc_start``, ``proc_len``.
    Values of lines that are not OK are undefined.
    """
    status = np.zeros(n, np.uint8)
    event = np.zeros(n, np.uint64)
    id_ok = np.zeros(n, np.bool_)
    process = np.full(n, -1, np.int32)
    head = np.zeros((n, 3))
    cap = 1
    if n:
        cap += (ends[n - 1] - starts[0]) // MIN_OBJECT_BYTES
    line = np.empty(cap, np.int64)
    kind = np.empty(cap, np.int8)
    values = np.empty((cap, 3))
    proc_start = np.empty(MAX_PROCESSES, np.int64)
    proc_len = np.empty(MAX_PROCESSES, np.int64)
    n_proc = 0
    last_proc = -1
    m = 0
    for k in range(n):
        s = starts[k]
        e = ends[k]
        if s == e:
            status[k] = BLANK
            continue
        status[k] = FLAGGED  # until the line is read to its end
        if buf[s] == _SPACE or buf[e - 1] == _SPACE:
            continue  # Python strips whitespace at the ends of a line
        odd = False
        for t in range(s, e):  # no early exit: lets LLVM vectorise the common case
            c = buf[t]
            odd |= (c < 32) | (c > 126)
        if odd:
            continue
        while e > s and buf[e - 1] == _SEMI:
            e -= 1
        # event ID
        f = _find(buf, s, e, _SEMI)
        if f == e:
            continue
        ev = np.uint64(0)
        good_id = f > s
        for t in range(s, f):
            d = np.uint64(buf[t]) - np.uint64(48)  # wraps below '0': not a digit either
            if d > np.uint64(9) or ev > _U64_TENTH or (ev == _U64_TENTH and d > _U64_LAST):
                good_id = False
                break
            ev = ev * np.uint64(10) + d
        # process
        p0 = f + 1
        f = _find(buf, p0, e, _SEMI)
        if f == e:
            continue
        p1 = f
        # weight, MET, METphi: each must end at a ';' (METphi: or at the end)
        fine = True
        for q in range(3):
            ok, v, f = _number(buf, f + 1, e)
            if not ok or (f < e and buf[f] != _SEMI) or (q < 2 and f == e):
                fine = False
                break
            head[k, q] = v
        if not fine:
            continue
        # objects: code,E,pt,eta,phi, each ending at a ';' or the end
        m0 = m
        while f < e:
            i = f + 1
            c = _find(buf, i, min(i + 3, e), _COMMA)
            code = _code(buf, i, c)
            if code < 0 or c == e or buf[c] != _COMMA:
                fine = False
                break
            for q in range(4):
                ok, v, c = _number(buf, c + 1, e)
                if (not ok or (q < 3 and (c == e or buf[c] != _COMMA))
                        or (q == 3 and c < e and buf[c] != _SEMI) or (q == 1 and v < 0)):
                    fine = False
                    break
                if q:
                    values[m, q - 1] = v
            if not fine:
                break
            f = c
            line[m] = k
            kind[m] = code
            m += 1
        if not fine:
            m = m0
            continue
        # the line is good
        status[k] = OK
        event[k] = ev
        id_ok[k] = good_id
        length = p1 - p0
        if last_proc >= 0 and proc_len[last_proc] == length and _same(buf, proc_start[last_proc], p0, length):
            process[k] = last_proc
            continue
        found = -1
        for u in range(n_proc):
            if proc_len[u] == length and _same(buf, proc_start[u], p0, length):
                found = u
                break
        if found < 0 and n_proc < MAX_PROCESSES:
            proc_start[n_proc] = p0
            proc_len[n_proc] = length
            found = n_proc
            n_proc += 1
        process[k] = found
        last_proc = found
    return (status, event, id_ok, process, head, line[:m], kind[:m], values[:m],
            proc_start[:n_proc], proc_len[:n_proc])


@njit(cache=True, nogil=True)
def pack_objects(block, event, kind, pt, eta, phi, first_slot, n_slots):  # pragma: no cover - compiled
    """Compiled twin of :func:`darktrigger.replay.objects.pack_slots` for all object types at once.

    Writes object ``i`` (pT in GeV, η, φ; float64) of type ``kind[i]`` (0 e/γ, 1 μ,
    2 jet, whose slots start at ``first_slot[kind]``, ``n_slots[kind]`` of them) into row
    ``event[i]`` of ``block`` (float32 ``[N, 19, 3]``), pT-ordered with ties in input
    order, keeping the highest-pT ones; pT <= 0 and NaN are ignored. Returns the number
    of objects of each type that did not fit (int64 ``[3]``). The same rules as
    ``pack_slots`` (a stable sort by descending pT), which a test holds it to, at a
    tenth of its cost: one insertion per object instead of a lexsort.
    """
    n_events = block.shape[0]
    filled = np.zeros((n_events, 3), np.int64)
    kept_pt = np.zeros((n_events, block.shape[1]))  # float64: float32 could tie
    dropped = np.zeros(3, np.int64)
    for i in range(pt.size):
        p = pt[i]
        if not p > 0:
            continue
        ev = event[i]
        k = kind[i]
        first = first_slot[k]
        width = n_slots[k]
        n = filled[ev, k]
        pos = n
        while pos > 0 and kept_pt[ev, first + pos - 1] < p:
            pos -= 1
        if n == width:
            dropped[k] += 1
            if pos == width:
                continue
            n -= 1  # the lowest falls off
        else:
            filled[ev, k] = n + 1
        for t in range(first + n, first + pos, -1):
            kept_pt[ev, t] = kept_pt[ev, t - 1]
            block[ev, t, 0] = block[ev, t - 1, 0]
            block[ev, t, 1] = block[ev, t - 1, 1]
            block[ev, t, 2] = block[ev, t - 1, 2]
        kept_pt[ev, first + pos] = p
        block[ev, first + pos, 0] = p
        block[ev, first + pos, 1] = eta[i]
        block[ev, first + pos, 2] = phi[i]
    return dropped
