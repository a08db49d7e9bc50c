// The Shoal dashboard: one page over the node's HTTP API, with Preact (via
// htm, no build step) and uPlot for the charts. Live data comes from
// server-sent events read through fetch, so the API token travels in a
// header as on every other request.
import { html, render, useState, useEffect, useRef } from '/ui/htm-preact.js';

// ---------------------------------------------------------------- the API

const TOKEN_KEY = 'shoal-api-token';
let token = sessionStorage.getItem(TOKEN_KEY);
let onTokenNeeded = () => {};

function headers(extra = {}) {
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

async function request(path, { method = 'GET', body } = {}) {
  const init = { method, headers: headers() };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 401) {
    onTokenNeeded();
    throw new Error('this node needs its API token');
  }
  return response;
}

/** A JSON request; throws the API's `code: message` on an error. */
async function api(path, options) {
  const response = await request(path, options);
  const text = await response.text();
  const value = text ? JSON.parse(text) : null;
  if (!response.ok) {
    throw new Error(value && value.message ? `${value.code}: ${value.message}` : `HTTP ${response.status}`);
  }
  return value;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Follows server-sent events at `path` until `signal` aborts, calling
 *  `onEvent(name, data)`; reconnects a second after the stream ends. */
function follow(path, onEvent, signal) {
  (async () => {
    while (!signal.aborted) {
      try {
        const response = await fetch(path, { headers: headers({ Accept: 'text/event-stream' }), signal });
        if (response.status === 401) {
          onTokenNeeded();
          return;
        }
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            let name = 'message';
            const data = [];
            for (const line of block.split('\n')) {
              if (line.startsWith('event:')) name = line.slice(6).trim();
              else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
            }
            if (data.length) onEvent(name, JSON.parse(data.join('\n')));
          }
        }
      } catch (error) {
        if (signal.aborted) return;
      }
      await sleep(1000);
    }
  })();
}

// ------------------------------------------------------------- formatting

const short = (peer) => (peer ? `…${peer.slice(-8)}` : '—');
const megabytes = (bytes) => (bytes / 1e6).toFixed(1);
const clock = (ms) => new Date(ms).toLocaleTimeString();
const percent = (fraction) => `${Math.round(fraction * 100)} %`;
const json = (value) => JSON.stringify(value, null, 2);
const brief = (value) => {
  const text = JSON.stringify(value);
  return text && text.length > 80 ? `${text.slice(0, 77)}…` : text;
};

function Badge({ kind, text }) {
  return html`<span class="badge ${kind}">${text ?? kind.replace('_', ' ')}</span>`;
}

function ErrorBox({ error }) {
  return error ? html`<p class="error-box" role="alert">${String(error.message ?? error)}</p>` : null;
}

/** Calls `load` now and every `ms` while mounted; `deps` restart it. */
function usePoll(load, ms, deps) {
  useEffect(() => {
    let stopped = false;
    const tick = async () => {
      while (!stopped) {
        await load();
        await sleep(ms);
      }
    };
    tick();
    return () => { stopped = true; };
  }, deps);
}

// ------------------------------------------------------------ live state

const HISTORY = 120;

/** Rates from two readings of a counter, per second. */
const rate = (now, before, seconds) => (before === undefined || seconds <= 0 ? 0 : Math.max(0, now - before) / seconds);

/** Latency quantiles (ms) of the calls started between two scrapes of the
 *  Prometheus histogram, from its cumulative buckets. */
function quantiles(buckets, before) {
  if (!before) return [null, null];
  const delta = buckets.map(([le, count], i) => [le, count - (before[i]?.[1] ?? 0)]);
  const total = delta.length ? delta[delta.length - 1][1] : 0;
  if (total <= 0) return [null, null];
  const at = (q) => {
    const found = delta.find(([, count]) => count >= q * total);
    return found && Number.isFinite(found[0]) ? found[0] * 1000 : null;
  };
  return [at(0.5), at(0.99)];
}

