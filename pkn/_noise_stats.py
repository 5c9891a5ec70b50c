"""The measurements behind :func:`pkn.noise.calibrate` (private).

Every plane is cut into 8x8-pixel tiles. In each tile the *dilated* diagonal Haar
detail ``HH(Ly, Lx) = (x[i, j] - x[i, j+Lx] - x[i+Ly, j] + x[i+Ly, j+Lx]) / 2`` is
computed at every site inside the tile and its mean square kept (the tile's
"energy"). For noise with covariance ``C`` (``C0`` the marginal variance)

    E[HH(Ly, Lx)^2] = C0 - C(0, Lx) - C(Ly, 0) + (C(Ly, Lx) + C(Ly, -Lx)) / 2,

which is the marginal variance itself for white noise and a known linear function of
the covariance otherwise; any signal that is a sum of a function of ``y`` and one of
``x`` (flat areas, ramps, edges along the axes) cancels.

1. Intensity: tiles are binned by their mean (equal-count bins). In each bin the tiles
   whose *neighbours* are flattest are kept (``HH(1,1)`` + ``HH(3,3)`` energy of the 8
   surrounding tiles: texture is spatially coherent, and a choice made on the
   neighbours does not depend on the tile's own noise, so it does not bias the noise
   estimate) and the mean of their ``HH(1,1)`` energy is the bin's variance. Means,
   not medians: moments are right for any noise distribution (photon counting at a
   few photons per pixel is far from Gaussian; a median-based estimate is not).
2. ``v = a1 * x + b1`` is fitted to the bins by a robust weighted fit (a global search
   over lines through pairs of bins with a capped loss, then Tukey-biweight IRLS in
   the variance domain, weights from each bin's standard error), so that bins
   inflated by texture, or deflated by clipping, are outliers.
3. Correlation: in the flattest tiles of the bins that fit the line, the energies of
   the 16 dilations ``Ly, Lx in 1..4`` (each normalised by the tile's fitted ``HH(1,1)``
   variance) are pooled into ratios and solved by least squares for the covariance
   ``C`` at lags up to 2 (zero beyond: the footprint of binning or demosaicking
   kernels up to 3x3) plus a signal term growing with ``Ly * Lx`` (what remains of the
   image's own structure). The marginal variance is ``C0`` times the measured
   ``HH(1,1)`` variance; a grouped jackknife gives its standard error, and the noise is
   called correlated only when ``C0`` exceeds 1 by more than 25% and 3 standard errors
   (so that texture is not taken for correlation; ``C0 < 1``, anti-correlated noise, is
   what image structure growing faster than the signal term fakes, so it counts as
   white).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TILE = 8
LAGS = tuple((ly, lx) for ly in (1, 2, 3, 4) for lx in (1, 2, 3, 4))
_KEEP_PER_BIN = 0.25  # fraction of each bin's tiles (the flattest) used for its variance
_KEEP_FOR_CORR = 0.10  # fraction of the inlier bins' tiles used for the correlation
_MIN_TILES_CORR = 256
_CORR_MIN_EFFECT = 0.25  # C0 / V11 - 1 below this is not called correlation
_CORR_MIN_Z = 3.0
_CAP = 3.0  # residuals (in standard errors) beyond which a bin is an outlier
_SE_FLOOR = 0.03  # relative standard error floor of a bin's variance


@dataclass
class Measurement:
    """What :func:`measure` found, in the units of the input."""

    a_hh: float  # HH(1,1) variance = a_hh * x + b_hh
    b_hh: float
    c: float  # marginal variance / HH(1,1) variance (1 for white noise)
    c_se: float
    correlated: bool
    rho: np.ndarray  # (5, 5) correlation at lags -2..2, centre 1
    signal: float  # leftover signal term of the correlation fit (relative)
    bins: list  # [(intensity, HH variance, n tiles, inlier)]
    n_tiles: int
    lo: float  # intensity range of the tiles
    hi: float
    a_se: float
    zero: bool  # no measurable noise at all


def tiles_of(plane: np.ndarray) -> np.ndarray:
    """``(ny, nx, 8, 8)`` tiles of a 2-D plane (the remainder rows/columns dropped)."""
    ny, nx = plane.shape[0] // TILE, plane.shape[1] // TILE
    t = plane[: ny * TILE, : nx * TILE].reshape(ny, TILE, nx, TILE)
    return t.transpose(0, 2, 1, 3)


def energy(t: np.ndarray, ly: int, lx: int) -> np.ndarray:
    """Mean of ``HH(ly, lx)^2`` over the sites inside each tile of ``t`` ``(..., 8, 8)``."""
    n = t.shape[-1]
    hh = t[..., : n - ly, : n - lx] - t[..., : n - ly, lx:] - t[..., ly:, : n - lx]
    hh += t[..., ly:, lx:]
    return np.einsum("...ij,...ij->...", hh, hh) / (4.0 * (n - ly) * (n - lx))


def neighbour_mean(e: np.ndarray) -> np.ndarray:
    """Mean of ``e`` ``(ny, nx)`` over each tile's (up to) 8 neighbours; 0 without any."""
    ny, nx = e.shape
    p = np.zeros((ny + 2, nx + 2))
    c = np.zeros((ny + 2, nx + 2))
    p[1:-1, 1:-1] = e
    c[1:-1, 1:-1] = 1.0
    s = np.zeros((ny, nx))
    k = np.zeros((ny, nx))
    for dy in range(3):
        for dx in range(3):
            if dy == 1 and dx == 1:
                continue
            s += p[dy : dy + ny, dx : dx + nx]
            k += c[dy : dy + ny, dx : dx + nx]
    return s / np.maximum(k, 1.0)


