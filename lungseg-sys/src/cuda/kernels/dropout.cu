/* dropout.cu — dropout layer 0 on the shared first-layer output, expanded into the batch.
 *
 * enc.0.conv1 runs once per patch (it precedes the first dropout), but every MC sample drops
 * its output with its own mask (layer 0). This kernel writes the per-sample dropped copies:
 * in [V][C] fp16 (shared), out [S][V][C] fp16, out = mask(s, c, v) · scale · in; with
 * drop.kind = 0 (deterministic pass) it is a broadcast copy.
 * Tiles: one thread per (sample, voxel, channel pair), coalesced 4-byte loads/stores.
 * Memory bound (16 channels at 64³: 8 MiB per sample); fusing it into the A-fragment loads of
 * the next conv is possible but would recompute each Philox word 27 times (once per tap).
 */

struct LsExpandArgs {
    const ls_half *in;
    ls_half *out;
    LsDrop drop;
    int S;
    ls_u32 V;
    int C, pad;
};
LS_SIZE(LsExpandArgs, EXPAND);
LS_AT(LsExpandArgs, in, EXPAND, input);
LS_AT(LsExpandArgs, out, EXPAND, out);
LS_AT(LsExpandArgs, drop, EXPAND, drop);
LS_AT(LsExpandArgs, S, EXPAND, s);
LS_AT(LsExpandArgs, V, EXPAND, v);
LS_AT(LsExpandArgs, C, EXPAND, c);

extern "C" __global__ void __launch_bounds__(256)
ls_dropout_expand(__grid_constant__ const LsExpandArgs args)
{
    const ls_half *__restrict__ in = args.in;
    ls_half *__restrict__ out = args.out;
    const LsDrop drop = args.drop;
    const int S = args.S, C = args.C;
    const ls_u32 V = args.V;
    const int cp = C / 2;
    const ls_u64 total = (ls_u64)S * V * cp;
    const ls_u64 i = (ls_u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total)
        return;
    const int c = (int)(i % cp) * 2;
    const ls_u64 sv = i / cp;
    const ls_u32 v = (ls_u32)(sv % V), s = (ls_u32)(sv / V);
    const ls_u32 p = ls_ld32(in + (ls_u64)v * C + c);
    const float a = ls_dropout(drop, ls_h2f((ls_half)(p & 0xffff)), s, c, v, V);
    const float b = ls_dropout(drop, ls_h2f((ls_half)(p >> 16)), s, c + 1, v, V);
    *(ls_u32 *)(out + sv * C + c) = ls_pack2(a, b);
}
