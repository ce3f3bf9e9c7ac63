"""Build of the C delay-line engine; all package metadata lives in setup.cfg."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "testbed.delayline._fastline",
            sources=["testbed/delayline/_fastline.c"],
            extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter",
                                "-Wno-missing-field-initializers", "-Wno-cast-function-type"],
            libraries=["m"],
            optional=True,  # without a compiler the Python engine still works
        )
    ],
)