def _weighted_line(m, v, w, lo):
    """Weighted least squares ``v = a m + b`` with ``a >= 0`` and ``a lo + b >= 0`` (the
    line pinned at zero variance at ``lo`` when the free fit would go below); returns
    ``a, b, se(a)`` (the weights are inverse variances)."""
    X = np.stack([m, np.ones_like(m)], 1)
    XtW = X.T * w
    a, b = np.linalg.lstsq(XtW @ X, XtW @ v, rcond=None)[0]
    det = np.linalg.det(XtW @ X)
    a_se = float(np.sqrt(max(w.sum() / det, 0.0))) if det > 0 else np.inf
    if a < 0:  # flat
        return 0.0, float(np.sum(w * v) / np.sum(w)), a_se
    if a * lo + b < 0:  # pinned: v = a (m - lo)
        d = m - lo
        sw = float(np.sum(w * d * d))
        if sw <= 0:
            return 0.0, float(np.sum(w * v) / np.sum(w)), np.inf
        a = max(float(np.sum(w * d * v)) / sw, 0.0)
        return a, -a * lo, float(1 / np.sqrt(sw))
    return float(a), float(b), a_se


def _robust_line(m, v, se, lo, hi):
    """Fit ``v = a m + b`` (``a >= 0``, ``v > 0`` over ``[lo, hi]``) robustly.

    ``se`` is each bin's relative standard error. Returns ``a, b, inlier mask, se(a)``.
    """
    scale = max(float(v.max()), 1e-300)
    floor = 1e-6 * scale

    def resid(a, b):
        pred = a * m + b
        return (v - pred) / (np.maximum(pred, floor) * se)

    def score(a, b):
        if a < 0 or a * lo + b < 0 or a * hi + b <= 0:
            return np.inf
        r = resid(a, b)
        return float(np.minimum(r * r, _CAP**2).sum())

    cands = [(0.0, float(np.median(v)))] + [(0.0, float(x)) for x in v]
    for i in range(len(m)):
        for j in range(i + 1, len(m)):
            if m[j] != m[i]:
                a = (v[j] - v[i]) / (m[j] - m[i])
                cands.append((float(a), float(v[i] - a * m[i])))
    a, b = min(cands, key=lambda t: score(*t))
    a_se = np.inf
    for _ in range(30):
        pred = np.maximum(a * m + b, floor)
        u = resid(a, b) / (_CAP + 0.5)
        w = np.where(np.abs(u) < 1, (1 - u * u) ** 2, 0.0) / (pred * se) ** 2
        if (w > 0).sum() < 2 or np.ptp(m[w > 0]) <= 0:
            break
        a2, b2, a_se2 = _weighted_line(m, v, w, lo)
        done = abs(a2 - a) <= 1e-9 * abs(a) + 1e-300 and abs(b2 - b) <= 1e-9 * scale
        a, b, a_se = a2, b2, a_se2
        if done:
            break
    inlier = np.abs(resid(a, b)) <= _CAP
    return a, b, inlier, a_se


