/* test_ops_core.c — parity and finite-difference cases for the core ops
 * (everything but the convolution family and VQ, which test_ops_conv.c
 * covers). Writes a dump for oracle.py; exits non-zero on an FD failure. */
#include "pcase.h"

#include <stdio.h>
#include <string.h>

typedef struct opargs {
    int which;
    bool ta, tb, causal;
    int heads, dim, perm[5];
    int64_t start, end, shape[5];
    int ndim;
    float f;
    int ignore;
} opargs;

enum { MATMUL, BMM, LINEAR, LINEAR_NB, ADD, SUB, MUL, SCALE, GELU, SILU, RELU, TANH, SIGMOID,
       LAYERNORM, RMSNORM, SOFTMAX, LOGSOFTMAX, ATTN, ATTN_QKV, EMBED, PERMUTE, SLICE, CONCAT,
       RESHAPE, SUM, MEAN, SUMDIM, MEANDIM, XENT, MSE, L1, EXP, L2N, LOGE, SQRTE };

static int run_op(md_graph *g, md_tensor **in, md_tensor **out, void *user)
{
    opargs *a = user;
    switch (a->which) {
    case MATMUL: out[0] = md_matmul(g, in[0], in[1], a->ta, a->tb); break;
    case BMM: out[0] = md_bmm(g, in[0], in[1], a->ta, a->tb); break;
    case LINEAR: out[0] = md_linear(g, in[0], in[1], in[2]); break;
    case LINEAR_NB: out[0] = md_linear(g, in[0], in[1], NULL); break;
    case ADD: out[0] = md_add(g, in[0], in[1]); break;
    case SUB: out[0] = md_sub(g, in[0], in[1]); break;
    case MUL: out[0] = md_mul(g, in[0], in[1]); break;
    case SCALE: out[0] = md_scale(g, in[0], a->f); break;
    case GELU: out[0] = md_gelu(g, in[0]); break;
    case SILU: out[0] = md_silu(g, in[0]); break;
    case RELU: out[0] = md_relu(g, in[0]); break;
    case TANH: out[0] = md_tanh(g, in[0]); break;
    case SIGMOID: out[0] = md_sigmoid(g, in[0]); break;
    case LAYERNORM: out[0] = md_layernorm(g, in[0], in[1], in[2], a->f); break;
    case RMSNORM: out[0] = md_rmsnorm(g, in[0], in[1], a->f); break;
    case SOFTMAX: out[0] = md_softmax(g, in[0]); break;
    case LOGSOFTMAX: out[0] = md_log_softmax(g, in[0]); break;
    case ATTN: out[0] = md_attention(g, in[0], in[1], in[2], a->heads, a->causal); break;
    case ATTN_QKV: out[0] = md_attention_qkv(g, in[0], a->heads, a->causal); break;
    case EMBED: out[0] = md_embedding(g, in[0], in[1]); break;
    case PERMUTE: out[0] = md_permute(g, in[0], a->perm); break;
    case SLICE: out[0] = md_slice(g, in[0], a->dim, a->start, a->end); break;
    case CONCAT: out[0] = md_concat(g, in, 3, a->dim); break;
    case RESHAPE: out[0] = md_scale(g, md_reshape(g, in[0], a->ndim, a->shape), 1.0f); break;
    case SUM: out[0] = md_sum(g, in[0]); break;
    case MEAN: out[0] = md_mean(g, in[0]); break;
    case SUMDIM: out[0] = md_sum_dim(g, in[0], a->dim); break;
    case MEANDIM: out[0] = md_mean_dim(g, in[0], a->dim); break;
    case XENT: out[0] = md_cross_entropy(g, in[0], in[1], a->f, a->ignore); break;
    case MSE: out[0] = md_mse(g, in[0], in[1]); break;
    case L1: out[0] = md_l1(g, in[0], in[1]); break;
    case EXP: out[0] = md_exp(g, in[0]); break;
    case L2N: out[0] = md_l2_normalize(g, in[0], a->f); break;
    case LOGE: out[0] = md_log_eps(g, in[0], a->f); break;
    case SQRTE: out[0] = md_sqrt_eps(g, in[0], a->f); break;
    default: return 0;
    }
    return 1;
}

