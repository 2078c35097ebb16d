"""Naming the function an application frame is calling right now, from its bytecode.

When the innermost Python frame is the application's own (it called ``time.sleep``,
``sock.recv`` or ``cursor.execute``, which are C functions and have no frame), the
sampler still wants to say where the time went. The frame's ``f_lasti`` points at the
``CALL`` instruction being executed; the callee's dotted expression (``sock.recv``) is
rebuilt from the name-loading instructions that share the call's source position. Only
names from the code are used, never values.
"""

from __future__ import annotations

import dis
from types import CodeType

from . import limits

_CALLS = frozenset({"CALL", "CALL_FUNCTION_EX", "CALL_KW", "CALL_FUNCTION", "CALL_METHOD"})
_NAME_LOADS = frozenset(
    {
        "LOAD_GLOBAL",
        "LOAD_NAME",
        "LOAD_FAST",
        "LOAD_DEREF",
        "LOAD_ATTR",
        "LOAD_METHOD",
        "LOAD_FAST_CHECK",
        "LOAD_FAST_AND_CLEAR",
        "LOAD_SUPER_ATTR",
        "LOAD_CLASSDEREF",
        "LOAD_FROM_DICT_OR_GLOBALS",
        "LOAD_FROM_DICT_OR_DEREF",
    }
)
_TRANSPARENT = frozenset({"PRECALL", "PUSH_NULL", "KW_NAMES", "CACHE", "COPY_FREE_VARS"})


class CalleeNames:
    """Per code object, a map from ``CALL`` offsets to the callee's dotted name."""

    def __init__(self) -> None:
        self._maps: dict[CodeType, dict[int, str]] = {}
        self._limit = limits.LIMITS.code_cache

    def name_at(self, code: CodeType, lasti: int) -> str:
        calls = self._maps.get(code)
        if calls is None:
            if len(self._maps) >= self._limit:
                self._maps.clear()
            calls = self._maps[code] = _call_names(code)
        return calls.get(lasti, "")


def _call_names(code: CodeType) -> dict[int, str]:
    try:
        instructions = list(dis.get_instructions(code))
    except Exception:
        return {}
    names: dict[int, str] = {}
    for i, ins in enumerate(instructions):
        if ins.opname in _CALLS:
            name = _callee_before(instructions, i)
            if name:
                # The whole call sequence maps: on 3.11 a specialized PRECALL makes the
                # call to a C function itself (f_lasti on the PRECALL, once the code is
                # hot), and while a Python callee runs f_lasti sits on the CALL's last
                # inline-cache entry.
                first = (
                    instructions[i - 1] if i and instructions[i - 1].opname == "PRECALL" else ins
                )
                end = instructions[i + 1].offset if i + 1 < len(instructions) else ins.offset + 2
                for offset in range(first.offset, end, 2):
                    names[offset] = name
    return names


def _callee_before(instructions: list[dis.Instruction], call_index: int) -> str:
    call = instructions[call_index]
    start = _start(call)
    if start is None:
        return ""
    parts: list[str] = []
    for ins in reversed(instructions[:call_index]):
        pos = _start(ins)
        if pos is None or ins.opname in _TRANSPARENT:
            continue
        if pos < start:
            break
        if pos != start:
            continue  # an argument
        if ins.opname in _NAME_LOADS and isinstance(ins.argval, str):
            parts.append(ins.argval)
        else:
            break  # a chained call or an expression we do not name
    return ".".join(reversed(parts))


def _start(ins: dis.Instruction) -> tuple[int, int] | None:
    positions = ins.positions
    if positions is None or positions.lineno is None or positions.col_offset is None:
        return None
    return (positions.lineno, positions.col_offset)
