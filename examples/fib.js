// Memoized recursive fib, the p2pqueue seed's example: every call of fib
// may run on another node; memoization makes fib(90) take ~90 calls.
// Results are decimal strings: fib(79) and up do not fit a JavaScript
// number exactly, so the sum is done with BigInt.
'use strict';

shoal.register('js.fib', async (n) => {
    if (!Number.isInteger(n) || n < 0) throw new TypeError('fib expects a non-negative integer');
    if (n < 2) return String(n);
    const [a, b] = await Promise.all([shoal.call('js.fib', n - 1), shoal.call('js.fib', n - 2)]);
    return (BigInt(a) + BigInt(b)).toString();
}, { memoize: true });
