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

__all__ = ["lbfgs_batched"]


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
