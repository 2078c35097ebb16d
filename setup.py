"""Builds the optional C extensions; everything else lives in pyproject.toml.

``_native`` reads each thread's executing ``contextvars`` context; ``_liveness`` tells,
without the GIL, whether calls the sampler has seen are still running; ``_tracking`` is
the call tracker's per-thread hot path; ``_stacks`` reads every thread's stack without
the GIL. If one cannot be compiled (no compiler,
unsupported interpreter), installation still succeeds and spangap falls back to pure
Python for that part.
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

#: The watcher's C API, which _tracking calls directly (shared by both extensions).
LIVENESS_API = "src/spangap/c/_liveness_api.h"


class OptionalBuildExt(build_ext):
    """Treat a failed compile as "no native reader", not as a failed install."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any build failure means "no extension"
            print(f"spangap: C extension not built ({exc}); using the pure-Python fallback")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            print(f"spangap: C extension not built ({exc}); using the pure-Python fallback")


setup(
    ext_modules=[
        Extension("spangap._native", ["src/spangap/c/_native.c"], optional=True),
        Extension(
            "spangap._liveness",
            ["src/spangap/c/_liveness.c", "src/spangap/c/_gil.c"],
            depends=[LIVENESS_API, "src/spangap/c/_gil.h"],
            optional=True,
        ),
        Extension(
            "spangap._stacks",
            ["src/spangap/c/_stacks.c", "src/spangap/c/_chains.c"],
            depends=["src/spangap/c/_chains.h", "src/spangap/c/_activations_api.h", "src/spangap/c/_safecopy.h"],
            optional=True,
        ),
        Extension(
            "spangap._tracking",
            ["src/spangap/c/_tracking.c", "src/spangap/c/_stackwalk.c"],
            depends=[LIVENESS_API, "src/spangap/c/_stackwalk.h", "src/spangap/c/_activations_api.h"],
            optional=True,
        ),
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)
