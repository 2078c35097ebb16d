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


def sleeper(secret: str) -> None:
    time.sleep(0.3)


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
