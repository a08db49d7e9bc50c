// A foreign libp2p peer (js-libp2p, no cluster secret) meets a Shoal node:
// it identifies, pings, and waits for a message on a gossipsub topic, then
// prints one JSON line with what it saw (the message as text, for the Rust
// test to read).  Usage: node peer.mjs <node multiaddr> <gossip topic>

// Node 20 lacks Promise.withResolvers, which these libp2p versions use.
if (!Promise.withResolvers) {
  Promise.withResolvers = function () {
    let resolve, reject
    const promise = new Promise((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}
const { createLibp2p } = await import('libp2p')
const { tcp } = await import('@libp2p/tcp')
const { noise } = await import('@chainsafe/libp2p-noise')
const { yamux } = await import('@chainsafe/libp2p-yamux')
const { identify } = await import('@libp2p/identify')
const { ping } = await import('@libp2p/ping')
const { gossipsub } = await import('@libp2p/gossipsub')
const { multiaddr } = await import('@multiformats/multiaddr')

const [target, topic] = process.argv.slice(2)
const node = await createLibp2p({
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: { identify: identify(), ping: ping(), pubsub: gossipsub({ allowPublishToZeroTopicPeers: true }) }
})
const seen = { identified: null, rtt_ms: null, message: null }
const message = Promise.withResolvers()
node.services.pubsub.subscribe(topic)
node.services.pubsub.addEventListener('message', (e) => {
  if (e.detail.topic === topic) message.resolve(Buffer.from(e.detail.data).toString('utf8'))
})
const identified = Promise.withResolvers()
node.addEventListener('peer:identify', (e) => identified.resolve(e.detail))
// Unref'd, so a timer that lost its race does not keep the process alive.
const timeout = (ms, what) =>
  new Promise((_, rej) => setTimeout(() => rej(new Error('timed out: ' + what)), ms).unref())
try {
  const addr = multiaddr(target)
  await node.dial(addr)
  const info = await Promise.race([identified.promise, timeout(10000, 'identify')])
  seen.identified = { agent: info.agentVersion, protocols: info.protocols }
  seen.rtt_ms = await node.services.ping.ping(addr)
  // Says it is ready, so the test starts publishing.
  console.error('subscribed')
  seen.message = await Promise.race([message.promise, timeout(20000, 'a topic message')])
  console.log(JSON.stringify(seen))
} catch (e) {
  console.log(JSON.stringify({ ...seen, error: String(e) }))
  process.exitCode = 1
} finally {
  await node.stop()
}