function histogram(metrics) {
  const buckets = [];
  for (const line of metrics.split('\n')) {
    const match = line.match(/^\w*call_duration_seconds_bucket\{le="([^"]+)"\} (\d+)/);
    if (match) buckets.push([match[1] === '+Inf' ? Infinity : Number(match[1]), Number(match[2])]);
  }
  return buckets;
}

/** The cluster, this node and their recent history, from /v1/cluster/live
 *  and /v1/events. */
function useLive() {
  const [live, setLive] = useState({ cluster: null, status: null, history: [], events: [], joined: 0 });
  useEffect(() => {
    const abort = new AbortController();
    let previous = null;
    follow('/v1/cluster/live', async (name, data) => {
      if (name === 'cluster') {
        setLive((live) => ({ ...live, cluster: data }));
        return;
      }
      if (name !== 'status') return;
      let buckets = [];
      try {
        const response = await request('/metrics');
        buckets = histogram(await response.text());
      } catch (error) { /* charts go on without latency */ }
      const now = Date.now();
      setLive((live) => {
        const seconds = previous ? (now - previous.at) / 1000 : 0;
        const perNode = {};
        for (const member of live.cluster?.members ?? []) {
          perNode[member.peer_id] = rate(member.executed, previous?.executed[member.peer_id], seconds);
        }
        const failed = Object.values(data.calls.failed).reduce((a, b) => a + b, 0);
        const [p50, p99] = quantiles(buckets, previous?.buckets);
        const sample = {
          t: now / 1000,
          perNode,
          total: Object.values(perNode).reduce((a, b) => a + b, 0),
          ok: rate(data.calls.ok, previous?.ok, seconds),
          failed: rate(failed, previous?.failed, seconds),
          stolen: rate(data.calls.stolen, previous?.stolen, seconds),
          redispatched: rate(data.calls.redispatched, previous?.redispatched, seconds),
          p50,
          p99,
        };
        previous = {
          at: now,
          buckets,
          ok: data.calls.ok,
          failed,
          stolen: data.calls.stolen,
          redispatched: data.calls.redispatched,
          executed: Object.fromEntries((live.cluster?.members ?? []).map((m) => [m.peer_id, m.executed])),
        };
        const history = seconds > 0 ? [...live.history, sample].slice(-HISTORY) : live.history;
        return { ...live, status: data, history };
      });
    }, abort.signal);
    follow('/v1/events', (name, event) => {
      setLive((live) => ({ ...live, events: [event, ...live.events].slice(0, 200) }));
    }, abort.signal);
    return () => abort.abort();
  }, []);
  return live;
}

// ------------------------------------------------------------------- tabs

function Cluster({ live }) {
  const { cluster, events } = live;
  if (!cluster) return html`<p>Waiting for the cluster…</p>`;
  const raft = cluster.raft;
  const executed = cluster.members.reduce((sum, m) => sum + m.executed, 0);
  return html`
    <section aria-labelledby="raft-title">
      <h2 id="raft-title">Raft</h2>
      <dl class="facts">
        <div><dt>leader</dt><dd title=${raft.leader ?? ''}>${short(raft.leader)}</dd></div>
        <div><dt>term</dt><dd>${raft.term}</dd></div>
        <div><dt>voters</dt><dd>${raft.voters.map(short).join(', ') || '—'}</dd></div>
        <div><dt>committed</dt><dd>${raft.committed ?? '—'}</dd></div>
      </dl>
    </section>
    <section aria-labelledby="members-title">
      <h2 id="members-title">Members (${cluster.members.filter(isMember).length} alive of ${cluster.members.length})</h2>
      <div class="table-wrap">
        <table id="members">
          <thead><tr>
            <th>node</th><th>liveness</th><th class="hide-narrow">labels</th>
            <th class="num">slots</th><th class="num">running</th><th class="num">queued</th>
            <th class="num">CPU %</th><th class="num">MB</th><th class="num">share of calls</th>
          </tr></thead>
          <tbody>
            ${cluster.members.map((m) => html`
              <tr data-peer=${m.peer_id} data-liveness=${m.liveness}>
                <td title=${m.peer_id}><code>${short(m.peer_id)}</code>${m.is_self ? ' (this node)' : ''}
                  ${raft.leader === m.peer_id ? html` <${Badge} kind="info" text="leader" />` : ''}</td>
                <td><${Badge} kind=${m.liveness} /></td>
                <td class="hide-narrow">${Object.entries(m.labels).map(([k, v]) => `${k}=${v}`).join(', ') || '—'}</td>
                <td class="num">${m.slots}</td>
                <td class="num">${m.running}</td>
                <td class="num">${m.queued}</td>
                <td class="num">${m.cpu_percent.toFixed(1)}</td>
                <td class="num">${megabytes(m.memory_bytes)}</td>
                <td class="num">${executed ? percent(m.executed / executed) : '—'}</td>
              </tr>`)}
          </tbody>
        </table>
      </div>
    </section>
    <section aria-labelledby="events-title">
      <h2 id="events-title">Joins, departures and alerts</h2>
      <${Feed} events=${events} />
    </section>`;
}