def _solve_correlation(R: np.ndarray) -> np.ndarray:
    """Least-squares covariance from the 16 normalised dilation energies ``R``.

    Unknowns (relative to the ``HH(1,1)`` variance): ``C0, Cx1, Cx2, Cy1, Cy2, Cd11,
    Cd12, Cd21, Cd22`` (``Cd`` the mean of the two diagonals) and a signal term
    ``s * (Ly * Lx - 1)``, kept only if positive.
    """
    A = np.zeros((len(LAGS), 10))
    for row, (ly, lx) in enumerate(LAGS):
        A[row, 0] = 1.0
        if lx <= 2:
            A[row, lx] = -1.0
        if ly <= 2:
            A[row, 2 + ly] = -1.0
        if ly <= 2 and lx <= 2:
            A[row, 4 + (ly - 1) * 2 + lx] = 1.0
        A[row, 9] = ly * lx - 1.0
    sol = np.linalg.lstsq(A, R, rcond=None)[0]
    if sol[9] < 0:
        sol = np.append(np.linalg.lstsq(A[:, :9], R, rcond=None)[0], 0.0)
    return sol


def _rho_kernel(sol: np.ndarray) -> np.ndarray:
    c0, cx1, cx2, cy1, cy2, d11, d12, d21, d22 = sol[:9]
    k = np.zeros((5, 5))
    k[2, 2] = 1.0
    for L, cx, cy in ((1, cx1, cy1), (2, cx2, cy2)):
        k[2, 2 + L] = k[2, 2 - L] = cx / c0
        k[2 + L, 2] = k[2 - L, 2] = cy / c0
    for (ly, lx), d in (((1, 1), d11), ((1, 2), d12), ((2, 1), d21), ((2, 2), d22)):
        for sy in (-1, 1):
            for sx in (-1, 1):
                k[2 + sy * ly, 2 + sx * lx] = d / c0
    return np.clip(k, -1.0, 1.0)


