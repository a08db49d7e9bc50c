// Monte Carlo Pi in JavaScript: `pi` fans out chunks with shoal.call and
// Promise.all; each chunk runs wherever the cluster places it.
'use strict';

// The MaDRPC seed's LCG, in wrapping 32-bit arithmetic (Math.imul), so every
// node — and the native `pi.sample` — draws the same numbers for a seed.
function sample(samples, seed) {
    let state = seed | 0;
    let inside = 0;
    for (let i = 0; i < samples; i++) {
        state = (Math.imul(state, 1103515245) + 12345) & 0x7fffffff;
        const x = state / 0x7fffffff;
        state = (Math.imul(state, 1103515245) + 12345) & 0x7fffffff;
        const y = state / 0x7fffffff;
        if (x * x + y * y <= 1) inside++;
    }
    return inside;
}

shoal.register('monte_carlo_sample', (args) => {
    if (typeof args !== 'object' || args === null) throw new TypeError('expected {samples, seed}');
    const samples = args.samples;
    const seed = args.seed || 0;
    if (!Number.isInteger(samples) || samples < 0) throw new TypeError('samples must be a non-negative integer');
    return { inside: sample(samples, seed), total: samples, node: shoal.node };
});

shoal.register('pi', async (args) => {
    const chunks = args.chunks || 16;
    const samples = args.samples || 1000000;
    const perChunk = Math.floor(samples / chunks);
    const parts = [];
    for (let seed = 0; seed < chunks; seed++) {
        parts.push(shoal.call('monte_carlo_sample', { samples: perChunk, seed }));
    }
    const results = await Promise.all(parts);
    let inside = 0, total = 0;
    for (const r of results) { inside += r.inside; total += r.total; }
    return { pi: 4 * inside / total, inside, total };
});