function Feed({ events }) {
  if (!events.length) return html`<p class="note">Nothing has happened yet.</p>`;
  return html`<ol class="feed" aria-live="polite">
    ${events.map((e) => html`<li key=${e.seq}><time>${clock(e.at_ms)}</time>
      <${Badge} kind=${EVENT_STYLE[e.kind] ?? 'info'} text=${e.kind.replace(/_/g, ' ')} /> ${e.message}</li>`)}
  </ol>`;
}

/** How an event's kind is shown: alerts and departures stand out. */
const EVENT_STYLE = {
  node_joined: 'info', node_recovered: 'info', load_normal: 'info', leader_changed: 'info',
  node_suspected: 'warn', overloaded: 'warn', node_left: 'error', job_dead_lettered: 'error',
  node_refused: 'error',
};

/** Whether a listed node takes part: not dead, nor refused for its version. */
const isMember = (m) => m.liveness !== 'dead' && m.liveness !== 'incompatible';

const COLORS = ['#0b5cad', '#b3261e', '#1e7b34', '#7a4cc2', '#a35c00', '#00707a', '#5f6b7a', '#c2185b'];

/** A uPlot chart of `series` over the live history. */
function Chart({ title, labels, values, history, unit }) {
  const box = useRef(null);
  const plot = useRef(null);
  const data = [history.map((s) => s.t), ...values.map((value) => history.map(value))];
  const key = labels.join('|');
  useEffect(() => {
    const width = Math.max(300, box.current.clientWidth - 10);
    plot.current = new window.uPlot({
      title,
      width,
      height: 220,
      series: [{}, ...labels.map((label, i) => ({ label, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: true }))],
      axes: [{}, { label: unit }],
    }, data, box.current);
    return () => plot.current.destroy();
  }, [key]);
  useEffect(() => { plot.current?.setData(data); });
  return html`<figure class="chart" ref=${box} aria-label=${title}></figure>`;
}

function Calls({ live }) {
  const { history, status, cluster } = live;
  const members = (cluster?.members ?? []).filter(isMember);
  const last = history[history.length - 1];
  return html`
    <section>
      <h2>Calls</h2>
      <dl class="facts">
        <div><dt>cluster calls/s</dt><dd>${last ? last.total.toFixed(1) : '—'}</dd></div>
        <div><dt>started here: ok / failed</dt><dd>${status ? `${status.calls.ok} / ${Object.values(status.calls.failed).reduce((a, b) => a + b, 0)}` : '—'}</dd></div>
        <div><dt>stolen here</dt><dd>${status?.calls.stolen ?? '—'}</dd></div>
        <div><dt>re-dispatched</dt><dd>${status?.calls.redispatched ?? '—'}</dd></div>
      </dl>
      <div class="charts">
        <${Chart} title="Calls run per second, by node" unit="calls/s" history=${history}
          labels=${['cluster', ...members.map((m) => short(m.peer_id))]}
          values=${[(s) => s.total, ...members.map((m) => (s) => s.perNode[m.peer_id] ?? null)]} />
        <${Chart} title="Calls started here, by outcome" unit="calls/s" history=${history}
          labels=${['ok', 'failed', 'stolen', 're-dispatched']}
          values=${[(s) => s.ok, (s) => s.failed, (s) => s.stolen, (s) => s.redispatched]} />
        <${Chart} title="Latency of calls started here" unit="ms" history=${history}
          labels=${['p50', 'p99']} values=${[(s) => s.p50, (s) => s.p99]} />
      </div>
      <p class="note">Latency is read from this node's histogram (<code>/metrics</code>), to the nearest bucket.</p>
    </section>`;
}

