// Real work on data: count words in texts, spread over the cluster.
// `wordcount` splits its texts into one call per text and merges counts.
'use strict';

shoal.register('wordcount.one', (text) => {
    if (typeof text !== 'string') throw new TypeError('expected a string');
    const counts = {};
    for (const word of text.toLowerCase().match(/[\p{L}\p{N}']+/gu) || []) {
        counts[word] = (counts[word] || 0) + 1;
    }
    return counts;
});

shoal.register('wordcount', async (args) => {
    const texts = args.texts;
    if (!Array.isArray(texts)) throw new TypeError('expected {texts: [string, ...]}');
    const parts = await Promise.all(texts.map((t) => shoal.call('wordcount.one', t)));
    const total = {};
    for (const counts of parts) {
        for (const [word, n] of Object.entries(counts)) total[word] = (total[word] || 0) + n;
    }
    const top = Object.entries(total).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, args.top || 10);
    return { words: Object.values(total).reduce((a, b) => a + b, 0), distinct: Object.keys(total).length, top };
});
