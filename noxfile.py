"""nox sessions: one per array backend, a GPU session, and lint.

torch is pinned to 2.13.0 on CPU sessions: that wheel is on the project's machines, and an
unpinned torch downloads a multi-GB CUDA build.
"""

import random
from pathlib import Path

import nox

nox.options.sessions = ["numpy", "torch", "strict", "jax", "dask", "bridges", "typecheck", "lint", "docs"]
TORCH_CPU = "torch==2.13.0"


def _tests(session: nox.Session, backends: str, extras: str = "test") -> None:
    session.install(TORCH_CPU, f".[{extras}]")
    session.run("python", "-m", "pytest", *session.posargs, env={"XPCONV_TEST_BACKENDS": backends})


@nox.session
def numpy(session: nox.Session) -> None:
    """NumPy arrays (torch installed only as the reference)."""
    _tests(session, "numpy")


@nox.session
def torch(session: nox.Session) -> None:
    """torch CPU tensors."""
    _tests(session, "torch")


@nox.session
def strict(session: nox.Session) -> None:
    """array-api-strict: proves the generic, standard-only path."""
    _tests(session, "array_api_strict")


@nox.session
def jax(session: nox.Session) -> None:
    """JAX arrays, eager and under jax.jit (the generic path: no strides, no in-place writes)."""
    _tests(session, "jax", "test,jax")


@nox.session
def bridges(session: nox.Session) -> None:
    """xpconv.torch and xpconv.jax inside autograd: gradcheck, torch.func, torch.compile, converted models,
    custom_vjp against lax, Flax layers."""
    session.install(TORCH_CPU, ".[test,jax,flax]")
    session.run("python", "-m", "pytest", "tests/test_torch_bridge.py", "tests/test_jax_bridge.py", *session.posargs)


@nox.session
def dask(session: nox.Session) -> None:
    """Dask arrays chunked along the batch, on the threaded scheduler and a 2-process LocalCluster."""
    _tests(session, "dask", "test,dask,bench")


@nox.session
def gpu(session: nox.Session) -> None:
    """Every test on the CuPy and torch CUDA backends, then the check with its CUDA rows; needs a CUDA
    machine (the backends skip, with the reason, without one). torch unpinned: the CUDA build."""
    session.install("torch", "cupy-cuda12x", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs, env={"XPCONV_TEST_BACKENDS": "torch-cuda,cupy"})
    session.run("python", "-m", "xpconv", "check")


@nox.session
def check(session: nox.Session) -> None:
    """The README's main command with NumPy alone."""
    session.install(".")
    session.run("python", "-m", "xpconv", "check")


@nox.session
def release(session: nox.Session) -> None:
    """The release gate: 10,000 drawn cases of every kind against torch autograd (about 5 minutes on 2 cores),
    then the test suite with hypothesis's release profile: five times the examples, drawn at random from a
    seed printed here (rerun a failure with ``nox -s release -- --hypothesis-seed=N``)."""
    session.install(TORCH_CPU, ".[test,jax,flax,dask]")
    session.run("python", "-m", "xpconv", "check", "--cases", "10000", "--seed", "0")
    seed = next((arg for arg in session.posargs if arg.startswith("--hypothesis-seed")), None)
    if seed is None:
        seed = f"--hypothesis-seed={random.randrange(2**32)}"
    session.log(f"hypothesis: {seed}")
    extra = [arg for arg in session.posargs if not arg.startswith("--hypothesis-seed")]
    session.run("python", "-m", "pytest", "--hypothesis-profile=release", seed, *extra)


@nox.session
def mutations(session: nox.Session) -> None:
    """Small plausible bugs put into the code one at a time (tests/mutations.py): each must turn its tests red."""
    session.install(TORCH_CPU, ".[test,jax,flax,dask]")
    session.run("python", "tests/mutations.py", *session.posargs)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy on src/ and on a user script calling every public function; a misspelled keyword must fail."""
    session.install(".[test]")
    session.run("python", "-m", "pytest", "tests/test_typing.py", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site, offline, warnings as errors and every cross-reference checked (-W -n), then
    every example on its pages and in the docstrings as a doctest. The site lands in docs/_build/html."""
    session.install(TORCH_CPU, ".[docs,jax,dask]")
    session.run("python", "-m", "sphinx", "-W", "-n", "--keep-going", "-b", "html", "docs", "docs/_build/html")
    session.run("python", "-m", "sphinx", "-W", "-n", "--keep-going", "-b", "doctest", "docs", "docs/_build/doctest")


@nox.session
def build(session: nox.Session) -> None:
    """The release files: a wheel and an sdist in dist/, checked by twine; the wheel alone, in this session's
    fresh venv and outside the source tree, passes the check."""
    session.install(".[release]")
    session.run("rm", "-rf", "dist", external=True)
    session.run("python", "-m", "build", "--outdir", "dist", ".")
    session.run("python", "-m", "twine", "check", "--strict", *map(str, Path("dist").glob("*")))
    session.run("python", "-m", "pip", "uninstall", "--yes", "xpconv")
    session.install(*map(str, Path("dist").glob("*.whl")))
    session.chdir(session.create_tmp())
    session.run("python", "-m", "xpconv", "check")


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "src", "tests", "benchmarks", "docs", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "benchmarks", "docs", "noxfile.py")