const STATES = ['queued', 'running', 'succeeded', 'dead_letter', 'cancelled'];

function parseLabels(text) {
  const labels = {};
  for (const part of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const [key, ...rest] = part.split('=');
    if (!rest.length) throw new Error(`a label is key=value, not '${part}'`);
    labels[key.trim()] = rest.join('=').trim();
  }
  return labels;
}

function Jobs() {
  const [filter, setFilter] = useState({ state: '', fn: '', label: '' });
  const [jobs, setJobs] = useState(null);
  const [error, setError] = useState(null);
  const [selected, setSelected] = useState(null);
  usePoll(async () => {
    try {
      const query = filter.state ? `&state=${filter.state}` : '';
      const page = await api(`/v1/jobs?limit=1000&stale=true${query}`);
      setJobs(page.jobs.reverse());
      setError(null);
    } catch (e) { setError(e); }
  }, 1000, [filter.state]);
  const shown = (jobs ?? []).filter((job) =>
    job.spec.function.includes(filter.fn) &&
    (!filter.label || Object.entries(job.spec.labels).some(([k, v]) => `${k}=${v}`.includes(filter.label))));
  const set = (key) => (event) => setFilter({ ...filter, [key]: event.target.value });
  return html`
    <div class="split">
      <section aria-labelledby="jobs-title">
        <h2 id="jobs-title">Jobs</h2>
        <div class="toolbar">
          <label>state
            <select value=${filter.state} onChange=${set('state')}>
              <option value="">any</option>
              ${STATES.map((s) => html`<option value=${s}>${s.replace('_', ' ')}</option>`)}
            </select></label>
          <label>function <input value=${filter.fn} onInput=${set('fn')} placeholder="contains…" /></label>
          <label>label <input value=${filter.label} onInput=${set('label')} placeholder="key=value" /></label>
        </div>
        <${ErrorBox} error=${error} />
        ${jobs === null ? html`<p>Loading jobs…</p>` : html`
        <div class="table-wrap">
          <table id="jobs">
            <thead><tr><th class="num">id</th><th>function</th><th>state</th><th>progress</th>
              <th class="num">attempts</th><th class="hide-narrow">result or error</th></tr></thead>
            <tbody>
              ${shown.map((job) => html`
                <tr key=${job.id} data-job=${job.id} data-state=${job.state} class=${selected === job.id ? 'selected' : ''}>
                  <td class="num"><button class="action secondary" onClick=${() => setSelected(job.id)}
                    aria-label=${`job ${job.id} details`}>${job.id}</button></td>
                  <td><code>${job.spec.function}</code></td>
                  <td><${Badge} kind=${job.state} /></td>
                  <td><${Progress} job=${job} /></td>
                  <td class="num">${job.attempt}/${job.spec.max_attempts}</td>
                  <td class="hide-narrow"><code>${job.error ?? brief(job.result) ?? ''}</code></td>
                </tr>`)}
            </tbody>
          </table>
        </div>
        ${shown.length === 0 ? html`<p class="note">No jobs match.</p>` : ''}`}
      </section>
      <div>
        ${selected !== null ? html`<${JobDetail} id=${selected} onClose=${() => setSelected(null)} />` : ''}
        <${SubmitJob} onSubmitted=${setSelected} />
      </div>
    </div>`;
}

function Progress({ job }) {
  const fraction = job.state === 'succeeded' ? 1 : Math.min(1, Math.max(0, job.progress));
  return html`<span class="progress"><progress max="1" value=${fraction} aria-label=${`job ${job.id} progress`}></progress>
    <span class="pct">${percent(fraction)}</span></span>`;
}

