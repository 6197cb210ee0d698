"""The block plan: which blocks, and that assembling / accumulating them gives the whole.

A linear kernel ``K(x, y) = <x, y>`` makes the whole matrix and its gradient known in
closed form, so these laws are checked without compiling any kernel.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kipd.compute import Block, plan_blocks
from kipd.compute._plan import accumulate, assemble, pad_matrix, pad_rows

sizes = st.integers(1, 9)


def _rows(array, plan, kind, index):
    size = plan.support_block if kind == "support" else plan.target_block
    return array[index * size : (index + 1) * size]


def _forward(plan, support, targets):
    """Every block of the plan under the linear kernel, from padded arrays."""
    results = []
    for block in plan.blocks:
        rows = _rows(
            support if block.kind == "ss" else targets,
            plan,
            "support" if block.kind == "ss" else "target",
            block.row,
        )
        results.append(rows @ _rows(support, plan, "support", block.col).T)
    return results


@settings(max_examples=60, deadline=None)
@given(support_size=sizes, target_size=st.integers(0, 9), block_size=sizes, seed=st.integers(0, 99))
def test_assembled_blocks_equal_the_whole_matrices(support_size, target_size, block_size, seed):
    rng = np.random.default_rng(seed)
    support = rng.standard_normal((support_size, 3))
    targets = rng.standard_normal((target_size, 3))
    plan = plan_blocks(support_size, target_size, block_size)
    padded_s = pad_rows(support, plan.padded_support_size)
    padded_t = pad_rows(targets, plan.padded_target_size) if target_size else targets
    k_ss, k_ts = assemble(plan, _forward(plan, padded_s, padded_t))
    np.testing.assert_allclose(k_ss, support @ support.T, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(k_ts, targets @ support.T, rtol=1e-12, atol=1e-12)
    assert np.array_equal(k_ss, k_ss.T)  # mirrored, so exactly symmetric


@settings(max_examples=60, deadline=None)
@given(support_size=sizes, target_size=sizes, block_size=sizes, seed=st.integers(0, 99))
def test_accumulated_vjp_blocks_equal_the_whole_gradient(
    support_size, target_size, block_size, seed
):
    # L = <G_ss, S S^T> + <G_ts, T S^T>  =>  dL/dS = (G_ss + G_ss^T) S + G_ts^T T
    rng = np.random.default_rng(seed)
    support = rng.standard_normal((support_size, 2))
    targets = rng.standard_normal((target_size, 2))
    g_ss = rng.standard_normal((support_size, support_size))
    g_ts = rng.standard_normal((target_size, support_size))
    plan = plan_blocks(support_size, target_size, block_size)
    s = pad_rows(support, plan.padded_support_size)
    t = pad_rows(targets, plan.padded_target_size)
    d_ss = pad_matrix(g_ss, len(s), len(s))
    d_ts = pad_matrix(g_ts, len(t), len(s))
    b_s, b_t = plan.support_block, plan.target_block
    results = []
    for block in plan.blocks:
        cols = slice(block.col * b_s, (block.col + 1) * b_s)
        if block.kind == "ss":
            rows = slice(block.row * b_s, (block.row + 1) * b_s)
            g = d_ss[rows, cols] + (d_ss[cols, rows].T if block.row != block.col else 0)
            results.append((g @ s[cols], g.T @ s[rows]))
        else:
            rows = slice(block.row * b_t, (block.row + 1) * b_t)
            results.append((d_ts[rows, cols].T @ t[rows],))
    expected = (g_ss + g_ss.T) @ support + g_ts.T @ targets
    np.testing.assert_allclose(accumulate(plan, results), expected, rtol=1e-10, atol=1e-10)


def test_plan_counts_and_equal_blocks():
    plan = plan_blocks(100, 5000, 32)
    assert (plan.support_block, plan.target_block) == (25, 32)
    assert plan.count("ss") == 4 * 5 // 2 and plan.count("ts") == 157 * 4
    assert plan.entries("ss") == 10 * 25 * 25
    assert plan.blocks[0] == Block("ss", 0, 0)
    only_ts = plan_blocks(10, 7, 3, support_blocks=False)
    assert only_ts.count("ss") == 0 and only_ts.count("ts") == 3 * 4


@pytest.mark.parametrize(
    "args, message",
    [((0, 5, 2), "support_size"), ((3, -1, 2), "target_size"), ((3, 5, 0), "block_size")],
)
def test_plan_rejects_bad_sizes(args, message):
    with pytest.raises(ValueError, match=message):
        plan_blocks(*args)
