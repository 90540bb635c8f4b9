"""Op registration cannot be skipped: schemas, fake kernels and autograd formulas come with
``import ssm.ops``, so the compiled library works however it is loaded; and ``ssm/ops`` imports
without cycles."""

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import RTOL

import ssm.ops
from ssm.ops import _extension

LOAD_LIBRARY_ALONE = textwrap.dedent(
    """
    import sys, torch
    import ssm.ops  # defines torch.ops.ssm.* with their fake kernels and autograd; loads nothing
    from ssm.ops import _extension, cauchy_ref, vandermonde_ref, vandermonde_transpose_ref
    assert not _extension._STATUS, _extension._STATUS
    torch.ops.load_library(sys.argv[1])  # not through our loader
    tol = float(sys.argv[2])  # RTOL[torch.float64] of tests/helpers.py
    ops = torch.ops.ssm
    c = lambda *s: torch.randn(*s, dtype=torch.complex128)
    v, w, z = c(3, 5), c(3, 5) - 2, c(7)
    x = torch.complex(-torch.rand(3, 5, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64))
    u = torch.randn(3, 9, dtype=torch.float64)
    opcheck = torch.library.opcheck
    opcheck(ops.cauchy, (v.requires_grad_(), z, w.requires_grad_()))
    opcheck(ops.cauchy_backward, (c(3, 7), v.detach(), z, w.detach()))
    opcheck(ops.vandermonde, (v, x.requires_grad_(), 11))
    opcheck(ops.vandermonde_sums, (u.requires_grad_(), x, False))
    opcheck(ops.vandermonde_sums, (u.detach(), x.detach(), True))  # its x-gradient is not implemented
    X, Acc = torch.randn(2, 4, 3, dtype=torch.float64), torch.randn(2, 1, 2, 3, dtype=torch.float64)
    opcheck(ops.siso_bank_begin, (torch.randn(2, 2, 4, dtype=torch.float64), X, Acc.clone()))
    opcheck(ops.siso_bank_end, (X.clone(), Acc.clone(), torch.randn(1, 1, 1, 2, dtype=torch.float64),
                                torch.randn(2, 4, 2, dtype=torch.float64), torch.randn(2, 2, dtype=torch.float64),
                                torch.randn(2, 2, dtype=torch.float64), 0))
    H = 4
    params = [torch.randn(*s, dtype=torch.float64) for s in ((H,), (H,), (H, 6), (6,), (6, H), (H,))]
    opcheck(ops.residual_chain, (torch.randn(2, H, dtype=torch.float64), params, [], [], ["feed_forward"], [1e-5],
                                 "gelu", "identity", [], []))

    def grads(f, *leaves):
        leaves = [t.detach().clone().requires_grad_() for t in leaves]
        out = f(*leaves)
        (out.abs() if out.is_complex() else out).sum().backward()
        return [t.grad for t in leaves]

    pairs = [
        (grads(lambda v, w: ops.cauchy(v, z, w), v, w), grads(lambda v, w: cauchy_ref(v, z, w), v, w)),
        (grads(lambda v, x: ops.vandermonde(v, x, 11), v, x), grads(lambda v, x: vandermonde_ref(v, x, 11), v, x)),
        (grads(lambda u, x: ops.vandermonde_sums(u, x, False)[0], u, x), grads(lambda u, x: vandermonde_transpose_ref(u, torch.ones_like(x), x), u, x)),
    ]
    for ours, ref in pairs:
        for a, b in zip(ours, ref, strict=True):
            assert torch.allclose(a, b, rtol=tol, atol=tol), (a - b).abs().max()  # float64 kernels vs references
    assert not _extension._STATUS, _extension._STATUS  # our loader never ran
    print("OK")
    """
)


@pytest.mark.compiled
def test_the_library_loaded_alone_has_fake_kernels_and_autograd():
    path = _extension.load("cpu").detail
    assert Path(path).is_file(), path
    env = {k: v for k, v in os.environ.items() if k != "SSM_BACKEND"}
    proc = subprocess.run([sys.executable, "-c", LOAD_LIBRARY_ALONE, path, repr(RTOL[torch.float64])], env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), proc.stderr[-3000:]


FAKE_WITHOUT_A_LIBRARY = textwrap.dedent(
    """
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode
    import ssm.ops
    from ssm.ops import _extension, _schemas
    ops = torch.ops.ssm
    with FakeTensorMode():
        c = lambda *s: torch.empty(*s, dtype=torch.complex64)
        v, z, u = c(3, 5), c(7), torch.empty(3, 9)
        assert ops.cauchy(v, z, v).shape == (3, 7)
        assert [t.shape for t in ops.cauchy_backward(c(3, 7), v, z, v)] == [(3, 5), (3, 5)]
        out = ops.vandermonde(v, v, 11)
        assert out.shape == (3, 11) and out.dtype == torch.float32
        assert [t.shape for t in ops.vandermonde_sums(u, v, True)] == [(3, 5), (3, 5)]
        x = torch.empty(2, 4)
        assert ops.residual_chain(x, [], [], [], [], [], "gelu", "identity", [], []).shape == (2, 4)
    assert all(getattr(ops, n).default._schema.name == f"ssm::{n}" for n in _schemas.SCHEMAS)
    assert not _extension._STATUS, _extension._STATUS
    print("OK")
    """
)


def test_fake_kernels_work_before_any_library_is_loaded(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SSM_BACKEND"}
    env.update(SSM_NO_BUILD="1", SSM_CACHE_DIR=str(tmp_path / "empty"))
    proc = subprocess.run([sys.executable, "-c", FAKE_WITHOUT_A_LIBRARY], env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), proc.stderr[-3000:]


def _relative_imports(path: Path) -> set[str]:
    """Modules of ssm/ops that ``path`` imports at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
    return found


def test_ssm_ops_has_no_import_cycle():
    root = Path(ssm.ops.__file__).parent
    modules = {p.stem for p in root.glob("*.py")}
    graph = {m: _relative_imports(root / f"{m}.py") & modules for m in modules}
    # _dispatch's own imports (transitively) must not import _dispatch back
    below, todo = set(), list(graph["_dispatch"])
    while todo:
        m = todo.pop()
        if m not in below:
            below.add(m)
            todo.extend(graph[m])
    assert "_dispatch" not in below, f"_dispatch imports (through {sorted(below)}) a module that imports it"
    # and no cycle anywhere in ssm/ops
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for n in graph[m]:
            assert state.get(n) != 1, f"import cycle: {' -> '.join([*path, m, n])}"
            if n not in state:
                visit(n, [*path, m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])