function JobDetail({ id, onClose }) {
  const [job, setJob] = useState(null);
  const [history, setHistory] = useState([]);
  const [error, setError] = useState(null);
  useEffect(() => {
    setJob(null);
    setHistory([]);
    const abort = new AbortController();
    follow(`/v1/jobs/${id}/events`, (name, job) => {
      setJob(job);
      setHistory((history) => {
        const last = history[history.length - 1];
        const entry = { at: Date.now(), state: job.state, attempt: job.attempt, progress: job.progress, message: job.message };
        const same = last && last.state === entry.state && last.attempt === entry.attempt && last.progress === entry.progress && last.message === entry.message;
        return same ? history : [...history, entry];
      });
    }, abort.signal);
    return () => abort.abort();
  }, [id]);
  const cancel = async () => {
    try {
      await api(`/v1/jobs/${id}/cancel`, { method: 'POST' });
      setError(null);
    } catch (e) { setError(e); }
  };
  return html`
    <section aria-labelledby="job-title">
      <h2 id="job-title">Job ${id}</h2>
      ${job ? html`
        <dl class="facts">
          <div><dt>state</dt><dd><${Badge} kind=${job.state} /></dd></div>
          <div><dt>progress</dt><dd><${Progress} job=${job} /></dd></div>
          <div><dt>attempt</dt><dd>${job.attempt} of ${job.spec.max_attempts}</dd></div>
          <div><dt>leased by</dt><dd>${short(job.leased_by)}</dd></div>
          <div><dt>priority</dt><dd>${job.spec.priority}</dd></div>
        </dl>
        <div class="toolbar">
          <button class="action" disabled=${job.state !== 'queued' && job.state !== 'running'} onClick=${cancel}>Cancel job</button>
          <button class="action secondary" onClick=${onClose}>Close</button>
        </div>
        <${ErrorBox} error=${error} />
        <h3>Arguments</h3><pre>${json(job.spec.args)}</pre>
        ${job.result !== null && job.result !== undefined ? html`<h3>Result</h3><pre>${json(job.result)}</pre>` : ''}
        ${job.error ? html`<h3>Error</h3><pre>${job.error}</pre>` : ''}
        <h3>History (since opened)</h3>
        <ol class="feed">${history.map((h) => html`<li><time>${clock(h.at)}</time>
          <${Badge} kind=${h.state} /> attempt ${h.attempt}, ${percent(h.progress)} ${h.message}</li>`)}</ol>`
        : html`<p>Loading…</p>`}
    </section>`;
}

function SubmitJob({ onSubmitted }) {
  const [form, setForm] = useState({ fn: '', args: 'null', labels: '', priority: '0' });
  const [outcome, setOutcome] = useState(null);
  const [busy, setBusy] = useState(false);
  const set = (key) => (event) => setForm({ ...form, [key]: event.target.value });
  const submit = async (event) => {
    event.preventDefault();
    setBusy(true);
    try {
      let args;
      try { args = JSON.parse(form.args || 'null'); } catch (e) { throw new Error(`the arguments are not JSON: ${e.message}`); }
      const spec = { function: form.fn.trim(), args, labels: parseLabels(form.labels), priority: Number(form.priority) || 0 };
      const { id } = await api('/v1/jobs', { method: 'POST', body: spec });
      setOutcome({ id });
      onSubmitted(id);
    } catch (e) {
      setOutcome({ error: e });
    } finally {
      setBusy(false);
    }
  };
  return html`
    <section aria-labelledby="submit-title">
      <h2 id="submit-title">Submit a job</h2>
      <form class="stack" id="submit-job" onSubmit=${submit}>
        <label>function <input name="function" required value=${form.fn} onInput=${set('fn')} placeholder="e.g. sleep" /></label>
        <label>arguments (JSON) <textarea name="args" value=${form.args} onInput=${set('args')}></textarea></label>
        <label>labels the node must have <input name="labels" value=${form.labels} onInput=${set('labels')} placeholder="gpu=yes, zone=a" /></label>
        <label>priority <input name="priority" type="number" value=${form.priority} onInput=${set('priority')} /></label>
        <div><button class="action" type="submit" disabled=${busy}>Submit</button></div>
      </form>
      ${outcome?.id !== undefined ? html`<p role="status">Submitted job ${outcome.id}.</p>` : ''}
      <${ErrorBox} error=${outcome?.error} />
    </section>`;
}

