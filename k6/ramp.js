// Seed 002's profile against pygw: 0 -> 1k -> 2k -> 4k -> 6k -> 8k -> 10k VUs (30 s each stage),
// then 2 minutes at 10k, then 30 s back to 0. Each VU repeatedly opens a WebSocket session
// (lib.js): SESSION_S seconds long (default 60), one message every INTERVAL_MS (default 5000,
// i.e. 2,000 messages/s at 10k VUs; seed 002 averaged 116/s).
// Thresholds (lib.js): 0 errors, message round trip p99 < 6 ms, connect p99 < 100 ms.
//   python -m benches k6_run --profile ramp     (starts the gateway, creates 10k accounts)
//   python -m benches k6_run --profile ramp --target http://host:8000   (a running gateway)
// Alone: k6 run -e BASE_URL=http://host:8000 [-e CREDS=creds.json] k6/ramp.js; without CREDS
// setup() creates 20 accounts shared by the VUs, and 10k VUs reconnecting need
// PYGW_RATE_WS_CONNECT lifted on the gateway (lib.js, README "Load testing").
// ramping-vus initialises all PEAK VUs up front (~0.15 MiB each idle; ~3.7 GiB peak RSS at 10k
// active VUs here). GOGC=400 in the environment trades memory for less GC CPU in k6.
import { createAccounts, session, thresholds } from './lib.js';

const PEAK = Number(__ENV.PEAK || 10000);
const s = (f) => Math.round(PEAK * f);
// TIME_SCALE (default 1) multiplies every stage's duration: 0.1 is a ~35 s rehearsal of the profile.
const SCALE = Number(__ENV.TIME_SCALE || 1);
const d = (seconds) => `${Math.max(1, Math.round(seconds * SCALE))}s`;

export const options = {
  scenarios: {
    ramp: {
      executor: 'ramping-vus',
      startVUs: 0,
      stages: [
        { duration: d(30), target: s(0.1) },
        { duration: d(30), target: s(0.2) },
        { duration: d(30), target: s(0.4) },
        { duration: d(30), target: s(0.6) },
        { duration: d(30), target: s(0.8) },
        { duration: d(30), target: s(1.0) },
        { duration: d(120), target: s(1.0) },
        { duration: d(30), target: 0 },
      ],
      gracefulRampDown: '65s',
      gracefulStop: '65s',
    },
  },
  thresholds,
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

export function setup() {
  return createAccounts(PEAK);
}

export default function (data) {
  session(data, { sessionS: 60, intervalMs: 5000 });
}
