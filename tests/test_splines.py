"""Spline tables: accuracy, breakpoints as grid nodes, reuse of evaluated points."""

from __future__ import annotations

import numpy as np
import pytest

from atomdesc.splines import tabulate

R_MAX = 3.0
#: a breakpoint at no simple fraction of R_MAX: no uniform grid has a node on it
KINK = R_MAX / np.sqrt(2)


def kinked_at(kink):
    """A function C1 at ``kink``: its second derivative jumps there (by 4)."""

    def function(r):
        x = np.maximum(r - kink, 0.0)
        return (np.cos(r) + 2.0 * x**2)[None], (-np.sin(r) + 4.0 * x)[None]

    return function


kinked = kinked_at(KINK)


def assert_accurate(table, function, r, rtol=1e-8):
    approx, dapprox = table.evaluate(r)
    exact, dexact = (a[0] for a in function(r))
    assert np.abs(approx - exact).max() <= rtol * np.abs(exact).max()
    assert np.abs(dapprox - dexact).max() <= 100 * rtol * np.abs(dexact).max()


def test_a_breakpoint_is_a_node_and_the_table_stays_accurate():
    table = tabulate(kinked, R_MAX, breakpoints=(KINK,))
    assert table.grid.shape == (2, 3)
    start, node, spacing = table.grid[1]
    assert start == KINK and node == int(node)
    assert table.data[int(node), 0, 0] == kinked(np.array([KINK]))[0][0, 0]  # evaluated at KINK
    assert table.grid[0, 2] * node == pytest.approx(KINK, rel=1e-14)
    assert start + spacing * (len(table.data) - 1 - node) == pytest.approx(R_MAX, rel=1e-14)
    assert 0.5 <= spacing / table.grid[0, 2] <= 2.0  # about the same resolution on both sides
    rng = np.random.default_rng(3)
    r = np.concatenate([rng.uniform(0.0, R_MAX, 5000), KINK + np.array([-1e-9, -1e-6, 0.0, 1e-9,
                                                                          1e-6, 1e-3])])
    assert_accurate(table, kinked, r)


def gaussian(r):
    g = np.exp(-((r - 1.5) ** 2) / 0.02)
    return g[None], (-(r - 1.5) / 0.01 * g)[None]


@pytest.mark.parametrize("function", [kinked, gaussian])
@pytest.mark.parametrize("rtol", [1e-8, 1e-10])
def test_derivatives_follow_the_values_accuracy(function, rtol):
    """Derivatives to a hundred times the values' tolerance (1e-8 for SOAP's 1e-10)."""
    table = tabulate(function, R_MAX, breakpoints=(KINK,), rtol=rtol)
    r = np.random.default_rng(6).uniform(0.0, R_MAX, 20000)
    assert_accurate(table, function, r, rtol)


def test_derivatives_stop_at_the_noise_of_their_evaluation():
    """A function whose derivative is evaluated to only ~3e-8 (as a quadrature's may be):
    the grid is refined for the derivatives until a doubling no longer helps, not on
    without end; the values still meet their tolerance."""

    def noisy(r):
        return np.sin(3 * r)[None], (3 * np.cos(3 * r) + 1e-7 * np.sin(1e7 * r))[None]

    table = tabulate(noisy, R_MAX, rtol=1e-10)
    assert len(table.data) <= 2**13
    r = np.random.default_rng(8).uniform(0.0, R_MAX, 20000)
    approx, dapprox = table.evaluate(r)
    assert np.abs(approx - np.sin(3 * r)).max() <= 1e-10
    assert np.abs(dapprox - 3 * np.cos(3 * r)).max() <= 1e-6 * 3


def test_the_derivatives_goal_gives_way_to_the_node_limit():
    """Where the values and the 1e-6 for derivatives are met, a node limit that the 1e-8
    goal would pass is no reason to refuse (narrower functions still tabulate)."""
    table = tabulate(gaussian, R_MAX, rtol=1e-10, n_limit=2**13)
    assert len(table.data) == 2**12 + 1
    r = np.random.default_rng(9).uniform(0.0, R_MAX, 20000)
    approx, dapprox = table.evaluate(r)
    exact, dexact = (a[0] for a in gaussian(r))
    assert np.abs(approx - exact).max() <= 1e-10
    assert np.abs(dapprox - dexact).max() <= 1e-6 * np.abs(dexact).max()


def test_a_breakpoint_at_a_simple_fraction_keeps_one_uniform_grid():
    function = kinked_at(0.75 * R_MAX)
    table = tabulate(function, R_MAX, breakpoints=(0.75 * R_MAX,))
    assert table.grid.shape == (1, 3)
    node = 0.75 * (len(table.data) - 1)
    assert node == int(node)  # a node on the breakpoint
    assert_accurate(table, function, np.random.default_rng(4).uniform(0.0, R_MAX, 5000))


def test_a_kink_off_the_grid_is_refused():
    with pytest.raises(ValueError, match="could not tabulate"):
        tabulate(kinked, R_MAX, n_limit=2**12)


def test_without_breakpoints_the_grid_is_uniform():
    table = tabulate(lambda r: (np.sin(r)[None], np.cos(r)[None]), 2.0,
                     breakpoints=(0.0, 2.0, 7.0))  # none inside (0, r_max): ignored
    assert table.grid.shape == (1, 3)
    assert table.grid[0, 0] == 0.0 and table.grid[0, 1] == 0.0
    assert table.grid[0, 2] == 2.0 / (len(table.data) - 1)


def test_each_point_is_evaluated_once_across_pieces():
    seen = []

    def recorded(r):
        seen.append(r)
        return kinked(r)

    breaks = (KINK, 2.9, 0.1 * np.pi)
    table = tabulate(recorded, R_MAX, breakpoints=breaks, n_start=16, rtol=1e-10)
    points = np.sort(np.concatenate(seen))
    assert len(seen) > 4  # refined several times
    assert np.diff(points).min() > 1e-9  # no point twice, not even to rounding
    assert set(breaks) <= set(points) and {0.0, R_MAX} <= set(points)
    assert np.array_equal(table.grid[:, 0], [0.0, *sorted(breaks)])


def test_a_function_with_a_corner_is_refused():
    with pytest.raises(ValueError, match="could not tabulate"):
        tabulate(lambda r: (np.abs(r - 1.2345)[None], np.sign(r - 1.2345)[None]), 3.0,
                     n_limit=2**10)


def test_tabulation_evaluates_each_point_once():
    """Each refinement of the grid reuses the points evaluated before it."""
    seen = []

    def narrow_gaussian(r):
        seen.append(r)
        return gaussian(r)

    table = tabulate(narrow_gaussian, 3.0, n_start=16)
    points = np.concatenate(seen)
    assert len(seen) > 4  # refined several times
    assert np.diff(np.sort(points)).min() > 1e-9  # no point twice, not even to rounding
    nodes = np.linspace(0.0, 3.0, len(table.data))
    np.testing.assert_allclose(table.data[:, 0, 0], narrow_gaussian(nodes)[0][0], rtol=0,
                               atol=1e-15)
    r = np.random.default_rng(7).uniform(0.0, 3.0, 1000)
    approx, _ = table.evaluate(r)
    assert np.abs(approx - narrow_gaussian(r)[0][0]).max() <= 1e-8