function Documents() {
  const [collections, setCollections] = useState(null);
  const [collection, setCollection] = useState('');
  const [filter, setFilter] = useState('{}');
  const [found, setFound] = useState(null);
  const [error, setError] = useState(null);
  usePoll(async () => {
    try {
      const list = await api('/v1/db?stale=true');
      setCollections(list.collections);
    } catch (e) { setError(e); }
  }, 5000, []);
  const find = async (event) => {
    event?.preventDefault();
    try {
      let parsed;
      try { parsed = JSON.parse(filter || '{}'); } catch (e) { throw new Error(`the filter is not JSON: ${e.message}`); }
      const reply = await api(`/v1/db/${encodeURIComponent(collection)}/find`, { method: 'POST', body: { filter: parsed, limit: 100 } });
      setFound(reply);
      setError(null);
    } catch (e) { setError(e); setFound(null); }
  };
  return html`
    <section>
      <h2>Documents</h2>
      <form class="inline" onSubmit=${find}>
        <label>collection
          <select value=${collection} onChange=${(e) => setCollection(e.target.value)} required>
            <option value="">choose…</option>
            ${(collections ?? []).map((c) => html`<option value=${c.name}>${c.name} (${c.documents})</option>`)}
          </select></label>
        <label>filter (the store's filter language, JSON) <input size="40" value=${filter} onInput=${(e) => setFilter(e.target.value)} /></label>
        <button class="action" type="submit" disabled=${!collection}>Find</button>
      </form>
      <${ErrorBox} error=${error} />
      ${found ? html`
        <div class="table-wrap"><table>
          <thead><tr><th>id</th><th class="num">version</th><th>document</th></tr></thead>
          <tbody>${found.documents.map((d) => html`<tr key=${d.id}><td><code>${d.id}</code></td>
            <td class="num">${d.version}</td><td><pre>${json(d.body)}</pre></td></tr>`)}</tbody>
        </table></div>
        <p class="note">${found.documents.length} shown${found.next ? ', more match' : ''}. The store keeps each document's latest version only.</p>` : ''}
    </section>`;
}

function TopicsAndQueues() {
  const [topic, setTopic] = useState('');
  const [watching, setWatching] = useState(null);
  const [messages, setMessages] = useState([]);
  const [queue, setQueue] = useState('');
  const [size, setSize] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    if (!watching) return undefined;
    setMessages([]);
    const abort = new AbortController();
    follow(`/v1/topics/${encodeURIComponent(watching)}/events`, (name, data) => {
      const entry = name === 'lagged' ? { lagged: data.skipped } : data;
      setMessages((messages) => [entry, ...messages].slice(0, 200));
    }, abort.signal);
    return () => abort.abort();
  }, [watching]);
  const askSize = async (event) => {
    event.preventDefault();
    try {
      setSize(await api(`/v1/queues/${encodeURIComponent(queue)}`));
      setError(null);
    } catch (e) { setError(e); }
  };
  return html`
    <div class="split">
      <section>
        <h2>Topic messages, live</h2>
        <form class="inline" onSubmit=${(e) => { e.preventDefault(); setWatching(topic.trim()); }}>
          <label>topic <input value=${topic} onInput=${(e) => setTopic(e.target.value)} required /></label>
          <button class="action" type="submit">Watch</button>
        </form>
        ${watching ? html`<p class="note">Watching <code>${watching}</code>; newest first.</p>` : ''}
        <ol class="feed">${messages.map((m) => m.lagged
          ? html`<li>skipped ${m.lagged} messages (too slow to keep up)</li>`
          : html`<li><time>${clock(m.at_ms)}</time><code>${m.name ?? short(m.publisher)}</code> ${brief(m.value)}</li>`)}</ol>
      </section>
      <section>
        <h2>Queue size</h2>
        <form class="inline" onSubmit=${askSize}>
          <label>queue <input value=${queue} onInput=${(e) => setQueue(e.target.value)} required /></label>
          <button class="action" type="submit">Ask</button>
        </form>
        <${ErrorBox} error=${error} />
        ${size ? html`<p><code>${size.queue}</code> holds ${size.size} items across the live nodes.</p>` : ''}
      </section>
    </div>`;
}

function Logs({ live }) {
  const [lines, setLines] = useState(null);
  const [error, setError] = useState(null);
  usePoll(async () => {
    try {
      setLines((await api('/v1/logs?limit=200')).reverse());
      setError(null);
    } catch (e) { setError(e); }
  }, 3000, []);
  return html`
    <div class="split">
      <section>
        <h2>This node's warnings and errors</h2>
        <${ErrorBox} error=${error} />
        ${lines && lines.length === 0 ? html`<p class="note">No warnings.</p>` : ''}
        <div class="table-wrap"><table>
          <tbody>${(lines ?? []).map((l) => html`<tr key=${l.seq}><td><${Badge} kind=${l.level} /></td>
            <td><time>${clock(l.at_ms)}</time></td><td><code>${l.target}</code></td><td>${l.message}</td></tr>`)}</tbody>
        </table></div>
      </section>
      <section>
        <h2>Events</h2>
        <${Feed} events=${live.events} />
      </section>
    </div>`;
}

// -------------------------------------------------------------- the page

const TABS = [
  ['cluster', 'Cluster', Cluster],
  ['calls', 'Calls', Calls],
  ['jobs', 'Jobs', Jobs],
  ['documents', 'Documents', Documents],
  ['topics', 'Topics and queues', TopicsAndQueues],
  ['logs', 'Logs and events', Logs],
];

function TokenPrompt({ onToken }) {
  const [value, setValue] = useState('');
  return html`
    <main class="token-page">
      <h1>Shoal</h1>
      <form class="stack" id="token-form" onSubmit=${(e) => { e.preventDefault(); onToken(value.trim()); }}>
        <p>This node needs its API token (the contents of its <code>--api-token-file</code>).</p>
        <label>API token <input name="token" type="password" autocomplete="current-password" required autofocus
          value=${value} onInput=${(e) => setValue(e.target.value)} /></label>
        <div><button class="action" type="submit">Open the dashboard</button></div>
      </form>
    </main>`;
}

function Dashboard() {
  const live = useLive();
  const [tab, setTab] = useState(location.hash.slice(1) || 'cluster');
  useEffect(() => {
    const onHash = () => setTab(location.hash.slice(1) || 'cluster');
    addEventListener('hashchange', onHash);
    return () => removeEventListener('hashchange', onHash);
  }, []);
  const [, , View] = TABS.find(([id]) => id === tab) ?? TABS[0];
  const me = live.status;
  return html`
    <header>
      <h1>Shoal</h1>
      <span class="node">${me ? html`node <code title=${me.peer_id}>${short(me.peer_id)}</code> · ${me.version} · ${me.peers_alive} ${me.peers_alive === 1 ? "peer" : "peers"} alive` : 'connecting…'}</span>
    </header>
    <nav role="tablist" aria-label="Views">
      ${TABS.map(([id, label]) => html`<button role="tab" id=${`tab-${id}`} aria-selected=${tab === id}
        onClick=${() => { location.hash = id; }}>${label}</button>`)}
    </nav>
    <main role="tabpanel" aria-labelledby=${`tab-${tab}`}><${View} live=${live} /></main>`;
}

function App() {
  const [needToken, setNeedToken] = useState(false);
  const [generation, setGeneration] = useState(0);
  onTokenNeeded = () => setNeedToken(true);
  if (needToken) {
    return html`<${TokenPrompt} onToken=${(value) => {
      token = value;
      sessionStorage.setItem(TOKEN_KEY, value);
      setNeedToken(false);
      setGeneration(generation + 1);
    }} />`;
  }
  return html`<${Dashboard} key=${generation} />`;
}

const root = document.getElementById('app');
root.textContent = '';
render(html`<${App} />`, root);
