# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The per-frame work of a socket reader and of the consumer, compiled: the twin of ``_intake_py.py``, which
documents the behaviour. Same classes (``Intake``, ``Reader``, ``DedupWindow``, ``Stream``), same results;
``tests/unit/test_intake.py`` and ``test_intake_deferred.py`` run the same cases against both. The rare path
(``_intake_py.take_shared``) is Python for both.

Why it exists: at 200k+ events/s the reader's own work per frame (classify, de-duplicate, build the Event)
cost as much as aiohttp and orjson together when written in Python (bench/bench_receive.py).

``DedupWindow`` here keeps 64-bit hashes of its keys in an open-addressing table (linear probing,
backward-shift deletion) and their arrival order in a ring, so expiry pops from the front in O(1).
"""

from cpython.dict cimport PyDict_Contains, PyDict_GetItemWithError
from cpython.list cimport PyList_GET_ITEM
from cpython.object cimport PyObject, PyObject_Hash, PyTypeObject
from cpython.ref cimport Py_DECREF, Py_INCREF
from cpython.tuple cimport PyTuple_Check, PyTuple_GET_ITEM, PyTuple_GET_SIZE, PyTuple_SET_ITEM
from cpython.unicode cimport PyUnicode_1BYTE_KIND, PyUnicode_DATA, PyUnicode_GET_LENGTH, PyUnicode_KIND
from libc.stdint cimport uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcmp
from posix.time cimport CLOCK_MONOTONIC, CLOCK_REALTIME, clock_gettime, timespec

cimport cython

import time

import aiohttp
import orjson

from gcbridge.genesys.events import Event
from gcbridge.genesys.socket import METADATA_TOPIC, SYSTEM_PREFIX

cdef extern from "Python.h":
    object PyType_GenericAlloc(PyTypeObject* t, Py_ssize_t n)

cdef extern from *:
    void __builtin_prefetch(const void* address) noexcept nogil

cdef extern from "Python.h":
    ctypedef enum PySendResult:
        PYGEN_RETURN
        PYGEN_ERROR
        PYGEN_NEXT
    ctypedef struct PyAsyncMethods:
        void* am_send
    ctypedef struct _AsyncTypeObject "PyTypeObject":
        PyAsyncMethods* tp_as_async

cdef enum:
    _EVENT = 0
    _DUPLICATE = 1
    _UNKNOWN_TOPIC = 2
    _OTHER = 3
    _CLOSED = 4
    _MALFORMED = 5
    _SHARED = 6
    _FULL = 7
    _TAKEN = 8

EVENT = _EVENT
DUPLICATE = _DUPLICATE
UNKNOWN_TOPIC = _UNKNOWN_TOPIC
OTHER = _OTHER
CLOSED = _CLOSED
MALFORMED = _MALFORMED
SHARED = _SHARED
FULL = _FULL
TAKEN = _TAKEN

cdef str _METADATA_TOPIC = METADATA_TOPIC
cdef str _SYSTEM_PREFIX = SYSTEM_PREFIX
cdef str _TOPIC_NAME = "topicName"
cdef str _EVENT_BODY = "eventBody"
cdef str _METADATA = "metadata"
cdef str _CORRELATION_ID = "CorrelationId"
cdef str _VERSION = "version"
cdef str _VALUE = "value"
cdef str _EMPTY = ""
cdef object _loads = orjson.loads
cdef object _JSONDecodeError = orjson.JSONDecodeError
cdef object _TEXT = aiohttp.WSMsgType.TEXT
cdef object _BINARY = aiohttp.WSMsgType.BINARY
cdef object _MONOTONIC = time.monotonic
cdef type _Event = Event
cdef bytes _METADATA_TOPIC_B = METADATA_TOPIC.encode()
cdef bytes _SYSTEM_PREFIX_B = SYSTEM_PREFIX.encode()
cdef uint64_t _FIBONACCI = 0x9E3779B97F4A7C15ULL
# a health stamp is a Python float and attribute write: a burst's event frames stamp it once a millisecond,
# which is all the stall detection (seconds) and a gap's start (minus gap_margin) need
cdef double _STAMP_EVERY = 0.001


cdef inline double _wall() noexcept:
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef inline double _monotonic() noexcept:
    # what time.monotonic() reads on POSIX
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef class DedupWindow:
    """Remembers keys for ``window`` seconds, and at most ``max_entries`` keys (oldest go first).

    ``first(key, now)`` (a str or int key) is True the first time a key is seen within the window and
    records it; repeats return False. ``now`` is any monotonic clock, passed in. Keys are kept as their
    64-bit hash (the reader's keys are hashes already).
    """

    cdef readonly double window
    cdef readonly Py_ssize_t max_entries
    cdef public Py_ssize_t evicted_early
    # the table: 2**bits slots of hashes, 0 marks a free slot (see _nonzero)
    cdef uint64_t* keys
    cdef int bits
    cdef size_t mask
    # arrival order: a ring of (hash, time), ``count`` entries from ``head``
    cdef uint64_t* ring_keys
    cdef double* ring_times
    cdef size_t ring_cap
    cdef size_t head
    cdef size_t count

    def __cinit__(self, double window=120.0, Py_ssize_t max_entries=100_000):
        if window <= 0 or max_entries < 1:
            raise ValueError("window must be > 0 and max_entries >= 1")
        self.window = window
        self.max_entries = max_entries
        self.evicted_early = 0
        self.bits = 10
        self.mask = (1 << self.bits) - 1
        self.keys = <uint64_t*>calloc(self.mask + 1, sizeof(uint64_t))
        self.ring_cap = 512
        self.ring_keys = <uint64_t*>malloc(self.ring_cap * sizeof(uint64_t))
        self.ring_times = <double*>malloc(self.ring_cap * sizeof(double))
        self.head = 0
        self.count = 0
        if not (self.keys and self.ring_keys and self.ring_times):
            raise MemoryError()

    def __dealloc__(self):
        free(self.keys)
        free(self.ring_keys)
        free(self.ring_times)

    def __len__(self):
        return self.count

    def __contains__(self, key):
        return self._find(_nonzero(<uint64_t>PyObject_Hash(key))) >= 0

    def __repr__(self):
        return f"DedupWindow(window={self.window}, max_entries={self.max_entries}, len={self.count})"

    cdef inline size_t _slot(self, uint64_t h) noexcept:
        return <size_t>((h * _FIBONACCI) >> (64 - self.bits))

    cdef Py_ssize_t _find(self, uint64_t h) noexcept:
        cdef size_t i = self._slot(h)
        while self.keys[i]:
            if self.keys[i] == h:
                return <Py_ssize_t>i
            i = (i + 1) & self.mask
        return -1

    cdef void _place(self, uint64_t h) noexcept:
        cdef size_t i = self._slot(h)
        while self.keys[i]:
            i = (i + 1) & self.mask
        self.keys[i] = h

    cdef void _remove(self, uint64_t h) noexcept:
        cdef Py_ssize_t found = self._find(h)
        if found < 0:
            return
        cdef size_t i = <size_t>found
        cdef size_t j = i
        cdef size_t k
        self.keys[i] = 0
        while True:  # backward shift: close the hole so that later probes still find their keys
            j = (j + 1) & self.mask
            if not self.keys[j]:
                return
            k = self._slot(self.keys[j])
            # the entry at j may stay when its home k lies cyclically in (i, j]
            if (i < k <= j) if i <= j else (i < k or k <= j):
                continue
            self.keys[i] = self.keys[j]
            self.keys[j] = 0
            i = j

    cdef int _grow(self) except -1:
        # the ring: room for one more than max_entries; the table: at most half full
        cdef size_t n
        cdef uint64_t* ring_keys
        cdef double* ring_times
        cdef uint64_t* table
        if self.count + 1 >= self.ring_cap:
            ring_keys = <uint64_t*>malloc(2 * self.ring_cap * sizeof(uint64_t))
            ring_times = <double*>malloc(2 * self.ring_cap * sizeof(double))
            if not ring_keys or not ring_times:
                free(ring_keys)
                free(ring_times)
                raise MemoryError()
            for n in range(self.count):
                ring_keys[n] = self.ring_keys[(self.head + n) % self.ring_cap]
                ring_times[n] = self.ring_times[(self.head + n) % self.ring_cap]
            free(self.ring_keys)
            free(self.ring_times)
            self.ring_keys, self.ring_times = ring_keys, ring_times
            self.ring_cap *= 2
            self.head = 0
        if 2 * (self.count + 1) > self.mask + 1:
            table = <uint64_t*>calloc(2 * (self.mask + 1), sizeof(uint64_t))
            if not table:
                raise MemoryError()
            free(self.keys)
            self.keys = table
            self.bits += 1
            self.mask = (1 << self.bits) - 1
            for n in range(self.count):
                self._place(self.ring_keys[(self.head + n) % self.ring_cap])
        return 0

    cdef void _pop_oldest(self) noexcept:
        self._remove(self.ring_keys[self.head])
        self.head = (self.head + 1) % self.ring_cap
        self.count -= 1

    cdef int first_hash(self, uint64_t h, double now) except -1:
        """1 the first time ``h`` (not 0) is seen within the window (recorded), 0 for a repeat."""
        cdef size_t i = self._slot(h)
        while self.keys[i]:  # one probe finds the key or the free slot it goes to
            if self.keys[i] == h:
                return 0
            i = (i + 1) & self.mask
        if self.count + 1 >= self.ring_cap or 2 * (self.count + 1) > self.mask + 1:
            self._grow()
            self._place(h)
        else:
            self.keys[i] = h
        i = (self.head + self.count) % self.ring_cap
        self.ring_keys[i] = h
        self.ring_times[i] = now
        self.count += 1
        if <Py_ssize_t>self.count > self.max_entries:
            self._pop_oldest()
            self.evicted_early += 1
        elif not self.count & 63:
            self.expire(now)  # every 64 inserts: keys live at least ``window`` seconds, a little longer at most
        if <Py_ssize_t>self.count >= self.max_entries:
            # full: the next insert removes the oldest key; fetch its slot now, while the caller works
            __builtin_prefetch(&self.keys[self._slot(self.ring_keys[self.head])])
        return 1

    cdef inline void prefetch(self, uint64_t h) noexcept:
        """Start loading the slot ``first_hash(h)`` will probe (a big window does not fit the CPU cache)."""
        __builtin_prefetch(&self.keys[self._slot(h)])

    def first(self, key, double now):
        return self.first_hash(_nonzero(<uint64_t>PyObject_Hash(key)), now) == 1

    cpdef void expire(self, double now):
        cdef double horizon = now - self.window
        while self.count and self.ring_times[self.head] <= horizon:
            self._pop_oldest()


cdef inline uint64_t _nonzero(uint64_t h) noexcept:
    # 0 marks a free slot: a hash of 0 is kept as a value no small key hashes to
    return h if h else _FIBONACCI


cdef inline uint64_t _combine(uint64_t a, uint64_t b) noexcept:
    # boost's hash_combine, 64-bit: the two inputs are SipHash values already
    return _nonzero(a ^ (b + 0x9E3779B97F4A7C15ULL + (a << 6) + (a >> 2)))


cdef inline bint _ws(char c) noexcept:
    return c == b' ' or c == b'\t' or c == b'\n' or c == b'\r'


cdef inline Py_ssize_t _after(const unsigned char* d, Py_ssize_t n, Py_ssize_t i, const char* token,
                              Py_ssize_t size) noexcept:
    # the index after ``token`` when it follows JSON whitespace from ``i``, else -1
    while i < n and _ws(d[i]):
        i += 1
    if i + size > n or memcmp(d + i, token, size) != 0:
        return -1
    return i + size


cdef bint _starts_as_event(str raw) noexcept:
    """Whether the frame's first key is ``topicName`` and names an event topic (see ``_intake_py``); reads
    the first few dozen characters of a one-byte-per-character string, and says False for anything else."""
    if PyUnicode_KIND(raw) != PyUnicode_1BYTE_KIND:
        return False
    cdef const unsigned char* d = <const unsigned char*>PyUnicode_DATA(raw)
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(raw)
    cdef Py_ssize_t i = _after(d, n, 0, b'{', 1)
    cdef Py_ssize_t start, length
    if i >= 0:
        i = _after(d, n, i, b'"topicName"', 11)
    if i >= 0:
        i = _after(d, n, i, b':', 1)
    if i >= 0:
        i = _after(d, n, i, b'"', 1)
    if i < 0:
        return False
    start = i
    while i < n and d[i] != b'"':
        if d[i] == b'\\' or d[i] < 0x20:  # an escape: let the parser read it
            return False
        i += 1
    if i >= n:
        return False
    length = i - start
    if length == 0:
        return False
    if length == len(_METADATA_TOPIC_B) and memcmp(d + start, <const char*>_METADATA_TOPIC_B, length) == 0:
        return False
    if length >= len(_SYSTEM_PREFIX_B) and memcmp(
        d + start, <const char*>_SYSTEM_PREFIX_B, len(_SYSTEM_PREFIX_B)
    ) == 0:
        return False
    return True


def starts_as_event(raw):
    """``_starts_as_event`` for tests: True when a reader would defer this frame."""
    return type(raw) is str and _starts_as_event(raw)


cdef struct _Pending:
    double now
    double wall
    PyObject* channel_id  # owned
    Py_ssize_t shard


cdef class Intake:
    """Turns text frames from one-socket-per-shard reading into Events in ``items`` (de-duplicated).

    See ``_intake_py.Intake`` for the contract; this is the same, compiled. Deferred frames wait in ``items``
    as their text; what the reader knew of each (``now``, the wall clock, channel and shard) waits in a
    ring in the same order, for ``finish``.
    """

    cdef readonly object items
    cdef readonly dict where
    cdef readonly DedupWindow resends
    cdef public Py_ssize_t events
    cdef public Py_ssize_t duplicates
    cdef public Py_ssize_t unknown_topic
    cdef public object other
    cdef readonly list problems
    cdef object _append
    cdef object made
    cdef uint64_t key
    # the pending entry _build_next took: its channel (the caller takes it), shard and arrival (monotonic)
    cdef str at_channel
    cdef Py_ssize_t at_shard
    cdef double at_now
    cdef _Pending* pending
    cdef size_t p_cap
    cdef size_t p_head
    cdef size_t p_count

    def __cinit__(self, *args, **kwargs):
        self.p_cap = 256
        self.pending = <_Pending*>malloc(self.p_cap * sizeof(_Pending))
        if not self.pending:
            raise MemoryError()
        self.p_head = 0
        self.p_count = 0

    def __dealloc__(self):
        while self.p_count:
            Py_DECREF(<object>self.pending[self.p_head].channel_id)
            self.p_head = (self.p_head + 1) % self.p_cap
            self.p_count -= 1
        free(self.pending)

    def __init__(self, items, dict where not None, DedupWindow resends not None):
        self.items = items
        self._append = items.append
        self.where = where
        self.resends = resends
        self.events = 0
        self.duplicates = 0
        self.unknown_topic = 0
        self.other = None
        self.problems = []
        self.made = None

    @property
    def deferred(self):
        """How many deferred frames wait for ``finish``."""
        return self.p_count

    cpdef int take(self, object raw, double now, str channel_id) except -1:
        """Parse one frame received at ``now`` (monotonic seconds) on ``channel_id``; returns EVENT,
        DUPLICATE, UNKNOWN_TOPIC or OTHER. Raises ``orjson.JSONDecodeError`` when it is not JSON."""
        return self._take(raw, now, channel_id, _wall())

    cdef int _take(self, object raw, double now, str channel_id, double wall) except -1:
        cdef int status = self._make(raw, now, channel_id, wall)
        if status == _EVENT or status == _UNKNOWN_TOPIC:
            self._append(self.made)
            self.made = None
        return status

    cdef int _make(self, object raw, double now, str channel_id, double wall) except -1:
        # _take without the append: the Event (EVENT, UNKNOWN_TOPIC) is left in ``made``
        cdef int status = self._build(raw, channel_id, wall)
        if status == _OTHER:
            return status
        return self._admit(status, self.key, now)

    cdef int _admit(self, int status, uint64_t key, double now) except -1:
        # the de-duplication window's verdict on a built Event: DUPLICATE (``made`` cleared), or ``status``
        if not self.resends.first_hash(key, now):
            self.duplicates += 1
            self.made = None
            return _DUPLICATE
        if status == _UNKNOWN_TOPIC:
            self.unknown_topic += 1
        self.events += 1
        return status

    cdef int _build(self, object raw, str channel_id, double wall) except -1:
        # parse and classify; an event (EVENT, UNKNOWN_TOPIC) is built into ``made`` with its key in ``key``,
        # and the window's slot for the key is asked for (see _admit); else OTHER with the frame in ``other``
        cdef object data = _loads(raw)
        cdef PyObject* p
        cdef object topic, body, meta, cid, event
        cdef uint64_t key
        cdef int status = _EVENT
        if type(data) is not dict:
            self.other = data
            return _OTHER
        p = PyDict_GetItemWithError(data, _TOPIC_NAME)
        topic = <object>p if p is not NULL else None
        if type(topic) is not str or topic == _METADATA_TOPIC or (<str>topic).startswith(_SYSTEM_PREFIX):
            self.other = data
            return _OTHER
        p = PyDict_GetItemWithError(data, _EVENT_BODY)
        body = <object>p if p is not NULL else None
        p = PyDict_GetItemWithError(data, _METADATA)
        meta = <object>p if p is not NULL else None
        cid = None
        if type(meta) is dict:
            p = PyDict_GetItemWithError(meta, _CORRELATION_ID)
            if p is not NULL:
                cid = <object>p
        # a resend repeats the CorrelationId (cheaper than hashing the frame); without one, the frame is the key
        if type(cid) is str and PyUnicode_GET_LENGTH(cid):
            key = _combine(<uint64_t>PyObject_Hash(topic), <uint64_t>PyObject_Hash(cid))
        else:
            key = _nonzero(<uint64_t>PyObject_Hash(raw))
        # the window's slot for this key is likely not in the CPU cache: ask for it, then build the Event
        # (thrown away in the rare case of a resend) while it comes; finish_all asks for a whole batch's
        self.resends.prefetch(key)
        if not PyDict_Contains(self.where, topic):
            status = _UNKNOWN_TOPIC
        if type(body) is not dict:
            body = {_VALUE: body}
        if type(meta) is not dict:
            meta = {}
        p = PyDict_GetItemWithError(data, _VERSION)
        version = <object>p if p is not NULL else None
        # Event(topic, body, version, metadata, [dedup_key], received_at, channel_id), built in place
        event = PyType_GenericAlloc(<PyTypeObject*>_Event, 7)
        _set(event, 0, topic)
        _set(event, 1, body)
        _set(event, 2, version)
        _set(event, 3, meta)
        _set(event, 4, [_EMPTY])
        _set(event, 5, wall)
        _set(event, 6, channel_id)
        self.made = event
        self.key = key
        return status

    cdef int _defer(self, str raw, double now, double wall, str channel_id, Py_ssize_t shard) except -1:
        cdef size_t i, n
        cdef _Pending* grown
        if self.p_count == self.p_cap:
            grown = <_Pending*>malloc(2 * self.p_cap * sizeof(_Pending))
            if not grown:
                raise MemoryError()
            for n in range(self.p_count):
                grown[n] = self.pending[(self.p_head + n) % self.p_cap]
            free(self.pending)
            self.pending = grown
            self.p_cap *= 2
            self.p_head = 0
        i = (self.p_head + self.p_count) % self.p_cap
        self.pending[i].now = now
        self.pending[i].wall = wall
        Py_INCREF(channel_id)
        self.pending[i].channel_id = <PyObject*>channel_id
        self.pending[i].shard = shard
        self.p_count += 1
        self._append(raw)
        return 0

    cpdef object finish(self, str raw):
        """The Event of the oldest deferred frame ``raw`` (taken from ``items``), or None: a resend (counted),
        or not an event after all (noted in ``problems``). See ``_intake_py.Intake.finish``."""
        return self._finish(raw)

    cdef _Pending _pop_pending(self) except *:
        # the oldest entry; its channel_id reference passes to the caller
        if not self.p_count:
            raise RuntimeError("finish() without a deferred frame")
        cdef _Pending p = self.pending[self.p_head]
        self.p_head = (self.p_head + 1) % self.p_cap
        self.p_count -= 1
        return p

    cdef object _finish(self, str raw):
        cdef int status = self._build_next(raw)
        built, channel_id, self.made, self.at_channel = self.made, self.at_channel, None, None
        return self._settle(status, self.key, self.at_now, built, channel_id, self.at_shard)

    cdef int _build_next(self, str raw) except -1:
        # the oldest pending entry (into ``at_*``) and ``raw`` built: EVENT or UNKNOWN_TOPIC with the Event in
        # ``made`` and its key in ``key``; MALFORMED or OTHER with the decode error or the frame in ``made``
        cdef _Pending p = self._pop_pending()
        self.at_channel = <str>p.channel_id
        Py_DECREF(self.at_channel)  # the ring's reference; ``at_channel`` holds its own
        self.at_shard, self.at_now = p.shard, p.now
        cdef int status
        try:
            status = self._build(raw, self.at_channel, p.wall)
        except _JSONDecodeError as exc:
            self.made = exc
            return _MALFORMED
        if status == _OTHER:
            self.made = self.other
        return status

    cdef object _settle(
        self, int status, uint64_t key, double now, object built, str channel_id, Py_ssize_t shard
    ):
        # what a built deferred frame comes to, taken in arrival order: its Event, or None (a resend; a fault,
        # noted in ``problems``)
        if status == _MALFORMED or status == _OTHER:
            self.problems.append((channel_id, shard, status, built))
            return None
        if self._admit(status, key, now) == _DUPLICATE:
            return None
        if status == _UNKNOWN_TOPIC:
            self.problems.append((channel_id, shard, _UNKNOWN_TOPIC, built))
        return built

    cpdef list take_batch(self, Py_ssize_t max_size):
        """Take the oldest ``max_size`` items from ``items`` (all, when fewer): ``finish_all`` of them."""
        cdef Py_ssize_t n = min(len(self.items), max_size)
        cdef Py_ssize_t i
        cdef list batch = [None] * n
        popleft = self.items.popleft
        for i in range(n):
            batch[i] = popleft()
        return self.finish_all(batch)

    cpdef list finish_all(self, list batch):
        """``batch`` with each deferred frame replaced by its Event, or left out (see ``finish``).

        In two passes, with the same results as ``finish`` on each in turn: build every Event (asking for
        each key's slot in the window), then admit them in order: the slots have arrived by then."""
        cdef Py_ssize_t n = len(batch)
        cdef Py_ssize_t i
        cdef list built = [None] * n  # what _build_next left in ``made``
        cdef list channels = [None] * n  # a deferred frame's channel_id; its shard in ``shards``
        cdef uint64_t* keys = <uint64_t*>malloc(max(n, 1) * sizeof(uint64_t))
        cdef double* nows = <double*>malloc(max(n, 1) * sizeof(double))
        cdef int* statuses = <int*>malloc(max(n, 1) * sizeof(int))
        cdef Py_ssize_t* shards = <Py_ssize_t*>malloc(max(n, 1) * sizeof(Py_ssize_t))
        cdef list out = []
        cdef object item, event
        if not keys or not nows or not statuses or not shards:
            free(keys)
            free(nows)
            free(statuses)
            free(shards)
            raise MemoryError()
        try:
            for i in range(n):
                item = batch[i]
                if type(item) is not str:
                    statuses[i] = -1  # not deferred: as it is
                    continue
                statuses[i] = self._build_next(<str>item)
                keys[i], nows[i], shards[i] = self.key, self.at_now, self.at_shard
                built[i], channels[i], self.made, self.at_channel = self.made, self.at_channel, None, None
            for i in range(n):
                if statuses[i] == -1:
                    out.append(batch[i])
                    continue
                event = self._settle(statuses[i], keys[i], nows[i], built[i], channels[i], shards[i])
                if event is not None:
                    out.append(event)
        finally:
            free(keys)
            free(nows)
            free(statuses)
            free(shards)
        return out

    def reader(self, health, buffer, list shared_until not None, str channel_id, clock, shard=None):
        """One socket's side of the intake (see ``_intake_py.Reader``)."""
        return Reader(self, health, buffer, shared_until, channel_id, clock, shard)


cdef class Reader:
    """One socket's side of the intake; see ``_intake_py.Reader``."""

    cdef Intake intake
    cdef object health
    cdef object buffer
    cdef list waiting
    cdef list shared_until
    cdef str channel_id
    cdef object clock
    cdef bint c_clock
    cdef Py_ssize_t limit
    # received_at = the monotonic reading + this offset, re-anchored to the system clock every 64 frames
    # (one clock read per frame instead of two)
    cdef double wall_offset
    cdef int until_anchor
    # event frames are left for the consumer to parse (``Intake.finish``) when the reader knows its shard
    cdef bint defer
    cdef Py_ssize_t shard
    # when health was last stamped: a deferring reader stamps at most every _STAMP_EVERY seconds
    cdef double stamped
    cdef readonly object payload
    cdef readonly double now

    def __init__(
        self, Intake intake not None, health, buffer, list shared_until not None, str channel_id, clock, shard=None
    ):
        self.intake, self.health, self.buffer = intake, health, buffer
        self.defer = shard is not None
        self.stamped = -1.0
        self.shard = shard if shard is not None else -1
        self.shared_until, self.channel_id, self.clock = shared_until, channel_id, clock
        self.c_clock = clock is _MONOTONIC
        self.limit = buffer.limit
        self.waiting = buffer.waiting
        self.until_anchor = 0
        self.payload = None
        self.now = 0.0

    cdef inline int _stamp(self, double now) except -1:
        self.health.last_frame = self.stamped = now
        return 0

    cpdef int step(self, object msg) except -1:
        cdef object mtype, data
        cdef double now, wall
        cdef int status
        if PyTuple_Check(msg) and PyTuple_GET_SIZE(msg) >= 2:  # aiohttp's WSMessage is a NamedTuple
            mtype = <object>PyTuple_GET_ITEM(msg, 0)
            data = <object>PyTuple_GET_ITEM(msg, 1)
        else:
            mtype, data = msg[0], msg[1]
        if mtype is not _TEXT and mtype is not _BINARY:
            self.payload = msg
            return _CLOSED
        now = _monotonic() if self.c_clock else self.clock()
        self.now = now
        if now < <double>self.shared_until[0]:
            self._stamp(now)
            self.payload = data
            return _SHARED
        if not self.c_clock:
            wall = _wall()
        else:
            if self.until_anchor == 0:
                self.wall_offset = _wall() - now
                self.until_anchor = 64
            self.until_anchor -= 1
            wall = now + self.wall_offset
        if self.defer and type(data) is str and _starts_as_event(<str>data):
            if now - self.stamped >= _STAMP_EVERY or now < self.stamped:
                self._stamp(now)
            self.intake._defer(<str>data, now, wall, self.channel_id, self.shard)
            status = _EVENT
        else:
            self._stamp(now)  # a frame the reader handles: what it does next reads the exact stamp
            try:
                status = self.intake._take(data, now, self.channel_id, wall)
            except _JSONDecodeError as exc:
                self.payload = exc
                return _MALFORMED
        if status == _EVENT:
            if <object>PyList_GET_ITEM(self.waiting, 0) is not None:
                self.buffer.wake_getter()
            return _FULL if len(self.intake.items) >= self.limit else _TAKEN
        if status == _DUPLICATE:
            return _TAKEN
        self.payload = self.intake.other if status == _OTHER else None
        return status


cdef inline void _set(object tup, Py_ssize_t i, object value):
    Py_INCREF(value)
    PyTuple_SET_ITEM(tup, i, value)


@cython.freelist(16)
cdef class _Ready:
    """An awaitable that is done: ``await`` gives ``value`` at once (what ``Stream.__anext__`` returns when an
    item is ready)."""

    cdef object value

    def __await__(self):
        return self

    def __iter__(self):
        return self

    def __next__(self):
        value, self.value = self.value, None
        raise StopIteration(value)


cdef PySendResult _ready_send(PyObject* obj, PyObject* arg, PyObject** result) noexcept:
    # ``await`` through am_send (Python 3.11's SEND uses it): the value without raising StopIteration
    cdef _Ready ready = <_Ready>obj
    value, ready.value = ready.value, None
    Py_INCREF(value)
    result[0] = <PyObject*>value
    return PYGEN_RETURN


cdef type _ready_type = _Ready
if (<_AsyncTypeObject*>_ready_type).tp_as_async != NULL:
    (<_AsyncTypeObject*>_ready_type).tp_as_async.am_send = <void*>_ready_send


cdef class Stream:
    """``async for item in client``; see ``_intake_py.Stream``. Hands out what the buffer holds, deferred
    frames finished, without a Python frame per item; everything else goes to ``slow``."""

    cdef object items
    cdef object popleft
    cdef list putting
    cdef Intake intake
    cdef list problems
    cdef object end
    cdef object slow

    def __init__(self, Intake intake not None, buffer, end, slow):
        self.intake = intake
        self.items = intake.items
        self.popleft = intake.items.popleft
        self.problems = intake.problems
        self.putting = buffer.putting
        self.end, self.slow = end, slow

    def __aiter__(self):
        return self

    def __anext__(self):
        cdef object item
        cdef _Ready ready
        if not self.items or <object>PyList_GET_ITEM(self.putting, 0) is not None:
            return self.slow(None)
        item = self.popleft()
        if type(item) is str:
            item = self.intake._finish(<str>item)
            if item is None or self.problems:
                return self.slow(item)
        elif item is self.end:
            return self.slow(item)
        ready = _Ready.__new__(_Ready)
        ready.value = item
        return ready
