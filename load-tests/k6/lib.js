// What every scenario shares: the target (from run.sh's environment), the OAuth calls, the
// open-model scenario, thresholds, and the summary written as JSON.
import http from 'k6/http';
import encoding from 'k6/encoding';
import { Counter } from 'k6/metrics';

export const nodes = (__ENV.TARGETS || 'http://127.0.0.1:8080').split(',');
const basic = 'Basic ' + encoding.b64encode(`${__ENV.CLIENT_ID}:${__ENV.CLIENT_SECRET}`);
const form = { 'Content-Type': 'application/x-www-form-urlencoded' };

/** Answers that contradict the service's contract (a revoked token accepted, a good one
 *  refused): any one fails the run. */
export const wrongAnswers = new Counter('wrong_answers');

/** Node `i` (round robin over the target's nodes). */
export function node(i) {
  return nodes[i % nodes.length];
}

function post(base, path, body, name) {
  return http.post(`${base}${path}`, body, {
    headers: Object.assign({ Authorization: basic }, form),
    tags: { name },
  });
}

export function issue(base) {
  const r = post(base, '/oauth/token', { grant_type: 'client_credentials' }, 'issue');
  return r.status === 200 ? r.json('access_token') : null;
}

export function password(base) {
  const r = post(
    base,
    '/oauth/token',
    { grant_type: 'password', username: __ENV.USERNAME || 'demo', password: __ENV.PASSWORD },
    'password',
  );
  return r.status === 200 ? r.json() : null;
}

export function refresh(base, token) {
  const r = post(base, '/oauth/token', { grant_type: 'refresh_token', refresh_token: token }, 'refresh');
  return r.status === 200 ? r.json() : null;
}

const rejectedIsExpected = http.expectedStatuses(401);

/** `GET /api/data`: the status (200 valid, 401 rejected); a token known to be revoked is
 *  expected to get 401 (not a failed request) and counts as a wrong answer if accepted. */
export function validate(base, token, revoked) {
  const status = http.get(`${base}/api/data`, {
    headers: { Authorization: `Bearer ${token}` },
    tags: { name: revoked ? 'validate_revoked' : 'validate' },
    responseCallback: revoked ? rejectedIsExpected : undefined,
  }).status;
  if ((revoked && status === 200) || (!revoked && status === 401)) wrongAnswers.add(1);
  return status;
}

/** `count` fresh tokens (and as many revoked, strictly, when `revoked`), for `setup()`. */
export function tokenPool(count, revoked) {
  const live = [];
  const dead = [];
  for (let i = 0; i < count; i++) {
    live.push(issue(node(i)));
    if (revoked) {
      const t = issue(node(i));
      revoke(node(i), t, true);
      dead.push(t);
    }
  }
  return { live: live.filter(Boolean), dead: dead.filter(Boolean) };
}

/** Introspection: whether the token is active (`null` when the call failed). */
export function introspect(base, token) {
  const r = post(base, '/oauth/introspect', { token }, 'introspect');
  return r.status === 200 ? r.json('active') : null;
}

/** Revokes `token`; `applied` waits until every node rejects it (strict mode). */
export function revoke(base, token, applied) {
  const body = applied ? { token, consistency: 'applied' } : { token };
  return post(base, '/oauth/revoke', body, 'revoke').status;
}

/** An open-model scenario: `RATE` iterations per second for `DURATION` (coordinated
 *  omission cannot hide latency: arrivals do not wait for answers); with `RAMP=1`, the rate
 *  climbs from 1/s to `RATE` over `DURATION` instead (ramping-arrival-rate: where latency
 *  starts to climb is the knee). */
export function openModel(defaultRate, names) {
  const rate = Number(__ENV.RATE || defaultRate);
  const duration = __ENV.DURATION || '20s';
  const vus = { preAllocatedVUs: Number(__ENV.VUS || 64), maxVUs: Number(__ENV.MAX_VUS || 512) };
  const load = __ENV.RAMP === '1'
    ? { executor: 'ramping-arrival-rate', startRate: 1, timeUnit: '1s', stages: [{ target: rate, duration }], ...vus }
    : { executor: 'constant-arrival-rate', rate, timeUnit: '1s', duration, ...vus };
  return {
    scenarios: {
      load: { ...load, gracefulStop: '5s' },
    },
    thresholds: {
      http_req_failed: [`rate<${__ENV.MAX_ERROR_RATE || 0.001}`],
      http_req_duration: [`p(99)<${__ENV.P99_MS || 250}`],
      wrong_answers: ['count==0'],
      dropped_iterations: [`count<=${Math.ceil(rate * 0.01 * 20)}`],
      // One latency per request kind in the summary.
      ...Object.fromEntries(
        (names || []).map((n) => [`http_req_duration{name:${n}}`, [`p(99)<${__ENV.P99_MS || 250}`]]),
      ),
    },
    summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
  };
}

function line(name, m) {
  if (!m) return '';
  const v = m.values;
  if (m.type === 'trend') {
    const f = (x) => (x === undefined ? '-' : x.toFixed(2));
    return `${name}: med ${f(v.med)} ms  p95 ${f(v['p(95)'])} ms  p99 ${f(v['p(99)'])} ms  max ${f(v.max)} ms\n`;
  }
  if (m.type === 'counter') return `${name}: ${v.count} (${(v.rate || 0).toFixed(1)}/s)\n`;
  if (m.type === 'rate') return `${name}: ${(v.rate * 100).toFixed(3)}%\n`;
  return '';
}

/** The JSON summary to `SUMMARY` (run.sh sets it) and a short text on stdout. */
export function handleSummary(data) {
  const m = data.metrics;
  let text = `\n${__ENV.SCENARIO || 'scenario'} on ${__ENV.TARGET || 'target'}\n`;
  text += line('requests', m.http_reqs);
  text += line('latency', m.http_req_duration);
  text += line('failed', m.http_req_failed);
  text += line('iterations', m.iterations);
  text += line('dropped iterations', m.dropped_iterations);
  text += line('wrong answers', m.wrong_answers);
  for (const [name, t] of Object.entries(data.metrics)) {
    if (name.startsWith('http_req_duration{name:')) text += line(name, t);
  }
  const out = { stdout: text };
  if (__ENV.SUMMARY) out[__ENV.SUMMARY] = JSON.stringify(data, null, 1);
  return out;
}