static pc_input T(int nd, int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    pc_input p;
    memset(&p, 0, sizeof p);
    p.ndim = nd;
    int64_t d[4] = {d0, d1, d2, d3};
    for (int i = 0; i < nd; i++)
        p.shape[i] = d[i];
    p.grad = true;
    p.dtype = MD_F32;
    return p;
}

static pc_input IDS(int nd, int64_t d0, int64_t d1, int32_t high)
{
    pc_input p = T(nd, d0, d1, 0, 0);
    p.grad = false;
    p.dtype = MD_I32;
    p.ihigh = high;
    return p;
}

int main(int argc, char **argv)
{
    pc_ctx c;
    if (pc_open(&c, argc > 1 ? argv[1] : "parity_core.bin"))
        return 1;
    char prm[256];
    opargs a;

    /* matmul: all transpose combinations, odd sizes, leading dims */
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            memset(&a, 0, sizeof a);
            a.which = MATMUL; a.ta = ta; a.tb = tb;
            pc_input in[2] = {ta ? T(2, 13, 7, 0, 0) : T(2, 7, 13, 0, 0), tb ? T(2, 5, 13, 0, 0) : T(2, 13, 5, 0, 0)};
            snprintf(prm, sizeof prm, "{\"ta\":%s,\"tb\":%s}", ta ? "true" : "false", tb ? "true" : "false");
            pc_run(&c, "matmul", prm, 2, in, run_op, &a);
        }
    memset(&a, 0, sizeof a);
    a.which = MATMUL;
    {
        pc_input in[2] = {T(3, 2, 3, 17, 0), T(2, 17, 9, 0, 0)};
        pc_run(&c, "matmul", "{\"ta\":false,\"tb\":false}", 2, in, run_op, &a);
    }
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            memset(&a, 0, sizeof a);
            a.which = BMM; a.ta = ta; a.tb = tb;
            pc_input in[2] = {ta ? T(3, 3, 11, 6, 0) : T(3, 3, 6, 11, 0), tb ? T(3, 3, 4, 11, 0) : T(3, 3, 11, 4, 0)};
            snprintf(prm, sizeof prm, "{\"ta\":%s,\"tb\":%s}", ta ? "true" : "false", tb ? "true" : "false");
            pc_run(&c, "bmm", prm, 2, in, run_op, &a);
        }
    memset(&a, 0, sizeof a);
    a.which = LINEAR;
    {
        pc_input in[3] = {T(3, 2, 5, 19, 0), T(2, 7, 19, 0, 0), T(1, 7, 0, 0, 0)};
        pc_run(&c, "linear", "{}", 3, in, run_op, &a);
        a.which = LINEAR_NB;
        pc_input in2[2] = {T(2, 33, 64, 0, 0), T(2, 65, 64, 0, 0)};
        pc_run(&c, "linear", "{}", 2, in2, run_op, &a);
    }

    /* broadcasting binaries: same, suffix, general ([C,1,1] on NCHW), rows ([N,C,1,1]) */
    const char *bn[3] = {"add", "sub", "mul"};
    for (int k = 0; k < 3; k++) {
        memset(&a, 0, sizeof a);
        a.which = ADD + k;
        pc_input s1[2] = {T(3, 2, 3, 5, 0), T(3, 2, 3, 5, 0)};
        pc_run(&c, bn[k], "{}", 2, s1, run_op, &a);
        pc_input s2[2] = {T(3, 2, 3, 5, 0), T(1, 5, 0, 0, 0)};
        pc_run(&c, bn[k], "{}", 2, s2, run_op, &a);
        pc_input s3[2] = {T(4, 2, 3, 4, 5), T(3, 3, 1, 1, 0)};
        pc_run(&c, bn[k], "{}", 2, s3, run_op, &a);
        pc_input s4[2] = {T(4, 2, 3, 4, 5), T(4, 2, 3, 1, 1)};   /* rows: a value per [n, c] */
        pc_run(&c, bn[k], "{}", 2, s4, run_op, &a);
    }
    memset(&a, 0, sizeof a);
    a.which = SCALE; a.f = -1.75f;
    {
        pc_input in[1] = {T(2, 4, 9, 0, 0)};
        pc_run(&c, "scale", "{\"s\":-1.75}", 1, in, run_op, &a);
    }
    const char *un[5] = {"gelu", "silu", "relu", "tanh", "sigmoid"};
    for (int k = 0; k < 5; k++) {
        memset(&a, 0, sizeof a);
        a.which = GELU + k;
        pc_input in[1] = {T(2, 37, 41, 0, 0)};
        in[0].lo = -4.f; in[0].hi = 4.f;
        in[0].positive = true;   /* keep relu away from its kink */
        pc_run(&c, un[k], "{}", 1, in, run_op, &a);
    }

    memset(&a, 0, sizeof a);
    a.which = EXP;
    {
        pc_input in[1] = {T(2, 13, 17, 0, 0)};
        in[0].lo = -3.f; in[0].hi = 3.f;
        pc_run(&c, "exp", "{}", 1, in, run_op, &a);
        a.which = L2N; a.f = 1e-6f;
        pc_input in2[1] = {T(3, 4, 5, 96, 0)};
        pc_run(&c, "l2_normalize", "{\"eps\":1e-6}", 1, in2, run_op, &a);
        /* log and sqrt of positive values (magnitudes), with their epsilon */
        pc_input in3[1] = {T(2, 11, 23, 0, 0)};
        in3[0].lo = 0.05f; in3[0].hi = 3.f;
        a.which = LOGE; a.f = 1e-3f;
        pc_run(&c, "log_eps", "{\"eps\":1e-3}", 1, in3, run_op, &a);
        a.which = SQRTE; a.f = 1e-4f;
        pc_run(&c, "sqrt_eps", "{\"eps\":1e-4}", 1, in3, run_op, &a);
    }

    /* norms and softmax */
    memset(&a, 0, sizeof a);
    a.which = LAYERNORM; a.f = 1e-5f;
    {
        pc_input in[3] = {T(3, 2, 7, 37, 0), T(1, 37, 0, 0, 0), T(1, 37, 0, 0, 0)};
        pc_run(&c, "layernorm", "{\"eps\":1e-5}", 3, in, run_op, &a);
        pc_input in2[3] = {T(2, 64, 256, 0, 0), T(1, 256, 0, 0, 0), T(1, 256, 0, 0, 0)};
        pc_run(&c, "layernorm", "{\"eps\":1e-5}", 3, in2, run_op, &a);
        a.which = RMSNORM;
        pc_input in3[2] = {T(2, 9, 33, 0, 0), T(1, 33, 0, 0, 0)};
        pc_run(&c, "rmsnorm", "{\"eps\":1e-5}", 2, in3, run_op, &a);
    }
    memset(&a, 0, sizeof a);
    a.which = SOFTMAX;
    {
        pc_input in[1] = {T(3, 3, 5, 29, 0)};
        in[0].lo = -6.f; in[0].hi = 6.f;
        pc_run(&c, "softmax", "{}", 1, in, run_op, &a);
        a.which = LOGSOFTMAX;
        pc_run(&c, "log_softmax", "{}", 1, in, run_op, &a);
    }

    /* attention: causal/full, Tq != Tk (cross), sizes across query blocks */
    int cfg[][5] = {{2, 9, 9, 2, 8}, {1, 70, 70, 4, 16}, {2, 5, 13, 2, 4}, {1, 130, 130, 2, 8}, {2, 7, 3, 1, 6}};
    for (int k = 0; k < 5; k++)
        for (int causal = 0; causal < 2; causal++) {
            if (causal && cfg[k][1] > cfg[k][2])
                continue;   /* rows with no visible key: PyTorch gives NaN */
            memset(&a, 0, sizeof a);
            a.which = ATTN; a.heads = cfg[k][3]; a.causal = causal;
            int64_t W = (int64_t)cfg[k][3] * cfg[k][4];
            pc_input in[3] = {T(3, cfg[k][0], cfg[k][1], W, 0), T(3, cfg[k][0], cfg[k][2], W, 0), T(3, cfg[k][0], cfg[k][2], W, 0)};
            snprintf(prm, sizeof prm, "{\"heads\":%d,\"causal\":%s}", cfg[k][3], causal ? "true" : "false");
            pc_run(&c, "attention", prm, 3, in, run_op, &a);
        }
    for (int causal = 0; causal < 2; causal++) {
        memset(&a, 0, sizeof a);
        a.which = ATTN_QKV; a.heads = 4; a.causal = causal;
        pc_input in[1] = {T(3, 2, 67, 3 * 32, 0)};
        snprintf(prm, sizeof prm, "{\"heads\":4,\"causal\":%s}", causal ? "true" : "false");
        pc_run(&c, "attention_qkv", prm, 1, in, run_op, &a);
    }

    /* lookups and shapes */
    memset(&a, 0, sizeof a);
    a.which = EMBED;
    {
        pc_input in[2] = {T(2, 11, 6, 0, 0), IDS(2, 3, 17, 11)};
        pc_run(&c, "embedding", "{}", 2, in, run_op, &a);
    }
    memset(&a, 0, sizeof a);
    a.which = PERMUTE; a.perm[0] = 2; a.perm[1] = 0; a.perm[2] = 3; a.perm[3] = 1;
    {
        pc_input in[1] = {T(4, 2, 3, 4, 5)};
        pc_run(&c, "permute", "{\"perm\":[2,0,3,1]}", 1, in, run_op, &a);
    }
    for (int dim = 0; dim < 3; dim++) {
        memset(&a, 0, sizeof a);
        a.which = SLICE; a.dim = dim; a.start = 1; a.end = 3;
        pc_input in[1] = {T(3, 4, 5, 6, 0)};
        snprintf(prm, sizeof prm, "{\"dim\":%d,\"start\":1,\"end\":3}", dim);
        pc_run(&c, "slice", prm, 1, in, run_op, &a);
        a.which = CONCAT;
        pc_input in3[3] = {T(3, 4, 5, 6, 0), T(3, 4, 5, 6, 0), T(3, 4, 5, 6, 0)};
        in3[1].shape[dim] = 2;
        snprintf(prm, sizeof prm, "{\"dim\":%d}", dim);
        pc_run(&c, "concat", prm, 3, in3, run_op, &a);
    }
    memset(&a, 0, sizeof a);
    a.which = RESHAPE; a.ndim = 3; a.shape[0] = 3; a.shape[1] = -1; a.shape[2] = 2;
    {
        pc_input in[1] = {T(2, 6, 5, 0, 0)};
        pc_run(&c, "reshape", "{\"shape\":[3,-1,2]}", 1, in, run_op, &a);
    }

    /* reductions and losses */
    {
        memset(&a, 0, sizeof a);
        pc_input in[1] = {T(3, 3, 50, 7, 0)};
        a.which = SUM; pc_run(&c, "sum", "{}", 1, in, run_op, &a);
        a.which = MEAN; pc_run(&c, "mean", "{}", 1, in, run_op, &a);
        for (int dim = 0; dim < 3; dim++) {
            a.which = SUMDIM; a.dim = dim;
            snprintf(prm, sizeof prm, "{\"dim\":%d}", dim);
            pc_run(&c, "sum_dim", prm, 1, in, run_op, &a);
            a.which = MEANDIM;
            pc_run(&c, "mean_dim", prm, 1, in, run_op, &a);
        }
    }
    float smooth[3] = {0.f, 0.1f, 0.f};
    int ignore[3] = {-100, -100, 2};
    for (int k = 0; k < 3; k++) {
        memset(&a, 0, sizeof a);
        a.which = XENT; a.f = smooth[k]; a.ignore = ignore[k];
        pc_input in[2] = {T(2, 23, 11, 0, 0), IDS(1, 23, 0, 11)};
        snprintf(prm, sizeof prm, "{\"smoothing\":%g,\"ignore\":%d}", smooth[k], ignore[k]);
        pc_run(&c, "cross_entropy", prm, 2, in, run_op, &a);
    }
    memset(&a, 0, sizeof a);
    {
        pc_input in[2] = {T(3, 2, 9, 8, 0), T(3, 2, 9, 8, 0)};
        a.which = MSE; pc_run(&c, "mse", "{}", 2, in, run_op, &a);
        /* |a - b| has a kink at a = b: keep the two apart (finite
         * differences across it fail at random seeds), once each way */
        in[0].lo = 0.3f; in[0].hi = 1.2f; in[1].lo = -1.2f; in[1].hi = -0.3f;
        a.which = L1; pc_run(&c, "l1", "{}", 2, in, run_op, &a);
        in[0].lo = -1.2f; in[0].hi = -0.3f; in[1].lo = 0.3f; in[1].hi = 1.2f;
        pc_run(&c, "l1", "{}", 2, in, run_op, &a);
    }
    return pc_close(&c) != 0;
}