def measure(planes: list[np.ndarray], bins: int) -> Measurement:
    """Measure the noise of ``planes`` (2-D float64 arrays of the same model)."""
    tl, m, e11, act = [], [], [], []
    for p in planes:
        t = tiles_of(p)
        e_11, e_33 = energy(t, 1, 1), energy(t, 3, 3)
        tl.append(t)  # a view: only the tiles chosen for the correlation are copied
        m.append(t.mean((-1, -2)).ravel())
        e11.append(e_11.ravel())
        act.append((neighbour_mean(e_11) + neighbour_mean(e_33)).ravel())
    m, e11, act = np.concatenate(m), np.concatenate(e11), np.concatenate(act)
    n = m.size
    lo, hi = float(m.min()), float(m.max())
    white = np.zeros((5, 5))
    white[2, 2] = 1.0
    if not e11.max() > 0:  # a noiseless (constant or piecewise-flat) image
        return Measurement(0.0, 0.0, 1.0, 0.0, False, white, 0.0, [], n, lo, hi, 0.0, True)

    # 1. per-intensity-bin variances from the flattest tiles of each bin
    nb = int(np.clip(n // 16, 1, bins))
    edges = np.unique(np.quantile(m, np.linspace(0, 1, nb + 1)))
    idx = np.clip(np.searchsorted(edges, m, side="right") - 1, 0, max(len(edges) - 2, 0))
    members, ms, vs, ns, cvs = [], [], [], [], []
    for k in np.unique(idx):
        ii = np.flatnonzero(idx == k)
        # one bin: all tiles (a flatness choice would favour the darker, less noisy ones)
        keep = ii.size if nb == 1 else max(4, round(_KEEP_PER_BIN * ii.size))
        ii = ii[np.argsort(act[ii], kind="stable")[:keep]]
        med = np.median(e11[ii])
        if med > 0:
            ii = ii[e11[ii] <= 8 * med]  # an edge inside an otherwise flat spot
        ev = e11[ii]
        members.append(idx == k)
        ms.append(m[ii].mean())
        vs.append(ev.mean())
        ns.append(ii.size)
        cvs.append(ev.std() / ev.mean() if ev.mean() > 0 else 1.0)
    ms, vs, ns, cvs = (np.asarray(v, float) for v in (ms, vs, ns, cvs))
    kappa = max(float(np.percentile(cvs, 25)), 0.05)
    se = np.maximum(kappa / np.sqrt(ns), _SE_FLOOR)

    # 2. robust line through the bins
    if len(ms) == 1 or np.ptp(ms) <= 0:
        a1, b1, inl, a_se = 0.0, float(np.average(vs, weights=ns)), np.ones(len(ms), bool), np.inf
    else:
        a1, b1, inl, a_se = _robust_line(ms, vs, se, lo, hi)
    if not inl.any():
        inl[:] = True

    # 3. correlation from the flattest tiles of the inlier bins
    pred = np.maximum(a1 * m + b1, 1e-6 * float(vs.max()))
    pool = np.zeros(n, bool)
    for k, ok in enumerate(inl):
        if ok:
            pool |= members[k]
    want = max(_KEEP_FOR_CORR * n, min(_MIN_TILES_CORR, n // 4))
    frac = min(1.0, want / max(int(pool.sum()), 1))
    sel = []
    for k, ok in enumerate(inl):
        if ok:
            ii = np.flatnonzero(members[k])
            sel.append(ii[np.argsort(act[ii], kind="stable")[: max(2, round(frac * ii.size))]])
    sel = np.concatenate(sel)
    sel = np.sort(sel)
    starts = np.cumsum([0] + [t.shape[0] * t.shape[1] for t in tl])
    plane = np.searchsorted(starts, sel, side="right") - 1
    tiles = np.concatenate(
        [tl[i][np.divmod(sel[plane == i] - starts[i], tl[i].shape[1])] for i in np.unique(plane)]
    )
    E = np.stack([energy(tiles, ly, lx) for ly, lx in LAGS], 1) / pred[sel, None]

    def solve(rows):
        S = E[rows].sum(0)
        return _solve_correlation(S / S[0]) if S[0] > 0 else None

    sol = solve(slice(None))
    c, c_se, correlated, rho, signal = 1.0, np.inf, False, white, 0.0
    if sol is not None and sol[0] > 0:
        G = min(20, len(sel))
        if G >= 5:
            grp = np.arange(len(sel)) % G
            jk = [solve(grp != g) for g in range(G)]
            if all(s is not None for s in jk):
                c0s = np.array([s[0] for s in jk])
                c_se = float(np.sqrt((G - 1) / G * ((c0s - c0s.mean()) ** 2).sum()))
        # only a marginal variance clearly above the finest details' counts: image
        # structure that grows faster with the dilation than the linear signal term
        # pushes the fit the other way (spurious anti-correlation), so c < 1 is white
        excess = sol[0] - 1.0
        correlated = bool(excess > max(_CORR_MIN_EFFECT, _CORR_MIN_Z * c_se))
        signal = float(sol[9])
        if correlated:
            c, rho = float(sol[0]), _rho_kernel(sol)
    bins_table = [
        (float(x), float(v), int(k), bool(ok)) for x, v, k, ok in zip(ms, vs, ns, inl, strict=True)
    ]
    return Measurement(a1, b1, c, c_se, correlated, rho, signal, bins_table, n, lo, hi, a_se, False)
