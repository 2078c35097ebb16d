"""Naming what a frame is calling, from bytecode: code names only, never values."""

from __future__ import annotations

import sys
import threading
import time

from spangap.callee import CalleeNames


class Conn:
    def __init__(self) -> None:
        self.cursor = self

    def execute(self, sql: str) -> None:
        time.sleep(0.3)


PAUSE = 0.3


def sleeper(secret: str) -> None:
    time.sleep(PAUSE)


def method_caller(conn: Conn) -> None:
    conn.cursor.execute("SELECT secret FROM payloads")


def leaf_callee(target, *args) -> str:
    thread = threading.Thread(target=target, args=args)
    thread.start()
    time.sleep(0.1)
    frame = sys._current_frames()[thread.ident]  # type: ignore[index]
    while frame.f_code is not target.__code__:
        frame = frame.f_back
    name = CalleeNames().name_at(frame.f_code, frame.f_lasti)
    thread.join()
    return name


def test_global_function_call() -> None:
    assert leaf_callee(sleeper, "s3cr3t") == "time.sleep"


def test_method_chain_without_arguments() -> None:
    name = leaf_callee(method_caller, Conn())
    assert name == "conn.cursor.execute"
    assert "SELECT" not in name


def test_hot_code_still_names_its_callee() -> None:
    """Once a function is hot, 3.11 specializes the call sequence (a specialized PRECALL
    calls a C function itself, leaving f_lasti on it): the name must not depend on that."""
    global PAUSE
    PAUSE = 0.0
    for _ in range(200):
        sleeper("")  # warm it up: the interpreter specializes hot code
    PAUSE = 0.3
    assert leaf_callee(sleeper, "s3cr3t") == "time.sleep"
