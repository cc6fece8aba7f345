"""PyTorch references for the convolution family, group norm and vector
quantisation (cases written by test_ops_conv.c); oracle.py merges OPS."""
import torch
import torch.nn.functional as F


def _bias(i, p):
    return i[2] if len(i) > 2 else None


def groupnorm(i, p):
    w = i[1] if p["affine"] >= 1 else None
    b = i[2] if p["affine"] >= 2 else None
    return F.group_norm(i[0], p["groups"], w, b, p["eps"])


def resblock(i, p):
    x, g1w, g1b, c1w, c1b, g2w, g2b, c2w = i
    h = F.silu(F.group_norm(x, p["groups"], g1w, g1b, p["eps"]))
    h = F.conv2d(h, c1w, c1b, 1, 1)
    h = F.silu(F.group_norm(h, p["groups"], g2w, g2b, p["eps"]))
    h = F.conv2d(h, c2w, None, 1, 1)
    return h + x


def vq(z, cb):
    """Nearest code by ||z||^2 - 2 z.c + ||c||^2 (ties: lowest index), as Medley."""
    d = (z * z).sum(1, keepdim=True) - 2 * z @ cb.T + (cb * cb).sum(1)[None, :]
    idx = torch.argmin(d, 1)
    q = cb[idx]
    zq = z + (q - z).detach()
    cl = F.mse_loss(z.detach(), q)
    cm = F.mse_loss(z, q.detach())
    return [zq, idx.to(torch.int32), cl.reshape(1), cm.reshape(1)]


def vq_grid(i, p):
    """Inputs as test_ops_conv.c's op_vq_grid: z offsets, ids, code offsets."""
    zoff, ids, coff = i
    K, D = coff.shape
    k = torch.arange(K)[:, None]
    j = torch.arange(D)[None, :]
    grid = ((k >> j) & 1).to(torch.float64) * p["sep"]
    return vq(grid[ids] + zoff, grid + coff)


OPS = {
    "conv1d": lambda i, p: [F.conv1d(i[0], i[1], _bias(i, p), p["stride"], p["pad"], 1, p["groups"])],
    "conv2d": lambda i, p: [F.conv2d(i[0], i[1], _bias(i, p), p["stride"], p["pad"], 1, p["groups"])],
    "conv_transpose2d": lambda i, p: [F.conv_transpose2d(i[0], i[1], _bias(i, p), p["stride"], p["pad"],
                                                         0, p["groups"])],
    "upsample_nearest2d": lambda i, p: [F.interpolate(i[0], scale_factor=p["scale"], mode="nearest")],
    "avgpool2d": lambda i, p: [F.avg_pool2d(i[0], p["kernel"], p["stride"])],
    "groupnorm": lambda i, p: [groupnorm(i, p)],
    "groupnorm_silu": lambda i, p: [F.silu(groupnorm(i, p))],
    "resblock": lambda i, p: [resblock(i, p)],
    "resblock_fused": lambda i, p: [resblock(i, p)],
    "vq": lambda i, p: vq(i[0], i[1]),
    "vq_commit": lambda i, p: [vq_grid(i, p)[3]],
    "vq_codebook": lambda i, p: [vq_grid(i, p)[2]],
}
