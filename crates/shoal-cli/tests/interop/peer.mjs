// A foreign libp2p peer (js-libp2p, no cluster secret) meets a Shoal node:
// it identifies, pings, and waits for a heartbeat on gossipsub, then prints
// one JSON line with what it saw (the heartbeat as hex, for the Rust test
// to decode).  Usage: node peer.mjs <node multiaddr> <heartbeat topic>

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
const seen = { identified: null, rtt_ms: null, heartbeat_hex: null }
const heartbeat = Promise.withResolvers()
node.services.pubsub.subscribe(topic)
node.services.pubsub.addEventListener('message', (e) => {
  if (e.detail.topic === topic) heartbeat.resolve(Buffer.from(e.detail.data).toString("hex"))
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
  seen.heartbeat_hex = await Promise.race([heartbeat.promise, timeout(15000, 'heartbeat')])
  console.log(JSON.stringify(seen))
} catch (e) {
  console.log(JSON.stringify({ ...seen, error: String(e) }))
  process.exitCode = 1
} finally {
  await node.stop()
}
