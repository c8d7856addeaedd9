"""Named architectures (thesis Table 4.1 and ablations) as plain data: name -> {"arch": ..., **kwargs}.

Exact x2 parameter counts (MeanShift in buffers, see ``common``): edsr-t 1,369,859; edsr-b 40,729,603;
rcan-t 5,023,603; rcan-b 15,444,643; rnan-t 1,985,347; rnan-b 9,107,267. The ``-micro`` presets are
only for fast CPU tests of the same code paths.
"""

from __future__ import annotations

PRESETS: dict[str, dict] = {
    # EDSR: Base is the paper's EDSR; Tiny is the paper's "baseline" EDSR.
    "edsr-b": {"arch": "edsr", "n_resblocks": 32, "n_feats": 256, "res_scale": 0.1},
    "edsr-t": {"arch": "edsr", "n_resblocks": 16, "n_feats": 64, "res_scale": 1.0},
    "edsr-t-bn": {"arch": "edsr", "n_resblocks": 16, "n_feats": 64, "res_scale": 1.0, "bn": True},
    "edsr-t-15": {"arch": "edsr", "n_resblocks": 15, "n_feats": 64, "res_scale": 1.0},
    # RCAN: 10 residual groups; Table 4.1's "residual blocks" is the number of RCABs per group.
    "rcan-b": {"arch": "rcan", "n_resgroups": 10, "n_resblocks": 20, "n_feats": 64, "reduction": 16},
    "rcan-t": {"arch": "rcan", "n_resgroups": 10, "n_resblocks": 6, "n_feats": 64, "reduction": 16},
    # RNAN: Table 4.1's "residual blocks" is the number of residual groups (2 of them non-local).
    "rnan-b": {"arch": "rnan", "n_resgroups": 10, "n_feats": 64},
    "rnan-t": {"arch": "rnan", "n_resgroups": 2, "n_feats": 64},
    # CPU-test sizes.
    "edsr-t-micro": {"arch": "edsr", "n_resblocks": 2, "n_feats": 8, "res_scale": 1.0, "bicubic_skip": True},
    "rcan-t-micro": {"arch": "rcan", "n_resgroups": 2, "n_resblocks": 2, "n_feats": 16, "reduction": 4,
                     "bicubic_skip": True},
    "rnan-t-micro": {"arch": "rnan", "n_resgroups": 3, "n_feats": 8, "bicubic_skip": True},
}
