// A chat bot: answers commands typed in the `lobby` room of `shoal chat`.
//
//   shoal node --script examples/chat_bot.js          # the bot lives in this node
//   shoal chat --nick ada                              # in another terminal
//
// Typing `!ping` in the chat prints `bot  pong`; `!pi` asks the cluster
// for 8 chunks of Monte Carlo Pi (the built-in `pi.sample`, run wherever
// the cluster places them) and prints `bot  pi ≈ 3.14…`; `!help` lists the
// commands. Without a chat: `shoal sub lobby` in one terminal and
// `shoal pub lobby '{"text": "!ping"}' --name ada` in another prints the
// bot's answer as a JSON line.
'use strict';

const ROOM = 'lobby';
const NAME = 'bot';
// Answers are kept with the room's last 50 lines, as the chat's own lines
// are, so someone who opens the chat later sees them too.
const REPLY = { name: NAME, retain: 50 };

function say(text) {
    return shoal.publish(ROOM, { text }, REPLY);
}

async function pi() {
    const chunks = [];
    for (let seed = 1; seed <= 8; seed++)
        chunks.push(shoal.call('pi.sample', { samples: 250000, seed }));
    const results = await Promise.all(chunks);
    const inside = results.reduce((sum, r) => sum + r.inside, 0);
    const total = results.reduce((sum, r) => sum + r.total, 0);
    return `pi ≈ ${(4 * inside / total).toFixed(4)} from ${total} samples`;
}

const COMMANDS = {
    '!ping': async () => 'pong',
    '!pi': pi,
    '!help': async () => 'commands: ' + Object.keys(COMMANDS).join(' '),
};

shoal.subscribe(ROOM, async (message) => {
    // The bot hears its own answers too: they come from this node under
    // its name. (Others on this node share the node id, not the name.)
    if (message.publisher === shoal.node && message.name === NAME) return;
    const text = typeof message.value?.text === 'string' ? message.value.text.trim() : '';
    const command = COMMANDS[text.split(/\s+/)[0]];
    if (!command) return;
    try {
        await say(await command());
    } catch (error) {
        console.warn(`${text} from ${message.name ?? message.publisher} failed: ${error}`);
        await say(`${text} failed: ${error.message ?? error}`);
    }
});
