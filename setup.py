"""The one compiled part: edge_agent.vision._labelcore (see its source for why).

Optional: where it cannot be built (no C compiler or Python headers on the Pi image), the
install goes on without it and the label check takes its OpenCV path, same verdicts, slower.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "edge_agent.vision._labelcore",
            ["edge_agent/vision/_labelcore.c"],
            # -O3: the pixel loops vectorised (the cold locate ~40 µs faster than -O2);
            # -fno-math-errno: lrint becomes one instruction instead of a libm call;
            # -ffp-contract=off: no fused multiply-adds (default on aarch64 and in clang),
            # so the corners are rounded as Python and OpenCV round them
            extra_compile_args=[
                "-O3",
                "-std=c99",
                "-fno-math-errno",
                "-ffp-contract=off",
                "-Wall",
                "-Wextra",
            ],
            optional=True,
        )
    ]
)
