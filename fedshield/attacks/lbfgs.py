"""A batched L-BFGS with per-row state: ``V`` independent ``torch.optim.LBFGS`` runs in one.

L-BFGS is not separable (its history, step size and stopping tests are global), so attacking
``V`` victims with one ``torch.optim.LBFGS`` over the stacked dummies would couple them.
:func:`lbfgs_batched` keeps a per-victim history ``[V, m, n]``, curvature test, step size,
tolerances and outer/inner iteration counters: a vectorised re-implementation of
``torch.optim.LBFGS`` (no line search) that follows, for every victim, the same trajectory as its
own ``torch.optim.LBFGS`` (up to floating-point rounding; ``tests/test_attacks.py`` checks it
against :func:`fedshield.attacks.dlg.dlg_batch` with ``vectorized=False``, which runs
``torch.optim.LBFGS`` itself, victim after victim). Victims that have converged stop being
evaluated.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .common import progress_bar

__all__ = ["lbfgs_batched", "lbfgs_armijo_batched"]


@torch.no_grad()
def lbfgs_batched(fg: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]], z: Tensor, *, steps: int,
                   max_iter: int = 20, lr: float = 1.0, history_size: int = 100,
                   tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9,
                   progress: bool = False) -> tuple[Tensor, list[list[float]], Tensor]:
    """``steps`` calls of ``torch.optim.LBFGS(max_iter, lr, history_size, tolerances,
    line_search_fn=None).step`` for each row of ``z`` ``[V, n]``, vectorised over rows.

    ``fg(z_sub [A, n], idx [A]) -> (loss [A], grad [A, n])`` evaluates the victims ``idx``.
    Every victim keeps its own history (``[V, m, n]`` ring of (s, y) pairs, in chronological
    order), its own curvature test ``y's > 1e-10``, initial step ``min(1, 1/|g|_1) lr`` and
    ``H0 = y's / y'y``, and its own inner/outer iteration counters and stopping tests, exactly
    as ``torch.optim.LBFGS`` does for one victim:

    * an outer step starts with an evaluation; it ends after ``max_iter`` updates (the last
      update is not evaluated until the next step) or when, after an update, ``max|g| <= tol_grad``,
      ``max|t d| <= tol_change`` or ``|f - f_prev| < tol_change`` (the next step re-evaluates the
      same point, which we reuse: it is the same number);
    * ``max|g| <= tol_grad`` at the start of a step, or a non-descent direction
      ``g'd > -tol_change``, leaves torch's optimiser at the same point for ever: the victim stops.

    Returns the final ``z``, each victim's loss at the start of every outer step, and the number
    of evaluations per victim.
    """
    V, n = z.shape
    dev, dt = z.device, z.dtype
    H = int(history_size)
    S = torch.zeros(V, H, n, dtype=dt, device=dev)
    Yh = torch.zeros(V, H, n, dtype=dt, device=dev)
    rho = torch.zeros(V, H, dtype=dt, device=dev)
    cnt = torch.zeros(V, dtype=torch.long, device=dev)
    h_diag = torch.ones(V, dtype=dt, device=dev)
    d = torch.zeros(V, n, dtype=dt, device=dev)
    t = torch.zeros(V, dtype=dt, device=dev)
    g = torch.zeros(V, n, dtype=dt, device=dev)
    prev_g = torch.zeros(V, n, dtype=dt, device=dev)
    loss = torch.zeros(V, dtype=torch.float64, device=dev)
    prev_loss = torch.zeros(V, dtype=torch.float64, device=dev)
    n_total = torch.zeros(V, dtype=torch.long, device=dev)
    inner = torch.zeros(V, dtype=torch.long, device=dev)
    outer = torch.zeros(V, dtype=torch.long, device=dev)
    evals = torch.zeros(V, dtype=torch.long, device=dev)
    done = torch.zeros(V, dtype=torch.bool, device=dev)
    in_step = torch.zeros(V, dtype=torch.bool, device=dev)  # last action was an evaluated inner update
    hist: list[list[float]] = [[] for _ in range(V)]
    bar = progress_bar(progress, steps, "DLG (L-BFGS)")
    try:
        while not bool(done.all()):
            act = (~done).nonzero().squeeze(1)
            la, ga = fg(z[act], act)
            loss[act] = la.to(torch.float64)
            g[act] = ga
            evals[act] += 1
            a = torch.zeros(V, dtype=torch.bool, device=dev)
            a[act] = True
            opt = g.abs().amax(1) <= tolerance_grad
            # stopping tests after an evaluated inner update
            chk = a & in_step
            brk = chk & (opt | ((d * t[:, None]).abs().amax(1) <= tolerance_change)
                         | ((loss - prev_loss).abs() < tolerance_change))
            outer += brk.long()
            inner[brk] = 0
            done |= brk & (outer >= steps)
            # victims at the start of an outer step (fresh or same point)
            e0 = a & ~done & (~in_step | brk)
            for v in e0.nonzero().squeeze(1).tolist():
                hist[v].append(float(loss[v]))
            done |= e0 & opt
            go = a & ~done
            if not bool(go.any()):
                break
            inner += go.long()
            n_total += go.long()
            first = go & (n_total == 1)
            upd = go & ~first
            # --- memory update (y = g - g_prev, s = t d) for victims past their first iteration
            yv = g - prev_g
            s = d * t[:, None]
            ys = (yv * s).sum(1)
            acc = upd & (ys > 1e-10)
            full = acc & (cnt == H)
            if bool(full.any()):
                S[full] = S[full].roll(-1, dims=1)
                Yh[full] = Yh[full].roll(-1, dims=1)
                rho[full] = rho[full].roll(-1, dims=1)
                cnt[full] -= 1
            if bool(acc.any()):
                ai = acc.nonzero().squeeze(1)
                pos = cnt[ai]
                S[ai, pos] = s[ai]
                Yh[ai, pos] = yv[ai]
                rho[ai, pos] = 1.0 / ys[ai]
                h_diag[ai] = ys[ai] / (yv[ai] * yv[ai]).sum(1)
                cnt[ai] += 1
            # --- two-loop recursion, all victims at once (masked by each one's history length)
            q = -g
            m_max = int(cnt[upd].max()) if bool(upd.any()) else 0
            if m_max:
                # rho masked to 0 outside a victim's history (and for victims not updating):
                # then alpha = beta = 0 there and the step changes nothing.
                valid = (torch.arange(m_max, device=dev)[None, :] < cnt[:, None]) & upd[:, None]
                rv = rho[:, :m_max] * valid.to(dt)
                al = torch.zeros(V, m_max, dtype=dt, device=dev)
                for i in range(m_max - 1, -1, -1):
                    al[:, i] = torch.linalg.vecdot(S[:, i], q) * rv[:, i]
                    q.addcmul_(Yh[:, i], al[:, i, None], value=-1.0)
                r = q * h_diag[:, None]
                for i in range(m_max):
                    be = torch.linalg.vecdot(Yh[:, i], r) * rv[:, i]
                    r.addcmul_(S[:, i], (al[:, i] - be)[:, None])
            else:
                r = q * h_diag[:, None]
            new_d = torch.where(first[:, None], -g, r)
            d = torch.where(go[:, None], new_d, d)
            prev_g = torch.where(go[:, None], g, prev_g)
            prev_loss = torch.where(go, loss, prev_loss)
            t0 = torch.clamp(1.0 / g.abs().sum(1), max=1.0) * lr
            t = torch.where(go, torch.where(first, t0, torch.full_like(t0, lr)), t)
            gtd = (g * d).sum(1)
            stuck = go & (gtd > -tolerance_change)
            done |= stuck
            mv = go & ~stuck
            z = z + torch.where(mv[:, None], t[:, None] * d, torch.zeros((), dtype=dt, device=dev))
            end = mv & (inner == max_iter)
            outer += end.long()
            inner[end] = 0
            done |= end & (outer >= steps)
            in_step = mv & ~end
            live = outer[~done]
            bar.n = int(live.min()) if live.numel() else steps
            bar.refresh()
    finally:
        bar.close()
    return z, hist, evals


@torch.no_grad()
def lbfgs_armijo_batched(fg: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]], z: Tensor, *, iterations: int,
                         history_size: int = 20, c1: float = 1e-4, max_backtracks: int = 30,
                         tolerance_grad: float = 1e-9, tolerance_change: float = 1e-12,
                         progress: bool = False, desc: str = "L-BFGS") -> tuple[Tensor, Tensor, list[list[float]], Tensor]:
    """L-BFGS with a backtracking (Armijo) line search, independently for each row of ``z``
    ``[V, n]`` and vectorised over rows: a monotone minimiser for objectives on which DLG's fixed
    unit step runs away (a noisy target, a box through a sigmoid).

    Each iteration takes the two-loop direction of a row's own history (``history_size`` pairs;
    a pair with ``y's <= 1e-10`` is not stored), tries the step ``t = 1`` (the first iteration:
    ``min(1, 1 / |g|_1)``) and halves it, row by row, until ``f(z + t d) <= f(z) + c1 t g'd``;
    only the rows still searching are evaluated. A row whose direction is not a descent direction
    restarts from ``-g`` with an empty history; a row stops when its gradient or its decrease
    falls below the tolerances, or when no step of the search decreases it.

    ``fg(z_sub [A, n], idx [A]) -> (loss [A], grad [A, n])``. Returns ``(z, loss [V], history,
    evaluations [V])``; ``history[v]`` is row v's loss at the start of every iteration (the loss
    never increases).
    """
    V, n = z.shape
    dev, dt = z.device, z.dtype
    m = int(history_size)
    S = torch.zeros(V, m, n, dtype=dt, device=dev)
    Y = torch.zeros(V, m, n, dtype=dt, device=dev)
    rho = torch.zeros(V, m, dtype=dt, device=dev)      # 0 = empty slot (contributes nothing)
    gamma = torch.ones(V, dtype=dt, device=dev)
    evals = torch.zeros(V, dtype=torch.long, device=dev)
    idx_all = torch.arange(V, device=dev)
    f, g = fg(z, idx_all)
    f, evals = f.to(dt).clone(), evals + 1
    done = torch.zeros(V, dtype=torch.bool, device=dev)
    first = torch.ones(V, dtype=torch.bool, device=dev)
    hist: list[list[float]] = [[] for _ in range(V)]
    bar = progress_bar(progress, iterations, desc)
    try:
        for _ in range(int(iterations)):
            for v in (~done).nonzero().squeeze(1).tolist():
                hist[v].append(float(f[v]))
            done |= g.abs().amax(1) <= tolerance_grad
            if bool(done.all()):
                break
            # two-loop recursion over the ring (oldest first at index 0)
            q = -g
            al = torch.zeros(V, m, dtype=dt, device=dev)
            for i in range(m - 1, -1, -1):
                al[:, i] = rho[:, i] * torch.linalg.vecdot(S[:, i], q)
                q = q - al[:, i, None] * Y[:, i]
            r = q * gamma[:, None]
            for i in range(m):
                be = rho[:, i] * torch.linalg.vecdot(Y[:, i], r)
                r = r + S[:, i] * (al[:, i] - be)[:, None]
            d = r
            gtd = (g * d).sum(1)
            bad = gtd >= 0
            if bool(bad.any()):   # not a descent direction: forget the history, go down the gradient
                d[bad] = -g[bad]
                rho[bad] = 0.0
                gamma[bad] = 1.0
                first |= bad
                gtd = (g * d).sum(1)
            t = torch.where(first, torch.clamp(1.0 / g.abs().sum(1).clamp_min(1e-30), max=1.0),
                            torch.ones(V, dtype=dt, device=dev))
            search = ~done
            f_new = f.clone()
            g_new = g.clone()
            ok = torch.zeros(V, dtype=torch.bool, device=dev)
            for _b in range(int(max_backtracks)):
                a = (search & ~ok).nonzero().squeeze(1)
                if a.numel() == 0:
                    break
                fa, ga = fg(z[a] + t[a, None] * d[a], a)
                evals[a] += 1
                fa = fa.to(dt)
                acc = torch.isfinite(fa) & (fa <= f[a] + c1 * t[a] * gtd[a])
                ai = a[acc]
                f_new[ai], g_new[ai] = fa[acc], ga[acc]
                ok[ai] = True
                t[a[~acc]] *= 0.5
            stalled = search & ~ok
            done |= stalled
            mv = ok
            if not bool(mv.any()):
                break
            s = t[:, None] * d
            yv = g_new - g
            ys = (s * yv).sum(1)
            keep = mv & (ys > 1e-10)
            if bool(keep.any()):
                k = keep.nonzero().squeeze(1)
                S[k] = torch.roll(S[k], -1, dims=1)
                Y[k] = torch.roll(Y[k], -1, dims=1)
                rho[k] = torch.roll(rho[k], -1, dims=1)
                S[k, -1], Y[k, -1], rho[k, -1] = s[k], yv[k], 1.0 / ys[k]
                gamma[k] = ys[k] / (yv[k] * yv[k]).sum(1)
            small = mv & ((f - f_new).abs() <= tolerance_change * f.abs().clamp_min(1.0))
            z = torch.where(mv[:, None], z + s, z)
            f = torch.where(mv, f_new, f)
            g = torch.where(mv[:, None], g_new, g)
            first &= ~mv
            done |= small
            bar.update(1)
    finally:
        bar.close()
    return z, f, hist, evals
