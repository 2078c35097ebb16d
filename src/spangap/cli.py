"""``gapreport``: run a program under the detector, or show a saved snapshot.

Each subcommand is a ``Command``: a function that adds its arguments and a function that
runs it and returns the exit code. Errors a person can fix are reported as one line,
``gapreport: <what is wrong>``, with exit code 2.
"""

from __future__ import annotations

import argparse
import atexit
import importlib.util
import os
import runpy
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn, TextIO

from .argtypes import non_negative, positive_int
from .audit.command import add_audit_arguments, run_audit
from .doctor.command import add_doctor_arguments, run_doctor
from .progress import Progress
from .report.render import FORMATS, SORT_KEYS, render
from .snapshot import Snapshot, SnapshotError

if TYPE_CHECKING:
    from .detector import GapDetector

PROG = "gapreport"
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A problem with what the user asked for; printed as one line, exit code 2."""


@dataclass(frozen=True)
class Command:
    """A subcommand: adding one to ``COMMANDS`` is all it takes to offer it."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``gapreport`` console script; returns the exit code."""
    args = _build_parser().parse_args(argv)
    command: Command = args.command
    try:
        return command.run(args)
    except (CliError, SnapshotError) as exc:
        return _fail(str(exc))
    except BrokenPipeError:
        # The reader went away (``gapreport show x | head``); that is not an error.
        _silence_stdout()
        return 1
    except OSError as exc:
        return _fail(_describe_os_error(exc))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _fail(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return EXIT_USAGE


def _describe_os_error(exc: OSError) -> str:
    if exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return exc.strerror or str(exc)


def _silence_stdout() -> None:
    """Point stdout at devnull so that flushing it at exit cannot raise again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(devnull)


class _Parser(argparse.ArgumentParser):
    """argparse, with its error on one line: an argument may hold a newline or another
    control character, shown escaped."""

    def error(self, message: str) -> NoReturn:
        one_line = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {one_line}\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Find the work your OpenTelemetry spans do not cover.")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for command in COMMANDS:
        sub = subparsers.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(sub)
        sub.set_defaults(command=command)
    return parser


# --- options shared by every command that prints a report ------------------------------


def _add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--top", type=positive_int, default=20, metavar="N", help="sites to list (default 20)"
    )
    parser.add_argument(
        "--sort", choices=SORT_KEYS, default="total", help="order of the sites (default total)"
    )
    parser.add_argument(
        "--format", choices=FORMATS, default="table", help="output format (default table)"
    )


def _report(snapshot: Snapshot, args: argparse.Namespace, stream: TextIO) -> str:
    return render(snapshot, fmt=args.format, top=args.top, sort=args.sort, width=_width_of(stream))


def _width_of(stream: TextIO) -> int:
    """The terminal's width when there is one; 80 otherwise, so piped output is stable."""
    try:
        if stream.isatty():
            return shutil.get_terminal_size().columns
    except (AttributeError, ValueError, OSError):
        pass
    return 80


# --- show ------------------------------------------------------------------------------


def _add_show_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("snapshot", metavar="SNAPSHOT", help="snapshot file to read")
    _add_report_arguments(parser)


def _run_show(args: argparse.Namespace) -> int:
    snapshot = Snapshot.load(args.snapshot)
    sys.stdout.write(_report(snapshot, args, sys.stdout))
    sys.stdout.flush()
    return 0


# --- run -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    """The program to run: a script path or a module name, with its arguments."""

    script: str | None
    module: str | None
    args: list[str]

    @property
    def argv(self) -> list[str]:
        # For -m, runpy replaces argv[0] with the module's file, as ``python -m`` does.
        return [self.script or self.module or "", *self.args]

    @property
    def path_entry(self) -> str:
        if self.script is not None:
            return os.path.dirname(os.path.abspath(self.script))
        return os.getcwd()


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = f"{PROG} run [options] (script.py [args ...] | -m module [args ...])"
    parser.add_argument(
        "--threshold-ms", type=float, metavar="X", help="report calls of at least X ms"
    )
    parser.add_argument("--interval-ms", type=float, metavar="X", help="sample every X ms")
    parser.add_argument(
        "--include", action="append", metavar="GLOB", help="module glob to count as the application"
    )
    parser.add_argument(
        "--exclude", action="append", metavar="GLOB", help="module glob to leave out"
    )
    parser.add_argument("--metrics-port", type=int, metavar="N", help="serve /metrics on port N")
    parser.add_argument(
        "--snapshot", metavar="PATH", help="where to write the snapshot (spangap-<pid>.json)"
    )
    parser.add_argument("--quiet", action="store_true", help="do not print the report")
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no live count on the terminal while the program runs",
    )
    _add_report_arguments(parser)
    # REMAINDER on both: everything after the script or module belongs to the program,
    # even arguments that look like gapreport's own options.
    parser.add_argument(
        "-m",
        dest="module_argv",
        nargs=argparse.REMAINDER,
        metavar="module",
        help="-m module [args ...]: run a module as python -m does",
    )
    parser.add_argument("script_argv", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def _run_target(args: argparse.Namespace) -> _Target:
    if args.module_argv is not None:
        if not args.module_argv:
            raise CliError("run: -m needs a module name")
        target = _Target(script=None, module=args.module_argv[0], args=args.module_argv[1:])
        with _program_sys(target):
            # Only the top-level name: finding it runs none of the program's code.
            _check_module(args.module_argv[0].partition(".")[0])
        return target
    script_argv = list(args.script_argv)
    if script_argv[:1] == ["--"]:
        script_argv = script_argv[1:]
    if not script_argv:
        raise CliError("run: give a script to run, or -m module")
    script = script_argv[0]
    if not os.path.isfile(script):
        raise CliError(f"run: no such script: {script}")
    return _Target(script=script, module=None, args=script_argv[1:])


def _detector_options(args: argparse.Namespace, snapshot_path: str) -> dict[str, object]:
    """Only the options the user gave, so that ``SPANGAP_*`` variables and the defaults
    apply to the rest (flags win over variables)."""
    given = {
        "threshold_ms": args.threshold_ms,
        "interval_ms": args.interval_ms,
        "include": args.include,
        "exclude": args.exclude,
        "metrics_port": args.metrics_port,
    }
    options: dict[str, object] = {k: v for k, v in given.items() if v is not None}
    options["snapshot_path"] = snapshot_path
    if args.module_argv:
        options["entry_module"] = args.module_argv[0]
    return options


def _snapshot_path(args: argparse.Namespace) -> str:
    """Checked before the program runs, so a long run is not lost to a typo in a path."""
    path: str = (
        args.snapshot or os.environ.get("SPANGAP_SNAPSHOT_PATH") or f"spangap-{os.getpid()}.json"
    )
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CliError(f"run: snapshot directory does not exist: {directory}")
    if not os.access(directory, os.W_OK):
        raise CliError(f"run: cannot write the snapshot into {directory}")
    return path


def _run_run(args: argparse.Namespace) -> int:
    from .runtime import unsupported_reason

    reason = unsupported_reason()
    if reason is not None:  # nothing to run the program under
        raise CliError(f"run: {reason}")

    from . import enable_gap_detector
    from .options import OptionError

    target = _run_target(args)
    shown_path = _snapshot_path(args)
    snapshot_path = os.path.abspath(shown_path)
    start_dir = os.getcwd()
    try:
        detector = enable_gap_detector(**_detector_options(args, snapshot_path))
    except OptionError as exc:
        raise CliError(str(exc)) from None
    progress = None
    if Progress.wanted(sys.stderr, args.quiet or args.no_progress):
        progress = Progress(detector.operation_counts, sys.stderr)
        progress.start()
    try:
        exit_code = _execute(target)
    except BaseException:
        if progress is not None:
            progress.stop()
        detector.stop()
        raise
    # Like ``python script.py``, the program is not over when its main code returns:
    # the interpreter still joins its non-daemon threads and shuts its executors down,
    # and their work belongs in the report. Exit hooks run after that.
    atexit.register(_finish_run, detector, args, snapshot_path, shown_path, start_dir, progress)
    return exit_code


def _finish_run(
    detector: GapDetector,
    args: argparse.Namespace,
    snapshot_path: str,
    shown_path: str,
    start_dir: str,
    progress: Progress | None = None,
) -> None:
    """Stop the detector, save the snapshot and print the report (at interpreter exit)."""
    if progress is not None:
        progress.stop()
    detector.stop()
    snapshot = detector.snapshot()
    try:
        snapshot.save(snapshot_path)
    except (OSError, SnapshotError) as exc:
        _fail(f"run: could not write the snapshot: {exc}")
        return
    if os.getcwd() != start_dir:
        shown_path = snapshot_path  # the program moved; a relative path would mislead
    _print_run_report(snapshot, args, shown_path)


def _print_run_report(snapshot: Snapshot, args: argparse.Namespace, path: str) -> None:
    """On stderr: the program's stdout must stay exactly what the program printed."""
    sys.stdout.flush()
    if not args.quiet:
        sys.stderr.write(_report(snapshot, args, sys.stderr))
    print(f"snapshot written to {path}; see it again with: {PROG} show {path}", file=sys.stderr)


def _execute(target: _Target) -> int:
    """Run the program as ``python script.py`` or ``python -m module`` would; its exit code."""
    with _program_sys(target):
        if target.module is not None:
            _check_module(target.module)
        try:
            if target.module is not None:
                runpy.run_module(target.module, run_name="__main__", alter_sys=True)
            else:
                runpy.run_path(target.script or "", run_name="__main__")
        except SystemExit as exc:
            return _exit_code(exc.code)
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
        except Exception as exc:
            _print_program_traceback(exc)
            return 1
    return 0


def _print_program_traceback(exc: BaseException) -> None:
    """The traceback Python would print: from the program's first frame, not ours."""
    tb = exc.__traceback__
    while tb is not None and _is_launcher_frame(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb)


def _is_launcher_frame(filename: str) -> bool:
    return filename in (__file__, runpy.__file__) or filename == "<frozen runpy>"


@contextmanager
def _program_sys(target: _Target) -> Iterator[None]:
    """The program sees its own argv and its own directory first on sys.path."""
    saved_argv, saved_path = sys.argv, sys.path[:]
    sys.argv = target.argv
    sys.path.insert(0, target.path_entry)
    try:
        yield
    finally:
        sys.argv = saved_argv
        sys.path[:] = saved_path


def _check_module(module: str) -> None:
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise CliError(f"run: no module named {module}")


def _exit_code(code: object) -> int:
    """What the interpreter would exit with for ``SystemExit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


# --- top -------------------------------------------------------------------------------


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _add_top_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = (
        f"{PROG} top (--url http://HOST:PORT/metrics | --prometheus http://HOST:9090 "
        "[--range 1h] [--selector '{job=\"api\"}']) [--watch SECONDS] [options]"
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--url", metavar="URL", help="one process: its /metrics page")
    source.add_argument(
        "--prometheus", metavar="URL", help="the fleet: a Prometheus server that scrapes it"
    )
    parser.add_argument(
        "--range", metavar="DURATION", help="with --prometheus: the window (default 1h)"
    )
    parser.add_argument(
        "--selector",
        metavar="'{LABEL=\"VALUE\"}'",
        help="with --prometheus: label matchers, e.g. '{job=\"api\"}'",
    )
    parser.add_argument(
        "--watch", type=_positive_seconds, metavar="SECONDS", help="redraw every SECONDS"
    )
    parser.add_argument("--prefix", default="", help="the detector's metric_prefix")
    parser.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=5.0,
        metavar="SECONDS",
        help="give up on a request after SECONDS (default 5)",
    )
    _add_report_arguments(parser)


def _run_top(args: argparse.Namespace) -> int:
    from .report import top
    from .report.promql import PromQLError, check_duration, parse_selector

    try:
        if args.url is not None:
            if args.selector is not None or args.range is not None:
                raise CliError("top: --range and --selector go with --prometheus, not --url")
            top.check_url(args.url, "--url")

            def read() -> Snapshot:
                return top.read_metrics(args.url, args.prefix, args.timeout)

        else:
            window = check_duration(args.range or "1h")
            matchers = parse_selector(args.selector) if args.selector else ""
            top.check_url(args.prometheus, "--prometheus")

            def read() -> Snapshot:
                return top.read_prometheus(
                    args.prometheus, window, matchers, args.prefix, args.timeout
                )

        snapshot = read()
    except (top.SourceError, PromQLError) as exc:
        raise CliError(f"top: {exc}") from None
    if args.watch is None:
        sys.stdout.write(_top_report(snapshot, args, watching=False))
        sys.stdout.flush()
        return 0
    return _watch(read, snapshot, args)


def _top_report(snapshot: Snapshot, args: argparse.Namespace, watching: bool) -> str:
    from .report.top import describe

    report = _report(snapshot, args, sys.stdout)
    if args.format == "json":
        return report
    heading = describe(snapshot)
    if watching:
        heading += time.strftime(" · %H:%M:%S", time.localtime(snapshot.created_unix))
    return f"{heading}\n{report}"


def _watch(
    read: Callable[[], Snapshot], snapshot: Snapshot | None, args: argparse.Namespace
) -> int:
    """Redraw like ``top`` until Ctrl-C; an endpoint that stops answering is retried."""
    from .report.top import SourceError

    # Clearing is for a terminal; in a pipe or file, frames follow one another.
    clear = "\x1b[H\x1b[2J" if sys.stdout.isatty() else ""
    try:
        while True:
            if snapshot is not None:
                frame = _top_report(snapshot, args, watching=True)
                sys.stdout.write(clear + frame + ("" if clear else "\n"))
                sys.stdout.flush()
            time.sleep(args.watch)
            try:
                snapshot = read()
            except SourceError as exc:
                print(f"{PROG}: top: {exc} (retrying every {args.watch:g} s)", file=sys.stderr)
                snapshot = None
    except KeyboardInterrupt:
        return 0


# --- dashboard -------------------------------------------------------------------------


def _add_dashboard_arguments(parser: argparse.ArgumentParser) -> None:
    from .report.dashboard import DEFAULT_TITLE

    parser.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")
    parser.add_argument(
        "--datasource",
        metavar="NAME|UID",
        help="default Prometheus data source (default: Grafana's default one)",
    )
    parser.add_argument("--title", default=DEFAULT_TITLE, help=f"default: {DEFAULT_TITLE!r}")
    parser.add_argument("--prefix", default="", help="the detectors' metric_prefix")


def _run_dashboard(args: argparse.Namespace) -> int:
    from .report.dashboard import dashboard_json

    text = dashboard_json(title=args.title, datasource=args.datasource, prefix=args.prefix)
    if args.output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    return 0


# --- diff ------------------------------------------------------------------------------


def _add_diff_arguments(parser: argparse.ArgumentParser) -> None:
    from .report import diff

    parser.add_argument("old", metavar="OLD", help="snapshot of the earlier run (the base)")
    parser.add_argument("new", metavar="NEW", help="snapshot of the later run")
    parser.add_argument(
        "--threshold",
        type=non_negative,
        default=diff.Rules.threshold_percent,
        metavar="PERCENT",
        help="grown/shrunk: change in total dark seconds of at least PERCENT (default 20)",
    )
    parser.add_argument(
        "--min-seconds",
        type=non_negative,
        default=diff.Rules.min_seconds,
        metavar="S",
        help="ignore changes smaller than S seconds (default 0.05)",
    )
    parser.add_argument(
        "--fail-on",
        type=diff.fail_on_kinds,
        default=diff.DEFAULT_FAIL_ON,
        metavar="KINDS",
        help="exit 1 when a site is one of these: comma list of new, gone, grown, shrunk, "
        "or none (default new,grown)",
    )
    parser.add_argument(
        "--top", type=positive_int, default=20, metavar="N", help="sites per kind (default 20)"
    )
    parser.add_argument(
        "--format", choices=diff.FORMATS, default="table", help="output format (default table)"
    )


def _run_diff(args: argparse.Namespace) -> int:
    from .report.diff import Rules, compare, render_diff

    old, new = Snapshot.load(args.old), Snapshot.load(args.new)
    result = compare(old, new, Rules(args.threshold, args.min_seconds))
    sys.stdout.write(render_diff(result, fmt=args.format, top=args.top, fail_on=args.fail_on))
    sys.stdout.flush()
    return 1 if result.failing(args.fail_on) else 0


COMMANDS: tuple[Command, ...] = (
    Command("run", "run a Python program under the detector", _add_run_arguments, _run_run),
    Command("show", "show a saved snapshot", _add_show_arguments, _run_show),
    Command(
        "top",
        "the worst dark sites of a live process or of a fleet in Prometheus",
        _add_top_arguments,
        _run_top,
    ),
    Command(
        "dashboard", "write the Grafana dashboard JSON", _add_dashboard_arguments, _run_dashboard
    ),
    Command(
        "audit",
        "find the public functions that open no span, by reading the code",
        add_audit_arguments,
        run_audit,
    ),
    Command(
        "diff",
        "compare two snapshots: the dark sites that are new, gone, grown or shrunk",
        _add_diff_arguments,
        _run_diff,
    ),
    Command(
        "doctor",
        "check that the app's tracing pipeline works end to end",
        add_doctor_arguments,
        run_doctor,
    ),
)

if __name__ == "__main__":
    raise SystemExit(main())
