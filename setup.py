"""Builds the optional compiled frame intake (``gcbridge.genesys._intake_c``); everything else is in
pyproject.toml. Without Cython or a C compiler the build goes on and the pure-Python twin runs instead."""

from setuptools import Extension, setup

try:
    from Cython.Build import cythonize
except ImportError:  # pragma: no cover - Cython is a build requirement; this is the offline fallback
    cythonize = None

extensions = [Extension("gcbridge.genesys._intake_c", ["src/gcbridge/genesys/_intake_c.pyx"])]
if cythonize is not None:
    extensions = cythonize(extensions, language_level=3)
    for ext in extensions:  # cythonize drops the flag: a failed C build must leave the Python twin
        ext.optional = True
else:
    extensions = []

setup(ext_modules=extensions)
