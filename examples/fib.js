// Memoized recursive fib, the p2pqueue seed's example: every call of fib
// may run on another node; memoization makes fib(90) take ~90 calls.
'use strict';

shoal.register('js.fib', async (n) => {
    if (!Number.isInteger(n) || n < 0) throw new TypeError('fib expects a non-negative integer');
    if (n < 2) return n;
    const [a, b] = await Promise.all([shoal.call('js.fib', n - 1), shoal.call('js.fib', n - 2)]);
    return a + b;
}, { memoize: true });
